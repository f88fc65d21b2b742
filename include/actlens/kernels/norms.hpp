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

} // namespace actlens::kernels
