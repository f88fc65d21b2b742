// actlens quick start: load a model and its tokenizer, generate a story, and look inside.
//
//   quickstart [--model FILE] [--tokenizer FILE] [--prompt TEXT] [--steps N]
//              [--temperature T] [--top-p P] [--seed S]
//
// With no arguments it runs the bundled stories260K model (a tiny Llama trained on TinyStories).
// It shows the three things most interpretability work starts from:
//   1. the model's next-token distribution for a prompt,
//   2. generation, streamed token by token through a KV cache,
//   3. activations read at named hook points (TransformerLens names) with run_with_cache.
#include <actlens/actlens.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

using actlens::printable_piece;

namespace {

struct arguments {
    std::string model = ACTLENS_MODEL_DIR "/stories260K.bin";
    std::string tokenizer = ACTLENS_MODEL_DIR "/tok512.bin";
    std::string prompt = "Once upon a time, there was a little dog";
    std::size_t steps = 60;
    double temperature = 0.0;
    double top_p = 1.0;
    std::uint64_t seed = 0;
};

arguments parse(int argc, char** argv) {
    arguments a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) actlens::fail(actlens::errc::invalid_argument, "option {} needs a value", flag);
            return argv[++i];
        };
        auto number = [&](const std::string& text) {
            char* end = nullptr;
            const double v = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0')
                actlens::fail(actlens::errc::invalid_argument, "option {}: '{}' is not a number", flag, text);
            return v;
        };
        if (flag == "--model") a.model = value();
        else if (flag == "--tokenizer") a.tokenizer = value();
        else if (flag == "--prompt") a.prompt = value();
        else if (flag == "--steps") a.steps = static_cast<std::size_t>(std::max(0.0, number(value())));
        else if (flag == "--temperature") a.temperature = number(value());
        else if (flag == "--top-p") a.top_p = number(value());
        else if (flag == "--seed") a.seed = static_cast<std::uint64_t>(number(value()));
        else if (flag == "--help" || flag == "-h") {
            fmt::print("usage: quickstart [--model FILE] [--tokenizer FILE] [--prompt TEXT] [--steps N]\n"
                       "                  [--temperature T] [--top-p P] [--seed S]\n");
            std::exit(0);
        } else {
            actlens::fail(actlens::errc::invalid_argument, "unknown option '{}' (try --help)", flag);
        }
    }
    return a;
}

std::string bar(double fraction, int width) {
    const int n = static_cast<int>(std::lround(std::clamp(fraction, 0.0, 1.0) * width));
    std::string s;
    for (int i = 0; i < n; ++i) s += "\u2588";
    return s;
}

// Mean over positions of the L2 norm of each position's vector in a [1, T, d] activation.
double mean_norm(const actlens::tensor<float>& a) {
    const std::size_t T = a.extent(1), d = a.extent(2);
    double total = 0;
    for (std::size_t t = 0; t < T; ++t) {
        double sq = 0;
        for (std::size_t i = 0; i < d; ++i) sq += double(a(0, t, i)) * a(0, t, i);
        total += std::sqrt(sq);
    }
    return total / double(T);
}

int run(const arguments& args) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const actlens::transformer model = actlens::load_model(args.model);
    const actlens::model_config& c = model.config();
    const auto tok = actlens::llama2c_tokenizer::load(args.tokenizer, c.vocab_size);
    fmt::print("model      {} ({}): {} layers, d_model {}, {} heads ({} key/value heads), d_mlp {}, vocab {}\n",
               args.model, c.family, c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.d_mlp, c.vocab_size);
    fmt::print("           loaded in {:.1f} ms, {} hook points\n\n",
               std::chrono::duration<double, std::milli>(clock::now() - t0).count(), model.hook_points().size());

    // 1. Tokens and the next-token distribution.
    const std::vector<std::int32_t> prompt = tok.encode(args.prompt, /*bos=*/true);
    fmt::print("prompt     \"{}\" -> {} tokens:", args.prompt, prompt.size());
    for (std::size_t i = 0; i < prompt.size(); ++i)
        fmt::print(" {}:'{}'", prompt[i], printable_piece(tok.decode_piece(i ? prompt[i - 1] : -1, prompt[i])));
    fmt::print("\n\n");

    auto [logits, cache] = model.run_with_cache(prompt, "*");
    const std::size_t last = prompt.size() - 1;
    std::vector<double> probs(c.vocab_size);
    double max = -1e300, total = 0;
    for (std::size_t v = 0; v < c.vocab_size; ++v) max = std::max(max, double(logits(0, last, v)));
    for (std::size_t v = 0; v < c.vocab_size; ++v) total += probs[v] = std::exp(double(logits(0, last, v)) - max);
    std::vector<std::size_t> order(c.vocab_size);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 8, order.end(),
                      [&](std::size_t a, std::size_t b) { return probs[a] > probs[b]; });
    fmt::print("next token after the prompt (top 8 of {}):\n", c.vocab_size);
    for (std::size_t i = 0; i < 8; ++i) {
        const std::size_t v = order[i];
        const double p = probs[v] / total;
        fmt::print("  {:>4}  {:<12} p = {:.3f}  {}\n", v, "'" + printable_piece(tok.piece(std::int32_t(v))) + "'", p,
                   bar(p, 40));
    }

    // 2. Generation with a KV cache, streamed.
    actlens::generate_options<float> gen;
    gen.max_new_tokens = args.steps;
    gen.sampling.temperature = args.temperature;
    gen.sampling.top_p = args.top_p;
    gen.sampling.seed = args.seed;
    gen.stop_tokens = {tok.eos_id()};
    std::int32_t prev = prompt.back();
    fmt::print("\ngeneration ({}, {} new tokens at most):\n  {}",
               args.temperature == 0.0 ? std::string("greedy") : fmt::format("temperature {}, top-p {}, seed {}",
                                                                             args.temperature, args.top_p, args.seed),
               args.steps, tok.decode(prompt));
    gen.on_token = [&](std::size_t, std::int32_t token) {
        if (token != tok.eos_id()) fmt::print("{}", tok.decode_piece(prev, token));
        std::fflush(stdout);
        prev = token;
        return true;
    };
    const auto t1 = clock::now();
    const auto out = actlens::generate(model, prompt, gen);
    const double seconds = std::chrono::duration<double>(clock::now() - t1).count();
    const std::size_t generated = out.size() - prompt.size();
    fmt::print("\n  [{} tokens in {:.1f} ms: {:.0f} tokens/s]\n\n", generated, seconds * 1e3,
               generated / std::max(seconds, 1e-9));

    // 3. Inside the forward pass: how large each block's writes to the residual stream are.
    fmt::print("per-layer mean L2 norm over the prompt's positions (from run_with_cache):\n");
    fmt::print("  {:<26} {:>8}   {:<26} {:>8}   {:<26} {:>8}\n", "hook", "norm", "hook", "norm", "hook", "norm");
    double largest = 0;
    for (const auto& [point, value] : cache.entries())
        if (value.rank() == 3 && value.extent(2) == c.d_model) largest = std::max(largest, mean_norm(value));
    for (int l = 0; l < static_cast<int>(c.n_layers); ++l) {
        for (auto s : {actlens::site::resid_pre, actlens::site::attn_out, actlens::site::mlp_out}) {
            const actlens::hook_point p{s, l};
            const double n = mean_norm(cache.at(p));
            fmt::print("  {:<26} {:>8.3f} {:<11}", p.name(), n, bar(n / largest, 10));
        }
        fmt::print("\n");
    }
    // Where the last position looks: the attention pattern of layer 0, averaged over heads.
    const auto& pattern = cache.at("blocks.0.attn.hook_pattern");
    fmt::print("\nblocks.0.attn.hook_pattern, last query position, mean over {} heads:\n", c.n_heads);
    for (std::size_t k = 0; k < prompt.size(); ++k) {
        double w = 0;
        for (std::size_t h = 0; h < c.n_heads; ++h) w += pattern(0, h, last, k) / double(c.n_heads);
        fmt::print("  key {:>2} {:<12} {:.3f} {}\n", k,
                   "'" + printable_piece(tok.decode_piece(k ? prompt[k - 1] : -1, prompt[k])) + "'", w, bar(w, 40));
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "quickstart: %s\n", e.what());
        return 1;
    }
}
