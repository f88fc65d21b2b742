// actlens/model/transformer.hpp: one decoder-only transformer for every supported family.
//
// The forward pass is const and thread-safe: all per-run state (activation buffers, KV cache,
// hooks, the cache of captured activations) lives in objects the caller owns and passes in.
// It is templated on the scalar type so that gradient checks can run the same code in double.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/kernels/softmax.hpp>
#include <actlens/model/block.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/kv_cache.hpp>
#include <actlens/model/weights.hpp>
#include <actlens/model/workspace.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace actlens {

/// Options of one forward pass. Everything is optional; a default-constructed value runs the
/// whole model from tokens to logits at every position.
template <class T>
struct run_options {
    /// Callbacks at hook points (read, overwrite or add to activations).
    const hook_set<T>* hooks = nullptr;
    /// Keys/values of earlier positions; the new positions are appended to it.
    kv_cache<T>* cache = nullptr;
    /// Stop before this block and return its hook_resid_pre [B, T, d]; -1 runs to the logits.
    int stop_at_layer = -1;
    /// Compute logits for the last position of each row only ([B, 1, V]): what generation needs.
    bool last_position_only = false;
};

/// A decoder-only transformer (GPT-2 and Llama families; see model_config).
template <class T>
class basic_transformer {
public:
    using value_type = T;

    /// Takes a config and weights that match it; throws actlens::error (model.401) if they don't.
    basic_transformer(model_config config, model_weights<T> weights);

    const model_config& config() const noexcept { return m_config; }
    const model_weights<T>& weights() const noexcept { return m_weights; }
    /// The projections in the GEMM kernel's layout: what the forward multiplies with.
    const packed_weights<T>& packed() const noexcept { return m_packed; }
    /// How the products with the weights round their activations: kernels::precision::exact (the
    /// default: f32 activations) or fast (bf16 / int8 activations where the weights' format has a
    /// fast path: F16, BF16 and Q8_0 weights used in their rows; kernels/precision.hpp).
    /// Weights with no fast path are multiplied exactly in either mode, and the backward is exact.
    /// Not safe while a forward of this model runs.
    void set_precision(kernels::precision mode) noexcept { m_packed.set_precision(mode); }
    kernels::precision precision_mode() const noexcept { return m_packed.precision_mode(); }

    /// The final norm of `rows` residual rows [rows, d] into `out` (which may be `in`): what
    /// ln_final.hook_normalized holds for them.
    void final_norm(const T* in, std::size_t rows, T* out) const;

    /// The logits [rows, V] of `rows` final-normed rows (row stride `ld`, 0 for d_model), soft-capped
    /// when the model caps them.
    void unembed(const T* normed, std::size_t rows, T* logits, std::size_t ld = 0) const;

    /// The final soft cap, in place on logits [rows, cols] computed as normed rows times unembedding rows
    /// (none unless the model has final_logit_softcap): for methods that form chosen logits themselves.
    /// Row by row, so that a row's logits round the same whatever rows are beside it (the SIMD body
    /// and tail of the kernel differ in their last bits; serve/decode_batch.hpp relies on this).
    void cap_logits(T* logits, std::size_t rows, std::size_t cols) const {
        if (!(m_config.final_logit_softcap > 0)) return;
        const T cap = T(m_config.final_logit_softcap);
        for (std::size_t r = 0; r < rows; ++r) kernels::soft_cap(logits + r * cols, cols, cap);
    }

    /// Every hook point this model calls, in forward order (its hook_layout decides which).
    std::vector<hook_point> hook_points() const { return hook_layout::of(m_config).points(); }

    /// The hook points whose names match a glob such as "blocks.*.hook_resid_pre"; an empty list when
    /// none does (run_with_cache and capture, which need at least one, throw model.402 instead:
    /// select_hook_points in model/hooks.hpp).
    std::vector<hook_point> hook_points(std::string_view glob) const {
        std::vector<hook_point> out;
        for (const hook_point& p : hook_points())
            if (glob_match(glob, p.name())) out.push_back(p);
        return out;
    }

    /// A KV cache sized for this model.
    kv_cache<T> make_kv_cache(std::size_t batch, std::size_t capacity) const {
        return kv_cache<T>(m_config.n_layers, batch, capacity, m_config.n_kv_heads * m_config.d_head);
    }

    /// Runs tokens [B, T] (or [T] for one row) through the model into `ws`. Returns logits [B, T, V]
    /// (or [B, 1, V] with last_position_only, or resid_pre [B, T, d] with stop_at_layer) as a view
    /// into `ws`, valid until its next use; forward(tokens) returns an owning copy instead. Throws
    /// actlens::error on empty input, out-of-range token ids, or a context longer than the model's.
    tensor_view<const T> forward_into(workspace<T>& ws, tensor_view<const std::int32_t> tokens,
                                      const run_options<T>& options = {}) const {
        const auto [batch, positions] = token_dims(tokens);
        check_tokens(tokens, batch, positions);
        return run(ws, &tokens, nullptr, 0, batch, positions, options);
    }

    /// The name forward_into had before: a view into `ws`, easy to mistake for the owning forward(tokens).
    [[deprecated("forward(ws, tokens) returns a view into ws; call forward_into(ws, tokens)")]]
    tensor_view<const T> forward(workspace<T>& ws, tensor_view<const std::int32_t> tokens,
                                 const run_options<T>& options = {}) const {
        return forward_into(ws, tokens, options);
    }

    /// Runs the model from block `start_layer`, given that block's resid_pre [B, T, d] (e.g. a cached
    /// residual): the layers below are not recomputed. Position embeddings were already added.
    tensor_view<const T> forward_from(workspace<T>& ws, tensor_view<const T> resid_pre, int start_layer,
                                      const run_options<T>& options = {}) const {
        if (start_layer < 0 || start_layer > static_cast<int>(m_config.n_layers))
            fail(errc::bad_layer_range, "forward_from: start_layer {} is outside 0..{}", start_layer,
                 m_config.n_layers);
        if (resid_pre.rank() != 3 || resid_pre.extent(2) != m_config.d_model)
            fail(errc::shape_mismatch, "forward_from: resid_pre has shape {}, expected [B, T, {}]",
                 resid_pre.shape().to_string(), m_config.d_model);
        return run(ws, nullptr, &resid_pre, start_layer, resid_pre.extent(0), resid_pre.extent(1), options);
    }

    /// Convenience: allocates a workspace and returns a copy of the output.
    tensor<T> forward(tensor_view<const std::int32_t> tokens, const run_options<T>& options = {}) const {
        workspace<T> ws;
        return tensor<T>::copy_of(forward_into(ws, tokens, options));
    }
    tensor<T> forward(const std::vector<std::int32_t>& tokens, const run_options<T>& options = {}) const {
        return forward(tensor_view<const std::int32_t>(tokens.data(), {tokens.size()}), options);
    }

    /// Runs the model and keeps the activations at every hook point matching `glob` ("*" for all).
    /// The user's hooks (if any) run first; the cache keeps what they left.
    std::pair<tensor<T>, activation_cache<T>> run_with_cache(tensor_view<const std::int32_t> tokens,
                                                             std::string_view glob = "*",
                                                             const run_options<T>& options = {}) const;
    std::pair<tensor<T>, activation_cache<T>> run_with_cache(const std::vector<std::int32_t>& tokens,
                                                             std::string_view glob = "*",
                                                             const run_options<T>& options = {}) const {
        return run_with_cache(tensor_view<const std::int32_t>(tokens.data(), {tokens.size()}), glob, options);
    }

private:
    static std::pair<std::size_t, std::size_t> token_dims(const tensor_view<const std::int32_t>& tokens) {
        if (tokens.rank() == 1) return {1, tokens.extent(0)};
        if (tokens.rank() == 2) return {tokens.extent(0), tokens.extent(1)};
        fail(errc::shape_mismatch, "tokens must have shape [T] or [B, T], got {}", tokens.shape().to_string());
    }

    void check_tokens(const tensor_view<const std::int32_t>& tokens, std::size_t batch, std::size_t positions) const {
        if (batch == 0 || positions == 0 || tokens.data() == nullptr)
            fail(errc::empty_prompt, "tokens are empty (shape {})", tokens.shape().to_string());
        const auto rows = tokens.rank() == 1 ? tokens.reshaped({1, positions}) : tokens;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t t = 0; t < positions; ++t) {
                const std::int32_t id = rows(b, t);
                if (id < 0 || static_cast<std::size_t>(id) >= m_config.vocab_size)
                    fail(errc::token_out_of_range, "token id {} at [{}, {}] is outside the vocabulary [0, {})", id, b,
                         t, m_config.vocab_size);
            }
    }

    // The forward pass proper. Exactly one of `tokens` and `resid_pre` is given.
    tensor_view<const T> run(workspace<T>& ws, const tensor_view<const std::int32_t>* tokens,
                             const tensor_view<const T>* resid_pre, int start_layer, std::size_t batch,
                             std::size_t positions, const run_options<T>& opt) const;

    template <class Hook>
    void embed(workspace<T>& ws, const tensor_view<const std::int32_t>& tokens, std::size_t batch,
               std::size_t positions, std::size_t past, Hook& hook) const;

    // Calls the hooks of one forward pass at [B, T, ...] views; with no hook_set it costs one branch
    // per site.
    struct hook_caller {
        const hook_set<T>* hooks;
        const model_config* config;
        std::size_t batch, positions, past;

        bool wants(site s, int layer) const { return hooks && hooks->has(hook_point{s, layer}); }
        void operator()(site s, int layer, T* data, const shape_t& shape) const {
            if (!hooks) return;
            const hook_point p{s, layer};
            if (hooks->has(p)) hooks->run(p, tensor_view<T>(data, shape), hook_context{p, batch, positions, past});
        }
        void operator()(site s, int layer, T* data) const {
            if (wants(s, layer)) (*this)(s, layer, data, shape_of(s));
        }
        shape_t shape_of(site s) const {
            const model_config& c = *config;
            switch (s) {
            case site::attn_q:
            case site::attn_rot_q:
            case site::attn_z: return {batch, positions, c.n_heads, c.d_head};
            case site::attn_k:
            case site::attn_v:
            case site::attn_rot_k: return {batch, positions, c.n_kv_heads, c.d_head};
            case site::attn_scores:
            case site::attn_pattern: return {batch, c.n_heads, positions, past + positions};
            case site::mlp_pre:
            case site::mlp_pre_linear:
            case site::mlp_post: return {batch, positions, c.d_mlp};
            default: return {batch, positions, c.d_model};
            }
        }
    };

    // The dense row layout of block_body (model/block.hpp): B rows of T new positions after `past`
    // cached ones; each query attends to its row's cached keys and its own causal prefix.
    class dense_rows {
    public:
        dense_rows(const basic_transformer& model, workspace<T>& ws, kv_cache<T>* cache, std::size_t batch,
                   std::size_t positions, std::size_t past)
            : m_model(model), m_ws(ws), m_cache(cache), m_batch(batch), m_positions(positions), m_past(past) {}

        std::size_t rows() const { return m_batch * m_positions; }
        std::size_t narrow(block_buffers<T>&) const { return rows(); }

        block_buffers<T> buffers() const {
            return block_buffers<T>::over(m_ws.resid, m_ws.normed, m_ws.q, m_ws.k, m_ws.v, m_ws.block_out, m_ws.mlp_pre,
                                          m_ws.mlp_lin);
        }

        void project_qkv(const layer_weights<T>& w, const packed_layer<T>& pw, block_buffers<T>& b) const {
            const std::size_t n = rows();
            const kernels::linear_job<T> qkv[] = {{b.a, n, &pw.w_q, w.b_q.data(), b.q},
                                                  {b.a, n, &pw.w_k, w.b_k.data(), b.k},
                                                  {b.a, n, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(qkv, 3);
        }

        void rotate(const layer_weights<T>& w, block_buffers<T>& b) const {
            const model_config& c = m_model.m_config;
            const std::size_t n = rows();
            position_heads(c, w.q_norm, b.q, n, c.n_heads, m_positions, m_past, m_ws.rope);
            position_heads(c, w.k_norm, b.k, n, c.n_kv_heads, m_positions, m_past, m_ws.rope);
        }

        // Scores, causal softmax and the value mix of every (row, head). Keys and values are read from
        // the KV cache when there is one (after appending this call's positions to it), else straight
        // from this call's buffers. Query head h reads key/value head h / group_size (GQA).
        template <class Hook>
        void attend(int layer, block_buffers<T>& buf, Hook& hook) const;

    private:
        const basic_transformer& m_model;
        workspace<T>& m_ws;
        kv_cache<T>* m_cache;
        std::size_t m_batch, m_positions, m_past;
    };

    template <class Hook>
    tensor_view<const T> final_logits(workspace<T>& ws, std::size_t batch, std::size_t positions, bool last_only,
                                      Hook& hook) const;

    model_config m_config;
    model_weights<T> m_weights;
    packed_weights<T> m_packed; // the projections in the fast kernel's layout (see packed_weights)
};

// The members defined outside the class: with ACTLENS_COMPILED they are compiled once, into
// actlens::compiled (actlens/compiled.hpp says why they cannot stay in the class).

template <class T>
basic_transformer<T>::basic_transformer(model_config config, model_weights<T> weights)
    : m_config(std::move(config)), m_weights(std::move(weights)) {
    m_config.validate();
    m_weights.validate(m_config);
    m_packed = packed_weights<T>(m_config, m_weights);
}

template <class T>
void basic_transformer<T>::final_norm(const T* in, std::size_t rows, T* out) const {
    normalize(m_config, m_weights.final_norm_weight, m_weights.final_norm_bias, in, rows, out);
}

template <class T>
void basic_transformer<T>::unembed(const T* normed, std::size_t rows, T* logits, std::size_t ld) const {
    kernels::linear(normed, rows, m_packed.unembedding, static_cast<const T*>(nullptr), logits, false,
                    ld ? ld : m_config.d_model);
    cap_logits(logits, rows, m_config.vocab_size);
}

template <class T>
std::pair<tensor<T>, activation_cache<T>> basic_transformer<T>::run_with_cache(tensor_view<const std::int32_t> tokens,
                                                                               std::string_view glob,
                                                                               const run_options<T>& options) const {
    std::pair<tensor<T>, activation_cache<T>> out;
    hook_set<T> hooks;
    if (options.hooks) hooks.merge(*options.hooks);
    out.second.capture_into(hooks, select_hook_points(glob, hook_points()));
    run_options<T> with_capture = options;
    with_capture.hooks = &hooks;
    out.first = forward(tokens, with_capture);
    return out;
}

template <class T>
tensor_view<const T> basic_transformer<T>::run(workspace<T>& ws, const tensor_view<const std::int32_t>* tokens,
                                               const tensor_view<const T>* resid_pre, int start_layer,
                                               std::size_t batch, std::size_t positions,
                                               const run_options<T>& opt) const {
    const model_config& c = m_config;
    const int n_layers = static_cast<int>(c.n_layers);
    const int stop = opt.stop_at_layer < 0 ? n_layers : opt.stop_at_layer;
    if (stop > n_layers || stop < start_layer)
        fail(errc::bad_layer_range, "stop_at_layer {} is outside {}..{}", opt.stop_at_layer, start_layer, n_layers);
    if (batch == 0 || positions == 0) fail(errc::empty_prompt, "forward: no positions to run");
    kv_cache<T>* cache = opt.cache;
    const std::size_t past = cache ? cache->length() : 0;
    if (past + positions > c.max_seq_len)
        fail(errc::context_overflow, "{} positions (+{} cached) exceed the model's context of {}", positions,
             past, c.max_seq_len);
    if (cache) {
        if (cache->batch() != batch || cache->n_layers() != c.n_layers ||
            cache->kv_width() != c.n_kv_heads * c.d_head)
            fail(errc::shape_mismatch, "kv_cache (batch {}, {} layers, width {}) does not fit this run (batch {})",
                 cache->batch(), cache->n_layers(), cache->kv_width(), batch);
        if (past + positions > cache->capacity())
            fail(errc::context_overflow, "kv_cache holds {} positions, {} needed", cache->capacity(),
                 past + positions);
    }

    const std::size_t d = c.d_model;
    ws.prepare(c, batch, positions, past + positions);
    cover_rope(c, ws.rope, past + positions);
    const hook_set<T>* hooks = (opt.hooks && !opt.hooks->empty()) ? opt.hooks : nullptr;
    if (hooks) hooks->check(hook_layout::of(c)); // a hook the model never calls is an error, not a no-op
    hook_caller hook{hooks, &c, batch, positions, past};
    const shape_t resid_shape{batch, positions, d};
    T* x = ws.resid.data();

    if (tokens) {
        embed(ws, *tokens, batch, positions, past, hook);
    } else {
        tensor<T>::copy_into(*resid_pre, tensor_view<T>(x, resid_shape));
    }

    dense_rows layout(*this, ws, cache, batch, positions, past);
    for (int l = start_layer; l < stop; ++l)
        block_body(c, m_weights.layers[std::size_t(l)], m_packed.layers[std::size_t(l)], l, layout, hook);
    if (cache) cache->advance(positions);

    if (stop < n_layers) return tensor_view<const T>(x, resid_shape);
    return final_logits(ws, batch, positions, opt.last_position_only, hook);
}

template <class T>
template <class Hook>
void basic_transformer<T>::embed(workspace<T>& ws, const tensor_view<const std::int32_t>& tokens,
                                 std::size_t batch, std::size_t positions, std::size_t past, Hook& hook) const {
    const std::size_t d = m_config.d_model;
    const auto rows = tokens.rank() == 1 ? tokens.reshaped({1, positions}) : tokens;
    T* x = ws.resid.data();
    const T* table = m_weights.token_embedding.data();
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < positions; ++t) {
            const T* row = table + static_cast<std::size_t>(rows(b, t)) * d;
            std::copy(row, row + d, x + (b * positions + t) * d);
        }
    scale_embeddings(m_config, x, batch * positions);
    const shape_t shape{batch, positions, d};
    hook(site::embed, -1, x, shape);
    if (m_config.position != position_kind::learned) return;
    ws.pos.reshape_uninitialized({batch * positions, d});
    T* pe = ws.pos.data();
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < positions; ++t) {
            const T* row = m_weights.position_embedding.data() + (past + t) * d;
            std::copy(row, row + d, pe + (b * positions + t) * d);
        }
    hook(site::pos_embed, -1, pe, shape);
    detail::add_into(x, pe, batch * positions * d);
}

template <class T>
template <class Hook>
void basic_transformer<T>::dense_rows::attend(int layer, block_buffers<T>& buf, Hook& hook) const {
    const model_config& c = m_model.m_config;
    const std::size_t batch = m_batch, positions = m_positions, past = m_past;
    const std::size_t dh = c.d_head, H = c.n_heads, qw = H * dh, kvw = c.n_kv_heads * dh;
    const std::size_t group = c.group_size(), keys = past + positions;
    const T* q = buf.q;
    const T* k = buf.k;
    const T* v = buf.v;
    std::size_t k_batch_stride = positions * kvw;
    if (m_cache) {
        T* ck = m_cache->keys(static_cast<std::size_t>(layer)).data();
        T* cv = m_cache->values(static_cast<std::size_t>(layer)).data();
        k_batch_stride = m_cache->capacity() * kvw;
        for (std::size_t b = 0; b < batch; ++b) {
            std::copy(k + b * positions * kvw, k + (b + 1) * positions * kvw,
                      ck + b * k_batch_stride + past * kvw);
            std::copy(v + b * positions * kvw, v + (b + 1) * positions * kvw,
                      cv + b * k_batch_stride + past * kvw);
        }
        k = ck;
        v = cv;
    }
    const attention_form<T> form = attention_form<T>::of(c, layer);
    T* scores = m_ws.scores.data();
    T* z = buf.z;
    const std::size_t head_block = positions * keys;
    const shape_t pattern_shape = hook.shape_of(site::attn_pattern);
    const bool hook_scores = hook.wants(site::attn_scores, layer);
    // Work items: (row, head, block of query rows). A block of queries [i0, i1) sees keys
    // [0, past + i1) only, so the products skip the masked upper triangle block by block
    // (at T = 256, 5/8 of the full products). With no hook at the scores or the pattern, one
    // item computes its scores, softmax and value mix while its scores are in cache, in one
    // parallel region instead of two.
    constexpr std::size_t query_block = 64;
    const std::size_t blocks = (positions + query_block - 1) / query_block;
    const long items = static_cast<long>(batch * H * blocks);
    const bool fused = !hook_scores && !hook.wants(site::attn_pattern, layer);
    const bool parallel = batch * H * positions * keys * dh > 65536;
    (void)parallel;
    auto block_of = [&](long item, std::size_t& b, std::size_t& h, std::size_t& i0, std::size_t& n,
                        std::size_t& visible) {
        const std::size_t bh = static_cast<std::size_t>(item) / blocks;
        b = bh / H;
        h = bh % H;
        i0 = (static_cast<std::size_t>(item) % blocks) * query_block;
        n = std::min(query_block, positions - i0);
        visible = std::min(keys, past + i0 + n);
        return scores + bh * head_block + i0 * keys;
    };
    auto mix = [&](std::size_t b, std::size_t h, std::size_t i0, std::size_t n, std::size_t visible,
                   const T* p) {
        kernels::attention_mix(p, keys, v + b * k_batch_stride + (h / group) * dh, kvw, n, visible, dh,
                               z + (b * positions + i0) * qw + h * dh, qw);
    };
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (long item = 0; item < items; ++item) {
        std::size_t b, h, i0, n, visible;
        T* s = block_of(item, b, h, i0, n, visible);
        const T* qp = q + (b * positions + i0) * qw + h * dh;
        const std::size_t kv_off = b * k_batch_stride + (h / group) * dh;
        attended_keys<T> own;
        own.k_own = k + kv_off;
        own.v_own = v + kv_off;
        own.own = visible;
        own.ld = kvw;
        own.diagonal = past + i0;
        if (fused) {
            attend_query_block(qp, qw, n, own, dh, form, s, keys, z + (b * positions + i0) * qw + h * dh, qw);
            continue;
        }
        score_query_block(qp, qw, n, own, dh, form, s, keys);
        if (hook_scores)
            kernels::mask_causal(s, n, keys, keys, past + i0);
        else
            kernels::softmax_causal(s, n, keys, keys, past + i0);
    }
    if (hook_scores) {
        hook(site::attn_scores, layer, scores, pattern_shape);
        for (std::size_t bh = 0; bh < batch * H; ++bh)
            kernels::softmax_causal(scores + bh * head_block, positions, keys, keys, past);
    }
    if (!fused) {
        hook(site::attn_pattern, layer, scores, pattern_shape);
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
        for (long item = 0; item < items; ++item) {
            std::size_t b, h, i0, n, visible;
            const T* p = block_of(item, b, h, i0, n, visible);
            mix(b, h, i0, n, visible, p);
        }
    }
}

template <class T>
template <class Hook>
tensor_view<const T> basic_transformer<T>::final_logits(workspace<T>& ws, std::size_t batch, std::size_t positions,
                                                        bool last_only, Hook& hook) const {
    const model_config& c = m_config;
    const std::size_t n = batch * positions, d = c.d_model;
    T* a = ws.normed.data();
    final_norm(ws.resid.data(), n, a);
    hook(site::ln_final_normalized, -1, a, shape_t{batch, positions, d});
    const std::size_t rows_per_seq = last_only ? 1 : positions;
    ws.logits.reshape_uninitialized({batch, rows_per_seq, c.vocab_size});
    if (last_only) // one row per sequence: the last position, read with a row stride of a whole sequence
        unembed(a + (positions - 1) * d, batch, ws.logits.data(), positions * d);
    else
        unembed(a, n, ws.logits.data());
    return static_cast<const tensor<T>&>(ws.logits).view();
}

/// The single-precision transformer every loader returns.
using transformer = basic_transformer<float>;

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE class basic_transformer<float>;
ACTLENS_EXTERN_TEMPLATE class basic_transformer<double>; // the gradient checks' model
#endif

} // namespace actlens
