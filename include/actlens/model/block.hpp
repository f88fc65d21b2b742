// actlens/model/block.hpp: the body of one transformer block, for every row layout.
//
// The forward runs [B, T] rows (with an optional KV cache); activation patching runs ragged stacks
// of partial reruns (model/ragged_forward.hpp). Both compute the same block; only which rows exist,
// where their keys and values come from and which rows go on past attention differ. That is the
// row layout, a class passed to block_body with these members:
//
//   std::size_t rows()                                  rows through ln1 and the key/value projections
//   void project_qkv(w, pw, block_buffers<T>&)          queries, keys and values of those rows
//   void rotate(w, block_buffers<T>&)                   q/k norm and RoPE (position_heads), each row at its position
//   void attend(int layer, block_buffers<T>&, Sites&)   attention: z from q, k, v and earlier keys, scored
//                                                       by attend_query_block with the layer's attention_form
//   std::size_t narrow(block_buffers<T>&)               rows past attention (may repoint x and a)
//
// Sites is the hook callback: `sites(site, layer, T* data)` at each site in forward order, with
// data laid out as the layout's rows (or the narrowed rows from attn.hook_z on). It may overwrite
// the activation in place.
#pragma once

#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/softmax.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/weights.hpp>

#include <cstddef>

namespace actlens {

/// Where a block reads and writes its activations (rows as the layout lays them out).
template <class T>
struct block_buffers {
    T* x = nullptr;       ///< [rows, d]        the residual stream, updated in place
    T* a = nullptr;       ///< [rows, d]        norm output (ln1, then ln2)
    T* q = nullptr;       ///< [rows, H d_h]
    T* k = nullptr;       ///< [rows, H_kv d_h]
    T* v = nullptr;       ///< [rows, H_kv d_h]
    T* z = nullptr;       ///< [rows, H d_h]    attention's output; may be q (see the layout)
    T* out = nullptr;     ///< [rows, d]        attention or MLP output before it joins the residual
    T* mlp = nullptr;     ///< [rows, d_mlp]    pre-activation (the gate for SwiGLU), activated in place
    T* mlp_lin = nullptr; ///< [rows, d_mlp]    SwiGLU's up projection

    /// The buffers of a layout whose storage holds these tensors (of any type with data()). z is
    /// written over q: an attention item writes the block of z whose queries it has read, so every
    /// layout saves that buffer.
    template <class Tensor>
    static block_buffers over(Tensor& x, Tensor& a, Tensor& q, Tensor& k, Tensor& v, Tensor& out, Tensor& mlp,
                              Tensor& mlp_lin) {
        block_buffers b;
        b.x = x.data();
        b.a = a.data();
        b.q = q.data();
        b.k = k.data();
        b.v = v.data();
        b.z = b.q;
        b.out = out.data();
        b.mlp = mlp.data();
        b.mlp_lin = mlp_lin.data();
        return b;
    }
};

/// The keys and values a block of query rows attends to, as two parts sharing the row stride `ld`:
/// `before` rows of an earlier run (none, or the base run's before a ragged run's start), then `own`
/// rows. Query row r of the block sees the first `diagonal + r + 1` of them (the causal mask).
template <class T>
struct attended_keys {
    const T* k_before = nullptr;
    const T* v_before = nullptr;
    std::size_t before = 0;
    const T* k_own = nullptr;
    const T* v_own = nullptr;
    std::size_t own = 0;
    std::size_t ld = 0;
    std::size_t diagonal = 0;
};

/// The scores of a block of `rows` query rows of one head (row stride ldq) against `keys`, formed as
/// the layer's `form` says (scale, soft cap, window masked with -infinity) into `s` [rows, before +
/// own] (row stride lds); entries past the causal diagonal are left as the product wrote them.
template <class T>
void score_query_block(const T* q, std::size_t ldq, std::size_t rows, const attended_keys<T>& keys, std::size_t dh,
                       const attention_form<T>& form, T* s, std::size_t lds) {
    const std::size_t before = keys.before;
    if (before > 0) kernels::attention_scores(q, ldq, keys.k_before, keys.ld, rows, before, dh, form.scale, s, lds);
    kernels::attention_scores(q, ldq, keys.k_own, keys.ld, rows, keys.own, dh, form.scale, s + before, lds);
    form.finish_scores(s, rows, before + keys.own, lds, keys.diagonal);
}

/// One attention item (a block of query rows of one head) of every row layout: score_query_block,
/// the causal softmax and the value mix into z (row stride ldz). `s` is the item's scratch block,
/// [rows, before + own] with row stride lds, left holding the pattern's visible entries.
template <class T>
void attend_query_block(const T* q, std::size_t ldq, std::size_t rows, const attended_keys<T>& keys, std::size_t dh,
                        const attention_form<T>& form, T* s, std::size_t lds, T* z, std::size_t ldz) {
    const std::size_t before = keys.before;
    score_query_block(q, ldq, rows, keys, dh, form, s, lds);
    kernels::softmax_causal(s, rows, before + keys.own, lds, keys.diagonal);
    if (before > 0) kernels::attention_mix(s, lds, keys.v_before, keys.ld, rows, before, dh, z, ldz);
    kernels::attention_mix(s + before, lds, keys.v_own, keys.ld, rows, keys.own, dh, z, ldz, before > 0);
}

namespace detail {
template <class T>
void add_into(T* x, const T* y, std::size_t count) noexcept {
    kernels::detail::simd_transform2(x, y, x, count, [](auto a, auto b) { return a + b; });
}
} // namespace detail

/// Runs block `layer` over the rows of `layout`, calling `sites` at every hook site of the block.
template <class T, class Layout, class Sites>
void block_body(const model_config& c, const layer_weights<T>& w, const packed_layer<T>& pw, int layer,
                Layout& layout, Sites& sites) {
    block_buffers<T> b = layout.buffers();
    const std::size_t rows = layout.rows(), d = c.d_model, dm = c.d_mlp;

    sites(site::resid_pre, layer, b.x);
    normalize(c, w.ln1_weight, w.ln1_bias, b.x, rows, b.a);
    sites(site::ln1_normalized, layer, b.a);
    layout.project_qkv(w, pw, b);
    sites(site::attn_q, layer, b.q);
    sites(site::attn_k, layer, b.k);
    sites(site::attn_v, layer, b.v);
    if (c.position == position_kind::rotary) {
        layout.rotate(w, b);
        sites(site::attn_rot_q, layer, b.q);
        sites(site::attn_rot_k, layer, b.k);
    }
    layout.attend(layer, b, sites);
    sites(site::attn_z, layer, b.z);

    const std::size_t n = layout.narrow(b);
    kernels::linear(b.z, n, pw.w_o, w.b_o.data(), b.out);
    if (c.post_norms) {
        post_normalize(c, b.out, n);
        sites(site::ln1_post_normalized, layer, b.out);
        apply_gain(c, w.ln1_post_weight, b.out, n);
    }
    sites(site::attn_out, layer, b.out);
    // A parallel residual (GPT-NeoX) normalises the block's input for the MLP too, and adds the
    // attention output only once the MLP no longer needs that input: x + attn_out + mlp_out.
    const bool parallel = c.parallel_residual;
    if (!parallel) {
        detail::add_into(b.x, b.out, n * d);
        sites(site::resid_mid, layer, b.x);
    }

    normalize(c, w.ln2_weight, w.ln2_bias, b.x, n, b.a);
    sites(site::ln2_normalized, layer, b.a);
    T* act = b.mlp; // activated in place: element by element, after the pre-activation's hooks ran
    if (c.gated_mlp()) {
        const kernels::linear_job<T> gate_up[] = {{b.a, n, &pw.w_gate, nullptr, act},
                                                  {b.a, n, &pw.w_in, w.b_in.data(), b.mlp_lin}};
        kernels::linear_group(gate_up, 2);
        sites(site::mlp_pre, layer, act);
        sites(site::mlp_pre_linear, layer, b.mlp_lin);
        T* lin = b.mlp_lin;
        kernels::detail::for_chunks(
            n * dm, [&](std::size_t i, std::size_t m) { activate_gated(c, act + i, lin + i, act + i, m); });
    } else {
        kernels::linear(b.a, n, pw.w_in, w.b_in.data(), act);
        sites(site::mlp_pre, layer, act);
        kernels::detail::for_chunks(n * dm, [&](std::size_t i, std::size_t m) { activate(c, act + i, act + i, m); });
    }
    sites(site::mlp_post, layer, act);
    if (parallel) detail::add_into(b.x, b.out, n * d);
    kernels::linear(act, n, pw.w_out, w.b_out.data(), b.out);
    if (c.post_norms) {
        post_normalize(c, b.out, n);
        sites(site::ln2_post_normalized, layer, b.out);
        apply_gain(c, w.ln2_post_weight, b.out, n);
    }
    sites(site::mlp_out, layer, b.out);
    detail::add_into(b.x, b.out, n * d);
    sites(site::resid_post, layer, b.x);
}

} // namespace actlens
