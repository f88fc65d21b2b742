// The packed float product with weights kept as f32, f16 or bf16 panels (kernels/packed_weight.hpp),
// on the projection shapes of a 1B Llama (d 2048, d_mlp 8192), at one row (decode: bound by the
// bytes of weights streamed) and at 64 and 256 rows (prefill: bound by the FMAs). Prints the best and
// median time of each, the weights' GB/s, and the 16-bit panels' speed over f32's (decode goal: well
// above 1; prefill: close to 1).
//
//   bench_panels [--threads N] [--reps N]
//
// Built with -DBENCH_F32_ONLY it measures f32 panels only, so that the same file compiled against an
// older checkout gives the f32 figures before a change (compare the two binaries in one command).
#include <actlens/kernels/gemm.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
namespace k = actlens::kernels;

struct timing {
    double best = 1e300, median = 0;
};

template <class Fn>
timing time_it(int reps, Fn&& fn) {
    fn();
    std::vector<double> s;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = clock_type::now();
        fn();
        s.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    std::sort(s.begin(), s.end());
    return {s.front(), s[s.size() / 2]};
}

} // namespace

int main(int argc, char** argv) {
    int threads = 1, reps = 20;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc)
            threads = std::atoi(argv[++i]);
        else if (a == "--reps" && i + 1 < argc)
            reps = std::atoi(argv[++i]);
    }
    k::detail::scoped_threads team(threads);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1, 1);
    struct shape {
        const char* name;
        std::size_t out, in;
    };
    // A block's q (and o) and the MLP's up and down projections; 16 layers make 4 MLP-sized panels
    // per layer of 2048 x 8192, so each product here streams 8-64 MB from memory as decode does.
    const shape shapes[] = {{"q/o  2048x2048", 2048, 2048}, {"up   8192x2048", 8192, 2048}, {"down 2048x8192", 2048, 8192}};
    fmt::print("{:<16} {:>5} {:>6} {:>10} {:>10} {:>8}\n", "shape", "rows", "panels", "best ms", "median ms",
               "GB/s");
    for (const shape& s : shapes) {
        std::vector<float> w(s.out * s.in);
        for (float& v : w) v = dist(rng);
        std::vector<std::uint16_t> f16(w.size()), bf16(w.size());
#ifndef BENCH_F32_ONLY
        actlens::f32_to_f16(w.data(), f16.data(), w.size());
        actlens::f32_to_bf16(w.data(), bf16.data(), w.size());
#endif
        for (std::size_t rows : {1, 64, 256}) {
            std::vector<float> x(rows * s.in), y(rows * s.out);
            for (float& v : x) v = dist(rng);
            const float* no_bias = nullptr;
            double f32_best = 0;
            auto report = [&](const char* type, const k::packed_weight<float>& pw, std::size_t element) {
                const timing t = time_it(reps, [&] { k::linear(x.data(), rows, pw, no_bias, y.data()); });
                const double gbs = double(s.out * s.in * element) / t.best / 1e9;
                fmt::print("{:<16} {:>5} {:>6} {:>10.3f} {:>10.3f} {:>8.1f}", s.name, rows, type, t.best * 1e3,
                           t.median * 1e3, gbs);
                if (element == 4)
                    f32_best = t.best;
                else
                    fmt::print("   {:.2f}x f32", f32_best / t.best);
                fmt::print("\n");
            };
            report("f32", k::packed_weight<float>(w.data(), s.out, s.in), 4);
#ifndef BENCH_F32_ONLY
            for (auto [type, bits] : {std::pair{actlens::dtype::f16, &f16}, {actlens::dtype::bf16, &bf16}}) {
                using packed = k::packed_weight<float>;
                auto storage = k::allocate_packed_storage<unsigned char>(packed::packed_bytes(s.out, s.in, type));
                report(actlens::dtype_name(type), packed(bits->data(), type, s.out, s.in, storage.get(), storage), 2);
            }
#endif
        }
    }
}
