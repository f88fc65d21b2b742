// actlens/model/workspace.hpp: the activation buffers of a forward pass, reused across calls.
//
// On these machines touching a fresh page costs ~15 µs, so a forward pass that allocated its
// activations would spend more time in page faults than in arithmetic. A workspace grows to the
// largest shape it has seen and is then reused without allocation. One workspace per thread:
// it is the mutable half of a const forward pass.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/model/config.hpp>

#include <cstddef>

namespace actlens {

template <class T>
struct workspace {
    // Internal buffers; their contents between calls are unspecified.
    tensor<T> resid;     ///< [B T, d]     the residual stream
    tensor<T> normed;    ///< [B T, d]     norm output (ln1, ln2, ln_final)
    tensor<T> pos;       ///< [B T, d]     position embeddings when a hook looks at them
    tensor<T> q, k, v;   ///< [B T, H d_h], [B T, H_kv d_h]; q then holds attention's output (hook_z)
    tensor<T> scores;    ///< [B, H, T, T_k] scores, then the pattern
    tensor<T> block_out; ///< [B T, d]     attention or MLP output before it joins the residual
    tensor<T> mlp_pre;   ///< [B T, d_mlp] pre-activation (gate for SwiGLU), activated in place
    tensor<T> mlp_lin;   ///< [B T, d_mlp] SwiGLU up projection
    tensor<T> logits;    ///< [B, T or 1, V]
    kernels::rope_table<T> rope; ///< the rotary angles of the positions run so far (rotary models)

    /// Shapes every buffer for `batch` rows of `positions` new positions attending to `keys` positions.
    void prepare(const model_config& c, std::size_t batch, std::size_t positions, std::size_t keys) {
        const std::size_t n = batch * positions;
        resid.reshape_uninitialized({n, c.d_model});
        normed.reshape_uninitialized({n, c.d_model});
        q.reshape_uninitialized({n, c.n_heads * c.d_head});
        k.reshape_uninitialized({n, c.n_kv_heads * c.d_head});
        v.reshape_uninitialized({n, c.n_kv_heads * c.d_head});
        scores.reshape_uninitialized({batch, c.n_heads, positions, keys});
        block_out.reshape_uninitialized({n, c.d_model});
        mlp_pre.reshape_uninitialized({n, c.d_mlp});
        if (c.gated_mlp()) mlp_lin.reshape_uninitialized({n, c.d_mlp});
    }
};

} // namespace actlens
