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
    using std::exp;
    using xsimd::exp;
    for (std::size_t i = 0; i < rows; ++i) {
        T* row = scores + i * ld;
        const std::size_t valid = std::min(cols, past + i + 1);
        const T max = *std::max_element(row, row + valid);
        detail::simd_transform(row, row, valid, [max](auto s) { return exp(s - max); });
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

} // namespace actlens::kernels
