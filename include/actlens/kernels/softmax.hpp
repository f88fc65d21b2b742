// actlens/kernels/softmax.hpp: causal softmax over attention score rows.
#pragma once

#include <actlens/kernels/detail/simd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace actlens::kernels {

/// Softmax of each row of a [rows, cols] block (row stride `ld`) where row i may attend to
/// columns 0 .. past + i (the causal mask with `past` cached positions before the first query).
/// Masked entries are set to exactly 0. Entries past the mask are never read.
template <class T>
void softmax_causal(T* scores, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t past) noexcept {
    for (std::size_t i = 0; i < rows; ++i) {
        T* row = scores + i * ld;
        const std::size_t valid = std::min(cols, past + i + 1);
        if (valid == 0) continue; // cols == 0: nothing to normalise (and no element to read)
        const T max = *std::max_element(row, row + valid);
        detail::simd_transform(row, row, valid, [max](auto s) { return detail::exp(s - max); });
        const T inv = T(1) / detail::sum(row, valid);
        detail::simd_transform(row, row, valid, [inv](auto p) { return p * inv; });
        std::fill(row + valid, row + cols, T(0));
    }
}

/// Writes -infinity above the causal diagonal, so that hooks see masked scores as TransformerLens does.
template <class T>
void mask_causal(T* scores, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t past) noexcept {
    for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t valid = std::min(cols, past + i + 1);
        std::fill(scores + i * ld + valid, scores + i * ld + cols, -std::numeric_limits<T>::infinity());
    }
}

/// Gradient of `softmax_causal` with respect to the scores: for each row i and each column j in the
/// causal part (j <= past + i, j < cols), ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik), and ds_ij = 0
/// exactly in the masked part. p is the softmax output, dp = dL/dp; the three blocks share the
/// row stride `ld`. ds may alias dp. Entries of dp past the mask are never read.
template <class T>
void softmax_causal_backward(const T* p, const T* dp, T* ds, std::size_t rows, std::size_t cols,
                             std::size_t ld, std::size_t past) noexcept {
    for (std::size_t i = 0; i < rows; ++i) {
        const T* pr = p + i * ld;
        const T* dpr = dp + i * ld;
        T* dsr = ds + i * ld;
        const std::size_t valid = std::min(cols, past + i + 1);
        const T inner = detail::dot(pr, dpr, valid);
        detail::simd_transform2(pr, dpr, dsr, valid,
                                [inner](auto pv, auto dv) { return pv * (dv - inner); });
        std::fill(dsr + valid, dsr + cols, T(0));
    }
}

} // namespace actlens::kernels
