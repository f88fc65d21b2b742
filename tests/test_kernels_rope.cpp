// Tests of actlens/kernels/rope.hpp: the angle table against a direct computation, the rotation
// against a long double reference, the equivalence of the two pairings under Hugging Face's
// permutation, and the backward (sign = -1) as the exact adjoint and inverse.
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/rope.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

const k::rope_style styles[] = {k::rope_style::adjacent, k::rope_style::half_split};

/// Index of the two elements of pair j in a head of width 2 * half.
std::pair<std::size_t, std::size_t> pair_of(k::rope_style style, std::size_t j, std::size_t half) {
    return style == k::rope_style::adjacent ? std::make_pair(2 * j, 2 * j + 1)
                                            : std::make_pair(j, j + half);
}

long double angle_of(std::size_t pos, std::size_t j, std::size_t head_dim, long double theta) {
    return (long double)pos * std::pow(theta, -(long double)(2 * j) / (long double)head_dim);
}

} // namespace

TEST_CASE("rope_table: double angles match pos * theta^(-2j/d)", "[kernels]") {
    for (std::size_t head_dim : {2u, 8u, 64u, 128u}) {
        for (double theta : {10000.0, 500000.0}) {
            INFO("head_dim " << head_dim << " theta " << theta);
            const std::size_t max_pos = 2048;
            k::rope_table<double> table(max_pos, head_dim, theta);
            REQUIRE(table.max_positions() == max_pos);
            REQUIRE(table.half() == head_dim / 2);
            // The angle is formed in double: pow and the product are a few ulps each, so the angle
            // is within ~4 * 2^-53 * 2048 ~ 1e-12 absolute; cos and sin add half an ulp.
            double worst = 0;
            for (std::size_t p = 0; p < max_pos; p += 37)
                for (std::size_t j = 0; j < head_dim / 2; ++j) {
                    const long double a = angle_of(p, j, head_dim, theta);
                    worst = std::max(worst, double(std::abs(table.cos(p)[j] - std::cos(a))));
                    worst = std::max(worst, double(std::abs(table.sin(p)[j] - std::sin(a))));
                }
            CHECK(worst <= 2e-12);
            // Position 0 does not rotate; j = 0 rotates by exactly pos radians.
            for (std::size_t j = 0; j < head_dim / 2; ++j) {
                CHECK(table.cos(0)[j] == 1.0);
                CHECK(table.sin(0)[j] == 0.0);
            }
            CHECK(table.cos(5)[0] == std::cos(5.0));
            CHECK(table.sin(5)[0] == std::sin(5.0));
        }
    }
}

TEST_CASE("rope_table: float angles are formed in float, as llama2.c and Hugging Face do",
          "[kernels]") {
    const std::size_t head_dim = 64, max_pos = 4096;
    const float theta = 10000.f;
    k::rope_table<float> table(max_pos, head_dim, theta);
    for (std::size_t p : {0u, 1u, 17u, 1000u, 4095u})
        for (std::size_t j = 0; j < head_dim / 2; ++j) {
            INFO("pos " << p << " j " << j);
            // llama2.c: freq = 1.0f / powf(theta, head_dim / (float)head_size); val = pos * freq.
            const float freq = 1.0f / std::pow(theta, float(2 * j) / float(head_dim));
            const float angle = float(p) * freq;
            // cos/sin of that float angle, rounded once to float: within one float ulp.
            CHECK(std::abs(table.cos(p)[j] - std::cos((long double)angle)) <= 1.2e-7L);
            CHECK(std::abs(table.sin(p)[j] - std::sin((long double)angle)) <= 1.2e-7L);
            // And close to the exact angle while the float rounding of the angle is small.
            if (p < 32)
                CHECK(std::abs(table.cos(p)[j] - std::cos(angle_of(p, j, head_dim, theta))) <=
                      1e-5L);
        }
}

TEMPLATE_TEST_CASE("rope: rotates each pair by its position's angle", "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    // Positions stay below 64 so that the float table's angle rounding (pos * 2^-24) stays below
    // 4e-6; the tolerance is then a few float ulps of |x| <= 1 plus that: 2e-5. double: 1e-13.
    const long double tol = sizeof(T) == 4 ? 2e-5L : 1e-13L;
    for (std::size_t head_dim : {2u, 8u, 16u, 34u}) {
        for (auto style : styles) {
            const std::size_t n_heads = 1 + rng() % 3, seq_len = 1 + rng() % 5, batch = 2;
            const std::size_t rows = batch * seq_len, pos0 = rng() % 20, width = n_heads * head_dim;
            const std::size_t ld = width + rng() % 3;
            INFO("head_dim " << head_dim << " heads " << n_heads << " seq " << seq_len << " pos0 "
                             << pos0 << " style " << int(style));
            k::rope_table<T> table(pos0 + seq_len, head_dim, T(10000));
            const auto x = uniform<T>(rng, rows * ld, -1, 1);
            auto y = x;
            k::rope(y.data(), rows, n_heads, ld, seq_len, pos0, table, style);
            for (std::size_t r = 0; r < rows; ++r) {
                const std::size_t pos = pos0 + r % seq_len;
                for (std::size_t h = 0; h < n_heads; ++h)
                    for (std::size_t j = 0; j < head_dim / 2; ++j) {
                        const auto [a, b] = pair_of(style, j, head_dim / 2);
                        const std::size_t ia = r * ld + h * head_dim + a,
                                          ib = r * ld + h * head_dim + b;
                        const long double ang = angle_of(pos, j, head_dim, 10000);
                        const long double ea = x[ia] * std::cos(ang) - x[ib] * std::sin(ang);
                        const long double eb = x[ia] * std::sin(ang) + x[ib] * std::cos(ang);
                        CHECK(std::abs(y[ia] - ea) <= tol);
                        CHECK(std::abs(y[ib] - eb) <= tol);
                    }
                for (std::size_t c = width; c < ld; ++c)
                    CHECK(y[r * ld + c] == x[r * ld + c]);
            }
        }
    }
}

TEMPLATE_TEST_CASE("rope: adjacent and half_split agree under the Hugging Face permutation",
                   "[kernels]", float, double) {
    // HF checkpoints of Llama permute the rows of W_q / W_k per head (view(n_heads, 2, d_h/2, ...)
    // transposed) so that rotate_half pairs (j, j + d_h/2) are Meta's pairs (2j, 2j + 1): element j
    // of the half-split layout is element 2j of the adjacent one, element j + d_h/2 is 2j + 1.
    // Rotating either layout and permuting must give the same numbers, bit for bit.
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t head_dim = 16, half = head_dim / 2, n_heads = 3, seq_len = 7, rows = 14,
                      ld = n_heads * head_dim;
    k::rope_table<T> table(32, head_dim, T(10000));
    const auto adj = uniform<T>(rng, rows * ld, -1, 1);
    std::vector<T> hs(rows * ld);
    auto permute = [&](const std::vector<T>& from, std::vector<T>& to) {
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t h = 0; h < n_heads; ++h)
                for (std::size_t j = 0; j < half; ++j) {
                    const std::size_t base = r * ld + h * head_dim;
                    to[base + j] = from[base + 2 * j];
                    to[base + j + half] = from[base + 2 * j + 1];
                }
    };
    permute(adj, hs);
    auto adj_rot = adj, hs_rot = hs;
    k::rope(adj_rot.data(), rows, n_heads, ld, seq_len, std::size_t(5), table,
            k::rope_style::adjacent);
    k::rope(hs_rot.data(), rows, n_heads, ld, seq_len, std::size_t(5), table,
            k::rope_style::half_split);
    std::vector<T> adj_rot_permuted(rows * ld);
    permute(adj_rot, adj_rot_permuted);
    CHECK(adj_rot_permuted == hs_rot);
    CHECK(adj_rot != adj); // the rotation did something
}

TEMPLATE_TEST_CASE("rope: sign -1 is the exact adjoint and the inverse, for both styles",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t head_dim = 10, n_heads = 2, width = head_dim * n_heads, seq_len = 3, rows = 6,
                      pos0 = 4;
    k::rope_table<T> table(pos0 + seq_len, head_dim, T(10000));
    for (auto style : styles) {
        INFO("style " << int(style));
        // The matrix of the forward and of the backward on each row, column by column from basis
        // vectors: the backward's matrix must be the forward's transpose, bit for bit (it only
        // negates the sines), so gradients through RoPE are exact, not merely close.
        for (std::size_t r = 0; r < rows; ++r) {
            std::vector<T> fwd(width * width), bwd(width * width);
            for (std::size_t c = 0; c < width; ++c) {
                std::vector<T> e(rows * width, T(0)), f(rows * width, T(0));
                e[r * width + c] = T(1);
                f[r * width + c] = T(1);
                k::rope(e.data(), rows, n_heads, width, seq_len, pos0, table, style);
                k::rope_backward(f.data(), rows, n_heads, width, seq_len, pos0, table, style);
                for (std::size_t i = 0; i < width; ++i) {
                    fwd[i * width + c] = e[r * width + i];
                    bwd[i * width + c] = f[r * width + i];
                }
            }
            for (std::size_t i = 0; i < width; ++i)
                for (std::size_t c = 0; c < width; ++c)
                    CHECK(bwd[i * width + c] == fwd[c * width + i]);
        }
        // rope_backward is rope with sign -1.
        const auto x = uniform<T>(rng, rows * width, -1, 1);
        auto a = x, b = x;
        k::rope_backward(a.data(), rows, n_heads, width, seq_len, pos0, table, style);
        k::rope(b.data(), rows, n_heads, width, seq_len, pos0, table, style, T(-1));
        CHECK(a == b);
        // Inverse: rotating back recovers x up to the rounding of c^2 + s^2 = 1 and two rotations.
        auto y = x;
        k::rope(y.data(), rows, n_heads, width, seq_len, pos0, table, style);
        k::rope_backward(y.data(), rows, n_heads, width, seq_len, pos0, table, style);
        const T tol = 8 * std::numeric_limits<T>::epsilon();
        for (std::size_t i = 0; i < x.size(); ++i)
            CHECK(std::abs(y[i] - x[i]) <= tol);
    }
}

TEMPLATE_TEST_CASE("rope: partial rotary rotates the first dimensions of wider heads, as a narrow head would",
                   "[kernels]", float, double) {
    // GPT-NeoX rotates the first r of each head's d_h dimensions (rotary_pct) with frequencies
    // theta^(-2j/r): the same numbers as heads of width r, and the other d_h - r stay as they are.
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t r = 4, head_dim = 10, n_heads = 3, rows = 6, seq_len = 3, ld = n_heads * head_dim;
    k::rope_table<T> table(8, r, T(10000));
    for (auto style : styles) {
        INFO("style " << int(style));
        const auto x = uniform<T>(rng, rows * ld, -1, 1);
        auto wide = x;
        k::rope(wide.data(), rows, n_heads, ld, seq_len, std::size_t(2), table, style, T(1), head_dim);
        std::vector<T> narrow(rows * n_heads * r);
        for (std::size_t i = 0; i < rows * n_heads; ++i)
            std::copy(x.begin() + long(i * head_dim), x.begin() + long(i * head_dim + r), narrow.begin() + long(i * r));
        k::rope(narrow.data(), rows, n_heads, n_heads * r, seq_len, std::size_t(2), table, style);
        for (std::size_t i = 0; i < rows * n_heads; ++i)
            for (std::size_t e = 0; e < head_dim; ++e)
                CHECK(wide[i * head_dim + e] == (e < r ? narrow[i * r + e] : x[i * head_dim + e]));
        k::rope_backward(wide.data(), rows, n_heads, ld, seq_len, std::size_t(2), table, style, head_dim);
        for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::abs(wide[i] - x[i]) <= T(1e-6));
    }
}
