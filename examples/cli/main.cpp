// actlens: a command-line tool over the library. `actlens --help` lists the subcommands and
// `actlens COMMAND --help` their options. Errors are one line, "actlens: [actlens.AREA.ID] message",
// with exit code 2.
#include "cli.hpp"

#include <actlens/methods/control_vector.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace actlens::cli {

// ---------------------------------------------------------------------------------------------
// Shared helpers (declared in cli.hpp)
// ---------------------------------------------------------------------------------------------

bool arguments::has(const std::string& name) const {
    return values.count(name) || std::find(flags.begin(), flags.end(), name) != flags.end();
}

const std::string& arguments::required(const std::string& name) const {
    const auto it = values.find(name);
    if (it == values.end())
        fail(errc::invalid_argument, "actlens {}: option --{} is required (see actlens {} --help)", command, name,
             command);
    return it->second;
}

std::string arguments::text(const std::string& name, const std::string& fallback) const {
    const auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
}

double arguments::number(const std::string& name, double fallback) const {
    const auto it = values.find(name);
    if (it == values.end()) return fallback;
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (it->second.empty() || *end != '\0' || !std::isfinite(v))
        fail(errc::invalid_argument, "actlens {}: --{} '{}' is not a finite number", command, name, it->second);
    return v;
}

std::size_t arguments::count(const std::string& name, std::size_t fallback) const {
    const double v = number(name, double(fallback));
    if (v < 0 || v != std::floor(v) || v > 1e15)
        fail(errc::invalid_argument, "actlens {}: --{} '{}' is not a count (0, 1, 2, ...)", command, name,
             text(name, ""));
    return std::size_t(v);
}

int arguments::integer(const std::string& name, int fallback) const {
    const double v = number(name, double(fallback));
    if (v != std::floor(v) || std::abs(v) > 1e9)
        fail(errc::invalid_argument, "actlens {}: --{} '{}' is not an integer", command, name, text(name, ""));
    return int(v);
}

arguments parse(const command_spec& spec, int argc, char** argv) {
    arguments a;
    a.command = spec.name;
    for (int i = 2; i < argc; ++i) {
        const std::string word = argv[i];
        if (word.rfind("--", 0) != 0 || word == "--") {
            a.positional.push_back(word);
            continue;
        }
        const std::string name = word.substr(2);
        const auto spec_of = std::find_if(spec.options.begin(), spec.options.end(),
                                          [&](const option_spec& o) { return o.name == name; });
        if (spec_of == spec.options.end())
            fail(errc::invalid_argument, "actlens {}: unknown option '{}' (see actlens {} --help)", spec.name, word,
                 spec.name);
        if (spec_of->value.empty()) {
            a.flags.push_back(name);
        } else {
            if (i + 1 >= argc)
                fail(errc::invalid_argument, "actlens {}: option {} needs a value ({})", spec.name, word,
                     spec_of->value);
            a.values[name] = argv[++i];
        }
    }
    return a;
}

void print_help(const command_spec& spec) {
    fmt::print("usage: actlens {} {}\n\n{}\n\noptions:\n", spec.name, spec.usage, spec.summary);
    for (const option_spec& o : spec.options)
        fmt::print("  --{:<22} {}\n", o.value.empty() ? o.name : o.name + " " + o.value, o.help);
    fmt::print("  --{:<22} {}\n", "help", "this text");
}

session open_session(const std::string& model_path, const arguments& args) {
    namespace fs = std::filesystem;
    transformer model = load_model(model_path);
    std::string tok_path = args.text("tokenizer", "");
    if (tok_path.empty()) {
        const fs::path p(model_path);
        const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
        if (const auto llama2c = llama2c_tokenizer_in(dir.empty() ? "." : dir.string())) tok_path = *llama2c;
        else if (fs::exists(dir / "tokenizer.json")) tok_path = (dir / "tokenizer.json").string();
        else if (fs::is_directory(p)) tok_path = p.string();
        else
            fail(errc::invalid_argument, "actlens {}: no tokenizer next to '{}'; give one with --tokenizer FILE",
                 args.command, model_path);
    }
    tokenizer tok = load_tokenizer(tok_path, model.config().vocab_size);
    return {std::move(model), std::move(tok)};
}

std::int32_t token_argument(const session& s, const std::string& option, const std::string& value) {
    const bool digits = !value.empty() && value.size() < 10 &&
                        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) {
        const long id = std::stol(value);
        if (std::size_t(id) >= s.model.config().vocab_size)
            fail(errc::out_of_range, "actlens: --{} {} is outside the vocabulary [0, {})", option, id,
                 s.model.config().vocab_size);
        return std::int32_t(id);
    }
    if (const llama2c_tokenizer* l = s.tok.as_llama2c())
        if (const auto id = l->find_piece(value)) return *id;
    const std::vector<std::int32_t> ids = s.tok.encode(value, false);
    if (ids.size() != 1)
        fail(errc::invalid_argument, "actlens: --{} '{}' is {} tokens, not one (give a token id or one piece, "
             "e.g. ' Tim')", option, value, ids.size());
    return ids[0];
}

std::string piece(const session& s, std::int32_t id) {
    if (const llama2c_tokenizer* l = s.tok.as_llama2c())
        return id == l->bos_id() ? "BOS" : printable_piece(l->piece(id));
    return printable_piece(s.tok.decode({id}));
}

std::vector<std::string> pieces(const session& s, const std::vector<std::int32_t>& ids) {
    std::vector<std::string> out;
    for (std::int32_t id : ids) out.push_back(piece(s, id));
    return out;
}

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail(errc::file_open, "actlens: cannot read '{}'", path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) lines.push_back(line);
    }
    return lines;
}

void progress_bar::update(std::size_t done, std::size_t total) {
    constexpr int width = 30;
    const int filled = total ? int(double(done) / double(total) * width) : width;
    if (filled == m_drawn && done != total) return;
    m_drawn = filled;
    std::fprintf(stderr, "\r%s [%s%s] %zu/%zu", m_label.c_str(), std::string(std::size_t(filled), '#').c_str(),
                 std::string(std::size_t(width - filled), ' ').c_str(), done, total);
    std::fflush(stderr);
}

void progress_bar::finish() {
    if (m_drawn >= 0) std::fprintf(stderr, "\n");
    m_drawn = -1;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) fail(errc::file_open, "actlens: cannot write '{}'", path);
}

// ---------------------------------------------------------------------------------------------
// info, generate
// ---------------------------------------------------------------------------------------------

int run_info(const arguments& args) {
    if (args.positional.size() != 1)
        fail(errc::invalid_argument, "actlens info: give exactly one MODEL ({} given)", args.positional.size());
    const transformer model = load_model(args.positional[0]);
    const model_config& c = model.config();
    nlohmann::json j = {{"model", args.positional[0]}, {"family", fmt::format("{}", c.family)},
                        {"n_layers", c.n_layers},      {"d_model", c.d_model},
                        {"n_heads", c.n_heads},        {"n_kv_heads", c.n_kv_heads},
                        {"d_mlp", c.d_mlp},            {"vocab_size", c.vocab_size},
                        {"hook_points", model.hook_points().size()}};
    if (args.has("json")) {
        fmt::print("{}\n", j.dump(2));
        return 0;
    }
    fmt::print("{}: {} ({} layers, d_model {}, {} heads, {} key/value heads, d_mlp {}, vocabulary {}), {} hook "
               "points\n",
               args.positional[0], j["family"].get<std::string>(), c.n_layers, c.d_model, c.n_heads, c.n_kv_heads,
               c.d_mlp, c.vocab_size, model.hook_points().size());
    return 0;
}

int run_generate(const arguments& args) {
    const session s = open_session(args.required("model"), args);
    const std::vector<std::int32_t> prompt = s.tok.encode(args.required("prompt"), true);
    generate_options<float> options;
    options.max_new_tokens = args.count("steps", 64);
    options.sampling.temperature = args.number("temperature", 0.0);
    options.sampling.top_p = args.number("top-p", 1.0);
    options.sampling.seed = args.count("seed", 0);
    if (const auto eos = s.tok.eos_id()) options.stop_tokens = {*eos};
    hook_set<float> hooks;
    if (args.has("control-vector")) {
        add_control_vector_hooks(hooks, load_control_vector(args.required("control-vector")),
                                 float(args.number("strength", 1.0)));
        options.hooks = &hooks;
    }
    const std::vector<std::int32_t> out = generate(s.model, prompt, options);
    if (args.has("json")) {
        write_text(args.required("json"), nlohmann::json{{"prompt", prompt}, {"tokens", out},
                                                         {"text", s.tok.decode(out)}}.dump(2) + "\n");
    }
    fmt::print("{}\n", s.tok.decode(out));
    return 0;
}

} // namespace actlens::cli

namespace {

using actlens::cli::command_spec;
using actlens::cli::option_spec;

const option_spec model_option{"model", "FILE", "checkpoint (llama2.c .bin, GGUF, safetensors folder)"};
const option_spec tokenizer_option{"tokenizer", "FILE", "tokenizer (default: the one next to the model)"};
const std::vector<option_spec> sweep_options = {
    model_option,
    tokenizer_option,
    {"clean", "TEXT", "the clean prompt"},
    {"corrupted", "TEXT", "the corrupted prompt (same number of tokens)"},
    {"correct", "TOKEN", "the answer of the clean prompt: a token id or one token's text"},
    {"wrong", "TOKEN", "the answer of the corrupted prompt"},
    {"site", "SITE", "resid_pre (default), resid_mid, resid_post, attn_out, mlp_out, head, head_by_position, neuron"},
    {"direction", "DIR", "denoising (default: corrupted run, clean values patched in) or noising"},
    {"out", "FILE.npy", "scores as float64 .npy"},
    {"json", "FILE", "scores, axes and the metric's clean and corrupted values as JSON"},
    {"report", "FILE.html", "a self-contained HTML report with the heatmap"},
};

std::vector<command_spec> commands() {
    using namespace actlens::cli;
    std::vector<option_spec> attribute_options = sweep_options;
    attribute_options.push_back({"method", "METHOD", "atp (default), atp* (heads only), relp or ig"});
    attribute_options.push_back({"ig-steps", "N", "integrated gradients: interpolation steps (default 10)"});
    return {
        {"info", "MODEL [--json]", "Prints a model's configuration.",
         {{"json", "", "print JSON instead of text"}}, run_info},
        {"generate", "--model FILE --prompt TEXT [options]", "Generates a continuation (greedy by default).",
         {model_option, tokenizer_option, {"prompt", "TEXT", "the prompt"}, {"steps", "N", "new tokens (64)"},
          {"temperature", "T", "0 = greedy (default)"}, {"top-p", "P", "nucleus sampling (1)"},
          {"seed", "S", "sampling seed (0)"}, {"control-vector", "FILE", "a llama.cpp control vector to apply"},
          {"strength", "S", "its strength (1)"}, {"json", "FILE", "prompt and output tokens as JSON"}},
         run_generate},
        {"patch", "--model FILE --clean TEXT --corrupted TEXT --correct TOKEN --wrong TOKEN [options]",
         "Activation patching: the logit difference correct - wrong at the last position after each patch.",
         sweep_options, run_patch},
        {"attribute", "--model FILE --clean TEXT --corrupted TEXT --correct TOKEN --wrong TOKEN [options]",
         "Gradient estimates of activation patching: AtP, AtP*, RelP or integrated gradients (scores are "
         "estimates of M(patched) - M(base)).",
         attribute_options, run_attribute},
        {"steer", "--model FILE --pairs FILE --layer L [options]",
         "Builds a difference-in-means steering vector at blocks.L.hook_resid_post from prompt pairs (one pair "
         "per line, positive TAB negative), writes it as .npy and as a llama.cpp control vector, and generates "
         "with it.",
         {model_option, tokenizer_option, {"pairs", "FILE", "prompt pairs, tab-separated"},
          {"layer", "L", "block whose output is steered"},
          {"strength", "C", "added: C x the mean difference (default 1)"},
          {"out", "FILE.npy", "the unit direction (float32)"},
          {"control-vector", "FILE.gguf", "the control vector (strength C) for llama.cpp --control-vector"},
          {"prompt", "TEXT", "generate unsteered and steered from this prompt"},
          {"steps", "N", "new tokens (40)"}},
         run_steer},
        {"capture", "--model FILE --corpus FILE --hook NAME --out FILE.npy",
         "Captures a hook point's activation at every token of a corpus (one text per line; BOS left out).",
         {model_option, tokenizer_option, {"corpus", "FILE", "one text per line"},
          {"hook", "NAME", "e.g. blocks.2.mlp.hook_post"}, {"out", "FILE.npy", "[rows, width] float32"},
          {"json", "FILE", "sequence, position and token of every row"}},
         run_capture},
        {"snmf", "--model FILE --corpus FILE --layer L --rank K [options]",
         "Fits SNMF features to blocks.L.mlp.hook_post over a corpus and describes them.",
         {model_option, tokenizer_option, {"corpus", "FILE", "one text per line"}, {"layer", "L", "MLP layer"},
          {"rank", "K", "number of features"}, {"sparsity", "S", "fraction of neurons per feature (0.05)"},
          {"iterations", "N", "at most N iterations (1000)"}, {"patience", "N", "stop after N without gain (100)"},
          {"seed", "S", "initialisation seed (42)"}, {"out", "FILE.npy", "features [K, d_mlp] float32"},
          {"coefficients", "FILE.npy", "coefficients [rows, K] float32"},
          {"json", "FILE", "per feature: neurons, top tokens in context, vocabulary"},
          {"report", "FILE.html", "an HTML report of the features"}},
         run_snmf},
        {"neurons", "--model FILE [options]",
         "Decodes MLP neurons through the unembedding (write side, final norm) and lists their top tokens.",
         {model_option, tokenizer_option, {"layer", "L", "layer to list (default: the last)"},
          {"top-k", "K", "tokens per neuron (10)"}, {"show", "N", "neurons listed, most confident first (10)"},
          {"out", "FILE.npy", "probabilities [layers, d_mlp, K] float32"},
          {"json", "FILE", "top tokens of every neuron of the listed layer"},
          {"report", "FILE.html", "an HTML report of the listed neurons"}},
         run_neurons},
    };
}

void print_overview(const std::vector<command_spec>& all) {
    fmt::print("usage: actlens COMMAND [options]   (actlens COMMAND --help for its options)\n\ncommands:\n");
    for (const command_spec& c : all) fmt::print("  {:<10} {}\n", c.name, c.summary.substr(0, c.summary.find('.') + 1));
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<command_spec> all = commands();
    try {
        if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
            print_overview(all);
            return argc < 2 ? 2 : 0;
        }
        const std::string name = argv[1];
        const auto spec = std::find_if(all.begin(), all.end(), [&](const command_spec& c) { return c.name == name; });
        if (spec == all.end())
            actlens::fail(actlens::errc::invalid_argument, "actlens: unknown command '{}' (see actlens --help)", name);
        for (int i = 2; i < argc; ++i)
            if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
                actlens::cli::print_help(*spec);
                return 0;
            }
        return spec->run(actlens::cli::parse(*spec, argc, argv));
    } catch (const std::exception& e) {
        std::string message = e.what();
        std::replace(message.begin(), message.end(), '\n', ' ');
        std::fflush(stdout);
        std::fprintf(stderr, "actlens: %s\n", message.c_str());
        return 2;
    }
}
