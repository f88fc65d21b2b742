// actlens/kernels/norms.hpp: LayerNorm and RMSNorm over the last axis of a [rows, d] buffer.
#pragma once

#include <actlens/kernels/detail/simd.hpp>

#include <cmath>
#include <cstddef>

namespace actlens::kernels {

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, row by row; var is the biased variance.
/// Optionally stores each row's mean and 1/sqrt(var + eps) (the backward pass needs them).
/// x and y may alias. gamma/beta may be null (then 1 and 0).
template <class T>
void layer_norm(const T* x, std::size_t rows, std::size_t d, const T* gamma, const T* beta, T eps, T* y,
                T* mean_out = nullptr, T* rstd_out = nullptr) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * d;
        T* yr = y + r * d;
        const T mean = detail::sum(xr, d) / T(d);
        // Two passes: the centred sum of squares is accurate where E[x^2] - mean^2 is not.
        const T var = detail::simd_reduce2(xr, xr, d, [mean](auto a, auto) { return (a - mean) * (a - mean); }) / T(d);
        const T rstd = T(1) / std::sqrt(var + eps);
        if (mean_out) mean_out[r] = mean;
        if (rstd_out) rstd_out[r] = rstd;
        if (gamma && beta)
            detail::simd_transform3(xr, gamma, beta, yr, d,
                                    [mean, rstd](auto a, auto g, auto b) { return (a - mean) * rstd * g + b; });
        else if (gamma)
            detail::simd_transform2(xr, gamma, yr, d,
                                    [mean, rstd](auto a, auto g) { return (a - mean) * rstd * g; });
        else if (beta)
            detail::simd_transform2(xr, beta, yr, d,
                                    [mean, rstd](auto a, auto b) { return (a - mean) * rstd + b; });
        else
            detail::simd_transform(xr, yr, d, [mean, rstd](auto a) { return (a - mean) * rstd; });
    }
}

/// y = x / sqrt(mean(x^2) + eps) * weight, row by row. Optionally stores each row's 1/rms.
/// x and y may alias. weight may be null (then 1).
template <class T>
void rms_norm(const T* x, std::size_t rows, std::size_t d, const T* weight, T eps, T* y,
              T* rstd_out = nullptr) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * d;
        T* yr = y + r * d;
        const T ms = detail::dot(xr, xr, d) / T(d);
        const T rstd = T(1) / std::sqrt(ms + eps);
        if (rstd_out) rstd_out[r] = rstd;
        if (weight)
            detail::simd_transform2(xr, weight, yr, d, [rstd](auto a, auto w) { return a * rstd * w; });
        else
            detail::simd_transform(xr, yr, d, [rstd](auto a) { return a * rstd; });
    }
}

// ---------------------------------------------------------------------------------------------
// Backward passes. All take the row statistics the forward stored (mean_out / rstd_out), work on
// dense [rows, d] buffers, and either overwrite dx or add to it (`accumulate`, for residual
// streams that receive gradient from several branches). dx may alias dy. O(rows * d), two sweeps
// over each row, no allocation.
// ---------------------------------------------------------------------------------------------

namespace detail {

/// Row sums of a norm's backward pass in one sweep: s_g = sum_i dy_i g_i and
/// s_gx = sum_i dy_i g_i (x_i - shift). HasG = false means g = 1 (then `g` is not read).
template <bool HasG, class T>
void norm_backward_sums(const T* x, const T* dy, const T* g, T shift, std::size_t n, T& s_g,
                        T& s_gx) noexcept {
    auto weighted = [](auto dyv, auto gv) {
        if constexpr (HasG)
            return dyv * gv;
        else
            return dyv;
    };
    std::size_t i = 0;
    T total_g = T(0), total_gx = T(0);
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    batch acc_g(T(0)), acc_gx(T(0));
    for (const std::size_t body = n - n % w; i < body; i += w) {
        const batch t = weighted(batch::load_unaligned(dy + i), batch::load_unaligned(g + i));
        acc_g += t;
        acc_gx = xsimd::fma(t, batch::load_unaligned(x + i) - shift, acc_gx);
    }
    total_g = xsimd::hadd(acc_g);
    total_gx = xsimd::hadd(acc_gx);
#endif
    for (; i < n; ++i) {
        const T t = weighted(dy[i], g[i]);
        total_g += t;
        total_gx += t * (x[i] - shift);
    }
    s_g = total_g;
    s_gx = total_gx;
}

/// dx_i (=|+=) a dy_i g_i - b - c (x_i - shift) over one row. HasG = false means g = 1; UseX =
/// false drops the last term (then `x` is not read). Pointers that are not read must still be
/// valid.
template <bool HasG, bool UseX, class T>
void norm_backward_apply(const T* x, const T* dy, const T* g, T* dx, std::size_t n, T a, T b, T c,
                         T shift, bool accumulate) noexcept {
    // Implicit capture: with UseX = false, c and shift are unused (no unused-capture warning).
    auto value = [=](auto xv, auto dyv, auto gv) {
        auto t = dyv * a;
        if constexpr (HasG) t = t * gv;
        if constexpr (UseX)
            return t - b - c * (xv - shift);
        else
            return t - b;
    };
    std::size_t i = 0;
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    for (const std::size_t body = n - n % w; i < body; i += w) {
        batch v = value(batch::load_unaligned(x + i), batch::load_unaligned(dy + i),
                        batch::load_unaligned(g + i));
        if (accumulate) v += batch::load_unaligned(dx + i);
        v.store_unaligned(dx + i);
    }
#endif
    for (; i < n; ++i) {
        const T v = value(x[i], dy[i], g[i]);
        dx[i] = accumulate ? dx[i] + v : v;
    }
}

template <bool HasG, class T>
void layer_norm_backward_rows(const T* x, std::size_t rows, std::size_t d, const T* gamma,
                              const T* mean, const T* rstd, const T* dy, T* dx,
                              bool accumulate) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * d;
        const T* dyr = dy + r * d;
        const T* g = HasG ? gamma : dyr;
        T s_g, s_gx;
        norm_backward_sums<HasG>(xr, dyr, g, mean[r], d, s_g, s_gx);
        // With xhat = (x - mean) rstd and gy = dy * gamma:
        //   dx = rstd (gy - mean(gy) - xhat mean(gy xhat))
        //      = rstd gy - rstd s_g / d - (x - mean) rstd^3 s_gx / d.
        const T rs = rstd[r];
        const T inv_d = T(1) / T(d);
        norm_backward_apply<HasG, true>(xr, dyr, g, dx + r * d, d, rs, rs * s_g * inv_d,
                                        rs * rs * rs * s_gx * inv_d, mean[r], accumulate);
    }
}

template <bool HasG, class T>
void layer_norm_backward_const_scale_rows(std::size_t rows, std::size_t d, const T* gamma,
                                          const T* rstd, const T* dy, T* dx,
                                          bool accumulate) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * d;
        const T* g = HasG ? gamma : dyr;
        T s_g, unused;
        // x = dy stands in for the unread input; only s_g is used.
        norm_backward_sums<HasG>(dyr, dyr, g, T(0), d, s_g, unused);
        const T rs = rstd[r];
        // (I - 1/d) applied to rstd * gy: subtract the row mean of rstd * gy.
        norm_backward_apply<HasG, false>(dyr, dyr, g, dx + r * d, d, rs, rs * s_g / T(d), T(0),
                                         T(0), accumulate);
    }
}

template <bool HasG, class T>
void rms_norm_backward_rows(const T* x, std::size_t rows, std::size_t d, const T* weight,
                            const T* rstd, const T* dy, T* dx, bool accumulate) noexcept {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * d;
        const T* dyr = dy + r * d;
        const T* g = HasG ? weight : dyr;
        T unused, s_gx;
        norm_backward_sums<HasG>(xr, dyr, g, T(0), d, unused, s_gx);
        // y = x rstd w with rstd = (mean(x^2) + eps)^(-1/2), d rstd / d x_i = -rstd^3 x_i / d:
        //   dx = rstd gy - x rstd^3 (sum_j gy_j x_j) / d.
        const T rs = rstd[r];
        norm_backward_apply<HasG, true>(xr, dyr, g, dx + r * d, d, rs, T(0),
                                        rs * rs * rs * s_gx / T(d), T(0), accumulate);
    }
}

} // namespace detail

/// Gradient of `layer_norm` with respect to its input x: dx (=|+=) dL/dx given dy = dL/dy.
/// x is [rows, d]; mean and rstd are the per-row values `layer_norm` stored (mean_out, rstd_out);
/// gamma may be null (then 1; beta does not enter dx). dx may alias dy.
/// Complexity: O(rows * d), two vectorised sweeps per row.
template <class T>
void layer_norm_backward(const T* x, std::size_t rows, std::size_t d, const T* gamma, const T* mean,
                         const T* rstd, const T* dy, T* dx, bool accumulate = false) noexcept {
    if (gamma)
        detail::layer_norm_backward_rows<true>(x, rows, d, gamma, mean, rstd, dy, dx, accumulate);
    else
        detail::layer_norm_backward_rows<false>(x, rows, d, gamma, mean, rstd, dy, dx, accumulate);
}

/// LayerNorm backward with the normalisation scale held constant (the LRP / RelP rule): rstd is
/// treated as a constant, so only the centring remains, dx (=|+=) (I - 1/d) (dy * gamma * rstd)
/// row by row. Same parameters as `layer_norm_backward` so that a rule switch swaps the call;
/// x and mean are not read (they may be null). gamma may be null (then 1). dx may alias dy.
template <class T>
void layer_norm_backward_const_scale(const T* x, std::size_t rows, std::size_t d, const T* gamma,
                                     const T* mean, const T* rstd, const T* dy, T* dx,
                                     bool accumulate = false) noexcept {
    (void)x;
    (void)mean;
    if (gamma)
        detail::layer_norm_backward_const_scale_rows<true>(rows, d, gamma, rstd, dy, dx,
                                                           accumulate);
    else
        detail::layer_norm_backward_const_scale_rows<false>(rows, d, gamma, rstd, dy, dx,
                                                            accumulate);
}

/// Gradient of `rms_norm` with respect to its input x: dx (=|+=) dL/dx given dy = dL/dy.
/// rstd is the per-row 1/rms that `rms_norm` stored (rstd_out); weight may be null (then 1).
/// dx may alias dy. Complexity: O(rows * d), two vectorised sweeps per row.
template <class T>
void rms_norm_backward(const T* x, std::size_t rows, std::size_t d, const T* weight, const T* rstd,
                       const T* dy, T* dx, bool accumulate = false) noexcept {
    if (weight)
        detail::rms_norm_backward_rows<true>(x, rows, d, weight, rstd, dy, dx, accumulate);
    else
        detail::rms_norm_backward_rows<false>(x, rows, d, weight, rstd, dy, dx, accumulate);
}

/// RMSNorm backward with the normalisation scale held constant (the LRP / RelP rule):
/// dx (=|+=) dy * weight * rstd. Same parameters as `rms_norm_backward`; x is not read (it may be
/// null). weight may be null (then 1). dx may alias dy.
template <class T>
void rms_norm_backward_const_scale(const T* x, std::size_t rows, std::size_t d, const T* weight,
                                   const T* rstd, const T* dy, T* dx,
                                   bool accumulate = false) noexcept {
    (void)x;
    for (std::size_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * d;
        if (weight)
            detail::norm_backward_apply<true, false>(dyr, dyr, weight, dx + r * d, d, rstd[r], T(0),
                                                     T(0), T(0), accumulate);
        else
            detail::norm_backward_apply<false, false>(dyr, dyr, dyr, dx + r * d, d, rstd[r], T(0),
                                                      T(0), T(0), accumulate);
    }
}

} // namespace actlens::kernels
