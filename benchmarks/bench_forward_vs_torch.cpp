// The forward pass of a GPT-2-small-shaped model with random weights (12 layers, d 768, 12 heads,
// d_mlp 3072, vocab 50257), batch 1, timed at T = 64 and 256: the C++ half of
// benchmarks/run_forward_vs_torch.sh (benchmarks/torch_forward.py is the PyTorch half and prints
// the same lines). Every forward computes the logits at every position, as the PyTorch one does.
//
//   bench_forward_vs_torch [--runs N] [--warmup W] [--T 64,256] [--threads N] [--gemm]
//
// Prints, per T, one line the runner parses:
//   RESULT actlens threads=2 T=64 runs=20 min_ms=... median_ms=... samples_ms=t1,t2,...
// --gemm also prints the GFLOP/s of the model's GEMM shapes (Eigen, the fast kernel with weights
// packed per call, and with pre-packed weights), the numbers behind the forward.
#include "bench_timing.hpp"

#include <actlens/kernels/gemm.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/model/transformer.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using bench::clock_type;
using bench::parse_sizes;
using bench::print_result;
using bench::time_ms;

struct options {
    int runs = 20;
    int warmup = 3;
    std::vector<std::size_t> lengths{64, 256};
    int threads = 0;
    bool gemm = false;
};

void gemm_table(int runs) {
    struct shape {
        std::size_t m, k, n;
    };
    const shape shapes[] = {{1, 768, 3072}, {64, 768, 3072}, {256, 768, 3072}, {64, 768, 50257}};
    fmt::print("{:<18} {:>12} {:>14} {:>14}   (GFLOP/s, best of {})\n", "M x K x N", "Eigen",
               "fast, unpacked", "fast, packed", runs);
    for (const shape& s : shapes) {
        std::vector<float> x(s.m * s.k), w(s.n * s.k), y(s.m * s.n);
        actlens::rng gen(s.n);
        for (float& v : x)
            v = float(gen.normal());
        for (float& v : w)
            v = float(gen.normal()) * 0.05f;
        const actlens::kernels::packed_weight<float> pw(w.data(), s.n, s.k);
        const float* none = nullptr;
        const double flops = 2.0 * double(s.m) * double(s.k) * double(s.n);
        auto best = [&](auto&& fn) {
            const auto t = time_ms(1, runs, fn);
            return flops / (*std::min_element(t.begin(), t.end()) * 1e-3) / 1e9;
        };
        const double eigen = best([&] {
            actlens::kernels::detail::linear_eigen(x.data(), s.m, s.k, w.data(), s.n, none,
                                                   y.data(), false, s.k, s.n);
        });
        const double unpacked = best(
            [&] { actlens::kernels::linear(x.data(), s.m, s.k, w.data(), s.n, none, y.data()); });
        const double packed =
            best([&] { actlens::kernels::linear(x.data(), s.m, pw, none, y.data()); });
        fmt::print("{:<18} {:>12.1f} {:>14.1f} {:>14.1f}\n", fmt::format("{}x{}x{}", s.m, s.k, s.n),
                   eigen, unpacked, packed);
    }
}

} // namespace

int main(int argc, char** argv) {
    options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] { return bench::option_value(argc, argv, i); };
        if (a == "--runs")
            opt.runs = std::max(1, std::stoi(next()));
        else if (a == "--warmup")
            opt.warmup = std::max(0, std::stoi(next()));
        else if (a == "--T")
            opt.lengths = parse_sizes(next());
        else if (a == "--threads")
            opt.threads = std::stoi(next());
        else if (a == "--gemm")
            opt.gemm = true;
        else {
            fmt::print(stderr,
                       "usage: {} [--runs N] [--warmup W] [--T 64,256] [--threads N] [--gemm]\n",
                       argv[0]);
            return 2;
        }
    }
    int threads = 1;
#ifdef _OPENMP
    if (opt.threads > 0) omp_set_num_threads(opt.threads);
    threads = omp_get_max_threads();
#endif
    fmt::print("# actlens GPT-2-small-shaped forward, batch 1, {} thread(s), float GEMM kernels: {}\n",
               threads, actlens::isa_name(actlens::active_isa()));

    if (opt.gemm) gemm_table(std::max(3, opt.runs / 2));

    const auto t0 = clock_type::now();
    const actlens::model_config config = actlens::model_config::gpt2(12, 768, 12, 50257, 1024);
    const actlens::transformer model = actlens::make_random_transformer<float>(config, 2024);
    fmt::print("# model built (random weights, packed) in {:.0f} ms\n",
               std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());

    actlens::workspace<float> ws;
    actlens::rng gen(7);
    for (std::size_t T : opt.lengths) {
        std::vector<std::int32_t> tokens(T);
        for (auto& t : tokens)
            t = std::int32_t(gen.uniform() * double(config.vocab_size)) %
                std::int32_t(config.vocab_size);
        const actlens::tensor_view<const std::int32_t> view(tokens.data(), {1, T});
        float sink = 0;
        const auto samples =
            time_ms(opt.warmup, opt.runs, [&] { sink += model.forward_into(ws, view).data()[0]; });
        if (sink == 12345.0f) fmt::print(" ");
        print_result("actlens", threads, T, samples);
    }
    return 0;
}
