// actlens/methods/atp_star.hpp: AtP* for attention heads (Kramár et al. 2024, arXiv 2403.00745):
// attribution patching with the QK fix, and optionally GradDrop.
//
// The nodes are, per layer, head and position, a head's query q_t, key k_u and value v_u. Plain AtP
// linearises a query or key through the attention softmax, which fails where the softmax saturates
// (its gradient vanishes while a patch moves the pattern a lot). The QK fix recomputes the pattern
// exactly with the patched query (one row) or key (one column) and linearises only from the pattern
// on, with dM/dA, the gradient at hook_pattern:
//   query  c_Q(q_t) = sum_u (A'_tu - A_tu) dM/dA_tu,       A'_t = softmax(q'_t K^T / sqrt(d_h));
//   key    c_K(k_u) = sum_{t>=u} sum_v (A'_tv - A_tv) dM/dA_tv, where only logit (t,u) moves, by
//          q_t (k'_u - k_u) / sqrt(d_h);
//   value  c_V(v_u) = (v'_u - v_u) . dM/dv_u  restricted to the head (plain AtP).
// A head's score treats the whole head as one node, the intervention of
// activation_patch(patch_target::head): hook_z of a head is a function of its own q, k and v, so
// patching it patches all of them at once. The fix applied to that node recomputes the head's
// pattern with every query and key patched (the patch run's own pattern) and linearises from the
// pattern on:
//   head   c(h) = sum_{t,u} (A'_tu - A_tu) dM/dA_tu + sum_u c_V(v_u).
// It is not the sum of the query and key nodes, which each move the pattern alone. Keys and values
// shared by grouped heads (GQA) are split by the head they act through, so a key or value node of a
// key/value head is the sum of its query heads' entries. (To rank whole heads, attribution_patch's
// AtP on hook_z is exact through the head's own softmax and keeps the pattern-times-value cross
// term dropped here; AtP*'s gain is at the query and key nodes, where plain AtP sees a flat
// softmax.)
//
// Directions follow attribution_patch: denoising takes the corrupted run as the base and the clean
// run as the patch, noising the reverse; every score estimates M(patched) - M(base), summed over
// the batch rows (the metric is a batch mean and each patch applies to every row at once).
//
// GradDrop (options.grad_drop) fights cancellation between paths: for each edge e (a block's whole
// output, or each attention and MLP output), a backward pass with the gradient through e's
// contribution to the residual stream set to zero gives estimates c_e, and
//   c_GD(n) = 1/(E - 1) sum_e |c_e(n)|,
// E the number of edges (a node's own edge gives 0, so a last-layer node gets |c(n)|). The forward
// is reused; each edge costs one backward, with the edge's branch cut (backward_options::cut_attention
// and cut_mlp: as if its output projection were zero in the backward only).
// Cost: two forwards and one backward (plus E backwards for GradDrop), and O(B H T^2 d_h)
// arithmetic per layer for the fix.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/metrics.hpp> // the metrics of the extern template lines at the end
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

/// Which contribution to the residual stream one GradDrop backward pass cuts.
enum class grad_drop_edge {
    block,   ///< a whole block's output (attention and MLP of layer l): E = L edges
    sublayer ///< the attention output and the MLP output separately: E = 2L edges
};

struct atp_star_options {
    patch_direction direction = patch_direction::denoising;
    /// Also compute GradDrop estimates (E extra backward passes).
    bool grad_drop = false;
    grad_drop_edge edge = grad_drop_edge::block;
};

/// AtP* estimates of M(patched) - M(base).
struct atp_star_result {
    /// [L, H]: per head, the whole head patched (see the file comment).
    tensor<double> scores;
    /// [L, T, H]: per node, t being the position of the query, key or value.
    tensor<double> query, key, value;
    /// GradDrop versions of the four above (filled only with options.grad_drop): the mean over
    /// edges of the magnitude, so these rank nodes and carry no sign.
    tensor<double> grad_drop_scores, grad_drop_query, grad_drop_key, grad_drop_value;
    std::vector<std::string> axes{"layer", "head"};
    std::vector<std::string> node_axes{"layer", "position", "head"};
};

namespace detail {

// Buffers of the per-head computation, reused across heads, layers and GradDrop edges.
struct atp_star_scratch {
    std::vector<double> scores, pattern, row, lse, weighted_sum, d_key, d_value;
    std::vector<std::size_t> argmax;
};

// Softmax of n logits into out (double); returns log-sum-exp.
inline double softmax_into(const double* logits, std::size_t n, double* out) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i)
        m = std::max(m, logits[i]);
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i)
        sum += (out[i] = std::exp(logits[i] - m));
    for (std::size_t i = 0; i < n; ++i)
        out[i] /= sum;
    return m + std::log(sum);
}

template <class T>
double dot_scaled(const T* a, const T* b, std::size_t n, double scale) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i)
        s += double(a[i]) * double(b[i]);
    return s * scale;
}

// Activations of one layer that AtP* reads: queries and keys as they enter the scores (after RoPE).
template <class T>
struct atp_star_layer_inputs {
    const T *q, *k, *v;                   // base run
    const T *patch_q, *patch_k, *patch_v; // patch run
    const T *d_pattern, *d_z; // dM/dA [B, H, T, T], dM/dz [B, T, H, d_h] at the base run
};

// Adds one layer's query, key and value node estimates into query/key/value [L, T, H], and the
// pattern term of each whole head into head_pattern [L, H].
template <class T>
void atp_star_layer(const model_config& c, std::size_t B, std::size_t S, std::size_t layer,
                    const atp_star_layer_inputs<T>& in, atp_star_scratch& s,
                    tensor<double>& head_pattern, tensor<double>& query, tensor<double>& key,
                    tensor<double>& value) {
    const std::size_t H = c.n_heads, dh = c.d_head, group = c.group_size();
    const std::size_t qw = H * dh, kvw = c.n_kv_heads * dh;
    const double scale = 1.0 / std::sqrt(double(dh));
    s.scores.resize(S * S);
    s.pattern.resize(S * S);
    s.row.resize(2 * S);
    s.lse.resize(S);
    s.weighted_sum.resize(S);
    s.argmax.resize(S);
    s.d_key.resize(S * dh);
    s.d_value.resize(dh);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < H; ++h) {
            const std::size_t g = h / group;
            auto q_at = [&](const T* base, std::size_t t) {
                return base + (b * S + t) * qw + h * dh;
            };
            auto kv_at = [&](const T* base, std::size_t t) {
                return base + (b * S + t) * kvw + g * dh;
            };
            const T* G = in.d_pattern + (b * H + h) * S * S;
            // The base pattern, recomputed in double from the same q and k the patched rows use, so
            // an unchanged node scores exactly zero.
            for (std::size_t t = 0; t < S; ++t) {
                double* st = s.scores.data() + t * S;
                for (std::size_t u = 0; u <= t; ++u)
                    st[u] = dot_scaled(q_at(in.q, t), kv_at(in.k, u), dh, scale);
                double* at = s.pattern.data() + t * S;
                s.lse[t] = softmax_into(st, t + 1, at);
                s.argmax[t] = std::size_t(std::max_element(st, st + t + 1) - st);
                double r = 0;
                for (std::size_t u = 0; u <= t; ++u)
                    r += at[u] * double(G[t * S + u]);
                s.weighted_sum[t] = r;
            }
            // sum_u (A'(t, u) - A(t, u)) G(t, u) for row t of the pattern recomputed from the patch
            // run's query t and the given keys.
            auto moved_row = [&](std::size_t t, const T* keys) {
                double* logits = s.row.data();
                double* row = s.row.data() + S;
                for (std::size_t u = 0; u <= t; ++u)
                    logits[u] = dot_scaled(q_at(in.patch_q, t), kv_at(keys, u), dh, scale);
                softmax_into(logits, t + 1, row);
                double sum = 0;
                for (std::size_t u = 0; u <= t; ++u)
                    sum += (row[u] - s.pattern[t * S + u]) * double(G[t * S + u]);
                return sum;
            };
            // Query nodes: each patched query moves one row of the pattern.
            for (std::size_t t = 0; t < S; ++t) query(layer, t, h) += moved_row(t, in.k);
            // The whole head: every query and key patched, i.e. the patch run's own pattern.
            for (std::size_t t = 0; t < S; ++t) head_pattern(layer, h) += moved_row(t, in.patch_k);
            // Key nodes: a patched key k_u moves logit (t, u) of every row t >= u by delta.
            for (std::size_t u = 0; u < S; ++u)
                for (std::size_t e = 0; e < dh; ++e)
                    s.d_key[u * dh + e] =
                        double(kv_at(in.patch_k, u)[e]) - double(kv_at(in.k, u)[e]);
            for (std::size_t u = 0; u < S; ++u) {
                double sum = 0;
                for (std::size_t t = u; t < S; ++t) {
                    double delta = 0;
                    const T* qt = q_at(in.q, t);
                    for (std::size_t e = 0; e < dh; ++e)
                        delta += double(qt[e]) * s.d_key[u * dh + e];
                    delta *= scale;
                    if (delta == 0) continue;
                    const double* st = s.scores.data() + t * S;
                    const double* at = s.pattern.data() + t * S;
                    const double gtu = double(G[t * S + u]);
                    if (u == s.argmax[t]) {
                        // The row's largest logit: 1 - A_tu may have lost every digit, so redo the
                        // row.
                        double* logits = s.row.data();
                        double* row = s.row.data() + S;
                        std::copy(st, st + t + 1, logits);
                        logits[u] += delta;
                        softmax_into(logits, t + 1, row);
                        for (std::size_t v = 0; v <= t; ++v)
                            sum += (row[v] - at[v]) * double(G[t * S + v]);
                    } else {
                        // Closed form with a = A_tu <= 1/2: Z = (1 - a) + a e^delta, in logs so
                        // that a large delta on an underflowed a stays exact.
                        const double a = at[u];
                        const double x = st[u] - s.lse[t] + delta; // log(a e^delta)
                        const double y = std::log1p(-a);           // log(1 - a), finite as a <= 1/2
                        const double log_z =
                            std::max(x, y) + std::log1p(std::exp(-std::abs(x - y)));
                        const double moved = std::exp(x - log_z) - a; // A'_tu - A_tu
                        const double others = std::expm1(-log_z);     // A'_tv / A_tv - 1, v != u
                        sum += moved * gtu + others * (s.weighted_sum[t] - a * gtu);
                    }
                }
                key(layer, u, h) += sum;
            }
            // Value nodes (plain AtP): dM/dv_u through this head is sum_t A_tu dM/dz_t.
            for (std::size_t u = 0; u < S; ++u) {
                std::fill(s.d_value.begin(), s.d_value.end(), 0.0);
                for (std::size_t t = u; t < S; ++t) {
                    const double a = s.pattern[t * S + u];
                    const T* dz = in.d_z + (b * S + t) * qw + h * dh;
                    for (std::size_t e = 0; e < dh; ++e)
                        s.d_value[e] += a * double(dz[e]);
                }
                double sum = 0;
                const T* pv = kv_at(in.patch_v, u);
                const T* bv = kv_at(in.v, u);
                for (std::size_t e = 0; e < dh; ++e)
                    sum += (double(pv[e]) - double(bv[e])) * s.d_value[e];
                value(layer, u, h) += sum;
            }
        }
}

// Estimates of every node and head from one set of base-run gradients.
template <class T>
void atp_star_estimates(const basic_transformer<T>& model, std::size_t B, std::size_t S,
                        const activation_cache<T>& tape, const activation_cache<T>& patch,
                        const activation_cache<T>& grads, atp_star_scratch& scratch,
                        tensor<double>& scores, tensor<double>& query, tensor<double>& key,
                        tensor<double>& value) {
    const model_config& c = model.config();
    const bool rotary = c.position == position_kind::rotary;
    const site q_site = rotary ? site::attn_rot_q : site::attn_q,
               k_site = rotary ? site::attn_rot_k : site::attn_k;
    scores.resize({c.n_layers, c.n_heads});
    for (tensor<double>* t : {&query, &key, &value})
        t->resize({c.n_layers, S, c.n_heads});
    for (int l = 0; l < int(c.n_layers); ++l) {
        atp_star_layer_inputs<T> in;
        in.q = tape.at({q_site, l}).data();
        in.k = tape.at({k_site, l}).data();
        in.v = tape.at({site::attn_v, l}).data();
        in.patch_q = patch.at({q_site, l}).data();
        in.patch_k = patch.at({k_site, l}).data();
        in.patch_v = patch.at({site::attn_v, l}).data();
        in.d_pattern = grads.at({site::attn_pattern, l}).data();
        in.d_z = grads.at({site::attn_z, l}).data();
        atp_star_layer(c, B, S, std::size_t(l), in, scratch, scores, query, key, value);
    }
    for (std::size_t l = 0; l < c.n_layers; ++l)
        for (std::size_t t = 0; t < S; ++t)
            for (std::size_t h = 0; h < c.n_heads; ++h)
                scores(l, h) += value(l, t, h);
}

} // namespace detail

/// AtP* over attention heads: QK-fixed attribution patching, optionally with GradDrop (see the file
/// comment). Inputs are [B, T] (or [T]) token batches of equal shape.
/// Throws actlens::error for mismatched shapes, GradDrop over block edges of a one-layer model, and
/// anything forward() or the metric rejects. `buffers` holds the tape, the patch run's activations
/// and the forwards' workspaces between calls (see attribution_workspace).
template <class T, class Metric>
atp_star_result atp_star(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                         tensor_view<const std::int32_t> corrupted, const Metric& metric,
                         const atp_star_options& options, attribution_workspace<T>& buffers) {
    clean = detail::as_batch<T>(clean);
    corrupted = detail::as_batch<T>(corrupted);
    if (clean.shape() != corrupted.shape())
        fail(errc::shape_mismatch,
             "atp_star: clean tokens {} and corrupted tokens {} differ in shape",
             clean.shape().to_string(), corrupted.shape().to_string());
    const model_config& c = model.config();
    const std::size_t edges = options.edge == grad_drop_edge::block ? c.n_layers : 2 * c.n_layers;
    if (options.grad_drop && edges < 2)
        fail(errc::invalid_argument,
             "atp_star: options.grad_drop with grad_drop_edge::block needs at least 2 layers (the "
             "model has {})",
             c.n_layers);
    const bool denoise = options.direction == patch_direction::denoising;
    const auto& base_tokens = denoise ? corrupted : clean;
    const auto& patch_tokens = denoise ? clean : corrupted;
    const std::size_t B = clean.extent(0), S = clean.extent(1);
    const bool rotary = c.position == position_kind::rotary;

    std::vector<hook_point> patch_points, want;
    for (int l = 0; l < int(c.n_layers); ++l) {
        patch_points.push_back({rotary ? site::attn_rot_q : site::attn_q, l});
        patch_points.push_back({rotary ? site::attn_rot_k : site::attn_k, l});
        patch_points.push_back({site::attn_v, l});
        want.push_back({site::attn_pattern, l});
        want.push_back({site::attn_z, l});
    }
    detail::capture_patch_activations(model, patch_tokens, patch_points, buffers.patch, buffers.patch_run);
    const activation_cache<T>& patch = buffers.patch;
    activation_cache<T>& tape = buffers.tape;
    hook_set<T> record;
    tape.capture_into(record, tape_points(model));
    run_options<T> o;
    o.hooks = &record;
    o.last_position_only = detail::reads_last_position(metric); // the tape records every position
    const tensor_view<const T> base_logits = model.forward_into(buffers.base_run, base_tokens, o);
    const tensor<T> d_norm = detail::final_norm_gradient(model, base_logits, metric, B, S);

    atp_star_result r;
    detail::atp_star_scratch scratch;
    detail::atp_star_estimates(model, B, S, tape, patch, backward(model, tape, d_norm.view(), want),
                               scratch, r.scores, r.query, r.key, r.value);
    if (!options.grad_drop) return r;

    r.grad_drop_scores.resize(r.scores.shape());
    for (tensor<double>* t : {&r.grad_drop_query, &r.grad_drop_key, &r.grad_drop_value})
        t->resize(r.query.shape());
    tensor<double> scores, query, key, value;
    for (std::size_t e = 0; e < edges; ++e) {
        const bool block = options.edge == grad_drop_edge::block;
        const std::size_t layer = block ? e : e / 2;
        const bool drop_attention = block || e % 2 == 0, drop_mlp = block || e % 2 == 1;
        backward_options cut;
        if (drop_attention) cut.cut_attention.push_back(int(layer));
        if (drop_mlp) cut.cut_mlp.push_back(int(layer));
        const activation_cache<T> grads = backward(model, tape, d_norm.view(), want, cut);
        detail::atp_star_estimates(model, B, S, tape, patch, grads, scratch, scores, query, key,
                                   value);
        const std::pair<tensor<double>*, const tensor<double>*> pairs[] = {
            {&r.grad_drop_scores, &scores},
            {&r.grad_drop_query, &query},
            {&r.grad_drop_key, &key},
            {&r.grad_drop_value, &value}};
        for (const auto& pr : pairs)
            for (std::size_t i = 0; i < pr.second->size(); ++i)
                pr.first->data()[i] += std::abs(pr.second->data()[i]) / double(edges - 1);
    }
    return r;
}

/// atp_star with buffers of its own (allocated for this call).
template <class T, class Metric>
atp_star_result atp_star(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                         tensor_view<const std::int32_t> corrupted, const Metric& metric,
                         const atp_star_options& options = {}) {
    attribution_workspace<T> buffers;
    return atp_star(model, clean, corrupted, metric, options, buffers);
}

/// atp_star on one clean and one corrupted prompt given as token vectors.
template <class T, class Metric>
atp_star_result atp_star(const basic_transformer<T>& model, const std::vector<std::int32_t>& clean,
                         const std::vector<std::int32_t>& corrupted, const Metric& metric,
                         const atp_star_options& options = {}) {
    return atp_star(model, prompt_view(clean), prompt_view(corrupted), metric, options);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE atp_star_result atp_star(const transformer&, tensor_view<const std::int32_t>,
                                            tensor_view<const std::int32_t>, const logit_difference&,
                                            const atp_star_options&, attribution_workspace<float>&);
#endif

} // namespace actlens
