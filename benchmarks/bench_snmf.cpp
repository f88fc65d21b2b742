// One SNMF iteration (methods/snmf.hpp, the authors' update schedule) on a d_a x n activation matrix
// with K features, default 3072 x 20000 and K = 100 (GPT-2-small MLP width, 20k tokens): the C++
// half of benchmarks/run_snmf_vs_torch.sh (benchmarks/torch_snmf.py is the PyTorch half and prints
// the same line).
//
//   bench_snmf [--d 3072] [--n 20000] [--k 100] [--iters 12] [--warmup 2] [--block-rows 8192]
//
// The data is max(0, N(0, 1)) (MLP activations after a ReLU-like nonlinearity), seeded. One fit runs
// warmup + iters iterations with tol = 0 and a patience that never ends it; the time of iteration i
// is the time between the on_iteration callbacks of iterations i - 1 and i (the loss and the
// best-iterate copy included, the initial pass excluded). Prints:
//   RESULT actlens threads=2 d=3072 n=20000 k=100 runs=12 min_ms=... median_ms=... samples_ms=...
#include <actlens/core/rng.hpp>
#include <actlens/methods/snmf.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
    std::size_t d = 3072, n = 20000, k = 100, iters = 12, warmup = 2, block_rows = 8192;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i];
        const std::size_t value = std::stoul(argv[i + 1]);
        if (key == "--d") d = value;
        else if (key == "--n") n = value;
        else if (key == "--k") k = value;
        else if (key == "--iters") iters = value;
        else if (key == "--warmup") warmup = value;
        else if (key == "--block-rows") block_rows = value;
        else {
            fmt::print(stderr, "unknown option {}\n", key);
            return 2;
        }
    }
    actlens::tensor<float> a({n, d});
    actlens::rng gen(1);
    for (float& x : a) x = std::max(0.0f, float(gen.normal()));

    actlens::snmf_options o;
    o.rank = k;
    o.max_iter = warmup + iters;
    o.tol = 0.0;
    o.patience = o.max_iter + 1;
    o.block_rows = block_rows;
    using clock_type = std::chrono::steady_clock;
    std::vector<double> samples;
    // An iteration's time runs from the previous callback; the first one's (it = 0, kept only with
    // --warmup 0) from here, so it includes the initialisation.
    clock_type::time_point last = clock_type::now();
    o.on_iteration = [&](std::size_t it, double) {
        const auto now = clock_type::now();
        if (it >= warmup) samples.push_back(std::chrono::duration<double, std::milli>(now - last).count());
        last = now;
        return true;
    };
    const actlens::snmf_result fit = actlens::fit_snmf(a.view(), o);

    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::vector<double> sorted = samples;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t m = sorted.size();
    const double median = m % 2 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
    std::string list;
    for (double v : samples) list += fmt::format("{}{:.3f}", list.empty() ? "" : ",", v);
    fmt::print("RESULT actlens threads={} d={} n={} k={} runs={} min_ms={:.3f} median_ms={:.3f} samples_ms={}\n",
               threads, d, n, k, m, sorted.front(), median, list);
    fmt::print("# loss: first {:.6g}, last {:.6g} ({} iterations)\n", fit.loss.front(), fit.loss.back(),
               fit.loss.size());
    return 0;
}
