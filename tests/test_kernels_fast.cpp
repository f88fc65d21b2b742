// Tests of the fast precision of actlens/kernels/gemm_rows.hpp (kernels/precision.hpp): F16, BF16 and
// Q8_0 rows multiplied with rounded activations (bf16, or int8 per block of 32 with an f32 scale)
// equal a long double product of the same rounded operands within a bound derived from the
// arithmetic, stay within a stated distance of the exact mode, on every instruction set (AVX-512
// with vdpbf16ps / vpdpbusd where the CPU has them, plain code elsewhere), give the same bits on 1
// and 2 threads and for a token alone or in a batch; other formats are exact in fast mode, and
// packed_weight carries the precision to linear and linear_group.
#include "fast_checks.hpp"
#include "ggml_blocks.hpp"
#include "isa_checks.hpp"
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/gemm_rows.hpp>
#include <actlens/kernels/precision.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;
using namespace isa_checks;
using ggml_blocks::random_rows;
namespace k = actlens::kernels;
using k::precision;
using k::weight_format;

std::vector<std::size_t> fast_lengths(weight_format f) {
    if (f == weight_format::q8_0) return {32, 96, 288, 544, 1088, 4192}; // 4192: a token alone prepares 4096 at a time
    return {1, 7, 31, 33, 300, 513, 1100};
}

} // namespace

TEST_CASE("linear_rows fast: F16, BF16 and Q8_0 products equal a long double product of the rounded operands, within "
          "a stated distance of the exact mode, on every instruction set",
          "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed() << ", dot-product instructions " << actlens::detail::cpu_has_dot_products());
    for (weight_format f : {weight_format::f16, weight_format::bf16, weight_format::q8_0})
        for (std::size_t in : fast_lengths(f))
            for (std::size_t out : {1, 5, 11})
                for (std::size_t tokens : {1, 4, 70}) {
                    INFO(k::weight_format_name(f) << " tokens " << tokens << " out " << out << " in " << in);
                    const ggml_blocks::rows_problem pr = ggml_blocks::random_rows_problem(rng, f, out, in, tokens);
                    // References, not structured bindings: lambdas capture these (C++17).
                    const std::vector<float>&w = pr.w, &x = pr.x, &bias = pr.bias, &y0 = pr.y0;
                    const std::vector<unsigned char>& rows = pr.rows;
                    const std::size_t ldx = pr.ldx, ldy = pr.ldy;
                    const fast_checks::rounded r = fast_checks::round_operands(f, x, tokens, ldx, w, in);
                    // Rounding an activation to bf16 moves it by at most 2^-8 of itself (8 significant
                    // bits), and an f16 weight as much again; a Q8_0 activation moves by at most half
                    // its block's step d (plus the rounding of x (1/d) and of d q, 3u of |x|).
                    const long double rel = f == weight_format::f16 ? 2.0L / 256 + 1.0L / 65536
                                          : f == weight_format::bf16 ? 1.0L / 256 : 3 * (long double)fast_checks::u;
                    for (bool accumulate : {false, true}) {
                        INFO("accumulate " << accumulate);
                        on_every_isa([&](isa) {
                            auto y = y0, exact = y0;
                            k::linear_rows(x.data(), tokens, in, rows.data(), f, out, bias.data(), y.data(), accumulate,
                                           ldx, ldy, precision::fast);
                            k::linear_rows(x.data(), tokens, in, rows.data(), f, out, bias.data(), exact.data(),
                                           accumulate, ldx, ldy, precision::exact);
                            double worst = 0, worst_distance = 0;
                            bool gaps_kept = true;
                            for (std::size_t t = 0; t < tokens; ++t) {
                                for (std::size_t o = 0; o < out; ++o) {
                                    const long double base = bias[o] + (accumulate ? y0[t * ldy + o] : 0.0f);
                                    const long double base_mag =
                                        std::abs(bias[o]) + (accumulate ? std::abs(y0[t * ldy + o]) : 0.0f);
                                    long double e = base, mag = base_mag, exact_mag = base_mag, moved = 0;
                                    for (std::size_t i = 0; i < in; ++i) {
                                        const long double p = r.x[t * in + i] * r.w[o * in + i];
                                        const long double xw = (long double)x[t * ldx + i] * w[o * in + i];
                                        e += p;
                                        mag += std::abs(p);
                                        exact_mag += std::abs(xw);
                                        moved += rel * std::abs(xw) + r.half_step[t * in + i] * std::abs(w[o * in + i]);
                                    }
                                    const double bound = fast_checks::gamma(fast_checks::fast_roundings(f, in)) * double(mag);
                                    const double err = std::abs(double(y[t * ldy + o] - e));
                                    worst = std::max(worst, bound > 0 ? err / bound : err);
                                    // |fast - exact| <= the fast error + the exact error (gamma of
                                    // test_kernels_rows.cpp's bound) + how far rounding moved the terms.
                                    const double distance_bound = bound +
                                                                  fast_checks::gamma(2 * ((in + 31) / 32) + 7) * double(exact_mag) +
                                                                  double(moved) * (1 + 4 * fast_checks::u);
                                    const double distance = std::abs(double(y[t * ldy + o]) - exact[t * ldy + o]);
                                    worst_distance = std::max(worst_distance, distance / distance_bound);
                                }
                                for (std::size_t o = out; o < ldy; ++o) gaps_kept &= y[t * ldy + o] == y0[t * ldy + o];
                            }
                            CHECK(worst <= 1.0);
                            CHECK(worst_distance <= 1.0);
                            CHECK(gaps_kept);
                            return bits_of(y);
                        });
                    }
                }
}

TEST_CASE("linear_rows fast: the same bits on 1 and 2 threads, and for a token alone or in a batch",
          "[kernels][threads][isa]") {
    // Large enough to be threaded (>= 2^20 weights), several token blocks of 64 and work items of
    // 32 outputs, two K chunks; 129 tokens end on a work item of one token, which the tiles multiply
    // (its activations are laid out for them, not for a token alone).
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 1030, in = 1024, tokens = 129;
    for (weight_format f : {weight_format::f16, weight_format::bf16, weight_format::q8_0}) {
        std::vector<float> w;
        const std::vector<unsigned char> rows = random_rows(rng, f, out, in, w);
        const auto x = uniform<float>(rng, tokens * in, -1, 1);
        on_every_isa([&](isa) {
            INFO(k::weight_format_name(f));
            std::vector<std::vector<std::uint32_t>> results;
            for (int threads : {1, 2}) {
                k::detail::scoped_threads team(threads);
                std::vector<float> y(tokens * out);
                k::linear_rows(x.data(), tokens, in, rows.data(), f, out, nullptr, y.data(), false, 0, 0,
                               precision::fast);
                results.push_back(bits_of(y));
            }
            CHECK(results[0] == results[1]);
            for (std::size_t t : {std::size_t(0), std::size_t(77), tokens - 1}) {
                std::vector<float> alone(out);
                k::linear_rows(x.data() + t * in, 1, in, rows.data(), f, out, nullptr, alone.data(), false, 0, 0,
                               precision::fast);
                CHECK(bits_of(alone) == std::vector<std::uint32_t>(results[0].begin() + long(t * out),
                                                                   results[0].begin() + long((t + 1) * out)));
            }
            return 0;
        });
    }
}

TEST_CASE("linear_rows fast: a token alone reads rows in place with the batch's bits, past 4096 values",
          "[kernels][isa]") {
    // One token takes its own path (whole rows read in place, Q8_0 activations laid out for it); 4192
    // is 8 K chunks of 512 and one of 96 values (3 of a chunk's 16 Q8_0 blocks) and 131 steps of 32
    // F16 / BF16 values.
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 37, in = 4192, tokens = 5;
    for (weight_format f : {weight_format::f16, weight_format::bf16, weight_format::q8_0}) {
        std::vector<float> w;
        const std::vector<unsigned char> rows = random_rows(rng, f, out, in, w);
        const auto x = uniform<float>(rng, tokens * in, -1, 1);
        const auto bias = uniform<float>(rng, out, -1, 1);
        on_every_isa([&](isa) {
            INFO(k::weight_format_name(f));
            std::vector<float> batch(tokens * out);
            k::linear_rows(x.data(), tokens, in, rows.data(), f, out, bias.data(), batch.data(), false, 0, 0,
                           precision::fast);
            for (std::size_t t = 0; t < tokens; ++t) {
                std::vector<float> alone(out, 1.0f), want(out); // accumulating: y + (product + bias)
                k::linear_rows(x.data() + t * in, 1, in, rows.data(), f, out, bias.data(), alone.data(), true, 0, 0,
                               precision::fast);
                for (std::size_t o = 0; o < out; ++o) want[o] = 1.0f + batch[t * out + o];
                CHECK(bits_of(alone) == bits_of(want));
            }
            return 0;
        });
    }
}

TEST_CASE("linear_rows fast: formats without a fast path are multiplied exactly", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 9, in = 512, tokens = 5;
    for (weight_format f : {weight_format::f32, weight_format::q4_0, weight_format::q4_k, weight_format::q6_k}) {
        INFO(k::weight_format_name(f));
        CHECK_FALSE(k::fast_path(f));
        std::vector<float> w;
        const std::vector<unsigned char> rows = random_rows(rng, f, out, in, w);
        const auto x = uniform<float>(rng, tokens * in, -1, 1);
        std::vector<float> fast(tokens * out), exact(tokens * out);
        k::linear_rows(x.data(), tokens, in, rows.data(), f, out, nullptr, fast.data(), false, 0, 0, precision::fast);
        k::linear_rows(x.data(), tokens, in, rows.data(), f, out, nullptr, exact.data());
        CHECK(bits_of(fast) == bits_of(exact));
    }
}

TEST_CASE("packed_weight carries the precision to linear and linear_group", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t d = 256, out = 40, tokens = 6;
    using packed = k::packed_weight<float>;
    std::vector<float> w;
    const auto rows = random_rows(rng, weight_format::q8_0, out, d, w);
    packed p = packed::mapped(rows.data(), weight_format::q8_0, out, d, nullptr);
    CHECK(p.precision_mode() == precision::exact);
    const auto x = uniform<float>(rng, tokens * d, -1, 1);
    std::vector<float> fast(tokens * out), exact(tokens * out), via_linear(tokens * out), via_group(tokens * out);
    k::linear_rows(x.data(), tokens, d, rows.data(), weight_format::q8_0, out, nullptr, fast.data(), false, 0, 0,
                   precision::fast);
    k::linear_rows(x.data(), tokens, d, rows.data(), weight_format::q8_0, out, nullptr, exact.data());
    REQUIRE(bits_of(fast) != bits_of(exact)); // else the checks below could not tell the modes apart
    p.set_precision(precision::fast);
    k::linear(x.data(), tokens, p, static_cast<const float*>(nullptr), via_linear.data());
    const k::linear_job<float> job{x.data(), tokens, &p, nullptr, via_group.data()};
    k::linear_group(&job, 1);
    CHECK(bits_of(via_linear) == bits_of(fast));
    CHECK(bits_of(via_group) == bits_of(fast));
    p.set_precision(precision::exact);
    k::linear(x.data(), tokens, p, static_cast<const float*>(nullptr), via_linear.data());
    CHECK(bits_of(via_linear) == bits_of(exact));
}
