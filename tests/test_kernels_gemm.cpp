// Tests of actlens/kernels/gemm.hpp: `linear` against a naive long double product, the input and
// weight gradients against central finite differences in double and against naive products.
#include <catch2/catch.hpp>

#include <actlens/kernels/gemm.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace {

namespace k = actlens::kernels;

const std::size_t sizes[] = {1, 7, 17, 64, 100};

template <class T>
std::vector<T> uniform(std::mt19937& rng, std::size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<T> v(n);
    for (auto& x : v)
        x = T(dist(rng));
    return v;
}

// A sum of K products of random-sign terms in [-1, 1] has a rounding error that grows like
// sqrt(K) u |partial sums| ~ K u in practice (u = 2^-24 float, 2^-53 double). The bound
// (K + 1) * 2e-6 for float (~34 u per term) and (K + 1) * 1e-15 for double (~9 u per term) is
// ample, while a transposed or misindexed operand is off by O(1).
template <class T>
long double product_tol(std::size_t k) {
    return (sizeof(T) == 4 ? 2e-6L : 1e-15L) * (long double)(k + 1);
}

// Gradient checks: L = sum_ij G_ij y_ij is linear in x and in w, so central differences have no
// truncation error; the rounding error eps |L| / h ~ 1e-16 * 1e3 / 1e-6 = 1e-7 absolute against
// gradients of size ~1..10, inside 1e-6 relative to the largest one.
constexpr double fd_step = 1e-6;
constexpr double fd_tol = 1e-6;

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

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        diff = std::max(diff, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return scale > 0 ? diff / scale : diff;
}

} // namespace

TEMPLATE_TEST_CASE("linear: matches a naive product with bias, accumulate and row strides",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        for (std::size_t out : {std::size_t(1), std::size_t(5), std::size_t(33)}) {
            for (std::size_t rows : {std::size_t(1), std::size_t(9)}) {
                const std::size_t ldx = in + rng() % 3, ldy = out + rng() % 3;
                INFO("rows " << rows << " in " << in << " out " << out << " ldx " << ldx << " ldy "
                             << ldy);
                const auto x = uniform<T>(rng, rows * ldx, -1, 1),
                           w = uniform<T>(rng, out * in, -1, 1);
                const auto bias = uniform<T>(rng, out, -1, 1);
                const auto y0 = uniform<T>(rng, rows * ldy, -1, 1);
                for (int mode = 0; mode < 3; ++mode) {
                    const bool with_bias = mode >= 1, accumulate = mode == 2;
                    auto y = y0;
                    k::linear(x.data(), rows, in, w.data(), out, with_bias ? bias.data() : nullptr,
                              y.data(), accumulate, ldx, ldy);
                    for (std::size_t r = 0; r < rows; ++r) {
                        for (std::size_t o = 0; o < out; ++o) {
                            long double e = accumulate ? (long double)y0[r * ldy + o] : 0.0L;
                            for (std::size_t i = 0; i < in; ++i)
                                e += (long double)x[r * ldx + i] * w[o * in + i];
                            if (with_bias) e += bias[o];
                            CHECK(std::abs(y[r * ldy + o] - e) <= product_tol<T>(in));
                        }
                        for (std::size_t o = out; o < ldy; ++o)
                            CHECK(y[r * ldy + o] == y0[r * ldy + o]);
                    }
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("linear_backward_input: is dy w, checked against a naive product", "[kernels]",
                   float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 40, rows = 1 + rng() % 6;
        const std::size_t lddy = out + rng() % 3, lddx = in + rng() % 3;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto dy = uniform<T>(rng, rows * lddy, -1, 1), w = uniform<T>(rng, out * in, -1, 1);
        const auto dx0 = uniform<T>(rng, rows * lddx, -1, 1);
        for (bool accumulate : {false, true}) {
            auto dx = dx0;
            k::linear_backward_input(dy.data(), rows, out, w.data(), in, dx.data(), accumulate,
                                     lddy, lddx);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t i = 0; i < in; ++i) {
                    long double e = accumulate ? (long double)dx0[r * lddx + i] : 0.0L;
                    for (std::size_t o = 0; o < out; ++o)
                        e += (long double)dy[r * lddy + o] * w[o * in + i];
                    CHECK(std::abs(dx[r * lddx + i] - e) <= product_tol<T>(out));
                }
                for (std::size_t i = in; i < lddx; ++i)
                    CHECK(dx[r * lddx + i] == dx0[r * lddx + i]);
            }
        }
    }
}

TEMPLATE_TEST_CASE("linear_backward_weight: is dy^T x, checked against a naive product",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 40, rows = 1 + rng() % 20;
        const std::size_t ldx = in + rng() % 3, lddy = out + rng() % 3;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto x = uniform<T>(rng, rows * ldx, -1, 1), dy = uniform<T>(rng, rows * lddy, -1, 1);
        const auto dw0 = uniform<T>(rng, out * in, -1, 1);
        for (bool accumulate : {false, true}) {
            auto dw = dw0;
            k::linear_backward_weight(x.data(), rows, in, dy.data(), out, dw.data(), accumulate,
                                      ldx, lddy);
            for (std::size_t o = 0; o < out; ++o)
                for (std::size_t i = 0; i < in; ++i) {
                    long double e = accumulate ? (long double)dw0[o * in + i] : 0.0L;
                    for (std::size_t r = 0; r < rows; ++r)
                        e += (long double)dy[r * lddy + o] * x[r * ldx + i];
                    CHECK(std::abs(dw[o * in + i] - e) <= product_tol<T>(rows));
                }
        }
    }
}

TEST_CASE("linear backward: input and weight gradients match central finite differences",
          "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 12, rows = 1 + rng() % 4;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto x = uniform<double>(rng, rows * in, -1, 1),
                   w = uniform<double>(rng, out * in, -1, 1);
        const auto bias = uniform<double>(rng, out, -1, 1),
                   g = uniform<double>(rng, rows * out, -1, 1);
        auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww) {
            std::vector<double> y(rows * out);
            k::linear(xx.data(), rows, in, ww.data(), out, bias.data(), y.data());
            double s = 0;
            for (std::size_t i = 0; i < y.size(); ++i)
                s += g[i] * y[i];
            return s;
        };
        std::vector<double> dx(rows * in), dw(out * in);
        k::linear_backward_input(g.data(), rows, out, w.data(), in, dx.data());
        k::linear_backward_weight(x.data(), rows, in, g.data(), out, dw.data());
        CHECK(
            rel_err(dx, finite_difference([&](const std::vector<double>& v) { return loss(v, w); },
                                          x)) <= fd_tol);
        CHECK(
            rel_err(dw, finite_difference([&](const std::vector<double>& v) { return loss(x, v); },
                                          w)) <= fd_tol);
    }
}
