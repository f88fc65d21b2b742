// actlens/serve/decode_batch.hpp: the next positions of many independent sequences as one pass.
//
// Continuous batching (README "Serving"): every running request contributes one row, its next
// token, and a request joining the batch contributes its whole prompt; the rows of all of them go
// through each block together, so that a projection reads its weights once for all of them instead
// of once per request (a prompt alone would stream every weight once more). Each sequence keeps its
// own KV cache (B = 1, as in its run alone), is rotated at its own positions, attends only to its
// own cache, and has its own hooks, called on its rows as a [1, T, ...] view with the hook_context of
// a run alone. The result of a sequence is bit-identical to the same positions run alone by
// basic_transformer::forward, because every kernel on the way computes a row the same way whatever
// the rows beside it:
//   - the fast float GEMM sums each row in the same order for one row or many (one-row products
//     take a path of the same order, kernels/detail/sgemm_body.inc, on every instruction set), and
//     so do the kernels of weights read in place from a file (kernels/gemm_rows.hpp); for double
//     the products of Eigen may not, so the sequences then run one at a time;
//   - norms and RoPE work row by row, and attention by blocks of 64 queries of one sequence and
//     head, as forward() cuts them;
//   - the MLP activation runs over all rows at once in block_body, and its SIMD body and scalar tail
//     round differently, so when d_mlp is not a multiple of the SIMD width a sequence's elements
//     would fall on other lanes than alone: the activation is then redone sequence by sequence
//     before mlp.hook_post (see sequence_sites).
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
#include <string>
#include <string_view>
#include <vector>

namespace actlens::serve {

/// One sequence in a decode step: its next token, or the tokens of a prompt joining the batch.
template <class T>
struct decode_row {
    /// The position this step runs, unless `tokens` is set.
    std::int32_t token = 0;
    /// The sequence's keys and values so far (batch 1); the step appends this step's positions.
    kv_cache<T>* cache = nullptr;
    /// Called on this sequence only (may be null).
    const hook_set<T>* hooks = nullptr;
    /// Set by the step when one of this sequence's hooks threw: its logits are then meaningless and
    /// its later hooks in the step are skipped; the other sequences are unaffected.
    std::exception_ptr error;
    /// When set: the positions this step runs (a prompt, non-empty), instead of `token`; must
    /// outlive the step.
    const std::vector<std::int32_t>* tokens = nullptr;

    std::size_t positions() const noexcept { return tokens ? tokens->size() : 1; }
    std::int32_t token_at(std::size_t i) const noexcept { return tokens ? (*tokens)[i] : token; }
};

/// The buffers of decode steps, reused across steps (they grow to the largest step seen). One per
/// thread running steps.
template <class T>
class decode_batch {
public:
    /// Runs the next positions of every row (one, or its `tokens`) through `model` and returns the
    /// logits of each row's last position [rows, V], valid until the next step. Appends the positions
    /// to each row's cache. Throws actlens::error, before computing anything, for no rows, a missing
    /// or mismatched cache, an empty prompt, a full cache or context, a token outside the vocabulary,
    /// or a hook at a point the model does not call.
    tensor_view<const T> step(const basic_transformer<T>& model, std::vector<decode_row<T>>& rows) {
        const model_config& c = model.config();
        if (rows.empty()) fail(errc::empty_prompt, "decode_batch: no rows to run");
        for (std::size_t r = 0; r < rows.size(); ++r) check(c, rows[r], row_name{"decode_batch: row", r});
        m_logits.reshape_uninitialized({rows.size(), c.vocab_size});
        // Without the fast GEMM a product's rounding may depend on its row count (see the top); the
        // panels and the kernels of weights read in place (kernels/gemm_rows.hpp) sum a row alike
        // whatever the rows beside it.
        const kernels::packed_weight<T>& unembedding = model.packed().unembedding;
        const bool together = unembedding.is_packed() || unembedding.is_mapped();
        const std::size_t group = together ? rows.size() : 1;
        for (std::size_t first = 0; first < rows.size(); first += group)
            run(model, rows.data() + first, std::min(group, rows.size() - first),
                m_logits.data() + first * c.vocab_size);
        return static_cast<const tensor<T>&>(m_logits).view();
    }

    /// How the messages of check() name a row: "decode_batch: row 3", or "completion" for a request
    /// (index none). The text is made only when a check fails, so a step's checks allocate nothing.
    struct row_name {
        std::string_view what;
        std::size_t index = std::size_t(-1);
        std::string text() const { return index == std::size_t(-1) ? std::string(what) : fmt::format("{} {}", what, index); }
    };

    /// The checks step() makes of one row, for a caller that refuses a row before it joins a batch
    /// (serve::engine does, so that a bad request fails alone).
    static void check(const model_config& c, const decode_row<T>& row, const row_name& who) {
        if (!row.cache || row.cache->batch() != 1 || row.cache->n_layers() != c.n_layers ||
            row.cache->kv_width() != c.n_kv_heads * c.d_head)
            fail(errc::shape_mismatch, "{} has no KV cache of batch 1 for this model", who.text());
        if (row.hooks) row.hooks->check(hook_layout::of(c)); // a hook the model never calls is an error
        if (row.tokens && row.tokens->empty()) fail(errc::empty_prompt, "{}: the prompt is empty", who.text());
        const std::size_t past = row.cache->length(), n = row.positions();
        if (past + n > c.max_seq_len || past + n > row.cache->capacity())
            fail(errc::context_overflow, "{} holds {} positions and adds {}; its cache {} and the context {}",
                 who.text(), past, n, row.cache->capacity(), c.max_seq_len);
        for (std::size_t i = 0; i < n; ++i) {
            const std::int32_t token = row.token_at(i);
            if (token < 0 || static_cast<std::size_t>(token) >= c.vocab_size)
                fail(errc::token_out_of_range, "{}: token id {} at position {} is outside the vocabulary [0, {})",
                     who.text(), token, past + i, c.vocab_size);
        }
    }

private:
    // The stacked rows of a step: sequence r owns rows [first(r), first(r) + positions(r)), which
    // are its positions [past(r), past(r) + positions(r)).
    struct sequences {
        decode_row<T>* rows = nullptr;
        std::size_t count = 0;
        const std::vector<std::size_t>* firsts = nullptr;

        std::size_t first(std::size_t r) const { return (*firsts)[r]; }
        std::size_t positions(std::size_t r) const { return rows[r].positions(); }
        std::size_t past(std::size_t r) const { return rows[r].cache->length(); }
        std::size_t total() const { return (*firsts)[count]; }
        bool one_position_each() const { return total() == count; }
    };

    // The sequences' hooks, called sequence by sequence as block_body's `sites` (model/block.hpp).
    struct sequence_sites {
        decode_batch& batch;
        const model_config& c;
        sequences seqs;

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
        // The shape of sequence r at a site: [1, T, ...] as forward() shows a run of its T positions.
        shape_t shape(site s, std::size_t r) const {
            const std::size_t n = seqs.positions(r);
            switch (s) {
            case site::attn_q:
            case site::attn_rot_q:
            case site::attn_z: return {1, n, c.n_heads, c.d_head};
            case site::attn_k:
            case site::attn_v:
            case site::attn_rot_k: return {1, n, c.n_kv_heads, c.d_head};
            case site::attn_scores:
            case site::attn_pattern: return {1, c.n_heads, n, seqs.past(r) + n};
            default: return {1, n, width(s)};
            }
        }
        bool row_wants(std::size_t r, const hook_point& p) const {
            const decode_row<T>& row = seqs.rows[r];
            return row.hooks && !row.error && row.hooks->has(p);
        }
        // A throwing hook fails its own sequence only.
        void call(std::size_t r, const hook_point& p, T* data) const {
            decode_row<T>& row = seqs.rows[r];
            try {
                row.hooks->run(p, tensor_view<T>(data, shape(p.site, r)),
                               hook_context{p, 1, seqs.positions(r), seqs.past(r)});
            } catch (...) {
                row.error = std::current_exception();
            }
        }
        void operator()(site s, int layer, T* data) {
            const hook_point p{s, layer};
            const std::size_t w = width(s);
            if (s == site::mlp_post) batch.activate_by_sequence(c, seqs, data);
            for (std::size_t r = 0; r < seqs.count; ++r)
                if (row_wants(r, p)) call(r, p, data + seqs.first(r) * w);
            if (s == site::mlp_pre) batch.keep_pre_activation(c, seqs, data, batch.m_gate);
            if (s == site::mlp_pre_linear) batch.keep_pre_activation(c, seqs, data, batch.m_up);
        }
    };

    // The row layout of block_body: the stacked rows of every sequence, each sequence at its own
    // positions with its own cache.
    class rows_layout {
    public:
        rows_layout(decode_batch& batch, const model_config& c, sequences seqs) : m_batch(batch), m_c(c), m_seqs(seqs) {}

        std::size_t rows() const { return m_seqs.total(); }
        std::size_t narrow(block_buffers<T>&) const { return rows(); }
        block_buffers<T> buffers() const {
            return block_buffers<T>::over(m_batch.m_resid, m_batch.m_normed, m_batch.m_q, m_batch.m_k, m_batch.m_v,
                                          m_batch.m_out, m_batch.m_mlp, m_batch.m_mlp_lin);
        }

        // One weight read for all rows: the throughput of batching.
        void project_qkv(const layer_weights<T>& w, const packed_layer<T>& pw, block_buffers<T>& b) const {
            const std::size_t n = rows();
            const kernels::linear_job<T> qkv[] = {{b.a, n, &pw.w_q, w.b_q.data(), b.q},
                                                  {b.a, n, &pw.w_k, w.b_k.data(), b.k},
                                                  {b.a, n, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(qkv, 3);
        }

        void rotate(const layer_weights<T>& w, block_buffers<T>& b) const {
            const std::size_t qw = m_c.n_heads * m_c.d_head, kvw = m_c.n_kv_heads * m_c.d_head;
            for (std::size_t r = 0; r < m_seqs.count; ++r) {
                const std::size_t first = m_seqs.first(r), n = m_seqs.positions(r), past = m_seqs.past(r);
                position_heads(m_c, w.q_norm, b.q + first * qw, n, m_c.n_heads, n, past, m_batch.m_rope);
                position_heads(m_c, w.k_norm, b.k + first * kvw, n, m_c.n_kv_heads, n, past, m_batch.m_rope);
            }
        }

        // Each sequence attends to its own cache, after appending its keys and values there, by
        // blocks of query rows as forward() cuts them. Sequences whose hooks look at the scores or
        // the pattern take forward()'s unfused sequence of kernels (the same results as the fused
        // one, with the hooks between).
        void attend(int layer, block_buffers<T>& b, sequence_sites& sites) const {
            const model_config& c = m_c;
            const std::size_t dh = c.d_head, H = c.n_heads, qw = H * dh, kvw = c.n_kv_heads * dh;
            const std::size_t group = c.group_size();
            const auto l = static_cast<std::size_t>(layer);
            const attention_form<T> form = attention_form<T>::of(c, layer);
            const hook_point scores_point{site::attn_scores, layer}, pattern_point{site::attn_pattern, layer};
            // Scratch for the scores [H, T, keys] of each sequence, and the work items: blocks of
            // query_block queries of one (sequence, head).
            std::size_t scratch = 0, items = 0;
            m_batch.m_offsets.resize(m_seqs.count);
            m_batch.m_items.resize(m_seqs.count + 1);
            for (std::size_t r = 0; r < m_seqs.count; ++r) {
                kv_cache<T>& cache = *m_seqs.rows[r].cache;
                const std::size_t first = m_seqs.first(r), n = m_seqs.positions(r), past = m_seqs.past(r);
                std::copy(b.k + first * kvw, b.k + (first + n) * kvw, cache.keys(l).data() + past * kvw);
                std::copy(b.v + first * kvw, b.v + (first + n) * kvw, cache.values(l).data() + past * kvw);
                m_batch.m_offsets[r] = scratch;
                scratch += H * n * (past + n);
                m_batch.m_items[r] = items;
                items += H * blocks(n);
            }
            m_batch.m_items[m_seqs.count] = items;
            m_batch.m_scores.reshape_uninitialized({scratch});
            T* scores = m_batch.m_scores.data();
            auto hooked = [&](std::size_t r) {
                return sites.row_wants(r, scores_point) || sites.row_wants(r, pattern_point);
            };
            // Queries from i0 of head h of sequence r, its keys and values in the sequence's
            // cache, its scores (row stride keys, as forward() lays them out for one sequence).
            struct query_rows {
                const T *q, *k, *v;
                T *s, *z;
                std::size_t i0, n, keys, visible, past;
            };
            auto block_at = [&](std::size_t r, std::size_t h, std::size_t i0) {
                const kv_cache<T>& cache = *m_seqs.rows[r].cache;
                const std::size_t first = m_seqs.first(r), n = m_seqs.positions(r), past = m_seqs.past(r);
                query_rows qr;
                qr.past = past;
                qr.keys = past + n;
                qr.i0 = i0;
                qr.n = std::min(query_block, n - i0);
                qr.visible = std::min(qr.keys, past + i0 + qr.n);
                qr.q = b.q + (first + i0) * qw + h * dh;
                qr.z = b.z + (first + i0) * qw + h * dh;
                qr.k = cache.keys(l).data() + (h / group) * dh;
                qr.v = cache.values(l).data() + (h / group) * dh;
                qr.s = scores + m_batch.m_offsets[r] + (h * n + i0) * qr.keys;
                return qr;
            };
            auto keys_of = [&](const query_rows& q) {
                attended_keys<T> own;
                own.k_own = q.k;
                own.v_own = q.v;
                own.own = q.visible;
                own.ld = kvw;
                own.diagonal = q.past + q.i0;
                return own;
            };
            kernels::detail::for_items(static_cast<long>(items), scratch * dh > 65536, [&](long item) {
                const std::size_t i = static_cast<std::size_t>(item);
                const std::size_t r = std::size_t(std::upper_bound(m_batch.m_items.begin(), m_batch.m_items.end(), i) -
                                                  m_batch.m_items.begin()) - 1;
                if (hooked(r)) return;
                const std::size_t per_head = blocks(m_seqs.positions(r)), local = i - m_batch.m_items[r];
                const query_rows qr = block_at(r, local / per_head, (local % per_head) * query_block);
                attend_query_block(qr.q, qw, qr.n, keys_of(qr), dh, form, qr.s, qr.keys, qr.z, qw);
            });
            for (std::size_t r = 0; r < m_seqs.count; ++r) {
                if (!hooked(r)) continue;
                const bool hook_scores = sites.row_wants(r, scores_point);
                const std::size_t n = m_seqs.positions(r), past = m_seqs.past(r), keys = past + n;
                for (std::size_t h = 0; h < H; ++h)
                    for (std::size_t i0 = 0; i0 < n; i0 += query_block) {
                        const query_rows qr = block_at(r, h, i0);
                        score_query_block(qr.q, qw, qr.n, keys_of(qr), dh, form, qr.s, keys);
                        if (hook_scores)
                            kernels::mask_causal(qr.s, qr.n, keys, keys, past + i0);
                        else
                            kernels::softmax_causal(qr.s, qr.n, keys, keys, past + i0);
                    }
                T* sequence_scores = scores + m_batch.m_offsets[r];
                if (hook_scores) {
                    sites.call(r, scores_point, sequence_scores);
                    for (std::size_t h = 0; h < H; ++h)
                        kernels::softmax_causal(sequence_scores + h * n * keys, n, keys, keys, past);
                }
                if (sites.row_wants(r, pattern_point)) sites.call(r, pattern_point, sequence_scores);
                for (std::size_t h = 0; h < H; ++h)
                    for (std::size_t i0 = 0; i0 < n; i0 += query_block) {
                        const query_rows qr = block_at(r, h, i0);
                        kernels::attention_mix(qr.s, keys, qr.v, kvw, qr.n, qr.visible, dh, qr.z, qw);
                    }
            }
        }

    private:
        // forward()'s cut of a sequence's queries (model/transformer.hpp): blocks of 64.
        static constexpr std::size_t query_block = 64;
        static std::size_t blocks(std::size_t positions) { return (positions + query_block - 1) / query_block; }

        decode_batch& m_batch;
        const model_config& m_c;
        sequences m_seqs;
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
    static bool activate_by_sequence_needed(const model_config& c, const sequences& seqs) noexcept {
        return seqs.count > 1 && c.d_mlp % simd_width() != 0;
    }
    // At mlp.hook_pre (and hook_pre_linear), after the hooks: keeps what the activation reads.
    void keep_pre_activation(const model_config& c, const sequences& seqs, const T* data, tensor<T>& kept) {
        if (activate_by_sequence_needed(c, seqs)) std::copy(data, data + seqs.total() * c.d_mlp, kept.data());
    }
    // At mlp.hook_post, before the hooks: redoes the activation sequence by sequence, exactly as a
    // run of that sequence alone does it (block_body's for_chunks over its rows' d_mlp elements).
    void activate_by_sequence(const model_config& c, const sequences& seqs, T* act) {
        if (!activate_by_sequence_needed(c, seqs)) return;
        const std::size_t dm = c.d_mlp;
        for (std::size_t r = 0; r < seqs.count; ++r) {
            const std::size_t offset = seqs.first(r) * dm, count = seqs.positions(r) * dm;
            const T* gate = m_gate.data() + offset;
            const T* up = m_up.data() + offset;
            T* out = act + offset;
            if (c.gated_mlp())
                kernels::detail::for_chunks(
                    count, [&](std::size_t i, std::size_t m) { activate_gated(c, gate + i, up + i, out + i, m); });
            else
                kernels::detail::for_chunks(count, [&](std::size_t i, std::size_t m) { activate(c, gate + i, out + i, m); });
        }
    }

    // Tokens (and learned positions) into the residual stream, with the sequences' embedding hooks.
    void embed(const basic_transformer<T>& model, const sequences& seqs, sequence_sites& sites) {
        const model_config& c = model.config();
        const std::size_t d = c.d_model, n = seqs.total();
        T* x = m_resid.data();
        for (std::size_t r = 0; r < seqs.count; ++r)
            for (std::size_t i = 0; i < seqs.positions(r); ++i) {
                const auto token = static_cast<std::size_t>(seqs.rows[r].token_at(i));
                const T* row = model.weights().token_embedding.data() + token * d;
                std::copy(row, row + d, x + (seqs.first(r) + i) * d);
            }
        scale_embeddings(c, x, n);
        sites(site::embed, -1, x);
        if (c.position != position_kind::learned) return;
        T* pe = m_pos.data();
        for (std::size_t r = 0; r < seqs.count; ++r)
            for (std::size_t i = 0; i < seqs.positions(r); ++i) {
                const T* row = model.weights().position_embedding.data() + (seqs.past(r) + i) * d;
                std::copy(row, row + d, pe + (seqs.first(r) + i) * d);
            }
        sites(site::pos_embed, -1, pe);
        detail::add_into(x, pe, n * d);
    }

    void run(const basic_transformer<T>& model, decode_row<T>* rows, std::size_t count, T* logits) {
        const model_config& c = model.config();
        const std::size_t d = c.d_model;
        m_firsts.assign(1, 0);
        std::size_t positions = 0;
        for (std::size_t r = 0; r < count; ++r) {
            m_firsts.push_back(m_firsts.back() + rows[r].positions());
            positions = std::max(positions, rows[r].cache->length() + rows[r].positions());
        }
        const sequences seqs{rows, count, &m_firsts};
        prepare(c, seqs.total());
        cover_rope(c, m_rope, positions);
        sequence_sites sites{*this, c, seqs};
        embed(model, seqs, sites);
        rows_layout layout(*this, c, seqs);
        for (std::size_t l = 0; l < c.n_layers; ++l)
            block_body(c, model.weights().layers[l], model.packed().layers[l], static_cast<int>(l), layout, sites);
        model.final_norm(m_resid.data(), seqs.total(), m_normed.data());
        sites(site::ln_final_normalized, -1, m_normed.data());
        for (std::size_t r = 0; r < count; ++r) rows[r].cache->advance(rows[r].positions());
        if (seqs.one_position_each()) return model.unembed(m_normed.data(), count, logits);
        // Each sequence's last position only, as forward() with last_position_only.
        m_last.reshape_uninitialized({count, d});
        for (std::size_t r = 0; r < count; ++r) {
            const T* last = m_normed.data() + (seqs.first(r) + seqs.positions(r) - 1) * d;
            std::copy(last, last + d, m_last.data() + r * d);
        }
        model.unembed(m_last.data(), count, logits);
    }

    tensor<T> m_resid, m_normed, m_pos, m_q, m_k, m_v, m_out, m_mlp, m_mlp_lin, m_gate, m_up, m_scores, m_logits,
        m_last;
    std::vector<std::size_t> m_firsts, m_offsets, m_items;
    kernels::rope_table<T> m_rope;
};

} // namespace actlens::serve
