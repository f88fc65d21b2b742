// Tests of actlens/kernels/softmax.hpp: causal softmax and mask against a plain long double
// reference, the backward against central finite differences in double.
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

std::size_t valid_cols(std::size_t i, std::size_t cols, std::size_t past) {
    return std::min(cols, past + i + 1);
}

// A value written into the padding between rows (columns cols .. ld): kernels must not touch it.
template <class T>
constexpr T sentinel = T(12345.5);

// Forward tolerance, absolute on probabilities in [0, 1]: exp is accurate to a few ulps and the
// normalising sum has <= 100 terms, so float is within ~100 * 2^-24 ~ 6e-6; double ~1e-14.
template <class T>
double softmax_forward_tol() {
    return sizeof(T) == 4 ? 1e-5 : 1e-13;
}

// Gradient check: central differences with step h = 1e-6 on L = sum w_ij p_ij(s). Scores are O(3),
// so truncation h^2 |L'''| / 6 ~ 1e-12 and rounding eps |L| / h ~ 1e-16 * 1e2 / 1e-6 = 1e-8, both
// far below 1e-6 relative to the largest gradient (O(0.1..1)); a wrong formula is off by O(1).

} // namespace

TEMPLATE_TEST_CASE(
    "softmax_causal: matches a long double reference with past positions and padding", "[kernels]",
    float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t cols : simd_tail_widths) {
        for (std::size_t past : {std::size_t(0), std::size_t(3), cols}) {
            const std::size_t rows = 1 + rng() % 5, ld = cols + rng() % 3;
            INFO("rows " << rows << " cols " << cols << " ld " << ld << " past " << past);
            auto s = uniform<T>(rng, rows * ld, -4, 4);
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = cols; j < ld; ++j)
                    s[i * ld + j] = sentinel<T>;
            const auto original = s;
            k::softmax_causal(s.data(), rows, cols, ld, past);
            for (std::size_t i = 0; i < rows; ++i) {
                const std::size_t valid = valid_cols(i, cols, past);
                long double max = -INFINITY, total = 0;
                for (std::size_t j = 0; j < valid; ++j)
                    max = std::max(max, (long double)original[i * ld + j]);
                for (std::size_t j = 0; j < valid; ++j)
                    total += std::exp((long double)original[i * ld + j] - max);
                long double row_sum = 0;
                for (std::size_t j = 0; j < valid; ++j) {
                    const long double expect =
                        std::exp((long double)original[i * ld + j] - max) / total;
                    CHECK(std::abs(s[i * ld + j] - expect) <= softmax_forward_tol<T>());
                    row_sum += s[i * ld + j];
                }
                CHECK(std::abs(row_sum - 1) <= softmax_forward_tol<T>());
                for (std::size_t j = valid; j < cols; ++j)
                    CHECK(s[i * ld + j] == T(0));
                for (std::size_t j = cols; j < ld; ++j)
                    CHECK(s[i * ld + j] == sentinel<T>);
            }
        }
    }
}

TEMPLATE_TEST_CASE("softmax_causal: is stable for large scores", "[kernels]", float, double) {
    using T = TestType;
    // exp(1000) overflows in both types: only max-subtraction gives finite results.
    std::vector<T> s{T(1000), T(1000) - std::log(T(3)), T(-1000), T(0)};
    // The expected values from the stored (rounded) scores: p0 = 1 / (1 + e^(s1 - s0)) ~ 0.75.
    const long double d = (long double)s[1] - (long double)s[0];
    const long double p0 = 1 / (1 + std::exp(d)), p1 = 1 - p0;
    k::softmax_causal(s.data(), 1, 4, 4, 3);
    CHECK(std::abs(s[0] - p0) <= 1e-6L);
    CHECK(std::abs(s[1] - p1) <= 1e-6L);
    CHECK(std::abs(p0 - 0.75L) <= 1e-4L);
    CHECK(s[2] == T(0));
    CHECK(s[3] == T(0));
}

TEMPLATE_TEST_CASE("mask_causal: writes -inf above the diagonal only", "[kernels]", float, double) {
    using T = TestType;
    const std::size_t rows = 4, cols = 6, ld = 7, past = 1;
    std::vector<T> s(rows * ld);
    for (std::size_t i = 0; i < s.size(); ++i)
        s[i] = T(i);
    k::mask_causal(s.data(), rows, cols, ld, past);
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < ld; ++j) {
            const bool masked = j < cols && j > past + i;
            if (masked)
                CHECK(s[i * ld + j] == -std::numeric_limits<T>::infinity());
            else
                CHECK(s[i * ld + j] == T(i * ld + j));
        }
}

TEST_CASE("softmax_causal_backward: matches central finite differences in double", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t cols : simd_tail_widths) {
        for (std::size_t past : {std::size_t(0), std::size_t(2)}) {
            const std::size_t rows = 1 + rng() % 4, ld = cols + rng() % 3;
            INFO("rows " << rows << " cols " << cols << " ld " << ld << " past " << past);
            const auto s = uniform<double>(rng, rows * ld, -3, 3);
            auto w = uniform<double>(rng, rows * ld, -1, 1); // dL/dp, including masked entries
            auto loss = [&](const std::vector<double>& scores) {
                auto p = scores;
                k::softmax_causal(p.data(), rows, cols, ld, past);
                double total = 0;
                for (std::size_t i = 0; i < rows; ++i)
                    for (std::size_t j = 0; j < cols; ++j)
                        total += w[i * ld + j] * p[i * ld + j];
                return total;
            };
            auto p = s;
            k::softmax_causal(p.data(), rows, cols, ld, past);
            std::vector<double> ds(rows * ld, sentinel<double>);
            k::softmax_causal_backward(p.data(), w.data(), ds.data(), rows, cols, ld, past);

            std::vector<double> fd(rows * ld, 0.0);
            auto x = s;
            double scale = 0;
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < cols; ++j) {
                    const std::size_t at = i * ld + j;
                    x[at] = s[at] + fd_step;
                    const double up = loss(x);
                    x[at] = s[at] - fd_step;
                    const double down = loss(x);
                    x[at] = s[at];
                    fd[at] = (up - down) / (2 * fd_step);
                    scale = std::max(scale, std::abs(fd[at]));
                }
            for (std::size_t i = 0; i < rows; ++i) {
                const std::size_t valid = valid_cols(i, cols, past);
                for (std::size_t j = 0; j < valid; ++j)
                    CHECK(std::abs(ds[i * ld + j] - fd[i * ld + j]) <=
                          fd_tol * std::max(scale, 1e-3));
                for (std::size_t j = valid; j < cols; ++j)
                    CHECK(ds[i * ld + j] == 0.0);
                for (std::size_t j = cols; j < ld; ++j)
                    CHECK(ds[i * ld + j] == sentinel<double>);
            }
        }
    }
}

TEST_CASE("softmax_causal_backward: ignores dp past the mask and may write over dp", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t rows = 5, cols = 9, ld = 9, past = 1;
    auto p = uniform<double>(rng, rows * ld, -2, 2);
    k::softmax_causal(p.data(), rows, cols, ld, past);
    auto dp = uniform<double>(rng, rows * ld, -1, 1);
    std::vector<double> ds(rows * ld);
    k::softmax_causal_backward(p.data(), dp.data(), ds.data(), rows, cols, ld, past);
    auto poisoned = dp;
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = valid_cols(i, cols, past); j < cols; ++j)
            poisoned[i * ld + j] = std::numeric_limits<double>::quiet_NaN();
    k::softmax_causal_backward(p.data(), poisoned.data(), poisoned.data(), rows, cols, ld, past);
    CHECK(poisoned == ds);
    // Each row of ds sums to zero: softmax is invariant to adding a constant to a row's scores.
    for (std::size_t i = 0; i < rows; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < cols; ++j)
            s += ds[i * ld + j];
        CHECK(std::abs(s) <= 1e-15);
    }
}

TEST_CASE("softmax_causal_backward: float agrees with double", "[kernels]") {
    // One dot product of <= 100 terms and a product per entry: ~100 * 2^-24 relative to the largest
    // |p dp| term, i.e. below 1e-5 for the O(1) dp used here.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t rows = 6, cols = 100, ld = 100, past = 90;
    const auto sd = uniform<double>(rng, rows * ld, -3, 3),
               dpd = uniform<double>(rng, rows * ld, -1, 1);
    std::vector<float> pf(sd.begin(), sd.end()), dpf(dpd.begin(), dpd.end()), dsf(rows * ld);
    std::vector<double> p(pf.begin(), pf.end()), dp(dpf.begin(), dpf.end()), ds(rows * ld);
    k::softmax_causal(pf.data(), rows, cols, ld, past);
    k::softmax_causal(p.data(), rows, cols, ld, past);
    k::softmax_causal_backward(pf.data(), dpf.data(), dsf.data(), rows, cols, ld, past);
    k::softmax_causal_backward(p.data(), dp.data(), ds.data(), rows, cols, ld, past);
    for (std::size_t i = 0; i < ds.size(); ++i)
        CHECK(std::abs(dsf[i] - ds[i]) <= 1e-5);
}
