// actlens/serve/decode_batch.hpp: one decode position of many independent sequences as one pass.
//
// Continuous batching (README "Serving"): every running request contributes one row, its next
// token, and the rows go through each block together, so that a projection reads its weights once
// for all of them instead of once per request. Each row keeps its own KV cache (B = 1, as in its run
// alone), is rotated at its own position, attends only to its own cache, and has its own hooks,
// called on its row as a [1, 1, ...] view with the hook_context of a run alone. The result of a row
// is bit-identical to the same position run alone by basic_transformer::forward, because every
// kernel on the way computes a row the same way whatever the rows beside it:
//   - the fast float GEMM sums each row in the same order for one row or many (one-row products
//     take a path of the same order, kernels/detail/sgemm_body.inc, on every instruction set); for
//     double the products of Eigen may not, so the rows then run one at a time;
//   - norms, RoPE and attention work row by row;
//   - the MLP activation runs over all rows at once in block_body, and its SIMD body and scalar tail
//     round differently, so when d_mlp is not a multiple of the SIMD width a row's elements would
//     fall on other lanes than alone: the activation is then redone row by row before
//     mlp.hook_post (see row_sites).
// Uses only the model's public API (config, weights, packed, final_norm, unembed) and block_body.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/detail/simd.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/kernels/softmax.hpp>
#include <actlens/model/block.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/kv_cache.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

namespace actlens::serve {

/// One sequence's next position in a decode step.
template <class T>
struct decode_row {
    std::int32_t token = 0;
    /// The sequence's keys and values so far (batch 1); the step appends this position.
    kv_cache<T>* cache = nullptr;
    /// Called on this row only (may be null).
    const hook_set<T>* hooks = nullptr;
    /// Set by the step when one of this row's hooks threw: the row's logits are then meaningless and
    /// its later hooks in the step are skipped; the other rows are unaffected.
    std::exception_ptr error;
};

/// The buffers of decode steps, reused across steps (they grow to the largest batch seen). One per
/// thread running steps.
template <class T>
class decode_batch {
public:
    /// Runs the next position of every row through `model` and returns their logits [rows, V], valid
    /// until the next step. Appends the position to each row's cache. Throws actlens::error, before
    /// computing anything, for no rows, a missing or mismatched cache, a full cache or context, or a
    /// token outside the vocabulary.
    tensor_view<const T> step(const basic_transformer<T>& model, std::vector<decode_row<T>>& rows) {
        const model_config& c = model.config();
        if (rows.empty()) fail(errc::empty_prompt, "decode_batch: no rows to run");
        for (std::size_t r = 0; r < rows.size(); ++r) check_row(c, rows[r], r);
        m_logits.reshape_uninitialized({rows.size(), c.vocab_size});
        // Without the fast GEMM a product's rounding may depend on its row count (see the top).
        const bool together = model.packed().unembedding.is_packed();
        const std::size_t group = together ? rows.size() : 1;
        for (std::size_t first = 0; first < rows.size(); first += group)
            run(model, rows.data() + first, std::min(group, rows.size() - first),
                m_logits.data() + first * c.vocab_size);
        return static_cast<const tensor<T>&>(m_logits).view();
    }

private:
    static void check_row(const model_config& c, const decode_row<T>& row, std::size_t r) {
        if (!row.cache || row.cache->batch() != 1 || row.cache->n_layers() != c.n_layers ||
            row.cache->kv_width() != c.n_kv_heads * c.d_head)
            fail(errc::shape_mismatch, "decode_batch: row {} has no KV cache of batch 1 for this model", r);
        const std::size_t past = row.cache->length();
        if (past + 1 > c.max_seq_len || past + 1 > row.cache->capacity())
            fail(errc::context_overflow, "decode_batch: row {} holds {} positions; its cache {} and the context {}", r,
                 past, row.cache->capacity(), c.max_seq_len);
        if (row.token < 0 || static_cast<std::size_t>(row.token) >= c.vocab_size)
            fail(errc::token_out_of_range, "decode_batch: token id {} of row {} is outside the vocabulary [0, {})",
                 row.token, r, c.vocab_size);
    }

    // The rows' hooks, called row by row as block_body's `sites` (model/block.hpp).
    struct row_sites {
        decode_batch& batch;
        const model_config& c;
        decode_row<T>* rows;
        std::size_t count;

        std::size_t width(site s) const {
            switch (s) {
            case site::attn_q:
            case site::attn_rot_q:
            case site::attn_z: return c.n_heads * c.d_head;
            case site::attn_k:
            case site::attn_v:
            case site::attn_rot_k: return c.n_kv_heads * c.d_head;
            case site::mlp_pre:
            case site::mlp_pre_linear:
            case site::mlp_post: return c.d_mlp;
            default: return c.d_model;
            }
        }
        // The shape of one row at a site: [1, 1, ...] as forward() shows a run of one position.
        shape_t shape(site s, std::size_t past) const {
            switch (s) {
            case site::attn_q:
            case site::attn_rot_q:
            case site::attn_z: return {1, 1, c.n_heads, c.d_head};
            case site::attn_k:
            case site::attn_v:
            case site::attn_rot_k: return {1, 1, c.n_kv_heads, c.d_head};
            case site::attn_scores:
            case site::attn_pattern: return {1, c.n_heads, 1, past + 1};
            default: return {1, 1, width(s)};
            }
        }
        bool row_wants(std::size_t r, const hook_point& p) const {
            return rows[r].hooks && !rows[r].error && rows[r].hooks->has(p);
        }
        // A throwing hook fails its own row only.
        void call(std::size_t r, const hook_point& p, T* data) const {
            const std::size_t past = rows[r].cache->length();
            try {
                rows[r].hooks->run(p, tensor_view<T>(data, shape(p.site, past)), hook_context{p, 1, 1, past});
            } catch (...) {
                rows[r].error = std::current_exception();
            }
        }
        void operator()(site s, int layer, T* data) {
            const hook_point p{s, layer};
            const std::size_t w = width(s);
            if (s == site::mlp_post) batch.activate_by_row(c, count, data);
            for (std::size_t r = 0; r < count; ++r)
                if (row_wants(r, p)) call(r, p, data + r * w);
            if (s == site::mlp_pre) batch.keep_pre_activation(c, count, data, batch.m_gate);
            if (s == site::mlp_pre_linear) batch.keep_pre_activation(c, count, data, batch.m_up);
        }
    };

    // The row layout of block_body: one row per sequence, each at its own position with its own cache.
    class rows_layout {
    public:
        rows_layout(decode_batch& batch, const model_config& c, decode_row<T>* rows, std::size_t count)
            : m_batch(batch), m_c(c), m_rows(rows), m_count(count) {}

        std::size_t rows() const { return m_count; }
        std::size_t narrow(block_buffers<T>&) const { return m_count; }
        block_buffers<T> buffers() const {
            return block_buffers<T>::over(m_batch.m_resid, m_batch.m_normed, m_batch.m_q, m_batch.m_k, m_batch.m_v,
                                          m_batch.m_out, m_batch.m_mlp, m_batch.m_mlp_lin);
        }

        // One weight read for all rows: the throughput of batching.
        void project_qkv(const layer_weights<T>& w, const packed_layer<T>& pw, block_buffers<T>& b) const {
            const kernels::linear_job<T> qkv[] = {{b.a, m_count, &pw.w_q, w.b_q.data(), b.q},
                                                  {b.a, m_count, &pw.w_k, w.b_k.data(), b.k},
                                                  {b.a, m_count, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(qkv, 3);
        }

        void rotate(const layer_weights<T>& w, block_buffers<T>& b) const {
            const std::size_t qw = m_c.n_heads * m_c.d_head, kvw = m_c.n_kv_heads * m_c.d_head;
            for (std::size_t r = 0; r < m_count; ++r) {
                const std::size_t past = m_rows[r].cache->length();
                position_heads(m_c, w.q_norm, b.q + r * qw, 1, m_c.n_heads, 1, past, m_batch.m_rope);
                position_heads(m_c, w.k_norm, b.k + r * kvw, 1, m_c.n_kv_heads, 1, past, m_batch.m_rope);
            }
        }

        // Each row attends to its own cache, after appending its key and value there. Rows whose
        // hooks look at the scores or the pattern take forward()'s unfused sequence of kernels (the
        // same results as the fused one, with the hooks between).
        void attend(int layer, block_buffers<T>& b, row_sites& sites) const {
            const model_config& c = m_c;
            const std::size_t dh = c.d_head, H = c.n_heads, qw = H * dh, kvw = c.n_kv_heads * dh;
            const std::size_t group = c.group_size();
            const auto l = static_cast<std::size_t>(layer);
            const attention_form<T> form = attention_form<T>::of(c, layer);
            const hook_point scores_point{site::attn_scores, layer}, pattern_point{site::attn_pattern, layer};
            std::size_t scratch = 0;
            m_batch.m_offsets.resize(m_count);
            for (std::size_t r = 0; r < m_count; ++r) {
                kv_cache<T>& cache = *m_rows[r].cache;
                const std::size_t past = cache.length();
                std::copy(b.k + r * kvw, b.k + (r + 1) * kvw, cache.keys(l).data() + past * kvw);
                std::copy(b.v + r * kvw, b.v + (r + 1) * kvw, cache.values(l).data() + past * kvw);
                m_batch.m_offsets[r] = scratch;
                scratch += H * (past + 1);
            }
            m_batch.m_scores.reshape_uninitialized({scratch});
            T* scores = m_batch.m_scores.data();
            auto hooked = [&](std::size_t r) {
                return sites.row_wants(r, scores_point) || sites.row_wants(r, pattern_point);
            };
            // Head h of row r: its queries, its keys and values in the row's cache, its scores (row
            // stride keys, as forward() lays them out for one position).
            auto item = [&](std::size_t r, std::size_t h, const T*& q, const T*& k, const T*& v, T*& s, T*& z,
                            std::size_t& keys) {
                const kv_cache<T>& cache = *m_rows[r].cache;
                keys = cache.length() + 1;
                q = b.q + r * qw + h * dh;
                z = b.z + r * qw + h * dh;
                k = cache.keys(l).data() + (h / group) * dh;
                v = cache.values(l).data() + (h / group) * dh;
                s = scores + m_batch.m_offsets[r] + h * keys;
            };
            const long items = static_cast<long>(m_count * H);
            kernels::detail::for_items(items, scratch * dh > 65536, [&](long i) {
                const std::size_t r = static_cast<std::size_t>(i) / H, h = static_cast<std::size_t>(i) % H;
                if (hooked(r)) return;
                const T *q, *k, *v;
                T *s, *z;
                std::size_t keys;
                item(r, h, q, k, v, s, z, keys);
                attend_query_block(q, qw, 1, own_keys(k, v, keys, kvw), dh, form, s, keys, z, qw);
            });
            for (std::size_t r = 0; r < m_count; ++r) {
                if (!hooked(r)) continue;
                const bool hook_scores = sites.row_wants(r, scores_point);
                const T *q, *k, *v;
                T *s, *z;
                std::size_t keys;
                for (std::size_t h = 0; h < H; ++h) {
                    item(r, h, q, k, v, s, z, keys);
                    score_query_block(q, qw, 1, own_keys(k, v, keys, kvw), dh, form, s, keys);
                    if (hook_scores)
                        kernels::mask_causal(s, 1, keys, keys, keys - 1);
                    else
                        kernels::softmax_causal(s, 1, keys, keys, keys - 1);
                }
                T* row_scores = scores + m_batch.m_offsets[r];
                if (hook_scores) {
                    sites.call(r, scores_point, row_scores);
                    for (std::size_t h = 0; h < H; ++h)
                        kernels::softmax_causal(row_scores + h * keys, 1, keys, keys, keys - 1);
                }
                if (sites.row_wants(r, pattern_point)) sites.call(r, pattern_point, row_scores);
                for (std::size_t h = 0; h < H; ++h) {
                    item(r, h, q, k, v, s, z, keys);
                    kernels::attention_mix(s, keys, v, kvw, 1, keys, dh, z, qw);
                }
            }
        }

    private:
        // A row's keys: the `keys` positions of its cache, the last being its own.
        static attended_keys<T> own_keys(const T* k, const T* v, std::size_t keys, std::size_t ld) {
            attended_keys<T> own;
            own.k_own = k;
            own.v_own = v;
            own.own = keys;
            own.ld = ld;
            own.diagonal = keys - 1;
            return own;
        }

        decode_batch& m_batch;
        const model_config& m_c;
        decode_row<T>* m_rows;
        std::size_t m_count;
    };

    void prepare(const model_config& c, std::size_t n) {
        m_resid.reshape_uninitialized({n, c.d_model});
        m_normed.reshape_uninitialized({n, c.d_model});
        m_pos.reshape_uninitialized({n, c.d_model});
        m_q.reshape_uninitialized({n, c.n_heads * c.d_head});
        m_k.reshape_uninitialized({n, c.n_kv_heads * c.d_head});
        m_v.reshape_uninitialized({n, c.n_kv_heads * c.d_head});
        m_out.reshape_uninitialized({n, c.d_model});
        m_mlp.reshape_uninitialized({n, c.d_mlp});
        m_mlp_lin.reshape_uninitialized({n, c.d_mlp});
        m_gate.reshape_uninitialized({n, c.d_mlp});
        m_up.reshape_uninitialized({n, c.d_mlp});
    }

    // SIMD lanes of the activation kernels (1 without SIMD).
    static constexpr std::size_t simd_width() noexcept {
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
        return xsimd::batch<T>::size;
#else
        return 1;
#endif
    }
    static bool activate_by_row_needed(const model_config& c, std::size_t count) noexcept {
        return count > 1 && c.d_mlp % simd_width() != 0;
    }
    // At mlp.hook_pre (and hook_pre_linear), after the rows' hooks: keeps what the activation reads.
    void keep_pre_activation(const model_config& c, std::size_t count, const T* data, tensor<T>& kept) {
        if (activate_by_row_needed(c, count)) std::copy(data, data + count * c.d_mlp, kept.data());
    }
    // At mlp.hook_post, before the rows' hooks: redoes the activation row by row, exactly as a run
    // of one row does it (block_body's for_chunks over d_mlp elements).
    void activate_by_row(const model_config& c, std::size_t count, T* act) {
        if (!activate_by_row_needed(c, count)) return;
        const std::size_t dm = c.d_mlp;
        for (std::size_t r = 0; r < count; ++r) {
            const T* gate = m_gate.data() + r * dm;
            const T* up = m_up.data() + r * dm;
            T* out = act + r * dm;
            if (c.gated_mlp())
                kernels::detail::for_chunks(
                    dm, [&](std::size_t i, std::size_t m) { activate_gated(c, gate + i, up + i, out + i, m); });
            else
                kernels::detail::for_chunks(dm, [&](std::size_t i, std::size_t m) { activate(c, gate + i, out + i, m); });
        }
    }

    // Tokens (and learned positions) into the residual stream, with the rows' embedding hooks.
    void embed(const basic_transformer<T>& model, decode_row<T>* rows, std::size_t count, row_sites& sites) {
        const model_config& c = model.config();
        const std::size_t d = c.d_model;
        T* x = m_resid.data();
        for (std::size_t r = 0; r < count; ++r) {
            const T* row = model.weights().token_embedding.data() + static_cast<std::size_t>(rows[r].token) * d;
            std::copy(row, row + d, x + r * d);
        }
        scale_embeddings(c, x, count);
        sites(site::embed, -1, x);
        if (c.position != position_kind::learned) return;
        T* pe = m_pos.data();
        for (std::size_t r = 0; r < count; ++r) {
            const T* row = model.weights().position_embedding.data() + rows[r].cache->length() * d;
            std::copy(row, row + d, pe + r * d);
        }
        sites(site::pos_embed, -1, pe);
        detail::add_into(x, pe, count * d);
    }

    void run(const basic_transformer<T>& model, decode_row<T>* rows, std::size_t count, T* logits) {
        const model_config& c = model.config();
        prepare(c, count);
        std::size_t positions = 0;
        for (std::size_t r = 0; r < count; ++r) positions = std::max(positions, rows[r].cache->length() + 1);
        cover_rope(c, m_rope, positions);
        row_sites sites{*this, c, rows, count};
        embed(model, rows, count, sites);
        rows_layout layout(*this, c, rows, count);
        for (std::size_t l = 0; l < c.n_layers; ++l)
            block_body(c, model.weights().layers[l], model.packed().layers[l], static_cast<int>(l), layout, sites);
        model.final_norm(m_resid.data(), count, m_normed.data());
        sites(site::ln_final_normalized, -1, m_normed.data());
        for (std::size_t r = 0; r < count; ++r) rows[r].cache->advance(1);
        model.unembed(m_normed.data(), count, logits);
    }

    tensor<T> m_resid, m_normed, m_pos, m_q, m_k, m_v, m_out, m_mlp, m_mlp_lin, m_gate, m_up, m_scores, m_logits;
    std::vector<std::size_t> m_offsets;
    kernels::rope_table<T> m_rope;
};

} // namespace actlens::serve
