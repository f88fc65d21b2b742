// Tests of actlens/kernels/norms.hpp: LayerNorm and RMSNorm, forward against a plain long double
// reference, backward against central finite differences in double.
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/norms.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

// Forward tolerances, relative to the largest output. float: each output goes through a d-term
// sum (mean, variance) whose rounding error is at most ~d * 2^-24 relative for d <= 100, i.e.
// 6e-6, plus a few roundings in the normalisation; 2e-5 leaves headroom without hiding a wrong
// formula (those give errors of order 1). double: the same argument with 2^-53.
template <class T>
double norm_forward_tol() {
    return sizeof(T) == 4 ? 2e-5 : 1e-13;
}

// Gradient checks use central differences with step h = 1e-6 on a loss L = sum_i w_i y_i.
// Truncation error is h^2 / 6 |L'''| ~ 1e-12 (inputs are O(1), rstd is O(1)); rounding error is
// eps |L| / h ~ 1e-16 * 1e2 / 1e-6 = 1e-8. Both are far below the 1e-6 relative bound, while a
// missing or wrong term in the backward formula gives errors of order 1.

double weighted_sum(const std::vector<double>& w, const std::vector<double>& y) {
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
        s += w[i] * y[i];
    return s;
}

/// Plain long double LayerNorm (gamma/beta null = 1/0), also returning mean and rstd per row.
void layer_norm_reference(const std::vector<long double>& x, std::size_t rows, std::size_t d,
                          const long double* gamma, const long double* beta, long double eps,
                          std::vector<long double>& y, std::vector<long double>& mean,
                          std::vector<long double>& rstd) {
    y.assign(rows * d, 0);
    mean.assign(rows, 0);
    rstd.assign(rows, 0);
    for (std::size_t r = 0; r < rows; ++r) {
        long double m = 0;
        for (std::size_t i = 0; i < d; ++i)
            m += x[r * d + i];
        m /= d;
        long double v = 0;
        for (std::size_t i = 0; i < d; ++i)
            v += (x[r * d + i] - m) * (x[r * d + i] - m);
        v /= d;
        const long double rs = 1 / std::sqrt(v + eps);
        mean[r] = m;
        rstd[r] = rs;
        for (std::size_t i = 0; i < d; ++i)
            y[r * d + i] = (x[r * d + i] - m) * rs * (gamma ? gamma[i] : 1) + (beta ? beta[i] : 0);
    }
}

template <class T>
std::vector<long double> widen(const std::vector<T>& v) {
    return std::vector<long double>(v.begin(), v.end());
}

} // namespace

TEMPLATE_TEST_CASE("layer_norm: matches a long double reference with and without gamma/beta",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 4;
        const auto x = uniform<T>(rng, rows * d, -2, 3);
        const auto gamma = uniform<T>(rng, d, 0.5, 1.5);
        const auto beta = uniform<T>(rng, d, -1, 1);
        const T eps = T(1e-5);
        for (int mask = 0; mask < 4; ++mask) {
            const bool use_gamma = mask & 1, use_beta = mask & 2;
            INFO("d " << d << " rows " << rows << " gamma " << use_gamma << " beta " << use_beta);
            std::vector<T> y(rows * d), mean(rows), rstd(rows);
            k::layer_norm(x.data(), rows, d, use_gamma ? gamma.data() : nullptr,
                          use_beta ? beta.data() : nullptr, eps, y.data(), mean.data(),
                          rstd.data());
            const auto gl = widen(gamma), bl = widen(beta);
            std::vector<long double> yr, mr, rr;
            layer_norm_reference(widen(x), rows, d, use_gamma ? gl.data() : nullptr,
                                 use_beta ? bl.data() : nullptr, eps, yr, mr, rr);
            CHECK(rel_err(y, yr) <= norm_forward_tol<T>());
            CHECK(rel_err(mean, mr) <= norm_forward_tol<T>());
            CHECK(rel_err(rstd, rr) <= norm_forward_tol<T>());
        }
    }
}

TEMPLATE_TEST_CASE("layer_norm: works in place", "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t rows = 3, d = 37;
    auto x = uniform<T>(rng, rows * d, -1, 1);
    const auto gamma = uniform<T>(rng, d, 0.5, 1.5), beta = uniform<T>(rng, d, -1, 1);
    std::vector<T> y(rows * d);
    k::layer_norm(x.data(), rows, d, gamma.data(), beta.data(), T(1e-5), y.data());
    k::layer_norm(x.data(), rows, d, gamma.data(), beta.data(), T(1e-5), x.data());
    CHECK(x == y);
}

TEMPLATE_TEST_CASE("rms_norm: matches a long double reference with and without weight", "[kernels]",
                   float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 4;
        const auto x = uniform<T>(rng, rows * d, -2, 3);
        const auto w = uniform<T>(rng, d, 0.5, 1.5);
        const T eps = T(1e-6);
        for (bool use_w : {false, true}) {
            INFO("d " << d << " rows " << rows << " weight " << use_w);
            std::vector<T> y(rows * d), rstd(rows);
            k::rms_norm(x.data(), rows, d, use_w ? w.data() : nullptr, eps, y.data(), rstd.data());
            std::vector<long double> yr(rows * d), rr(rows);
            for (std::size_t r = 0; r < rows; ++r) {
                long double ms = 0;
                for (std::size_t i = 0; i < d; ++i)
                    ms += (long double)x[r * d + i] * x[r * d + i];
                rr[r] = 1 / std::sqrt(ms / d + (long double)eps);
                for (std::size_t i = 0; i < d; ++i)
                    yr[r * d + i] = x[r * d + i] * rr[r] * (use_w ? (long double)w[i] : 1.0L);
            }
            CHECK(rel_err(y, yr) <= norm_forward_tol<T>());
            CHECK(rel_err(rstd, rr) <= norm_forward_tol<T>());
        }
    }
}

TEST_CASE("layer_norm_backward: matches central finite differences in double", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 3;
        const auto x = uniform<double>(rng, rows * d, -2, 2);
        const auto gamma = uniform<double>(rng, d, 0.5, 1.5);
        const auto beta = uniform<double>(rng, d, -1, 1);
        const auto w = uniform<double>(rng, rows * d, -1, 1); // dL/dy
        for (bool use_gamma : {false, true}) {
            INFO("d " << d << " rows " << rows << " gamma " << use_gamma);
            const double* g = use_gamma ? gamma.data() : nullptr;
            auto loss = [&](const std::vector<double>& xx) {
                std::vector<double> y(rows * d);
                k::layer_norm(xx.data(), rows, d, g, beta.data(), 1e-5, y.data());
                return weighted_sum(w, y);
            };
            std::vector<double> y(rows * d), mean(rows), rstd(rows), dx(rows * d);
            k::layer_norm(x.data(), rows, d, g, beta.data(), 1e-5, y.data(), mean.data(),
                          rstd.data());
            k::layer_norm_backward(x.data(), rows, d, g, mean.data(), rstd.data(), w.data(),
                                   dx.data());
            CHECK(rel_err(dx, finite_difference(loss, x)) <= fd_tol);

            // accumulate adds the same gradient to what is there.
            auto acc = uniform<double>(rng, rows * d, -1, 1);
            auto expect = acc;
            for (std::size_t i = 0; i < expect.size(); ++i)
                expect[i] += dx[i];
            k::layer_norm_backward(x.data(), rows, d, g, mean.data(), rstd.data(), w.data(),
                                   acc.data(), true);
            CHECK(rel_err(acc, expect) <= 1e-15);
        }
    }
}

TEST_CASE("layer_norm_backward: the gradient of a normalised row sums to zero", "[kernels]") {
    // Shifting x by a constant leaves a LayerNorm output unchanged, so dx is orthogonal to ones.
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t d = 41;
    const auto x = uniform<double>(rng, d, -3, 3), gamma = uniform<double>(rng, d, 0.5, 2);
    const auto dy = uniform<double>(rng, d, -1, 1);
    std::vector<double> y(d), mean(1), rstd(1), dx(d);
    k::layer_norm<double>(x.data(), 1, d, gamma.data(), nullptr, 1e-5, y.data(), mean.data(),
                          rstd.data());
    k::layer_norm_backward(x.data(), 1, d, gamma.data(), mean.data(), rstd.data(), dy.data(),
                           dx.data());
    double s = 0, s_abs = 0;
    for (double v : dx)
        s += v, s_abs += std::abs(v);
    CHECK(std::abs(s) <= 1e-13 * s_abs);
}

TEST_CASE("rms_norm_backward: matches central finite differences in double", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 3;
        const auto x = uniform<double>(rng, rows * d, -2, 2);
        const auto weight = uniform<double>(rng, d, 0.5, 1.5);
        const auto w = uniform<double>(rng, rows * d, -1, 1);
        for (bool use_weight : {false, true}) {
            INFO("d " << d << " rows " << rows << " weight " << use_weight);
            const double* g = use_weight ? weight.data() : nullptr;
            auto loss = [&](const std::vector<double>& xx) {
                std::vector<double> y(rows * d);
                k::rms_norm(xx.data(), rows, d, g, 1e-6, y.data());
                return weighted_sum(w, y);
            };
            std::vector<double> y(rows * d), rstd(rows), dx(rows * d);
            k::rms_norm(x.data(), rows, d, g, 1e-6, y.data(), rstd.data());
            k::rms_norm_backward(x.data(), rows, d, g, rstd.data(), w.data(), dx.data());
            // The two terms of the RMSNorm gradient, each of size ~ rstd |dy weight|, nearly cancel
            // when d is small (d = 1: the output is ~sign(x)), leaving a gradient far below the
            // finite-difference noise eps |L| / h. The error is therefore measured relative to the
            // term size when that is larger than the gradient.
            double term = 0;
            for (std::size_t i = 0; i < rows * d; ++i)
                term = std::max(term, std::abs(rstd[i / d] * w[i] * (g ? g[i % d] : 1.0)));
            CHECK(rel_err(dx, finite_difference(loss, x), term) <= fd_tol);

            auto acc = uniform<double>(rng, rows * d, -1, 1);
            auto expect = acc;
            for (std::size_t i = 0; i < expect.size(); ++i)
                expect[i] += dx[i];
            k::rms_norm_backward(x.data(), rows, d, g, rstd.data(), w.data(), acc.data(), true);
            CHECK(rel_err(acc, expect) <= 1e-15);
        }
    }
}

TEST_CASE("layer_norm_backward_const_scale: is the gradient with rstd frozen", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 3;
        const auto x = uniform<double>(rng, rows * d, -2, 2);
        const auto gamma = uniform<double>(rng, d, 0.5, 1.5);
        const auto w = uniform<double>(rng, rows * d, -1, 1);
        std::vector<double> y(rows * d), mean(rows), rstd(rows);
        k::layer_norm<double>(x.data(), rows, d, gamma.data(), nullptr, 1e-5, y.data(), mean.data(),
                              rstd.data());
        for (bool use_gamma : {false, true}) {
            INFO("d " << d << " rows " << rows << " gamma " << use_gamma);
            // The forward with the scale held at the value of the unperturbed input, written out.
            auto loss = [&](const std::vector<double>& xx) {
                double s = 0;
                for (std::size_t r = 0; r < rows; ++r) {
                    double m = 0;
                    for (std::size_t i = 0; i < d; ++i)
                        m += xx[r * d + i];
                    m /= double(d);
                    for (std::size_t i = 0; i < d; ++i)
                        s += w[r * d + i] * (xx[r * d + i] - m) * rstd[r] *
                             (use_gamma ? gamma[i] : 1.0);
                }
                return s;
            };
            std::vector<double> dx(rows * d);
            // x and mean are documented as unused: pass null to prove it.
            k::layer_norm_backward_const_scale<double>(nullptr, rows, d,
                                                       use_gamma ? gamma.data() : nullptr, nullptr,
                                                       rstd.data(), w.data(), dx.data());
            CHECK(rel_err(dx, finite_difference(loss, x)) <= fd_tol);
        }
    }
}

TEST_CASE("rms_norm_backward_const_scale: is dy * weight * rstd", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t d : simd_tail_widths) {
        const std::size_t rows = 1 + rng() % 3;
        const auto weight = uniform<double>(rng, d, 0.5, 1.5);
        const auto rstd = uniform<double>(rng, rows, 0.5, 2);
        const auto dy = uniform<double>(rng, rows * d, -1, 1);
        for (bool use_weight : {false, true}) {
            std::vector<double> dx(rows * d), expect(rows * d);
            for (std::size_t r = 0; r < rows; ++r)
                for (std::size_t i = 0; i < d; ++i)
                    expect[r * d + i] = dy[r * d + i] * (use_weight ? weight[i] : 1.0) * rstd[r];
            k::rms_norm_backward_const_scale<double>(nullptr, rows, d,
                                                     use_weight ? weight.data() : nullptr,
                                                     rstd.data(), dy.data(), dx.data());
            CHECK(rel_err(dx, expect) <= 1e-15);
            auto acc = std::vector<double>(rows * d, 1.0);
            k::rms_norm_backward_const_scale<double>(nullptr, rows, d,
                                                     use_weight ? weight.data() : nullptr,
                                                     rstd.data(), dy.data(), acc.data(), true);
            for (auto& v : expect)
                v += 1.0;
            CHECK(rel_err(acc, expect) <= 1e-15);
        }
    }
}

TEST_CASE("norm backward: float kernels agree with double", "[kernels]") {
    // The backward subtracts terms of size ~ rstd |dy gamma| that can cancel almost completely
    // (d = 1 is the extreme: the exact LayerNorm gradient is 0), so the float error is measured
    // relative to that term size. float accumulates two d-term sums per row: ~d * 2^-24 ~ 1e-5
    // relative at worst for d = 100; 1e-4 leaves headroom.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    auto scaled_err = [](const std::vector<float>& a, const std::vector<double>& b,
                         const std::vector<double>& dy, const std::vector<double>& g,
                         const std::vector<double>& rstd, std::size_t d) {
        double diff = 0, scale = 0;
        for (std::size_t i = 0; i < b.size(); ++i) {
            diff = std::max(diff, std::abs(double(a[i]) - b[i]));
            scale = std::max(scale, std::abs(rstd[i / d] * dy[i] * g[i % d]));
        }
        return diff / scale;
    };
    for (std::size_t d : simd_tail_widths) {
        INFO("d " << d);
        const std::size_t rows = 2;
        const auto xd = uniform<double>(rng, rows * d, -2, 2),
                   gd = uniform<double>(rng, d, 0.5, 1.5);
        const auto dyd = uniform<double>(rng, rows * d, -1, 1);
        const std::vector<float> xf(xd.begin(), xd.end()), gf(gd.begin(), gd.end()),
            dyf(dyd.begin(), dyd.end());
        // The double path starts from the float-rounded inputs so that only kernel rounding
        // differs.
        const std::vector<double> xr(xf.begin(), xf.end()), gr(gf.begin(), gf.end()),
            dyr(dyf.begin(), dyf.end());
        std::vector<float> yf(rows * d), mf(rows), rf(rows), dxf(rows * d);
        std::vector<double> yr(rows * d), mr(rows), rr(rows), dxr(rows * d);
        k::layer_norm<float>(xf.data(), rows, d, gf.data(), nullptr, 1e-5f, yf.data(), mf.data(),
                             rf.data());
        k::layer_norm<double>(xr.data(), rows, d, gr.data(), nullptr, 1e-5, yr.data(), mr.data(),
                              rr.data());
        k::layer_norm_backward(xf.data(), rows, d, gf.data(), mf.data(), rf.data(), dyf.data(),
                               dxf.data());
        k::layer_norm_backward(xr.data(), rows, d, gr.data(), mr.data(), rr.data(), dyr.data(),
                               dxr.data());
        CHECK(scaled_err(dxf, dxr, dyr, gr, rr, d) <= 1e-4);
        k::rms_norm(xf.data(), rows, d, gf.data(), 1e-6f, yf.data(), rf.data());
        k::rms_norm(xr.data(), rows, d, gr.data(), 1e-6, yr.data(), rr.data());
        k::rms_norm_backward(xf.data(), rows, d, gf.data(), rf.data(), dyf.data(), dxf.data());
        k::rms_norm_backward(xr.data(), rows, d, gr.data(), rr.data(), dyr.data(), dxr.data());
        CHECK(scaled_err(dxf, dxr, dyr, gr, rr, d) <= 1e-4);
    }
}
