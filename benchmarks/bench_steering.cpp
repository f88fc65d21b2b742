// Steering overhead per generated token: generation with steering hooks against generation with no
// hooks, on a GPT-2-small-shaped random model (12 layers, d 768, vocab 50257) and on stories260K.
//
//   bench_steering [--reps N] [--tokens N] [--small-only]
//
// Runs are interleaved (plain, one layer, all layers, plain, ...) so that drift in clock speed or in
// the load of other processes hits every variant alike; the medians of the per-token times are
// compared. Target: steering costs <= 1% per token.
#include <actlens/methods/steering.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/model/random_weights.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench(const std::string& label, const actlens::transformer& model, std::size_t reps, std::size_t new_tokens) {
    const auto& c = model.config();
    std::vector<std::int32_t> prompt(16);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = std::int32_t((i * 37 + 11) % c.vocab_size);

    actlens::steering_vector<float> v;
    v.point = {actlens::site::resid_post, int(c.n_layers / 2)};
    v.direction.resize({c.d_model});
    for (std::size_t k = 0; k < c.d_model; ++k) v.direction(k) = float((k % 7) - 3) * 0.01f;
    actlens::hook_set<float> one, all;
    actlens::steering_options o;
    o.alpha = 2.0;
    actlens::add_steering(one, v, o);
    for (int l = 0; l < int(c.n_layers); ++l) o.layers.push_back(l);
    actlens::add_steering(all, v, o);

    struct variant {
        const char* name;
        const actlens::hook_set<float>* hooks;
        std::vector<double> per_token_us;
    };
    std::vector<variant> variants{{"no hooks", nullptr, {}}, {"steer 1 layer", &one, {}}, {"steer all layers", &all, {}}};
    actlens::generate_options<float> gen;
    gen.max_new_tokens = new_tokens;
    for (auto& var : variants) { // warm-up: page in weights, grow buffers
        gen.hooks = var.hooks;
        actlens::generate(model, prompt, gen);
    }
    for (std::size_t r = 0; r < reps; ++r)
        for (auto& var : variants) {
            gen.hooks = var.hooks;
            const auto t0 = std::chrono::steady_clock::now();
            const auto out = actlens::generate(model, prompt, gen);
            const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
            var.per_token_us.push_back(us / double(out.size() - prompt.size()));
        }
    auto min_of = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
    const double base = median(variants[0].per_token_us), base_min = min_of(variants[0].per_token_us);
    fmt::print("{} ({} layers, d_model {}, vocab {}): {} new tokens after a 16-token prompt, {} interleaved reps\n",
               label, c.n_layers, c.d_model, c.vocab_size, new_tokens, reps);
    fmt::print("  {:<18} {:>14} {:>14} {:>13} {:>10}\n", "variant", "median us/tok", "min us/tok", "median ratio",
               "min ratio");
    for (const auto& var : variants) {
        const double m = median(var.per_token_us), lo = min_of(var.per_token_us);
        fmt::print("  {:<18} {:>14.1f} {:>14.1f} {:>13.4f} {:>10.4f}\n", var.name, m, lo, m / base, lo / base_min);
    }

    // The steering work itself, without the noise of a whole forward: the callbacks of `all` run on
    // one position's activation at every layer, as during one decoding step.
    actlens::tensor<float> act({1, 1, c.d_model});
    const std::size_t calls = 20000;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < calls; ++i)
        for (int l = 0; l < int(c.n_layers); ++l) {
            const actlens::hook_point p{actlens::site::resid_post, l};
            all.run(p, act.view(), actlens::hook_context{p, 1, 1, 16 + i});
        }
    const double hook_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                           double(calls);
    fmt::print("  steering callbacks alone, all {} layers: {:.3f} us per token = {:.4f}% of the fastest plain token\n\n",
               c.n_layers, hook_us, 100.0 * hook_us / base_min);
}

} // namespace

int main(int argc, char** argv) {
    std::size_t reps = 7, tokens = 48;
    bool small_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--reps" && i + 1 < argc) reps = std::strtoul(argv[++i], nullptr, 10);
        else if (a == "--tokens" && i + 1 < argc) tokens = std::strtoul(argv[++i], nullptr, 10);
        else if (a == "--small-only") small_only = true;
        else {
            std::fprintf(stderr, "usage: bench_steering [--reps N] [--tokens N] [--small-only]\n");
            return 2;
        }
    }
    try {
        bench("stories260K", actlens::load_model(ACTLENS_MODEL_DIR "/stories260K.bin"), reps * 5, tokens * 4);
        if (!small_only) {
            const auto gpt2 = actlens::model_config::gpt2(12, 768, 12, 50257, 1024);
            bench("GPT-2-small-shaped random model", actlens::make_random_transformer<float>(gpt2, 1), reps, tokens);
        }
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "bench_steering: %s\n", e.what());
        return 1;
    }
    return 0;
}
