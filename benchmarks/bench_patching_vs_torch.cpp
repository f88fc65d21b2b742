// Issue 4's benchmarks on a GPT-2-small-shaped model with random weights (12 layers, d 768, 12
// heads, d_mlp 3072, vocab 50257), batch 1, metric = logit difference at the last position: the
// C++ half of benchmarks/run_patching_vs_torch.sh (benchmarks/torch_patching.py is the PyTorch half
// and prints lines of the same format).
//
//   (a) "sweep":     the resid_pre x position activation-patching sweep (12 x T patches), with the
//                    fast plan (activation_patch) and with the brute-force loop
//                    (activation_patch_reference, one full forward per patch). The loop is timed on
//                    its first --ref-patches patches and scaled to the whole sweep (every patch of it
//                    costs the same full forward); the line says so with measured=K.
//   (b) "atp/relp":  attribution_patch end to end (AtP, and RelP with rule::relp) over resid_pre,
//                    next to one plain forward (logits at every position) on the same tokens.
//   (c) "grad":      forward + backward to the 13 residual-stream gradients (hook_resid_pre of every
//                    block and the last block's hook_resid_post) of the logit difference.
// (b) and (c) pass backward_weights (the transposed projections, packed once per model at start-up,
// as the model packs its forward weights; the time is printed) in backward_options::weights.
//
//   bench_patching_vs_torch [--runs N] [--warmup W] [--parts sweep,attr,grad] [--T-sweep 32]
//                           [--T-attr 32,64] [--T-grad 64] [--ref-patches K] [--threads N]
//                           [--rows-per-forward R]   (patching_options::rows_per_forward of the sweep)
//
// Prints one line per measurement:
//   RESULT <what> threads=2 T=32 runs=3 min_ms=... median_ms=... samples_ms=t1,t2,... [extra=...]
// and, once, "CHECK sweep max_abs_diff=..." (fast plan against the loop on the patches the loop ran).
#include "bench_timing.hpp"

#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/model/transformer.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using bench::clock_type;
using bench::ms_since;
using bench::parse_sizes;
using bench::print_result;
using bench::process_cpu_ms;
using bench::time_ms;

struct options {
    int runs = 5;
    int warmup = 1;
    std::vector<std::string> parts{"sweep", "attr", "grad"};
    std::size_t sweep_T = 32;
    std::vector<std::size_t> attr_T{32, 64};
    std::size_t grad_T = 64;
    std::size_t ref_patches = 24;
    int threads = 0;
    std::size_t rows_per_forward = actlens::patching_options{}.rows_per_forward;
};

std::vector<std::int32_t> random_tokens(actlens::rng& gen, std::size_t T, std::size_t vocab) {
    std::vector<std::int32_t> out(T);
    for (auto& t : out) t = std::int32_t(gen.uniform() * double(vocab)) % std::int32_t(vocab);
    return out;
}

// Thrown by the progress callback to stop the brute-force loop after the patches it should time.
struct enough {};

} // namespace

int main(int argc, char** argv) {
    options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] { return bench::option_value(argc, argv, i); };
        if (a == "--runs") opt.runs = std::max(1, std::stoi(next()));
        else if (a == "--warmup") opt.warmup = std::max(0, std::stoi(next()));
        else if (a == "--parts") opt.parts = bench::split_list(next());
        else if (a == "--T-sweep") opt.sweep_T = std::stoul(next());
        else if (a == "--T-attr") opt.attr_T = parse_sizes(next());
        else if (a == "--T-grad") opt.grad_T = std::stoul(next());
        else if (a == "--ref-patches") opt.ref_patches = std::max<std::size_t>(2, std::stoul(next()));
        else if (a == "--threads") opt.threads = std::stoi(next());
        else if (a == "--rows-per-forward") opt.rows_per_forward = std::stoul(next());
        else {
            fmt::print(stderr,
                       "usage: {} [--runs N] [--warmup W] [--parts sweep,attr,grad] [--T-sweep 32] [--T-attr 32,64] "
                       "[--T-grad 64] [--ref-patches K] [--threads N] [--rows-per-forward R]\n",
                       argv[0]);
            return 2;
        }
    }
    auto wants = [&](const char* part) { return std::find(opt.parts.begin(), opt.parts.end(), part) != opt.parts.end(); };
    int threads = 1;
#ifdef _OPENMP
    if (opt.threads > 0) omp_set_num_threads(opt.threads);
    threads = omp_get_max_threads();
#endif
    fmt::print("# actlens issue-4 benchmarks, GPT-2-small-shaped random model, batch 1, {} thread(s), "
               "float GEMM kernels: {}\n",
               threads, actlens::isa_name(actlens::active_isa()));

    const auto t0 = clock_type::now();
    const actlens::model_config config = actlens::model_config::gpt2(12, 768, 12, 50257, 1024);
    const actlens::transformer model = actlens::make_random_transformer<float>(config, 2024);
    fmt::print("# model built (random weights, packed) in {:.0f} ms\n", ms_since(t0));
    // The backward multiplies with the transposed projections, packed once like the forward's
    // (model/backward_weights.hpp); (b) and (c) use them.
    const auto t1 = clock_type::now();
    const actlens::backward_weights<float> bw(model);
    fmt::print("# backward weights (transposed projections) packed in {:.0f} ms{}\n", ms_since(t1),
               bw.empty() ? " (none: no fast GEMM in this build)" : "");
    const std::size_t V = config.vocab_size;
    actlens::rng gen(11);
    const actlens::logit_difference metric{{17}, {4242}};
    using tokens_view = actlens::tensor_view<const std::int32_t>;

    if (wants("sweep")) {
        const std::size_t T = opt.sweep_T;
        const auto clean = random_tokens(gen, T, V), corrupted = random_tokens(gen, T, V);
        const tokens_view cv(clean.data(), {1, T}), xv(corrupted.data(), {1, T});
        const std::size_t patches = config.n_layers * T;
        actlens::patching_result fast;
        std::vector<double> cpu;
        const auto samples = time_ms(
            opt.warmup, opt.runs,
            [&] {
                actlens::patching_options po;
                po.rows_per_forward = opt.rows_per_forward;
                fast = actlens::activation_patch(model, cv, xv, metric, actlens::patch_target::resid_pre, po);
            },
            &cpu);
        print_result("actlens_sweep", threads, T, samples,
                     fmt::format("patches={} rows_per_forward={}", patches, opt.rows_per_forward), cpu);

        // The loop: stop after K patches; every patch is one full forward, so the whole sweep is
        // (time to the first patch, which includes the two caching forwards) + the rest scaled.
        const std::size_t K = std::min(opt.ref_patches, patches);
        std::vector<double> ref_samples, ref_cpu;
        double max_diff = 0;
        for (int run = 0; run < std::max(1, opt.runs / 2); ++run) {
            actlens::patching_options po;
            std::vector<double> at, at_cpu;
            const auto start = clock_type::now();
            const double start_cpu = process_cpu_ms();
            po.progress = [&](std::size_t done, std::size_t) {
                at.push_back(ms_since(start));
                at_cpu.push_back(process_cpu_ms() - start_cpu);
                if (done >= K) throw enough{};
            };
            try {
                actlens::activation_patch_reference(model, cv, xv, metric, actlens::patch_target::resid_pre, po);
            } catch (const enough&) {
            }
            const double scale = double(patches - 1) / double(K - 1);
            ref_samples.push_back(at.front() + (at.back() - at.front()) * scale);
            ref_cpu.push_back(at_cpu.front() + (at_cpu.back() - at_cpu.front()) * scale);
        }
        print_result("actlens_sweep_reference", threads, T, ref_samples,
                     fmt::format("patches={} measured={} scaled=yes", patches, K), ref_cpu);
        // The fast plan's first K scores against hooked full forwards written out here (the
        // loop's method, outside the timing).
        {
            const auto cache = model.run_with_cache(cv, "blocks.*.hook_resid_pre").second;
            actlens::workspace<float> ws;
            for (std::size_t i = 0; i < K; ++i) {
                const int layer = int(i / T);
                const std::size_t pos = i % T;
                const auto point = actlens::hook_point{actlens::site::resid_pre, layer};
                const auto& src = cache.at(point);
                actlens::hook_set<float> hooks;
                hooks.add(point, [&](actlens::tensor_view<float> a, const actlens::hook_context&) {
                    for (std::size_t e = 0; e < config.d_model; ++e) a(0, pos, e) = src(0, pos, e);
                });
                actlens::run_options<float> o;
                o.hooks = &hooks;
                const double truth = metric.value(model.forward_into(ws, xv, o));
                max_diff = std::max(max_diff, std::abs(truth - fast.scores.data()[i]));
            }
        }
        fmt::print("CHECK sweep first {} patches: max |fast - brute force| = {:.3g}\n", K, max_diff);
    }

    if (wants("attr")) {
        for (std::size_t T : opt.attr_T) {
            const auto clean = random_tokens(gen, T, V), corrupted = random_tokens(gen, T, V);
            const tokens_view cv(clean.data(), {1, T}), xv(corrupted.data(), {1, T});
            actlens::workspace<float> ws;
            float sink = 0;
            std::vector<double> cpu_fwd, cpu_atp, cpu_relp;
            const auto fwd = time_ms(opt.warmup, opt.runs, [&] { sink += model.forward_into(ws, cv).data()[0]; }, &cpu_fwd);
            print_result("actlens_forward", threads, T, fwd, "", cpu_fwd);
            actlens::attribution_options atp, relp;
            relp.backward.rule = actlens::rule::relp;
            atp.backward.weights = relp.backward.weights = &bw;
            double total = 0;
            // Buffers kept between calls, as a sweep over many prompts would (see attribution_workspace).
            actlens::attribution_workspace<float> scratch;
            auto attribution = [&](const actlens::attribution_options& ao) {
                total += actlens::attribution_patch(model, cv, xv, metric, actlens::patch_target::resid_pre, ao,
                                                    scratch)
                             .scores.data()[0];
            };
            const auto t_atp = time_ms(opt.warmup, opt.runs, [&] { attribution(atp); }, &cpu_atp);
            print_result("actlens_atp", threads, T, t_atp, "", cpu_atp);
            const auto t_relp = time_ms(opt.warmup, opt.runs, [&] { attribution(relp); }, &cpu_relp);
            print_result("actlens_relp", threads, T, t_relp, "", cpu_relp);
            if (sink == 12345.0f || total == 12345.0) fmt::print(" ");
        }
    }

    if (wants("grad")) {
        const std::size_t T = opt.grad_T;
        const auto tokens = random_tokens(gen, T, V);
        const tokens_view tv(tokens.data(), {1, T});
        std::vector<actlens::hook_point> want;
        for (int l = 0; l < int(config.n_layers); ++l) want.push_back({actlens::site::resid_pre, l});
        want.push_back({actlens::site::resid_post, int(config.n_layers) - 1});
        const auto tape_list = actlens::tape_points(model);
        actlens::activation_cache<float> tape;
        actlens::hook_set<float> record;
        tape.capture_into(record, tape_list);
        actlens::workspace<float> ws;
        double sink = 0;
        std::vector<double> cpu;
        const auto samples = time_ms(
            opt.warmup, opt.runs,
            [&] {
                         actlens::run_options<float> o;
                         o.hooks = &record;
                         o.last_position_only = true; // the metric reads the last position only
                         sink += metric.value(model.forward_into(ws, tv, o));
                         const auto d_norm = metric.normalized_gradient(model, 1, T);
                         actlens::backward_options bo;
                         bo.weights = &bw;
                         const auto grads = actlens::backward(model, tape, d_norm.view(), want, bo);
                         sink += grads.at(want.front()).data()[0];
            },
            &cpu);
        print_result("actlens_grad", threads, T, samples, "gradients=13", cpu);
        if (sink == 12345.0) fmt::print(" ");
    }
    return 0;
}
