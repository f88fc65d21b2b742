// Kernel throughput against this machine's own limits, measured in the same process.
//
// The baselines are measured here, not quoted: the FP32 FMA peak (a register-only loop of
// independent fused multiply-adds), memory bandwidth (memcpy of the same bytes), and a scalar
// std::tanh loop for GELU. Every figure is the best of several repetitions (the machines are
// noisy; the minimum is the most repeatable statistic). Printed ratios are what to track.
//
//   bench_kernels [--threads N] [--quick] [--rows]
//
// --rows: only the products with weights read in their stored rows (kernels::linear_rows, exact
// precision) against the packed f32 panel kernel on the same shapes (Llama 3.2 1B's: K = 2048 ->
// N = 2048 and 8192, K = 8192 -> N = 2048; T = 1, 16, 64, 256 tokens), run interleaved (panel, then
// each format, repeated), best wall time of each; the ratio is the panel's time over the rows', and
// the figure after it the rows' GFLOP/s (to compare two builds run one after the other).
#include <actlens/actlens.hpp>
#include <actlens/kernels/detail/simd.hpp>

#include "bench_limits.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using clock_type = std::chrono::steady_clock;

/// Best wall time in seconds of `fn` over `reps` runs (after one warm-up run).
double best_seconds(int reps, const std::function<void()>& fn) {
    fn();
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = clock_type::now();
        fn();
        best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    return best;
}

struct gemm_shape {
    std::size_t m, k, n;
    const char* what;
};

void fill(std::vector<float>& v, float scale) {
    actlens::rng g(v.size());
    for (float& x : v) x = float(g.normal()) * scale;
}

/// `out` rows of `in` weights in format f: values in [-0.05, 0.05] for the plain types, random
/// bytes with small finite f16 scales for ggml's blocks (kernels/weight_format.hpp).
std::vector<unsigned char> random_weight_rows(actlens::kernels::weight_format f, std::size_t out, std::size_t in) {
    namespace k = actlens::kernels;
    using k::weight_format;
    std::vector<unsigned char> rows(k::weight_row_bytes(f, in) * out);
    actlens::rng g(rows.size());
    const std::size_t block = k::weight_block_bytes(f);
    for (std::size_t b = 0; b < rows.size() / block; ++b) {
        unsigned char* at = rows.data() + b * block;
        const float v = float(g.uniform() - 0.5) * 0.1f;
        std::uint16_t bits = 0;
        switch (f) {
        case weight_format::f32: std::memcpy(at, &v, 4); continue;
        case weight_format::f16: bits = actlens::f32_to_f16(v); std::memcpy(at, &bits, 2); continue;
        case weight_format::bf16: bits = actlens::f32_to_bf16(v); std::memcpy(at, &bits, 2); continue;
        default: break;
        }
        for (std::size_t i = 0; i < block; ++i) at[i] = static_cast<unsigned char>(g.uniform() * 256);
        bits = actlens::f32_to_f16(std::abs(v) * 1e-2f);
        const std::size_t scale_at[] = {f == weight_format::q6_k ? std::size_t(208) : 0, 2};
        for (std::size_t i = 0; i < (f == weight_format::q4_k ? 2u : 1u); ++i) std::memcpy(at + scale_at[i], &bits, 2);
    }
    return rows;
}

/// The --rows table (see the top of this file).
void bench_rows(int reps) {
    namespace k = actlens::kernels;
    using k::weight_format;
    const weight_format formats[] = {weight_format::f32,  weight_format::f16,  weight_format::bf16,
                                     weight_format::q8_0, weight_format::q4_0, weight_format::q4_k, weight_format::q6_k};
    struct shape {
        std::size_t in, out;
    };
    fmt::print("{:<28} {:>12}  rows (exact): panel time / rows time\n", "linear_rows vs f32 panels", "panel GF/s");
    for (const shape s : {shape{2048, 2048}, shape{2048, 8192}, shape{8192, 2048}})
        for (std::size_t tokens : {1u, 16u, 64u, 256u}) {
            std::vector<float> x(tokens * s.in), w(s.out * s.in), y(tokens * s.out);
            fill(x, 1.0f);
            fill(w, 0.05f);
            const k::packed_weight<float> panels(w.data(), s.out, s.in);
            std::vector<std::vector<unsigned char>> rows;
            for (weight_format f : formats) rows.push_back(random_weight_rows(f, s.out, s.in));
            constexpr std::size_t count = sizeof formats / sizeof formats[0];
            double best[count + 1];
            std::fill(best, best + count + 1, 1e300);
            auto time = [](double& b, const std::function<void()>& fn) {
                const auto t0 = clock_type::now();
                fn();
                b = std::min(b, std::chrono::duration<double>(clock_type::now() - t0).count());
            };
            const int runs = tokens == 1 ? 4 * reps : reps;
            for (int r = 0; r <= runs; ++r) { // the first round warms up and is not kept
                double panel = 1e300, row_times[count];
                time(panel, [&] { k::linear(x.data(), tokens, panels, static_cast<const float*>(nullptr), y.data()); });
                for (std::size_t i = 0; i < count; ++i) {
                    row_times[i] = 1e300;
                    time(row_times[i], [&] {
                        k::linear_rows(x.data(), tokens, s.in, rows[i].data(), formats[i], s.out, nullptr, y.data());
                    });
                }
                if (r == 0) continue;
                best[0] = std::min(best[0], panel);
                for (std::size_t i = 0; i < count; ++i) best[i + 1] = std::min(best[i + 1], row_times[i]);
            }
            std::string line;
            for (std::size_t i = 0; i < count; ++i)
                line += fmt::format(" {} {:.2f}x {:.1f}", k::weight_format_name(formats[i]), best[0] / best[i + 1],
                                    2.0 * double(tokens) * double(s.in) * double(s.out) / best[i + 1] / 1e9);
            fmt::print("{:<28} {:>12.1f} {}\n", fmt::format("K={} N={} T={}", s.in, s.out, tokens),
                       2.0 * double(tokens) * double(s.in) * double(s.out) / best[0] / 1e9, line);
        }
}

} // namespace

int main(int argc, char** argv) {
    int threads = 0;
    bool quick = false, rows_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--quick") quick = true;
        else if (a == "--rows") rows_only = true;
    }
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
    threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    const int reps = quick ? 3 : 10;
    fmt::print("actlens {} kernels | SIMD {} ({} floats per register) | {} thread(s)\n\n", actlens::version_string,
               xsimd::default_arch::name(), xsimd::batch<float>::size, threads);
    if (rows_only) {
        bench_rows(reps);
        return 0;
    }

    const double peak1 = bench::fma_peak_gflops(1);
    const double peak = peak1 * threads;
    fmt::print("measured FP32 FMA peak: {:.0f} GFLOP/s per thread, {:.0f} for {} thread(s)\n\n", peak1, peak, threads);

    // GEMM through actlens::kernels::linear (y = x W^T, W stored [out, in]).
    fmt::print("{:<34} {:>10} {:>10} {:>9}\n", "linear  [M x K] * [N x K]^T", "ms", "GFLOP/s", "of peak");
    const gemm_shape shapes[] = {
        {1, 768, 3072, "decode step, GPT-2 MLP in (GEMV)"},
        {64, 768, 768, "T=64, GPT-2 attention out"},
        {64, 768, 3072, "T=64, GPT-2 MLP in"},
        {256, 768, 3072, "T=256, GPT-2 MLP in"},
        {256, 3072, 768, "T=256, GPT-2 MLP out"},
        {64, 768, 50257, "T=64, GPT-2 unembedding"},
        {12, 64, 172, "prompt, stories260K MLP in"},
    };
    for (const auto& s : shapes) {
        if (quick && s.n > 10000) continue;
        std::vector<float> x(s.m * s.k), w(s.n * s.k), y(s.m * s.n);
        fill(x, 1.0f);
        fill(w, 0.05f);
        const double sec = best_seconds(reps, [&] {
            actlens::kernels::linear(x.data(), s.m, s.k, w.data(), s.n, static_cast<const float*>(nullptr), y.data());
        });
        const double gflops = 2.0 * double(s.m) * double(s.k) * double(s.n) / sec / 1e9;
        fmt::print("{:<34} {:>10.3f} {:>10.1f} {:>8.0f}%   ({}x{}x{})\n", s.what, sec * 1e3, gflops,
                   100.0 * gflops / peak, s.m, s.k, s.n);
    }

    // Elementwise and row kernels against a memcpy of the same bytes (memory-bound baseline).
    fmt::print("\n{:<34} {:>10} {:>10} {:>9}\n", "elementwise, 64 x 3072 floats", "us", "GB/s", "vs memcpy");
    const std::size_t rows = 64, d = 3072, n = rows * d;
    std::vector<float> in(n), out(n), gain(d, 1.0f), bias(d, 0.0f);
    fill(in, 1.0f);
    const double copy_s = best_seconds(reps * 5, [&] { std::memcpy(out.data(), in.data(), n * sizeof(float)); });
    auto report = [&](const char* what, double sec) {
        const double gbs = 2.0 * n * sizeof(float) / sec / 1e9;
        fmt::print("{:<34} {:>10.1f} {:>10.1f} {:>8.2f}x\n", what, sec * 1e6, gbs, copy_s / sec);
    };
    report("memcpy (baseline)", copy_s);
    const double gelu_s = best_seconds(reps * 5, [&] { actlens::kernels::gelu_tanh(in.data(), out.data(), n); });
    report("gelu_tanh (xsimd)", gelu_s);
    const double gelu_scalar_s = best_seconds(reps, [&] {
        for (std::size_t i = 0; i < n; ++i) {
            const float u = in[i];
            out[i] = 0.5f * u * (1.0f + std::tanh(0.7978845608f * (u + 0.044715f * u * u * u)));
        }
    });
    report("gelu_tanh (scalar std::tanh)", gelu_scalar_s);
    report("silu (xsimd)", best_seconds(reps * 5, [&] { actlens::kernels::silu(in.data(), out.data(), n); }));
    report("layer_norm (rows of 3072)", best_seconds(reps * 5, [&] {
               actlens::kernels::layer_norm(in.data(), rows, d, gain.data(), bias.data(), 1e-5f, out.data());
           }));
    report("rms_norm (rows of 3072)", best_seconds(reps * 5, [&] {
               actlens::kernels::rms_norm(in.data(), rows, d, gain.data(), 1e-5f, out.data());
           }));
    std::vector<float> scores(256 * 256);
    fill(scores, 2.0f);
    const double sm_s = best_seconds(reps * 5, [&] {
        std::vector<float>& s = scores;
        actlens::kernels::softmax_causal(s.data(), 256, 256, 256, 0);
    });
    fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", "softmax_causal 256 x 256", sm_s * 1e6,
               2.0 * 256 * 257 / 2 * sizeof(float) / sm_s / 1e9);
    fmt::print("GELU speed-up over scalar std::tanh: {:.1f}x\n", gelu_scalar_s / gelu_s);

    // Whole forward passes.
    fmt::print("\n{:<44} {:>10} {:>10}\n", "forward", "ms", "GFLOP/s");
    {
        const actlens::transformer m = actlens::load_model(ACTLENS_MODEL_DIR "/stories260K.bin");
        actlens::workspace<float> ws;
        std::vector<std::int32_t> toks(256, 300);
        const actlens::tensor_view<const std::int32_t> tv(toks.data(), {1, 256});
        const double s = best_seconds(reps, [&] { m.forward_into(ws, tv); });
        fmt::print("{:<44} {:>10.3f}\n", "stories260K, T = 256", s * 1e3);
        auto cache = m.make_kv_cache(1, 512);
        actlens::run_options<float> o;
        o.cache = &cache;
        o.last_position_only = true;
        const std::int32_t one = 300;
        const double step = best_seconds(reps, [&] {
            cache.clear();
            for (int i = 0; i < 256; ++i) m.forward_into(ws, actlens::tensor_view<const std::int32_t>(&one, {1, 1}), o);
        });
        fmt::print("{:<44} {:>10.3f}   ({:.0f} tokens/s)\n", "stories260K, 256 decode steps (KV cache)", step * 1e3,
                   256 / step);
    }
    if (!quick) {
        const auto c = actlens::model_config::gpt2(12, 768, 12, 50257, 1024);
        const actlens::transformer m = actlens::make_random_transformer<float>(c, 1);
        actlens::workspace<float> ws;
        for (std::size_t T : {64u, 256u}) {
            std::vector<std::int32_t> toks(T);
            for (std::size_t i = 0; i < T; ++i) toks[i] = std::int32_t((i * 7919) % c.vocab_size);
            const actlens::tensor_view<const std::int32_t> tv(toks.data(), {1, T});
            const double s = best_seconds(5, [&] { m.forward_into(ws, tv); });
            // Matmul FLOPs: 12 layers x (4 d^2 + 8 d^2) per token, attention 2 * 2 * T * d / 2 (causal),
            // unembedding 2 d V per token.
            const double d = 768, flops = double(T) * (12 * (2 * 12 * d * d + 2.0 * T * d) + 2 * d * 50257);
            fmt::print("{:<44} {:>10.3f} {:>10.1f}\n", fmt::format("GPT-2-small shape (random weights), T = {}", T),
                       s * 1e3, flops / s / 1e9);
        }
    }
    return 0;
}
