// actlens/kernels/detail/simd.hpp: the single place xsimd is included, and the loop helpers that
// give every kernel a SIMD body, a scalar tail, and a scalar fallback where no SIMD is available.
// The SIMD loops run i up to body = n - n % w, a multiple of the width w: `i + w <= n` wraps for n
// near SIZE_MAX, and GCC warns (-Waggressive-loop-optimizations) about `w <= n - i` when it
// propagates a constant n.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace actlens::kernels::detail {

#if defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
inline constexpr bool has_simd = false;
#else
inline constexpr bool has_simd = true;
#endif

/// out[i] = op(in[i]) for i < n. `op` is a generic lambda callable with a batch and with a scalar.
template <class T, class Op>
void simd_transform(const T* in, T* out, std::size_t n, Op op) noexcept {
    std::size_t i = 0;
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    for (const std::size_t body = n - n % w; i < body; i += w)
        op(batch::load_unaligned(in + i)).store_unaligned(out + i);
#endif
    for (; i < n; ++i) out[i] = op(in[i]);
}

/// out[i] = op(a[i], b[i]) for i < n.
template <class T, class Op>
void simd_transform2(const T* a, const T* b, T* out, std::size_t n, Op op) noexcept {
    std::size_t i = 0;
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    for (const std::size_t body = n - n % w; i < body; i += w)
        op(batch::load_unaligned(a + i), batch::load_unaligned(b + i)).store_unaligned(out + i);
#endif
    for (; i < n; ++i) out[i] = op(a[i], b[i]);
}

/// out[i] = op(a[i], b[i], c[i]) for i < n.
template <class T, class Op>
void simd_transform3(const T* a, const T* b, const T* c, T* out, std::size_t n, Op op) noexcept {
    std::size_t i = 0;
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    for (const std::size_t body = n - n % w; i < body; i += w)
        op(batch::load_unaligned(a + i), batch::load_unaligned(b + i), batch::load_unaligned(c + i))
            .store_unaligned(out + i);
#endif
    for (; i < n; ++i) out[i] = op(a[i], b[i], c[i]);
}

/// Sum over i < n of op(a[i], b[i]), accumulated in SIMD lanes then reduced.
template <class T, class Op>
T simd_reduce2(const T* a, const T* b, std::size_t n, Op op) noexcept {
    std::size_t i = 0;
    T total = T(0);
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    batch acc(T(0));
    for (const std::size_t body = n - n % w; i < body; i += w)
        acc += op(batch::load_unaligned(a + i), batch::load_unaligned(b + i));
    total = xsimd::hadd(acc);
#endif
    for (; i < n; ++i) total += op(a[i], b[i]);
    return total;
}

/// Dot product of two contiguous vectors.
template <class T>
T dot(const T* a, const T* b, std::size_t n) noexcept {
    return simd_reduce2(a, b, n, [](auto x, auto y) { return x * y; });
}

/// Sum of a contiguous vector.
template <class T>
T sum(const T* a, std::size_t n) noexcept {
    return simd_reduce2(a, a, n, [](auto x, auto) { return x; });
}

// e^x, tanh x and erf x of one value or one batch, for the kernels' generic lambdas.
//
// xsimd computes them for a batch of doubles by converting the exponent of a scaled argument to a
// 64-bit integer before it looks at the argument's range. Without AVX-512 DQ there is no instruction
// for that conversion and xsimd converts lane by lane in C++, where converting an infinity, a NaN or a
// value past 2^63 is undefined behaviour (the result is thrown away, but the sanitizers stop on it,
// and a compiler may assume it never happens). Masked attention scores are -inf, and NaNs must flow
// through to the checks that report them, so such arguments reach these functions. For double
// batches on those instruction sets, arguments outside [-limit, limit] (and NaNs) are therefore
// replaced by 0 before the call, and their result is the function's limit there (below / above), or
// the NaN itself. limit = 1000 is far inside the conversion's range, and every function has reached
// its limit in double there (e^-1000 = 0, e^1000 = inf, tanh and erf = +-1 exactly), so results are
// the same as xsimd's with AVX-512 DQ.
template <class V, class F>
V with_bounded_argument(const V& x, double below, double above, F f) noexcept {
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE) && !XSIMD_WITH_AVX512DQ
    if constexpr (std::is_same_v<V, xsimd::batch<double>>) {
        constexpr double limit = 1000.0;
        const auto inside = xsimd::abs(x) <= V(limit); // false for a NaN
        const V limits = xsimd::select(x < V(0.0), V(below), xsimd::select(x > V(0.0), V(above), x));
        return xsimd::select(inside, f(xsimd::select(inside, x, V(0.0))), limits);
    }
#endif
    (void)below;
    (void)above;
    return f(x);
}

template <class V>
V exp(const V& x) noexcept {
    return with_bounded_argument(x, 0.0, HUGE_VAL, [](const V& y) {
        using std::exp;
        using xsimd::exp;
        return exp(y);
    });
}

template <class V>
V tanh(const V& x) noexcept {
    return with_bounded_argument(x, -1.0, 1.0, [](const V& y) {
        using std::tanh;
        using xsimd::tanh;
        return tanh(y);
    });
}

template <class V>
V erf(const V& x) noexcept {
    return with_bounded_argument(x, -1.0, 1.0, [](const V& y) {
        using std::erf;
        using xsimd::erf;
        return erf(y);
    });
}

} // namespace actlens::kernels::detail
