// Tests of actlens/kernels/weight_format.hpp and gemm_rows.hpp: ggml's blocks decode to the values
// their definition gives (blocks built value by value from the format's layout, tests/ggml_blocks.hpp), and the
// products with weights read in their rows (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) match a long
// double product of the decoded weights within a bound derived below, on every instruction set,
// AVX-512 and AVX2 bit for bit equal, with the same bits on 1 and 2 threads; packed_weight::mapped
// goes through kernels::linear, linear_group and linear_input_grad.
#include "isa_checks.hpp"
#include "ggml_blocks.hpp"
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/kernels/gemm_panel_grad.hpp>
#include <actlens/kernels/gemm_rows.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;
using namespace isa_checks;
using ggml_blocks::all_formats;
using ggml_blocks::random_rows;
namespace k = actlens::kernels;
using k::weight_format;

/// Row lengths that exercise a format's tails: partial 16-lane groups and K chunks of 256 for the
/// plain types, whole blocks for the quantised ones.
std::vector<std::size_t> row_lengths(weight_format f) {
    switch (k::weight_block_values(f)) {
    case 32: return {32, 96, 288};
    case 256: return {256, 512};
    default: return {1, 7, 16, 17, 300, 513};
    }
}

// The bound. A forward element is 32 chains of ceil(in / 32) multiply-adds (two roundings each
// without FMA: the baseline), a 5-level tree joining them, then the bias and the accumulated value:
// n = 2 ceil(in / 32) + 7 roundings at most on any path, so |error| <= gamma_n (sum |x w| + |bias| +
// |y0|) with gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability, 2nd ed., eq. 3.4).
// The decoded weights are the values the product is defined with (checked exactly above), so they
// add nothing. An input-gradient element is one chain of `out` multiply-adds from 0 or dx0:
// n = 2 out + 1.
double gamma(std::size_t n) {
    const double u = std::ldexp(1.0, -24);
    return double(n) * u / (1 - double(n) * u);
}

} // namespace

TEST_CASE("weight_format: ggml blocks decode to the values of their layout", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (weight_format f : {weight_format::q8_0, weight_format::q4_0, weight_format::q4_k, weight_format::q6_k}) {
        INFO(k::weight_format_name(f));
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<float> values;
            const std::size_t in = 2 * k::weight_block_values(f);
            const std::vector<unsigned char> row = random_rows(rng, f, 1, in, values);
            std::vector<float> decoded(in);
            k::decode_values(f, row.data(), 0, in, decoded.data());
            CHECK(bits_of(decoded) == bits_of(values));
            // The second block alone.
            const std::size_t half = in / 2;
            k::decode_values(f, row.data(), half, half, decoded.data());
            CHECK(std::equal(decoded.begin(), decoded.begin() + long(half), values.begin() + long(half)));
        }
    }
}

TEST_CASE("linear_rows matches a long double product of the decoded weights on every instruction set",
          "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (weight_format f : all_formats)
        for (std::size_t in : row_lengths(f))
            for (std::size_t out : {1, 4, 5, 11})
                for (std::size_t tokens : {1, 2, 7, 70}) {
                    INFO(k::weight_format_name(f) << " tokens " << tokens << " out " << out << " in " << in);
                    const ggml_blocks::rows_problem pr = ggml_blocks::random_rows_problem(rng, f, out, in, tokens);
                    // References, not structured bindings: lambdas capture these (C++17).
                    const std::vector<float>&w = pr.w, &x = pr.x, &bias = pr.bias, &y0 = pr.y0;
                    const std::vector<unsigned char>& rows = pr.rows;
                    const std::size_t ldx = pr.ldx, ldy = pr.ldy;
                    for (bool accumulate : {false, true}) {
                        INFO("accumulate " << accumulate);
                        const auto results = on_every_isa([&](isa) {
                            auto y = y0;
                            k::linear_rows(x.data(), tokens, in, rows.data(), f, out, bias.data(), y.data(),
                                           accumulate, ldx, ldy);
                            double worst = 0; // error over its bound
                            bool gaps_kept = true;
                            for (std::size_t t = 0; t < tokens; ++t) {
                                for (std::size_t o = 0; o < out; ++o) {
                                    long double e = bias[o], mag = std::abs(bias[o]);
                                    if (accumulate) {
                                        e += y0[t * ldy + o];
                                        mag += std::abs(y0[t * ldy + o]);
                                    }
                                    for (std::size_t i = 0; i < in; ++i) {
                                        const long double p = (long double)x[t * ldx + i] * w[o * in + i];
                                        e += p;
                                        mag += std::abs(p);
                                    }
                                    const double bound = gamma(2 * ((in + 31) / 32) + 7) * double(mag);
                                    const double err = std::abs(double(y[t * ldy + o] - e));
                                    worst = std::max(worst, bound > 0 ? err / bound : err);
                                }
                                for (std::size_t o = out; o < ldy; ++o) gaps_kept &= y[t * ldy + o] == y0[t * ldy + o];
                            }
                            CHECK(worst <= 1.0);
                            CHECK(gaps_kept);
                            return bits_of(y);
                        });
                        check_fma_sets_agree(results);
                    }
                }
}

TEST_CASE("linear_rows_input_grad matches a long double product of the decoded weights on every instruction set",
          "[kernels][isa]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (weight_format f : all_formats)
        for (std::size_t in : row_lengths(f))
            for (std::size_t out : {1, 4, 6, 11})
                for (std::size_t tokens : {1, 3, 70}) {
                    INFO(k::weight_format_name(f) << " tokens " << tokens << " out " << out << " in " << in);
                    std::vector<float> w;
                    const std::vector<unsigned char> rows = random_rows(rng, f, out, in, w);
                    const std::size_t lddy = out + rng() % 3, lddx = in + rng() % 3;
                    const auto dy = uniform<float>(rng, tokens * lddy, -1, 1);
                    const auto dx0 = uniform<float>(rng, tokens * lddx, -1, 1);
                    for (bool accumulate : {false, true}) {
                        INFO("accumulate " << accumulate);
                        const auto results = on_every_isa([&](isa) {
                            auto dx = dx0;
                            k::linear_rows_input_grad(dy.data(), tokens, out, rows.data(), f, in, dx.data(),
                                                      accumulate, lddy, lddx);
                            double worst = 0;
                            bool gaps_kept = true;
                            for (std::size_t t = 0; t < tokens; ++t) {
                                for (std::size_t i = 0; i < in; ++i) {
                                    long double e = accumulate ? dx0[t * lddx + i] : 0.0f, mag = std::abs(e);
                                    for (std::size_t o = 0; o < out; ++o) {
                                        const long double p = (long double)dy[t * lddy + o] * w[o * in + i];
                                        e += p;
                                        mag += std::abs(p);
                                    }
                                    const double bound = gamma(2 * out + 1) * double(mag);
                                    const double err = std::abs(double(dx[t * lddx + i] - e));
                                    worst = std::max(worst, bound > 0 ? err / bound : err);
                                }
                                for (std::size_t i = in; i < lddx; ++i) gaps_kept &= dx[t * lddx + i] == dx0[t * lddx + i];
                            }
                            CHECK(worst <= 1.0);
                            CHECK(gaps_kept);
                            return bits_of(dx);
                        });
                        check_fma_sets_agree(results);
                    }
                }
}

TEST_CASE("linear_rows and its input gradient give the same bits on 1 and 2 threads", "[kernels][threads]") {
    // Large enough to be threaded (>= 2^20 weights), several token blocks of 64.
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 1030, in = 1024;
    for (weight_format f : {weight_format::f16, weight_format::q8_0, weight_format::q4_k}) {
        std::vector<float> w;
        const std::vector<unsigned char> rows = random_rows(rng, f, out, in, w);
        for (std::size_t tokens : {1, 130}) {
            INFO(k::weight_format_name(f) << " tokens " << tokens);
            const auto x = uniform<float>(rng, tokens * in, -1, 1), dy = uniform<float>(rng, tokens * out, -1, 1);
            std::vector<std::vector<std::uint32_t>> forward, backward;
            for (int threads : {1, 2}) {
                k::detail::scoped_threads team(threads);
                std::vector<float> y(tokens * out), dx(tokens * in);
                k::linear_rows(x.data(), tokens, in, rows.data(), f, out, nullptr, y.data());
                k::linear_rows_input_grad(dy.data(), tokens, out, rows.data(), f, in, dx.data());
                forward.push_back(bits_of(y));
                backward.push_back(bits_of(dx));
            }
            CHECK(forward[0] == forward[1]);
            CHECK(backward[0] == backward[1]);
        }
    }
}

TEST_CASE("packed_weight::mapped goes through linear, linear_group and linear_input_grad", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t d = 512, tokens = 9;
    using packed = k::packed_weight<float>;
    std::vector<float> wq, wk, wv;
    const auto q = random_rows(rng, weight_format::q8_0, 64, d, wq);
    const auto kk = random_rows(rng, weight_format::q4_k, 32, d, wk);
    const auto v = random_rows(rng, weight_format::bf16, 32, d, wv);
    const packed pq = packed::mapped(q.data(), weight_format::q8_0, 64, d, nullptr);
    const packed pk = packed::mapped(kk.data(), weight_format::q4_k, 32, d, nullptr);
    const packed pv = packed::mapped(v.data(), weight_format::bf16, 32, d, nullptr);
    CHECK(pq.is_mapped());
    CHECK_FALSE(pq.is_packed());
    const auto x = uniform<float>(rng, tokens * d, -1, 1), bias = uniform<float>(rng, 64, -1, 1);
    std::vector<float> yq(tokens * 64), yk(tokens * 32), yv(tokens * 32);
    const k::linear_job<float> jobs[] = {{x.data(), tokens, &pq, bias.data(), yq.data()},
                                         {x.data(), tokens, &pk, nullptr, yk.data()},
                                         {x.data(), tokens, &pv, nullptr, yv.data()}};
    k::linear_group(jobs, 3);
    std::vector<float> expect(tokens * 64);
    k::linear_rows(x.data(), tokens, d, q.data(), weight_format::q8_0, 64, bias.data(), expect.data());
    CHECK(bits_of(yq) == bits_of(expect));
    std::vector<float> single(tokens * 32);
    k::linear(x.data(), tokens, pk, static_cast<const float*>(nullptr), single.data());
    CHECK(bits_of(yk) == bits_of(single));
    expect.assign(tokens * 32, 0.0f);
    k::linear_rows(x.data(), tokens, d, v.data(), weight_format::bf16, 32, nullptr, expect.data());
    CHECK(bits_of(yv) == bits_of(expect));

    // The input gradient: from the mapped weight, and as a forward product with mapped_transpose.
    const auto dy = uniform<float>(rng, tokens * 64, -1, 1);
    std::vector<float> a(tokens * d), b(tokens * d), c(tokens * d);
    k::linear_input_grad(dy.data(), tokens, pq, a.data());
    const packed t = packed::mapped_transpose(q.data(), weight_format::q8_0, 64, d, nullptr);
    CHECK(t.out() == d);
    CHECK(t.in() == 64);
    k::linear(dy.data(), tokens, t, static_cast<const float*>(nullptr), b.data());
    k::linear_rows_input_grad(dy.data(), tokens, 64, q.data(), weight_format::q8_0, d, c.data());
    CHECK(bits_of(a) == bits_of(c));
    CHECK(bits_of(b) == bits_of(c));
}
