// actlens example: which parts of stories260K copy a token from the context, found by activation
// patching, and how well its two cheap estimates, AtP and RelP, agree with it.
//
//   name_mover [MODEL_DIR | MODEL.bin [TOKENIZER.bin]]
//
// With no argument it reads stories260K.bin and tok512.bin from the bundled model directory; a
// directory argument is read the same way, and a .bin model takes its tokenizer from argument 2 or
// from tok512.bin beside it.
//
// A circuit search is only worth doing on a behaviour the model has, so the example measures first:
//   1. IOI ("Lily and Ben went to the park. Ben gave the ball to" -> " Lily"): the logit difference
//      of the right name over the wrong one for every prompt. stories260K fails (it says " the").
//   2. Induction on repeated random tokens: it fails too (no better than before the repeat).
//   3. Name completion: a three-token name mentioned earlier in a story is completed from its first
//      token ("Sue had a big red ball. One day, S" -> "u"). This is copying from context on
//      in-distribution text, and the model does it.
//   4. On task 3: activation patching (the ground truth), AtP and RelP on resid_pre, attn_out,
//      mlp_out and heads, their correlations with bootstrap intervals, the top components, and a
//      text heatmap of the resid_pre map.
//   5. Whether the head effects are findings: each method rerun on 19 null models of two kinds,
//      permutation p-values and Benjamini-Hochberg FDR across the heads.
//   6. Neuron pathways (ACE): per row, the value neuron, the query neurons that drive it, and the
//      logit difference with those query neurons ablated, against a random-neuron control.
#include <actlens/actlens.hpp>

#include "name_task.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

using actlens::printable_piece;
using namespace name_task;

namespace {

struct model_files {
    std::string model, tokenizer;
};

model_files find_model(int argc, char** argv) {
    namespace fs = std::filesystem;
    if (argc > 3)
        actlens::fail(actlens::errc::invalid_argument,
                      "usage: name_mover [MODEL_DIR | MODEL.bin [TOKENIZER.bin]] ({} arguments given)", argc - 1);
    const fs::path first = argc > 1 ? fs::path(argv[1]) : fs::path(ACTLENS_MODEL_DIR);
    if (fs::is_directory(first)) return {(first / "stories260K.bin").string(), (first / "tok512.bin").string()};
    if (argc > 2) return {first.string(), argv[2]};
    return {first.string(), (first.parent_path() / "tok512.bin").string()};
}

// The most likely next token at position t of a row.
std::int32_t argmax_at(const actlens::tensor<float>& logits, std::size_t row, std::size_t t) {
    std::size_t best = 0;
    for (std::size_t v = 1; v < logits.extent(2); ++v)
        if (logits(row, t, v) > logits(row, t, best)) best = v;
    return std::int32_t(best);
}

std::int32_t argmax_last(const actlens::tensor<float>& logits, std::size_t row = 0) {
    return argmax_at(logits, row, logits.extent(1) - 1);
}

std::string joined_pieces(const actlens::llama2c_tokenizer& tok, const tokens_t& ids) {
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i)
        out += (i ? "|" : "") + (ids[i] == tok.bos_id() ? std::string("BOS") : printable_piece(tok.piece(ids[i])));
    return out;
}

double log_prob(const actlens::tensor<float>& logits, std::size_t row, std::size_t t, std::int32_t id) {
    const std::size_t V = logits.extent(2);
    double max = logits(row, t, 0), total = 0;
    for (std::size_t v = 1; v < V; ++v) max = std::max(max, double(logits(row, t, v)));
    for (std::size_t v = 0; v < V; ++v) total += std::exp(double(logits(row, t, v)) - max);
    return double(logits(row, t, std::size_t(id))) - max - std::log(total);
}

// ------------------------------------------------------------------------------------------------
// Part 1: the IOI-style task
// ------------------------------------------------------------------------------------------------

struct ioi_pair {
    const char* io;      // the indirect object: the right answer
    const char* subject; // the name that repeats in the clean prompt
    const char* place;   // "went to the park"
    const char* object;  // "the ball"
};

// Names are chosen so that the two names of a pair start with different tokens (the logit
// difference compares first tokens: " Ben" is " B" + "en", " Lily" one token).
const std::vector<ioi_pair> ioi_pairs = {
    {"Lily", "Ben", "went to the park", "the ball"},     {"Tim", "Lily", "played in the garden", "a flower"},
    {"Ben", "Mia", "went to the store", "a toy"},        {"Tom", "Sue", "were in the kitchen", "the cake"},
    {"Sam", "Lucy", "went to the beach", "a shell"},     {"Max", "Bob", "found a big box", "the box"},
    {"Timmy", "Sue", "played with a dog", "a stick"},    {"Mia", "Tom", "went to the pond", "the bread"},
    {"Lucy", "Tim", "saw a red kite", "the kite"},       {"Bob", "Lily", "ate lunch together", "an apple"},
};

std::string ioi_prompt(const ioi_pair& p, const char* repeated) {
    return fmt::format("{} and {} {}. {} gave {} to", p.io, p.subject, p.place, repeated, p.object);
}

// The first token a name gets when it follows `prompt` (checked to extend the prompt's tokens).
std::int32_t name_token(const actlens::llama2c_tokenizer& tok, const std::string& prompt, const char* name) {
    const tokens_t base = tok.encode(prompt, true);
    const tokens_t with = tok.encode(prompt + " " + name, true);
    if (with.size() <= base.size() || !std::equal(base.begin(), base.end(), with.begin()))
        actlens::fail(actlens::errc::invalid_argument, "name '{}' does not extend the tokens of prompt '{}'", name,
                      prompt);
    return with[base.size()];
}

void ioi_check(const actlens::transformer& model, const actlens::llama2c_tokenizer& tok) {
    fmt::print("== Part 1: IOI-style name task ==\n"
               "clean: \"A and B <did something>. B gave <object> to\" -> A;  corrupted: the other name repeats "
               "(\"... A gave ... to\" -> B).\n"
               "LD = logit(first token of A) - logit(first token of B) at the last position; a model doing the "
               "task has LD > 0 on clean and LD < 0 on corrupted prompts.\n\n");
    fmt::print("{:>2}  {:<62} {:>8} {:>8}  {:<8} {:<8}\n", "#", "clean prompt", "LD clean", "LD corr", "top clean",
               "top corr");
    std::size_t right = 0, prompts = 0, name_on_top = 0;
    double sum_clean = 0, sum_corrupt = 0;
    for (std::size_t i = 0; i < ioi_pairs.size(); ++i) {
        const ioi_pair& p = ioi_pairs[i];
        const std::string clean = ioi_prompt(p, p.subject), corrupt = ioi_prompt(p, p.io);
        const std::int32_t a = name_token(tok, clean, p.io), b = name_token(tok, clean, p.subject);
        const tokens_t clean_ids = tok.encode(clean, true), corrupt_ids = tok.encode(corrupt, true);
        const auto clean_logits = model.forward(clean_ids), corrupt_logits = model.forward(corrupt_ids);
        const std::size_t tc = clean_ids.size() - 1, tx = corrupt_ids.size() - 1;
        const double ld_clean = double(clean_logits(0, tc, a)) - clean_logits(0, tc, b);
        const double ld_corrupt = double(corrupt_logits(0, tx, a)) - corrupt_logits(0, tx, b);
        const std::int32_t top_c = argmax_last(clean_logits), top_x = argmax_last(corrupt_logits);
        right += (ld_clean > 0) + (ld_corrupt < 0);
        name_on_top += (top_c == a) + (top_x == b);
        prompts += 2;
        sum_clean += ld_clean;
        sum_corrupt += ld_corrupt;
        fmt::print("{:>2}  {:<62} {:>8.3f} {:>8.3f}  {:<8} {:<8}\n", i + 1, "\"" + clean + "\" -> " + p.io, ld_clean,
                   ld_corrupt, "'" + printable_piece(tok.piece(top_c)) + "'", "'" + printable_piece(tok.piece(top_x)) + "'");
    }
    const double n = double(ioi_pairs.size());
    fmt::print("\nmean LD clean {:.3f}, mean LD corrupted {:.3f} (difference {:.3f})\n", sum_clean / n,
               sum_corrupt / n, (sum_clean - sum_corrupt) / n);
    fmt::print("right name preferred in {}/{} prompts; right name is the top-1 token in {}/{}\n", right, prompts,
               name_on_top, prompts);

    // What the model says instead.
    actlens::generate_options<float> gen;
    gen.max_new_tokens = 4;
    const tokens_t prompt = tok.encode(ioi_prompt(ioi_pairs[0], ioi_pairs[0].subject), true);
    const tokens_t out = actlens::generate(model, prompt, gen);
    std::string continuation;
    for (std::size_t i = prompt.size(); i < out.size(); ++i) continuation += tok.decode_piece(out[i - 1], out[i]);
    fmt::print("greedy continuation of prompt 1: \"{}\" + \"{}\"\n", ioi_prompt(ioi_pairs[0], ioi_pairs[0].subject),
               printable_piece(continuation));
}

// ------------------------------------------------------------------------------------------------
// Shared by parts 2-4: a batch of aligned clean/corrupted prompts
// ------------------------------------------------------------------------------------------------

struct row_outcome {
    double ld_clean = 0, ld_corrupted = 0; // logit(correct) - logit(wrong) at the last position
    std::int32_t top_clean = 0, top_corrupted = 0;
};

std::vector<row_outcome> evaluate(const actlens::transformer& model, const patching_task& task) {
    const auto clean_logits = model.forward(task.clean_view()), corrupt_logits = model.forward(task.corrupted_view());
    const std::size_t t = task.length - 1;
    std::vector<row_outcome> out(task.batch);
    for (std::size_t b = 0; b < task.batch; ++b) {
        const auto a = std::size_t(task.correct[b]), c = std::size_t(task.wrong[b]);
        out[b].ld_clean = double(clean_logits(b, t, a)) - clean_logits(b, t, c);
        out[b].ld_corrupted = double(corrupt_logits(b, t, a)) - corrupt_logits(b, t, c);
        out[b].top_clean = argmax_last(clean_logits, b);
        out[b].top_corrupted = argmax_last(corrupt_logits, b);
    }
    return out;
}

// Prints the mean logit differences and accuracies; returns the means through the arguments.
void summarize(const patching_task& task, const std::vector<row_outcome>& rows, double& clean_ld,
               double& corrupt_ld) {
    std::size_t right = 0, top_clean = 0, top_corrupt = 0;
    clean_ld = corrupt_ld = 0;
    for (std::size_t b = 0; b < rows.size(); ++b) {
        right += (rows[b].ld_clean > 0) + (rows[b].ld_corrupted < 0);
        top_clean += rows[b].top_clean == task.correct[b];
        top_corrupt += rows[b].top_corrupted == task.wrong[b];
        clean_ld += rows[b].ld_clean / double(rows.size());
        corrupt_ld += rows[b].ld_corrupted / double(rows.size());
    }
    fmt::print("mean LD clean {:.3f}, corrupted {:.3f}; right token preferred in {}/{} prompts; top-1 token is the "
               "right one in {}/{} clean and {}/{} corrupted prompts\n",
               clean_ld, corrupt_ld, right, 2 * rows.size(), top_clean, rows.size(), top_corrupt, rows.size());
}

// ------------------------------------------------------------------------------------------------
// Part 2: induction on repeated random tokens
// ------------------------------------------------------------------------------------------------

// Row b: clean = BOS a_1..a_n a_1..a_{n-1} (next token by induction: a_n); corrupted = the same
// with the first a_n replaced by a token c not in the row (next token by induction: c). Tokens are
// drawn without replacement from ids [lo, hi): merged word pieces past the 41 most frequent ones
// (ids 259..299), so neither the commonest words nor single characters.
patching_task make_induction_task(const actlens::llama2c_tokenizer& tok, std::size_t batch, std::size_t n,
                                  std::int32_t lo, std::int32_t hi, std::uint64_t seed) {
    patching_task task;
    actlens::rng gen(seed);
    tokens_t pool(std::size_t(hi - lo));
    std::iota(pool.begin(), pool.end(), lo);
    for (std::size_t b = 0; b < batch; ++b) {
        for (std::size_t i = 0; i <= n; ++i) { // partial Fisher-Yates: n + 1 distinct tokens
            const std::size_t j =
                i + std::min(pool.size() - i - 1, std::size_t(gen.uniform() * double(pool.size() - i)));
            std::swap(pool[i], pool[j]);
        }
        tokens_t row{tok.bos_id()};
        row.insert(row.end(), pool.begin(), pool.begin() + std::ptrdiff_t(n));
        row.insert(row.end(), pool.begin(), pool.begin() + std::ptrdiff_t(n - 1));
        tokens_t corrupted = row;
        corrupted[n] = pool[n];
        task.add_row(row, corrupted, pool[n - 1], pool[n]);
    }
    task.finish(tok);
    return task;
}

void induction_check(const actlens::transformer& model, const actlens::llama2c_tokenizer& tok) {
    const std::size_t n = 10;
    const patching_task task = make_induction_task(tok, /*batch=*/16, n, 300, 410, /*seed=*/2024);
    fmt::print("\n== Part 2: induction on repeated random tokens ==\n"
               "{} rows: BOS a1..a{} a1..a{} -> a{}, tokens drawn without replacement from ids 300..409; corrupted: "
               "the first a{} (position {})\nreplaced by a token c not in the row, so induction would predict c. "
               "LD = logit(a{}) - logit(c). First two rows:\n",
               task.batch, n, n - 1, n, n, n, n);
    for (std::size_t b = 0; b < 2; ++b) {
        const tokens_t row(task.clean.begin() + std::ptrdiff_t(b * task.length),
                           task.clean.begin() + std::ptrdiff_t((b + 1) * task.length));
        fmt::print("  {} -> '{}' (c = '{}')\n", joined_pieces(tok, row), printable_piece(tok.piece(task.correct[b])),
                   printable_piece(tok.piece(task.wrong[b])));
    }
    double clean_ld = 0, corrupt_ld = 0;
    summarize(task, evaluate(model, task), clean_ld, corrupt_ld);

    // Over the whole sequence: from position n + 1 on, the next token repeats the one after the
    // previous occurrence of the current token; before that nothing in the context predicts it.
    const auto logits = model.forward(task.clean_view());
    std::size_t hits[2] = {0, 0}, count[2] = {0, 0};
    double lp[2] = {0, 0};
    for (std::size_t b = 0; b < task.batch; ++b)
        for (std::size_t t = 1; t + 1 < task.length; ++t) {
            const int repeated = t > n ? 1 : 0;
            const std::int32_t next = task.clean[b * task.length + t + 1];
            hits[repeated] += argmax_at(logits, b, t) == next;
            lp[repeated] += log_prob(logits, b, t, next);
            ++count[repeated];
        }
    fmt::print("next-token top-1 accuracy on clean rows: unpredictable positions 1..{}: {}/{}, mean log p {:.2f}; "
               "repeated positions {}..{}: {}/{}, mean log p {:.2f}\n",
               n, hits[0], count[0], lp[0] / double(count[0]), n + 1, task.length - 2, hits[1], count[1],
               lp[1] / double(count[1]));
    fmt::print("=> stories260K does not do induction on random tokens (uniform guessing would give log p {:.2f}); "
               "patching this would explain noise.\n",
               -std::log(double(model.config().vocab_size)));
}

// ------------------------------------------------------------------------------------------------
// Part 3: a copying task the model does: completing a name seen earlier in the story
// ------------------------------------------------------------------------------------------------

void name_check(const actlens::transformer& model, const actlens::llama2c_tokenizer& tok, const patching_task& task,
                double& clean_ld, double& corrupt_ld) {
    fmt::print("\n== Part 3: name completion, a copying task the model does ==\n"
               "prompt \"{}\" with the second mention cut after the name's first token; LD = logit(2nd token of the "
               "name) - logit(2nd token of the other name).\n"
               "corrupted: the other name of the pair (same first token), so positions {}..{} differ. {} rows "
               "(each pair in both directions), {} tokens each.\n\n",
               fmt::format(name_story, "X", "X"), task.first_changed, task.first_changed + 1, task.batch,
               task.length);
    const auto row_text = [&](const tokens_t& all) {
        return joined_pieces(tok, tokens_t(all.begin(), all.begin() + std::ptrdiff_t(task.length)));
    };
    fmt::print("row 1 clean:     {} -> '{}'\nrow 1 corrupted: {} -> '{}'\n\n", row_text(task.clean),
               printable_piece(tok.piece(task.correct[0])), row_text(task.corrupted), printable_piece(tok.piece(task.wrong[0])));
    const auto rows = evaluate(model, task);
    fmt::print("{:>2}  {:<8} {:<8} {:>8} {:>8}  {:<9} {:<9}\n", "#", "clean", "corrupt", "LD clean", "LD corr",
               "top clean", "top corr");
    for (std::size_t b = 0; b < task.batch; ++b) {
        const name_pair& p = name_pairs[b / 2];
        const char* clean_name = b % 2 ? p.other : p.name;
        const char* corrupt_name = b % 2 ? p.name : p.other;
        fmt::print("{:>2}  {:<8} {:<8} {:>8.3f} {:>8.3f}  {:<9} {:<9}\n", b + 1, clean_name, corrupt_name,
                   rows[b].ld_clean, rows[b].ld_corrupted, "'" + printable_piece(tok.piece(rows[b].top_clean)) + "'",
                   "'" + printable_piece(tok.piece(rows[b].top_corrupted)) + "'");
    }
    fmt::print("\n");
    summarize(task, rows, clean_ld, corrupt_ld);
}

// ------------------------------------------------------------------------------------------------
// Part 4: activation patching, AtP and RelP
// ------------------------------------------------------------------------------------------------

struct site_scores {
    const char* name;
    actlens::patch_target target;
    actlens::tensor<double> patching, atp, relp;
};

std::string component_name(const site_scores& site, const patching_task& task, std::size_t row, std::size_t col) {
    if (site.target == actlens::patch_target::head) return fmt::format("L{}.H{}", row, col);
    return fmt::format("L{} t{} '{}'", row, col, task.column_labels[col]);
}

std::string with_ci(const std::vector<double>& estimate, const std::vector<double>& truth, bool rank,
                    std::uint64_t seed) {
    const auto statistic = [rank](const std::vector<double>& a, const std::vector<double>& b) {
        return rank ? actlens::spearman(a, b) : actlens::pearson(a, b);
    };
    const actlens::bootstrap_result r = actlens::bootstrap_ci(estimate, truth, statistic, 2000, 0.95, seed);
    if (!r.defined()) return "undefined";
    return fmt::format("{:+.3f} [{:+.2f}, {:+.2f}]", r.estimate, r.lower, r.upper);
}

void correlation_row(const std::string& label, const std::vector<double>& truth, const std::vector<double>& atp,
                     const std::vector<double>& relp) {
    fmt::print("{:<26} {:>4}  {:<22} {:<22} {:<22} {:<22}\n", label, truth.size(), with_ci(atp, truth, false, 1),
               with_ci(atp, truth, true, 2), with_ci(relp, truth, false, 3), with_ci(relp, truth, true, 4));
}

// Shades of a value in [0, 1] (the fraction of the clean logit difference restored); negative
// values are marked apart, since a patch that pushes the wrong way matters as much as one that helps.
std::string shade(double v) {
    if (v < -0.05) return "--";
    static const char* const ramp[] = {"  ", "\u2591\u2591", "\u2592\u2592", "\u2593\u2593", "\u2588\u2588"};
    return ramp[std::lround(std::clamp(v, 0.0, 1.0) * 4)];
}

void resid_heatmap(const actlens::tensor<double>& map, const patching_task& task) {
    const std::size_t L = map.extent(0), T = map.extent(1);
    fmt::print("\nresid_pre activation patching map (layer x position; ' ' < 0.125 <= \u2591 < 0.375 <= \u2592 < 0.625 "
               "<= \u2593 < 0.875 <= \u2588; -- below -0.05)\n     ");
    for (std::size_t t = 0; t < T; ++t) fmt::print("{:>3}", t);
    fmt::print("\n     ");
    for (std::size_t t = 0; t < T; ++t) {
        std::string label = task.column_labels[t];
        if (label.size() > 3) label = label.substr(0, 3);
        fmt::print("{:>3}", label);
    }
    fmt::print("   (tokens of row 0)\n");
    for (std::size_t l = 0; l < L; ++l) {
        fmt::print("  L{}  ", l);
        for (std::size_t t = 0; t < T; ++t) fmt::print("{} ", shade(map(l, t)));
        fmt::print("\n");
    }
    fmt::print("values of the columns where some |score| > 0.01:\n");
    for (std::size_t t = 0; t < T; ++t) {
        bool any = false;
        for (std::size_t l = 0; l < L; ++l) any = any || std::abs(map(l, t)) > 0.01;
        if (!any) continue;
        fmt::print("  t{:<3}", t);
        for (std::size_t l = 0; l < L; ++l) fmt::print("  L{} {:+.3f}", l, map(l, t));
        fmt::print("\n");
    }
}

void attribution_study(const actlens::transformer& model, const patching_task& task, double clean_ld,
                       double corrupt_ld) {
    using namespace actlens;
    const auto cv = task.clean_view(), xv = task.corrupted_view();
    const logit_difference ld{task.correct, task.wrong};
    const auto normalized = normalize(ld, clean_ld, corrupt_ld);
    attribution_options atp_options, relp_options;
    relp_options.backward.rule = rule::relp; // RelP's default rules (LN, identity, half); no AH rule

    fmt::print("\n== Part 4: activation patching vs AtP and RelP on the name-completion batch ==\n"
               "denoising (run corrupted, patch in clean values); scores use the normalised metric "
               "(LD - ({:.3f})) / ({:.3f} - ({:.3f})): 1 = clean, 0 = corrupted.\n",
               corrupt_ld, clean_ld, corrupt_ld);
    std::vector<site_scores> sites = {{"resid_pre [L,T]", patch_target::resid_pre, {}, {}, {}},
                                      {"attn_out [L,T]", patch_target::attn_out, {}, {}, {}},
                                      {"mlp_out [L,T]", patch_target::mlp_out, {}, {}, {}},
                                      {"heads (hook_z) [L,H]", patch_target::head, {}, {}, {}}};
    for (site_scores& site : sites) {
        // activation_patch gets the raw logit difference and is normalised here by normalize()'s
        // formula; attribution_patch takes the normalised metric itself.
        site.patching = activation_patch(model, cv, xv, ld, site.target).scores;
        for (std::size_t i = 0; i < site.patching.size(); ++i)
            site.patching.data()[i] = (site.patching.data()[i] - normalized.corrupted) / normalized.denominator();
        site.atp = attribution_patch(model, cv, xv, normalized, site.target, atp_options).scores;
        site.relp = attribution_patch(model, cv, xv, normalized, site.target, relp_options).scores;
    }

    fmt::print("\ncorrelation with activation patching; [95% paired-bootstrap interval, 2000 resamples over components]\n");
    fmt::print("{:<26} {:>4}  {:<22} {:<22} {:<22} {:<22}\n", "site", "n", "AtP Pearson", "AtP Spearman",
               "RelP Pearson", "RelP Spearman");
    for (const site_scores& site : sites) {
        correlation_row(site.name, values(site.patching), values(site.atp), values(site.relp));
        // Before the first changed position both runs are identical at every layer, so all three
        // methods give exactly 0 there: entries that agree trivially and inflate the correlation.
        if (site.target != patch_target::head)
            correlation_row(fmt::format("  positions >= {} only", task.first_changed),
                            values(site.patching, task.first_changed), values(site.atp, task.first_changed),
                            values(site.relp, task.first_changed));
    }

    fmt::print("\ntop-5 components by |activation patching| (normalised scores)\n");
    fmt::print("{:<22} {:<16} {:>9} {:>9} {:>9}\n", "site", "component", "patching", "AtP", "RelP");
    for (const site_scores& site : sites) {
        const auto top = top_k_indices(values(site.patching), 5);
        const std::size_t cols = site.patching.extent(1);
        for (std::size_t k = 0; k < top.size(); ++k) {
            const std::size_t i = top[k];
            fmt::print("{:<22} {:<16} {:>9.3f} {:>9.3f} {:>9.3f}\n", k == 0 ? site.name : "",
                       component_name(site, task, i / cols, i % cols), site.patching.data()[i], site.atp.data()[i],
                       site.relp.data()[i]);
        }
    }
    resid_heatmap(sites[0].patching, task);
}

// ------------------------------------------------------------------------------------------------
// Part 5: are these findings? The same methods on null models, with FDR control (examples/name_task.hpp)
// ------------------------------------------------------------------------------------------------

// ------------------------------------------------------------------------------------------------
// Part 6: neuron pathways (ACE): value neurons, the query neurons that drive them, and editing them
// ------------------------------------------------------------------------------------------------

// For a few clean rows: the MLP neuron with the largest activation x gradient on the logit difference
// (value neuron), the earlier neurons whose direct write it reads most (query neurons), and the logit
// difference when those query neurons are ablated, against ablating as many random neurons of the
// same layers (a control: an edit should matter because of which neurons it hits).
void pathway_study(const actlens::transformer& model, const patching_task& task) {
    using namespace actlens;
    fmt::print("\n== Part 6: neuron pathways (query -> value) on the first rows, and their ablation ==\n");
    fmt::print("{:>3}  {:<12} {:<40} {:>8} {:>10} {:>12}\n", "row", "value", "queries (score)", "LD", "ablated",
               "random ctrl");
    for (std::size_t b = 0; b < std::min<std::size_t>(4, task.batch); ++b) {
        const tokens_t row(task.clean.begin() + std::ptrdiff_t(b * task.length),
                           task.clean.begin() + std::ptrdiff_t((b + 1) * task.length));
        const logit_difference ld{{task.correct[b]}, {task.wrong[b]}};
        const tensor_view<const std::int32_t> tokens(row.data(), {row.size()});
        pathway_options po;
        po.values = 1;
        po.queries = 3;
        const neuron_pathway p = neuron_pathways(model, tokens, ld, po).front();
        std::string queries;
        for (const pathway_neuron& q : p.queries) queries += fmt::format("L{}.n{} ({:+.2f}) ", q.layer, q.neuron, q.score);
        hook_set<float> ablate, control;
        edit_pathway(ablate, p, 0.0);
        neuron_pathway random = p;
        for (std::size_t k = 0; k < random.queries.size(); ++k)
            random.queries[k].neuron = (p.queries[k].neuron * 7 + 13 + k) % model.config().d_mlp;
        edit_pathway(control, random, 0.0);
        run_options<float> r;
        const double base = ld.value(model.forward(row));
        r.hooks = &ablate;
        const double cut = ld.value(model.forward(row, r));
        r.hooks = &control;
        const double ctrl = ld.value(model.forward(row, r));
        fmt::print("{:>3}  L{}.n{:<8} {:<40} {:>8.3f} {:>10.3f} {:>12.3f}\n", b + 1, p.value.layer, p.value.neuron,
                   queries, base, cut, ctrl);
    }
}

int run(int argc, char** argv) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const model_files files = find_model(argc, argv);
    const actlens::transformer model = actlens::load_model(files.model);
    const actlens::model_config& c = model.config();
    const auto tok = actlens::llama2c_tokenizer::load(files.tokenizer, c.vocab_size);
    fmt::print("model {}: {} layers, d_model {}, {} heads ({} key/value heads), vocab {}\n\n", files.model,
               c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.vocab_size);
    if (c.vocab_size < 410)
        actlens::fail(actlens::errc::invalid_argument,
                      "model '{}' has a vocabulary of {}; part 2 draws token ids 300..409", files.model, c.vocab_size);

    ioi_check(model, tok);
    induction_check(model, tok);
    const patching_task names = make_name_task(tok);
    double clean_ld = 0, corrupt_ld = 0;
    name_check(model, tok, names, clean_ld, corrupt_ld);
    attribution_study(model, names, clean_ld, corrupt_ld);
    null_model_study(model, names, "Part 5");
    pathway_study(model, names);

    fmt::print("\ntotal time {:.2f} s\n", std::chrono::duration<double>(clock::now() - start).count());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "name_mover: %s\n", e.what());
        return 1;
    }
}
