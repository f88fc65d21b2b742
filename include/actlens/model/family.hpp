// actlens/model/family.hpp: the operations whose form depends on the model family, each decided once.
//
// The forward (dense and ragged), the backward and the methods that apply the final norm outside a
// forward pass all call these, so a family option is written in one place.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/model/config.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

namespace actlens {

/// The MLP's elementwise activation of `n` pre-activations (GELU models; SwiGLU is kernels::swiglu).
template <class T>
void activate(const model_config& c, const T* in, T* out, std::size_t n) {
    if (c.mlp == mlp_kind::gelu_erf)
        kernels::gelu_erf(in, out, n);
    else
        kernels::gelu_tanh(in, out, n);
}

/// The gated MLP's hidden vector out = act(gate) * up: SwiGLU (silu) or GeGLU (tanh GELU).
template <class T>
void activate_gated(const model_config& c, const T* gate, const T* up, T* out, std::size_t n) {
    if (c.mlp == mlp_kind::geglu)
        kernels::geglu(gate, up, out, n);
    else
        kernels::swiglu(gate, up, out, n);
}

/// Multiplies `rows` token embeddings [rows, d] by sqrt(d_model) when the model scales them (Gemma):
/// the factor is rounded to T first, as Hugging Face rounds it to the model's dtype.
template <class T>
void scale_embeddings(const model_config& c, T* x, std::size_t rows) {
    if (!c.scale_embeddings) return;
    const T factor = T(std::sqrt(double(c.d_model)));
    for (std::size_t i = 0; i < rows * c.d_model; ++i) x[i] *= factor;
}

/// How one layer forms its attention scores from q k^T: the scale, the soft cap (0: none) and the
/// sliding window (0: every earlier position).
template <class T>
struct attention_form {
    T scale = T(1);
    T softcap = T(0);
    std::size_t window = 0;

    static attention_form of(const model_config& c, int layer) {
        attention_form f;
        const double base = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : double(c.d_head);
        f.scale = T(1) / std::sqrt(T(base));
        f.softcap = T(c.attn_logit_softcap);
        f.window = c.window(layer);
        return f;
    }

    /// The first key query row i of a block sees: 0, or the window's start. Keys are numbered by
    /// position and row i sits at position diagonal + i.
    std::size_t first_key(std::size_t diagonal, std::size_t i) const noexcept {
        const std::size_t position = diagonal + i;
        return window && position + 1 > window ? position + 1 - window : 0;
    }

    /// After the product: caps the visible scores of `rows` query rows (row stride ld, `cols` keys)
    /// and writes -infinity before each row's window, so that the causal softmax gives those keys 0
    /// and hooks see them masked as TransformerLens shows them.
    void finish_scores(T* s, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t diagonal) const noexcept {
        for (std::size_t i = 0; i < rows; ++i) {
            T* row = s + i * ld;
            const std::size_t visible = std::min(cols, diagonal + i + 1);
            const std::size_t first = std::min(first_key(diagonal, i), visible);
            if (softcap > T(0)) kernels::soft_cap(row + first, visible - first, softcap);
            std::fill(row, row + first, -std::numeric_limits<T>::infinity());
        }
    }
};

/// Gemma 2's post norms (ln1_post, ln2_post) of a sublayer's output x [rows, d], in place, in two
/// steps so that hook_normalized sits between them as in TransformerLens: x / rms(x), then the gain.
template <class T>
void post_normalize(const model_config& c, T* x, std::size_t rows) {
    kernels::rms_norm(x, rows, c.d_model, static_cast<const T*>(nullptr), T(c.norm_eps), x);
}
template <class T>
void apply_gain(const model_config& c, const tensor_view<const T>& gain, T* x, std::size_t rows) {
    const T* g = gain.data();
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < c.d_model; ++i) x[r * c.d_model + i] *= g[i];
}

/// The model's norm of `rows` rows of d_model: LayerNorm (weight and bias) or RMSNorm (weight).
/// `in` may equal `out`.
template <class T>
void normalize(const model_config& c, const tensor_view<const T>& weight, const tensor_view<const T>& bias,
               const T* in, std::size_t rows, T* out) {
    if (c.norm == norm_kind::layer_norm)
        kernels::layer_norm(in, rows, c.d_model, weight.data(), bias.data(), T(c.norm_eps), out);
    else
        kernels::rms_norm(in, rows, c.d_model, weight.data(), T(c.norm_eps), out);
}

/// The backward pass of `normalize` at input `x` [rows, d]: d_in (=|+=) the input gradient from d_out.
/// With `constant_scale` the norm's scale is held constant (RelP's LN-rule). The statistics are
/// recomputed from x (cheaper than taping them); `scratch` [rows, d], `mean` and `rstd` [rows] are
/// caller-owned buffers.
template <class T>
void normalize_backward(const model_config& c, const tensor_view<const T>& weight, const T* x, std::size_t rows,
                        const T* d_out, T* d_in, bool accumulate, bool constant_scale, T* scratch, T* mean, T* rstd) {
    const std::size_t d = c.d_model;
    const T* none = nullptr;
    if (c.norm == norm_kind::layer_norm) {
        kernels::layer_norm(x, rows, d, none, none, T(c.norm_eps), scratch, mean, rstd);
        if (constant_scale)
            kernels::layer_norm_backward_const_scale(x, rows, d, weight.data(), mean, rstd, d_out, d_in, accumulate);
        else
            kernels::layer_norm_backward(x, rows, d, weight.data(), mean, rstd, d_out, d_in, accumulate);
    } else {
        kernels::rms_norm(x, rows, d, none, T(c.norm_eps), scratch, rstd);
        if (constant_scale)
            kernels::rms_norm_backward_const_scale(x, rows, d, weight.data(), rstd, d_out, d_in, accumulate);
        else
            kernels::rms_norm_backward(x, rows, d, weight.data(), rstd, d_out, d_in, accumulate);
    }
}

/// Puts `rows` rows of `n_heads` query or key heads (row stride n_heads d_h) at their positions
/// pos0 + r % seq_len: Qwen3's per-head RMSNorm with gain `head_norm` first when the model has
/// qk_norm, then RoPE. Every row layout calls this, so hook_rot_q/k hold the normed, rotated heads.
template <class T>
void position_heads(const model_config& c, const tensor_view<const T>& head_norm, T* x, std::size_t rows,
                    std::size_t n_heads, std::size_t seq_len, std::size_t pos0, const kernels::rope_table<T>& table) {
    if (c.qk_norm) kernels::rms_norm(x, rows * n_heads, c.d_head, head_norm.data(), T(c.norm_eps), x);
    kernels::rope(x, rows, n_heads, n_heads * c.d_head, seq_len, pos0, table, c.rope, T(1), c.d_head);
}

/// The RoPE frequencies of the model: theta^(-2j/r) over its rope_freq_divisors, for the r = c.rotary()
/// dimensions it rotates.
template <class T>
std::vector<T> rope_frequencies(const model_config& c) {
    return kernels::rope_frequencies(c.rotary(), T(c.rope_theta), c.rope_freq_divisors);
}

/// Makes `table` cover positions [0, positions) of the model's rotary embedding (rotary models only).
/// The table grows with the positions a run uses, not with the context length a file declares (a
/// tiny file may claim 2^24 positions), at least doubling so that generation token by token fills
/// it a logarithmic number of times. Every angle is formed the same way whatever the table size, so
/// results do not depend on how it grew.
template <class T>
void cover_rope(const model_config& c, kernels::rope_table<T>& table, std::size_t positions) {
    if (c.position != position_kind::rotary) return;
    std::vector<T> freq = rope_frequencies<T>(c);
    const bool same = table.frequencies() == freq;
    if (same && table.max_positions() >= positions) return;
    const std::size_t doubled = same ? std::min(2 * table.max_positions(), c.max_seq_len) : 0;
    table = kernels::rope_table<T>(std::max(positions, doubled), std::move(freq));
}

/// Llama 3's RoPE scaling ("llama3" rope_scaling; Meta's llama-models, apply_scaling) as divisors of
/// the frequencies of a head of `d_head` (config.hpp: rope_freq_divisors). A pair whose wavelength
/// 2 pi / f is shorter than original_context / high_freq_factor keeps its frequency; one longer than
/// original_context / low_freq_factor is slowed by `factor`; in between, the new frequency blends the
/// two: (1 - s) f / factor + s f with s = (original_context / wavelength - low) / (high - low).
inline std::vector<double> llama3_rope_divisors(std::size_t d_head, double theta, double factor,
                                                double low_freq_factor, double high_freq_factor,
                                                double original_context) {
    const double pi = 3.14159265358979323846;
    std::vector<double> divisors(d_head / 2);
    for (std::size_t j = 0; j < divisors.size(); ++j) {
        const double freq = 1.0 / std::pow(theta, double(2 * j) / double(d_head));
        const double wavelength = 2 * pi / freq;
        if (wavelength < original_context / high_freq_factor) {
            divisors[j] = 1.0;
        } else if (wavelength > original_context / low_freq_factor) {
            divisors[j] = factor;
        } else {
            const double s = (original_context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
            divisors[j] = 1.0 / ((1 - s) / factor + s);
        }
    }
    return divisors;
}

} // namespace actlens
