// actlens/kernels/detail/simd.hpp: the single place xsimd is included, and the loop helpers that
// give every kernel a SIMD body, a scalar tail, and a scalar fallback where no SIMD is available.
// The SIMD loops run i up to body = n - n % w, a multiple of the width w: `i + w <= n` wraps for n
// near SIZE_MAX, and GCC warns (-Waggressive-loop-optimizations) about `w <= n - i` when it
// propagates a constant n.
#pragma once

#include <cstddef>

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

} // namespace actlens::kernels::detail
