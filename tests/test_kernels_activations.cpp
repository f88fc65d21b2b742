// Tests of actlens/kernels/activations.hpp: GELU (tanh and exact erf forms), SiLU, SwiGLU; forward against the
// formulas evaluated with the standard library in long double, backward against central finite
// differences in double.
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/activations.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

// Lengths around the SIMD width (16 floats / 8 doubles with AVX-512): every tail length occurs.
const std::size_t lengths[] = {1, 7, 17, 64, 100};

long double gelu_reference(long double u) {
    const long double k = std::sqrt(2.0L / 3.14159265358979323846264338327950288L);
    return 0.5L * u * (1.0L + std::tanh(k * (u + 0.044715L * u * u * u)));
}
long double gelu_erf_reference(long double u) { return 0.5L * u * (1.0L + std::erf(u / std::sqrt(2.0L))); }
long double silu_reference(long double u) { return u / (1.0L + std::exp(-u)); }

// Forward tolerance: |y - ref| <= tol * (1 + |u|). The vectorised tanh/exp are accurate to a few
// ulps, but 0.5 u (1 + tanh(.)) cancels for negative u (1 + tanh -> 0), so the error is a few ulps
// of |u|, not of |y|. 16 ulps leaves headroom; a wrong constant or formula is off by >= 1e-4.
template <class T>
long double activation_forward_tol() {
    return 16 * (long double)std::numeric_limits<T>::epsilon();
}

template <class T>
void check_forward(const std::vector<T>& u, const std::vector<T>& y,
                   long double (*ref)(long double), const std::vector<T>* up = nullptr) {
    for (std::size_t i = 0; i < u.size(); ++i) {
        const long double expect = ref(u[i]) * (up ? (long double)(*up)[i] : 1.0L);
        const long double scale =
            (1 + std::abs((long double)u[i])) * (up ? std::abs((long double)(*up)[i]) + 1 : 1);
        INFO("u " << double(u[i]) << " expect " << double(expect) << " got " << double(y[i]));
        CHECK(std::abs(y[i] - expect) <= activation_forward_tol<T>() * scale);
    }
}

// Gradient checks: central differences with step h = 1e-6 on an elementwise function, inputs in
// [-6, 6] (both tails of the activations). Truncation error h^2 / 6 |f'''| <= 1e-12 (|f'''| is
// O(1) here); rounding error eps |f| / h <= 1e-16 * 6 / 1e-6 ~ 1e-9. The check is relative to the
// largest gradient component, which is O(1): a wrong derivative is off by O(1).

template <class F>
double fd(F f, double u) {
    return (f(u + fd_step) - f(u - fd_step)) / (2 * fd_step);
}

/// One element through a kernel: f(u) for a kernel taking (in, out, n).
template <class Kernel>
double apply1(Kernel kernel, double u) {
    double y;
    kernel(&u, &y, 1);
    return y;
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v)
        m = std::max(m, std::abs(x));
    return m;
}

/// An elementwise kernel against its long double formula on random inputs in [lo, hi] of every length.
template <class T, class Kernel>
void check_forward_random(Kernel kernel, long double (*ref)(long double), T lo, T hi) {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t n : lengths) {
        INFO("n " << n);
        const auto u = uniform<T>(rng, n, lo, hi);
        std::vector<T> y(n);
        kernel(u.data(), y.data(), n);
        check_forward(u, y, ref);
    }
}

/// The backward kernel of an elementwise activation against dy times central differences of its
/// forward kernel, on inputs in [-6, 6] of every length.
template <class Forward, class Backward>
void check_backward_fd(Forward forward, Backward backward) {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    auto f = [&](double u) { return apply1(forward, u); };
    for (std::size_t n : lengths) {
        INFO("n " << n);
        const auto u = uniform<double>(rng, n, -6, 6), dy = uniform<double>(rng, n, -1, 1);
        std::vector<double> du(n), expect(n);
        backward(u.data(), dy.data(), du.data(), n);
        for (std::size_t i = 0; i < n; ++i)
            expect[i] = dy[i] * fd(f, u[i]);
        for (std::size_t i = 0; i < n; ++i)
            CHECK(std::abs(du[i] - expect[i]) <= fd_tol * std::max(1.0, max_abs(expect)));
    }
}

} // namespace

TEMPLATE_TEST_CASE("gelu_tanh: matches the formula with std::tanh", "[kernels]", float, double) {
    using T = TestType;
    check_forward_random<T>([](const T* a, T* b, std::size_t n) { k::gelu_tanh(a, b, n); }, gelu_reference, -8, 8);
    // Known values: gelu(0) = 0, gelu(-x) = gelu(x) - x, large arguments saturate.
    std::vector<T> u{T(0), T(1), T(-1), T(20), T(-20)}, y(5);
    k::gelu_tanh(u.data(), y.data(), 5);
    CHECK(y[0] == T(0));
    CHECK(std::abs(y[1] - T(0.841191990607)) <= T(1e-6)); // 0.5 (1 + tanh(sqrt(2/pi) 1.044715))
    CHECK(std::abs(y[2] - (y[1] - T(1))) <= T(1e-6));
    CHECK(y[3] == T(20));
    CHECK(std::abs(y[4]) <= T(1e-6));
}

TEMPLATE_TEST_CASE("gelu_erf: matches the formula with std::erf", "[kernels]", float, double) {
    using T = TestType;
    check_forward_random<T>([](const T* a, T* b, std::size_t n) { k::gelu_erf(a, b, n); }, gelu_erf_reference, -8, 8);
    // gelu(1) = Phi(1) = 0.841344746..., distinct from the tanh form's 0.841192 at 1e-4.
    std::vector<T> u{T(0), T(1)}, y(2);
    k::gelu_erf(u.data(), y.data(), 2);
    CHECK(y[0] == T(0));
    CHECK(std::abs(y[1] - T(0.8413447460685429)) <= T(1e-6));
}

TEMPLATE_TEST_CASE("silu: matches u * sigmoid(u)", "[kernels]", float, double) {
    using T = TestType;
    check_forward_random<T>([](const T* a, T* b, std::size_t n) { k::silu(a, b, n); }, silu_reference, -12, 12);
    // Far tails: no NaN from exp overflow.
    std::vector<T> u{T(-200), T(200)}, y(2);
    k::silu(u.data(), y.data(), 2);
    CHECK(std::abs(y[0]) <= T(1e-30)); // -200 e^-200 (0 in float, where e^200 overflows)
    CHECK(y[1] == T(200));
}

TEMPLATE_TEST_CASE("swiglu: is silu(gate) * up", "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t n : lengths) {
        INFO("n " << n);
        const auto g = uniform<T>(rng, n, -8, 8), up = uniform<T>(rng, n, -3, 3);
        std::vector<T> y(n);
        k::swiglu(g.data(), up.data(), y.data(), n);
        check_forward(g, y, silu_reference, &up);
    }
}

TEST_CASE("gelu_tanh_backward: matches central finite differences in double", "[kernels]") {
    check_backward_fd([](const double* a, double* b, std::size_t n) { k::gelu_tanh(a, b, n); },
                      [](const double* u, const double* dy, double* du, std::size_t n) {
                          k::gelu_tanh_backward(u, dy, du, n);
                      });
    // gelu'(0) = 0.5 exactly.
    double u0 = 0, one = 1, d0 = 0;
    k::gelu_tanh_backward(&u0, &one, &d0, 1);
    CHECK(d0 == 0.5);
}

TEST_CASE("gelu_erf_backward: matches central finite differences in double", "[kernels]") {
    check_backward_fd([](const double* a, double* b, std::size_t n) { k::gelu_erf(a, b, n); },
                      [](const double* u, const double* dy, double* du, std::size_t n) {
                          k::gelu_erf_backward(u, dy, du, n);
                      });
}

TEST_CASE("silu_backward: matches central finite differences in double", "[kernels]") {
    check_backward_fd([](const double* a, double* b, std::size_t n) { k::silu(a, b, n); },
                      [](const double* u, const double* dy, double* du, std::size_t n) {
                          k::silu_backward(u, dy, du, n);
                      });
}

TEST_CASE("swiglu_backward: matches central finite differences in double", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    auto f = [](double g, double u) {
        double y;
        k::swiglu(&g, &u, &y, 1);
        return y;
    };
    for (std::size_t n : lengths) {
        INFO("n " << n);
        const auto g = uniform<double>(rng, n, -6, 6), up = uniform<double>(rng, n, -3, 3);
        const auto dy = uniform<double>(rng, n, -1, 1);
        std::vector<double> dg(n), du(n), eg(n), eu(n);
        k::swiglu_backward(g.data(), up.data(), dy.data(), dg.data(), du.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            eg[i] = dy[i] * fd([&](double x) { return f(x, up[i]); }, g[i]);
            eu[i] = dy[i] * fd([&](double x) { return f(g[i], x); }, up[i]);
        }
        const double scale = std::max({1.0, max_abs(eg), max_abs(eu)});
        for (std::size_t i = 0; i < n; ++i) {
            CHECK(std::abs(dg[i] - eg[i]) <= fd_tol * scale);
            CHECK(std::abs(du[i] - eu[i]) <= fd_tol * scale);
        }
    }
}

TEST_CASE("activation backward: outputs may alias inputs", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t n = 37;
    const auto u = uniform<double>(rng, n, -4, 4), up = uniform<double>(rng, n, -2, 2);
    const auto dy = uniform<double>(rng, n, -1, 1);
    std::vector<double> expect(n), io = dy;
    k::gelu_tanh_backward(u.data(), dy.data(), expect.data(), n);
    k::gelu_tanh_backward(u.data(), io.data(), io.data(), n);
    CHECK(io == expect);
    io = dy;
    k::silu_backward(u.data(), dy.data(), expect.data(), n);
    k::silu_backward(u.data(), io.data(), io.data(), n);
    CHECK(io == expect);
    // swiglu: dgate written over gate, dup written over dy.
    std::vector<double> eg(n), eu(n), gate = u, d = dy;
    k::swiglu_backward(u.data(), up.data(), dy.data(), eg.data(), eu.data(), n);
    k::swiglu_backward(gate.data(), up.data(), d.data(), gate.data(), d.data(), n);
    CHECK(gate == eg);
    CHECK(d == eu);
}

TEST_CASE("activation backward: float kernels agree with double", "[kernels]") {
    // Each element is a handful of roundings plus one vectorised exp/tanh: a few float ulps of the
    // largest term (|u| |dy| <= 6), so 1e-5 relative to max(1, |du|) is ample.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t n = 100;
    const auto ud = uniform<double>(rng, n, -6, 6), upd = uniform<double>(rng, n, -3, 3);
    const auto dyd = uniform<double>(rng, n, -1, 1);
    const std::vector<float> uf(ud.begin(), ud.end()), upf(upd.begin(), upd.end()),
        dyf(dyd.begin(), dyd.end());
    const std::vector<double> u(uf.begin(), uf.end()), up(upf.begin(), upf.end()),
        dy(dyf.begin(), dyf.end());
    std::vector<float> af(n), bf(n);
    std::vector<double> a(n), b(n);
    auto close = [&](const std::vector<float>& x, const std::vector<double>& y) {
        for (std::size_t i = 0; i < n; ++i)
            if (std::abs(x[i] - y[i]) > 1e-5 * std::max(1.0, std::abs(y[i]))) return false;
        return true;
    };
    k::gelu_tanh_backward(uf.data(), dyf.data(), af.data(), n);
    k::gelu_tanh_backward(u.data(), dy.data(), a.data(), n);
    CHECK(close(af, a));
    k::silu_backward(uf.data(), dyf.data(), af.data(), n);
    k::silu_backward(u.data(), dy.data(), a.data(), n);
    CHECK(close(af, a));
    k::swiglu_backward(uf.data(), upf.data(), dyf.data(), af.data(), bf.data(), n);
    k::swiglu_backward(u.data(), up.data(), dy.data(), a.data(), b.data(), n);
    CHECK(close(af, a));
    CHECK(close(bf, b));
    // Far tails stay finite in float (exp overflows to inf there).
    std::vector<float> big{-200.f, 200.f}, one{1.f, 1.f}, out(2), out2(2);
    k::silu_backward(big.data(), one.data(), out.data(), 2);
    CHECK(out[0] == 0.f);
    CHECK(out[1] == 1.f);
    k::gelu_tanh_backward(big.data(), one.data(), out.data(), 2);
    CHECK(out[0] == 0.f);
    CHECK(out[1] == 1.f);
    k::swiglu_backward(big.data(), one.data(), one.data(), out.data(), out2.data(), 2);
    CHECK(out[0] == 0.f);
    CHECK(out[1] == 1.f);
}

TEMPLATE_TEST_CASE("kernel exp/tanh/erf: infinities and NaNs give the limits and a NaN stays a NaN",
                   "[kernels]", float, double) {
    // Without AVX-512 DQ, xsimd's double exp (and tanh and erf through it) converts a non-finite
    // argument to an integer: undefined behaviour, which the sanitizer build stops on. Masked attention
    // scores are -inf and NaNs must reach the checks that report them, so kernels/detail/simd.hpp
    // bounds the argument first. Past the bound (1000) the results must be the limits, inside it the
    // functions themselves; batches and the scalar tail alike (every length below puts the special
    // values in both).
    using T = TestType;
    const T inf = std::numeric_limits<T>::infinity();
    const T nan = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> values = {-inf, inf, nan, T(-2000), T(2000), T(-80), T(-3), T(0.5), T(4), T(60)};
    const auto check = [&](auto f, long double (*reference)(long double), const char* name) {
        for (std::size_t n : lengths) {
            std::vector<T> x(n), y(n);
            for (std::size_t i = 0; i < n; ++i) x[i] = values[i % values.size()];
            k::detail::simd_transform(x.data(), y.data(), n, f);
            for (std::size_t i = 0; i < n; ++i) {
                CAPTURE(name, n, i, x[i], y[i]);
                const long double r = T(reference(x[i])); // rounded to T: e^2000 overflows, e^-2000 underflows
                if (std::isnan(x[i])) {
                    CHECK(std::isnan(y[i]));
                } else if (std::isinf(r) || r == 0) {
                    CHECK((long double)y[i] == r);
                } else {
                    CHECK(std::abs(y[i] - r) <= activation_forward_tol<T>() * std::abs(r));
                }
            }
        }
    };
    check([](auto v) { return k::detail::exp(v); }, [](long double v) { return std::exp(v); }, "exp");
    check([](auto v) { return k::detail::tanh(v); }, [](long double v) { return std::tanh(v); }, "tanh");
    check([](auto v) { return k::detail::erf(v); }, [](long double v) { return std::erf(v); }, "erf");
}
