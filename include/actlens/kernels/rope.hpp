// actlens/kernels/rope.hpp: rotary position embeddings, in the two pairings models use.
#pragma once

#include <actlens/core/tensor.hpp>

#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace actlens::kernels {

/// Which elements of a head form a rotated pair.
enum class rope_style {
    adjacent,  ///< (2j, 2j+1): llama2.c, Meta's original code, GGUF.
    half_split ///< (j, j + d_h/2): Hugging Face "rotate_half".
};

/// The rotation frequencies theta^(-2j/d_h) of the pairs j < d_h/2, each divided by `divisors[j]`
/// when divisors are given (RoPE scaling: Llama 3's per-frequency factors, linear position
/// interpolation). Formed in T, as llama2.c and Hugging Face do in float32.
template <class T>
std::vector<T> rope_frequencies(std::size_t head_dim, T theta, const std::vector<double>& divisors = {}) {
    std::vector<T> freq(head_dim / 2);
    for (std::size_t j = 0; j < freq.size(); ++j) {
        freq[j] = T(1) / std::pow(theta, T(2 * j) / T(head_dim));
        if (!divisors.empty()) freq[j] /= T(divisors[j]);
    }
    return freq;
}

/// cos/sin of pos * freq[j] for every position below max_positions and pair j (see rope_frequencies).
/// Sized by the positions a run uses (model/family.hpp: cover_rope), not the model's context.
/// The angle is formed in T, as llama2.c and Hugging Face do in float32,
/// so that positions far along the context round the same way they do there.
template <class T>
class rope_table {
public:
    rope_table() = default;
    rope_table(std::size_t max_positions, std::size_t head_dim, T theta)
        : rope_table(max_positions, rope_frequencies(head_dim, theta)) {}
    rope_table(std::size_t max_positions, std::vector<T> frequencies)
        : m_freq(std::move(frequencies)), m_cos({max_positions, m_freq.size()}), m_sin({max_positions, m_freq.size()}) {
        for (std::size_t j = 0; j < m_freq.size(); ++j)
            for (std::size_t p = 0; p < max_positions; ++p) {
                const T angle = T(p) * m_freq[j];
                m_cos(p, j) = std::cos(angle);
                m_sin(p, j) = std::sin(angle);
            }
    }
    std::size_t max_positions() const noexcept { return m_cos.empty() ? 0 : m_cos.extent(0); }
    std::size_t half() const noexcept { return m_freq.size(); }
    const std::vector<T>& frequencies() const noexcept { return m_freq; }
    const T* cos(std::size_t pos) const noexcept { return m_cos.data() + pos * half(); }
    const T* sin(std::size_t pos) const noexcept { return m_sin.data() + pos * half(); }

private:
    std::vector<T> m_freq;
    tensor<T> m_cos, m_sin;
};

/// Rotates, in place, the first 2*table.half() dimensions of `n_heads` heads of width `head_dim` (0:
/// 2*table.half(); wider heads are partial rotary, GPT-NeoX) in each of `rows` rows (row stride
/// `ld`). Row r is at position pos0 + r % seq_len (rows are [batch, seq] flattened). sign = -1
/// applies the inverse rotation (the backward pass). Positions must be below table.max_positions().
template <class T>
void rope(T* x, std::size_t rows, std::size_t n_heads, std::size_t ld, std::size_t seq_len, std::size_t pos0,
          const rope_table<T>& table, rope_style style, T sign = T(1), std::size_t head_dim = 0) noexcept {
    const std::size_t half = table.half();
    if (head_dim == 0) head_dim = 2 * half;
    for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t pos = pos0 + r % seq_len;
        const T* c = table.cos(pos);
        const T* s = table.sin(pos);
        for (std::size_t h = 0; h < n_heads; ++h) {
            T* v = x + r * ld + h * head_dim;
            for (std::size_t j = 0; j < half; ++j) {
                const std::size_t a = style == rope_style::adjacent ? 2 * j : j;
                const std::size_t b = style == rope_style::adjacent ? 2 * j + 1 : j + half;
                const T u = v[a], w = v[b], sn = sign * s[j];
                v[a] = u * c[j] - w * sn;
                v[b] = u * sn + w * c[j];
            }
        }
    }
}

/// Backward pass of `rope`: the gradient with respect to the unrotated input is the rotated-back
/// gradient, since each pair is rotated by an orthogonal 2x2 matrix whose transpose is the rotation
/// by the opposite angle. Same arguments as `rope`; in place on the gradient buffer. This is
/// exactly `rope(..., sign = -1)`: the matrix it applies is the transpose of the forward's, bit for
/// bit.
template <class T>
void rope_backward(T* dx, std::size_t rows, std::size_t n_heads, std::size_t ld,
                   std::size_t seq_len, std::size_t pos0, const rope_table<T>& table,
                   rope_style style, std::size_t head_dim = 0) noexcept {
    rope(dx, rows, n_heads, ld, seq_len, pos0, table, style, T(-1), head_dim);
}

} // namespace actlens::kernels
