// The packed float product with weights kept as f32, f16 or bf16 panels (kernels/packed_weight.hpp),
// and with weights used in their rows (F16, BF16, Q8_0: kernels/gemm_rows.hpp), exact and in fast
// precision (kernels/precision.hpp), on the projection shapes of a 1B Llama (d 2048, d_mlp 8192), at
// one row (decode: bound by the bytes of weights streamed) and at 64 and 256 rows (prefill: bound by
// the FMAs). Prints the best and median time of each, the weights' GB/s, and the speed over f32
// panels' and over f16 panels' (decode goal: well above 1; prefill: close to 1, above in fast mode).
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
#include <tuple>
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
    fmt::print("{:<16} {:>5} {:>15} {:>10} {:>10} {:>8}\n", "shape", "rows", "weights", "best ms", "median ms",
               "GB/s");
    for (const shape& s : shapes) {
        std::vector<float> w(s.out * s.in);
        for (float& v : w) v = dist(rng);
        std::vector<std::uint16_t> f16(w.size()), bf16(w.size());
#ifndef BENCH_F32_ONLY
        actlens::f32_to_f16(w.data(), f16.data(), w.size());
        actlens::f32_to_bf16(w.data(), bf16.data(), w.size());
#endif
        // Q8_0 rows of random blocks (the scale of weights near 1/127, the values uniform).
        std::vector<unsigned char> q8(s.out * s.in / 32 * 34);
        for (std::size_t b = 0; b < s.out * s.in / 32; ++b) {
            const std::uint16_t d = actlens::f32_to_f16(1.0f / 127);
            std::memcpy(q8.data() + b * 34, &d, 2);
            for (std::size_t i = 0; i < 32; ++i) q8[b * 34 + 2 + i] = static_cast<unsigned char>(int(rng() % 255) - 127);
        }
        for (std::size_t rows : {1, 64, 256}) {
            std::vector<float> x(rows * s.in), y(rows * s.out);
            for (float& v : x) v = dist(rng);
            const float* no_bias = nullptr;
            double f32_best = 0, f16_best = 0;
            auto report = [&](const std::string& type, const k::packed_weight<float>& pw, double element) {
                const timing t = time_it(reps, [&] { k::linear(x.data(), rows, pw, no_bias, y.data()); });
                const double gbs = double(s.out * s.in) * element / t.best / 1e9;
                fmt::print("{:<16} {:>5} {:>15} {:>10.3f} {:>10.3f} {:>8.1f}", s.name, rows, type, t.best * 1e3,
                           t.median * 1e3, gbs);
                if (f32_best == 0)
                    f32_best = t.best;
                else
                    fmt::print("   {:.2f}x f32", f32_best / t.best);
                if (f16_best == 0 && type == "F16")
                    f16_best = t.best;
                else if (f16_best > 0)
                    fmt::print("  {:.2f}x F16 panels", f16_best / t.best);
                fmt::print("\n");
            };
            report("f32", k::packed_weight<float>(w.data(), s.out, s.in), 4);
#ifndef BENCH_F32_ONLY
            for (auto [type, bits] : {std::pair{actlens::dtype::f16, &f16}, {actlens::dtype::bf16, &bf16}}) {
                using packed = k::packed_weight<float>;
                auto storage = k::allocate_packed_storage<unsigned char>(packed::packed_bytes(s.out, s.in, type));
                report(actlens::dtype_name(type), packed(bits->data(), type, s.out, s.in, storage.get(), storage), 2);
            }
            // The same weights in their rows, exact and fast.
            for (auto [format, bytes, element] :
                 {std::tuple{k::weight_format::f16, static_cast<const void*>(f16.data()), 2.0},
                  {k::weight_format::bf16, static_cast<const void*>(bf16.data()), 2.0},
                  {k::weight_format::q8_0, static_cast<const void*>(q8.data()), 34.0 / 32}})
                for (k::precision mode : {k::precision::exact, k::precision::fast}) {
                    auto pw = k::packed_weight<float>::mapped(bytes, format, s.out, s.in, nullptr);
                    pw.set_precision(mode);
                    report(fmt::format("{} rows {}", k::weight_format_name(format), k::precision_name(mode)), pw,
                           element);
                }
#endif
        }
    }
}
