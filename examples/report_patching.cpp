// actlens example: an activation-patching study of stories260K written as a self-contained HTML
// report (no network needed to view it), with heatmaps whose cells show their value on hover.
//
//   report_patching [OUTPUT.html [MODEL_DIR]]
//
// Defaults: report_patching.html in the current folder, the bundled stories260K model. The task is
// name completion (see name_mover.cpp, part 3): a three-token name is mentioned, then cut after its
// first token ("Sue had a big red ball. One day, S" -> "u"); the corrupted prompt mentions another
// name with the same first token, so only the copy from the first mention can tell them apart.
// The report holds resid_pre patching over layers x positions, head patching over layers x heads,
// the attention pattern of the strongest head, and the top components. The program prints the
// Chromium command that makes a screenshot of it.
#include <actlens/actlens.hpp>
#include <actlens/report/display.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/methods.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace {

using tokens_t = std::vector<std::int32_t>;
namespace report = actlens::report;

// Name pairs whose names are three tokens each and share the first one (checked when the task is built).
const std::vector<std::pair<const char*, const char*>> name_pairs = {
    {"Sue", "Sara"}, {"Tina", "Tess"}, {"Lisa", "Luke"}, {"Mia", "Max"}, {"Bob", "Bill"}, {"Lena", "Leo"}};
constexpr const char* story = "{} had a big red ball. One day, {}";

// The story cut after the first token of the name's second mention, and the name's second token.
std::pair<tokens_t, std::int32_t> cut_story(const actlens::llama2c_tokenizer& tok, const char* name) {
    tokens_t name_ids = tok.encode(std::string(" ") + name, false);
    name_ids.erase(name_ids.begin()); // the tokenizer's dummy-prefix space
    tokens_t ids = tok.encode(fmt::format(story, name, name), true);
    if (name_ids.size() != 3 || ids.size() < 4 || !std::equal(name_ids.begin(), name_ids.end(), ids.end() - 3))
        actlens::fail(actlens::errc::invalid_argument, "report_patching: name '{}' is not three tokens at the end", name);
    ids.resize(ids.size() - 2);
    return {ids, name_ids[1]};
}

// Rows of the batch: each pair in both directions.
struct name_batch {
    std::size_t rows = 0, length = 0;
    tokens_t clean, corrupted, right, wrong;
    actlens::tensor_view<const std::int32_t> clean_view() const { return {clean.data(), {rows, length}}; }
    actlens::tensor_view<const std::int32_t> corrupted_view() const { return {corrupted.data(), {rows, length}}; }
};

name_batch make_batch(const actlens::llama2c_tokenizer& tok) {
    name_batch b;
    for (const auto& [first, second] : name_pairs)
        for (const auto& [name, other] : {std::pair{first, second}, std::pair{second, first}}) {
            const auto clean = cut_story(tok, name), corrupted = cut_story(tok, other);
            if (clean.first.size() != corrupted.first.size() || (b.rows && clean.first.size() != b.length))
                actlens::fail(actlens::errc::shape_mismatch, "report_patching: '{}' and '{}' give prompts of "
                              "different lengths", name, other);
            b.length = clean.first.size();
            b.clean.insert(b.clean.end(), clean.first.begin(), clean.first.end());
            b.corrupted.insert(b.corrupted.end(), corrupted.first.begin(), corrupted.first.end());
            b.right.push_back(clean.second);
            b.wrong.push_back(corrupted.second);
            ++b.rows;
        }
    return b;
}

std::vector<std::string> pieces(const actlens::llama2c_tokenizer& tok, const tokens_t& ids, std::size_t begin,
                                std::size_t end) {
    std::vector<std::string> out;
    for (std::size_t i = begin; i < end; ++i) out.push_back(ids[i] == tok.bos_id() ? "BOS" : tok.piece(ids[i]));
    return out;
}

// Scores as the fraction of the clean logit difference restored: 0 = corrupted run, 1 = clean run.
void normalise(actlens::tensor<double>& scores, double clean, double corrupted) {
    for (double& s : scores) s = (s - corrupted) / (clean - corrupted);
}

std::pair<std::size_t, std::size_t> strongest(const actlens::tensor<double>& scores) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < scores.size(); ++i)
        if (std::abs(scores.data()[i]) > std::abs(scores.data()[best])) best = i;
    return {best / scores.extent(1), best % scores.extent(1)};
}

int run(int argc, char** argv) {
    namespace fs = std::filesystem;
    if (argc > 3)
        actlens::fail(actlens::errc::invalid_argument, "usage: report_patching [OUTPUT.html [MODEL_DIR]] ({} "
                      "arguments given)", argc - 1);
    const fs::path output = fs::absolute(argc > 1 ? argv[1] : "report_patching.html");
    const fs::path model_dir = argc > 2 ? fs::path(argv[2]) : fs::path(ACTLENS_MODEL_DIR);
    const actlens::transformer model = actlens::load_model((model_dir / "stories260K.bin").string());
    const auto tok = actlens::llama2c_tokenizer::load((model_dir / "tok512.bin").string(), model.config().vocab_size);
    const actlens::model_config& c = model.config();

    const name_batch batch = make_batch(tok);
    const actlens::logit_difference ld{batch.right, batch.wrong};
    const double clean_ld = ld.value(model.forward(batch.clean_view()).view());
    const double corrupted_ld = ld.value(model.forward(batch.corrupted_view()).view());
    auto resid = actlens::activation_patch(model, batch.clean_view(), batch.corrupted_view(), ld,
                                           actlens::patch_target::resid_pre);
    auto heads = actlens::activation_patch(model, batch.clean_view(), batch.corrupted_view(), ld,
                                           actlens::patch_target::head);
    normalise(resid.scores, clean_ld, corrupted_ld);
    normalise(heads.scores, clean_ld, corrupted_ld);

    const std::vector<std::string> clean_tokens = pieces(tok, batch.clean, 0, batch.length);
    const std::vector<std::string> corrupted_tokens = pieces(tok, batch.corrupted, 0, batch.length);
    report::html_report page("Activation patching: name completion in stories260K");
    page.paragraph(fmt::format(
        "Prompt \"{}\" with the second mention cut after the name's first token; the model should continue with "
        "the name's second token. Corrupted prompts use another name with the same first token. {} rows ({} name "
        "pairs, both directions), {} tokens each. Metric: logit difference of the right over the wrong second "
        "token at the last position, mean over rows: clean {:.3f}, corrupted {:.3f}. Denoising: each patch runs "
        "the corrupted prompt with one activation taken from the clean run; scores are normalised so that 0 = "
        "corrupted and 1 = clean behaviour.",
        fmt::format(story, "Sue", "S"), batch.rows, name_pairs.size(), batch.length, clean_ld, corrupted_ld));
    page.heading("Prompt (row 1)");
    report::generation_comparison prompts;
    prompts.baseline = corrupted_tokens;
    prompts.changed = clean_tokens;
    prompts.baseline_label = "corrupted";
    prompts.changed_label = "clean";
    page.trusted_html(report::render_html(prompts));

    page.heading("Residual stream: blocks.l.hook_resid_pre by layer and position");
    report::score_map resid_map = report::patching_map(resid, clean_tokens, "resid_pre activation patching");
    resid_map.options.value_name = "restored";
    page.figure(report::render_html(resid_map),
                "Each cell: the fraction of the clean logit difference restored by patching that layer's residual "
                "stream at that position (tokens of row 1). Hover a cell for its exact value.");

    page.heading("Attention heads: blocks.l.attn.hook_z by layer and head");
    report::score_map head_map = report::patching_map(heads, {}, "head activation patching (all positions)");
    head_map.options.value_name = "restored";
    page.figure(report::render_html(head_map), "Each cell: one head's output patched at every position.");

    const auto [top_layer, top_head] = strongest(heads.scores);
    const auto cached = model.run_with_cache(tokens_t(batch.clean.begin(), batch.clean.begin() +
                                                      std::ptrdiff_t(batch.length)),
                                             fmt::format("blocks.{}.attn.hook_pattern", top_layer));
    const actlens::tensor<float>& pattern = cached.second.at(fmt::format("blocks.{}.attn.hook_pattern", top_layer));
    report::attention_pattern shown{actlens::tensor<float>::copy_of(pattern.view().slice(0)), clean_tokens,
                                    int(top_layer), {top_head}};
    page.heading(fmt::format("Attention pattern of the strongest head, L{} H{} (clean row 1)", top_layer, top_head));
    page.figure(report::render_html(shown), "Rows: query positions; columns: key positions; 0..1.");

    page.heading("Top components");
    std::vector<std::vector<std::string>> rows;
    for (const auto* r : {&resid_map, &head_map}) {
        std::vector<std::size_t> order(r->values.size());
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return std::abs(r->values.data()[a]) > std::abs(r->values.data()[b]);
        });
        const std::size_t cols = r->values.extent(1);
        for (std::size_t k = 0; k < 5 && k < order.size(); ++k)
            rows.push_back({r->options.title, r->row_labels[order[k] / cols] + " " + r->col_labels[order[k] % cols],
                            fmt::format("{:+.3f}", r->values.data()[order[k]])});
    }
    page.table({"map", "component", "restored"}, rows);
    page.paragraph(fmt::format("Model {}: {} layers, d_model {}, {} heads, vocabulary {}.", model_dir.string(),
                               c.n_layers, c.d_model, c.n_heads, c.vocab_size));
    page.save(output.string());

    fmt::print("wrote {} (clean LD {:.3f}, corrupted LD {:.3f}; strongest head L{} H{}: {:+.3f})\n", output.string(),
               clean_ld, corrupted_ld, top_layer, top_head, heads.scores(top_layer, top_head));
    fmt::print("screenshot:\n  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
               "--window-size=1000,1900 --screenshot={} file://{}\n",
               (output.parent_path() / (output.stem().string() + ".png")).string(), output.string());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "report_patching: %s\n", e.what());
        return 1;
    }
}
