// actlens/model/family.hpp: the operations whose form depends on the model family, each decided once.
//
// The forward (dense and ragged), the backward and the methods that apply the final norm outside a
// forward pass all call these, so a family option is written in one place.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/model/config.hpp>

#include <algorithm>
#include <cstddef>

namespace actlens {

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

/// Makes `table` cover positions [0, positions) of the model's rotary embedding (rotary models only).
/// The table grows with the positions a run uses, not with the context length a file declares (a
/// tiny file may claim 2^24 positions), at least doubling so that generation token by token fills
/// it a logarithmic number of times. Every angle is formed the same way whatever the table size, so
/// results do not depend on how it grew.
template <class T>
void cover_rope(const model_config& c, kernels::rope_table<T>& table, std::size_t positions) {
    if (c.position != position_kind::rotary) return;
    const bool same = table.half() * 2 == c.d_head && table.theta() == T(c.rope_theta);
    if (same && table.max_positions() >= positions) return;
    const std::size_t doubled = same ? std::min(2 * table.max_positions(), c.max_seq_len) : 0;
    table = kernels::rope_table<T>(std::max(positions, doubled), c.d_head, T(c.rope_theta));
}

} // namespace actlens
