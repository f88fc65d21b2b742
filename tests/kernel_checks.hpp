// tests/kernel_checks.hpp: what the kernel tests share: random inputs, central differences and
// error measures. Each test file says why its tolerances hold for its kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace kernel_checks {

/// Row or column counts around the SIMD width (16 floats / 8 doubles with AVX-512): tails of every
/// length, one full vector and several.
inline constexpr std::size_t simd_tail_widths[] = {1, 7, 17, 64, 100};

/// n values drawn uniformly from [lo, hi), converted to T.
template <class T>
std::vector<T> uniform(std::mt19937& rng, std::size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<T> v(n);
    for (auto& x : v) x = T(dist(rng));
    return v;
}

/// Tolerance of a sum of k products of terms in [-1, 1]: rounding grows like k u in practice
/// (u = 2^-24 float, 2^-53 double); (k + 1) * 2e-6 for float (~34 u per term) and (k + 1) * 1e-15
/// for double (~9 u per term) leave margin, while a transposed or misindexed operand is off by O(1).
template <class T>
long double product_tol(std::size_t k) {
    return (sizeof(T) == 4 ? 2e-6L : 1e-15L) * (long double)(k + 1);
}

/// Step and relative tolerance of the gradient checks (central differences in double).
constexpr double fd_step = 1e-6;
constexpr double fd_tol = 1e-6;

/// Central-difference gradient of f at x.
template <class F>
std::vector<double> finite_difference(F f, std::vector<double> x) {
    std::vector<double> g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + fd_step;
        const double up = f(x);
        x[i] = keep - fd_step;
        const double down = f(x);
        x[i] = keep;
        g[i] = (up - down) / (2 * fd_step);
    }
    return g;
}

/// max_i |a_i - b_i| / max_i |b_i|: the error relative to the size of the reference vector, which
/// stays meaningful for components of b that are close to zero. With `floor`, the scale is at
/// least `floor`.
template <class A, class B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b, double floor = 0) {
    double diff = 0, scale = floor;
    for (std::size_t i = 0; i < b.size(); ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return scale > 0 ? diff / scale : diff;
}

} // namespace kernel_checks
