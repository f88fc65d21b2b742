// actlens/methods/patching.hpp: activation patching, the ground truth of causal attribution.
//
// Denoising runs the corrupted input and overwrites one component with its value from the clean
// run; noising runs the clean input and overwrites with the corrupted value. The score is the
// metric of the patched run (use normalize() for "fraction of clean behaviour"). As in
// TransformerLens, one index is patched in every batch row at once and the metric is the batch mean.
//
// A sweep is a plan, not a loop of full forwards (README, "Patching and attribution"):
//   - both runs are cached once;
//   - a patch at layer l restarts from the target run's resid_pre at layer l;
//   - a patch at position p reuses the target run's keys and values of positions before p and
//     recomputes only positions p.. (the metric must read the last position for this), and the
//     last block then runs past attention only for the last position;
//   - many patches run at once, their rows stacked into one batch (model/ragged_forward.hpp), so
//     every product has hundreds of rows, and their logits come from one unembedding product.
// activation_patch_reference() is the brute-force loop (one full forward per patch); tests compare
// the two and benchmarks time them.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/metrics.hpp> // the metrics of the extern template lines at the end
#include <actlens/kernels/gemm.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/ragged_forward.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace actlens {

/// What a sweep patches, and the shape of its result.
enum class patch_target {
    resid_pre,        ///< blocks.l.hook_resid_pre at (layer, position)    -> [L, T]
    resid_mid,        ///< blocks.l.hook_resid_mid at (layer, position)    -> [L, T]
    resid_post,       ///< blocks.l.hook_resid_post at (layer, position)   -> [L, T]
    attn_out,         ///< blocks.l.hook_attn_out at (layer, position)     -> [L, T]
    mlp_out,          ///< blocks.l.hook_mlp_out at (layer, position)      -> [L, T]
    head,             ///< blocks.l.attn.hook_z, one head, all positions   -> [L, H]
    head_by_position, ///< blocks.l.attn.hook_z, one head at one position  -> [L, T, H]
    neuron            ///< blocks.l.mlp.hook_post, one neuron, all positions -> [L, d_mlp]
};

enum class patch_direction { denoising, noising };

struct patching_options {
    patch_direction direction = patch_direction::denoising;
    /// Patches run in waves whose rows (positions recomputed x batch, summed over the wave's
    /// patches) stay within this bound, except that a wave always holds one patch. Products of a
    /// few rows run far below the GEMM's peak; the wave's buffers grow with it (~36 KB per row for
    /// GPT-2 small).
    std::size_t rows_per_forward = 2048;
    /// Called after each wave with (patches done, patches in all).
    std::function<void(std::size_t, std::size_t)> progress;
};

/// Scores of a sweep, with the names of its axes.
struct patching_result {
    tensor<double> scores;
    std::vector<std::string> axes; ///< e.g. {"layer", "position"}
};

namespace detail {

inline site patch_site(patch_target t) {
    switch (t) {
    case patch_target::resid_pre: return site::resid_pre;
    case patch_target::resid_mid: return site::resid_mid;
    case patch_target::resid_post: return site::resid_post;
    case patch_target::attn_out: return site::attn_out;
    case patch_target::mlp_out: return site::mlp_out;
    case patch_target::head:
    case patch_target::head_by_position: return site::attn_z;
    case patch_target::neuron: return site::mlp_post;
    }
    return site::resid_pre;
}

inline bool by_position(patch_target t) {
    return t != patch_target::head && t != patch_target::neuron;
}

// One patch: layer, position (-1: all positions) and unit (head or neuron; -1: the whole vector).
struct patch_index {
    int layer;
    long position;
    long unit;
};

// Every patch of a sweep in result order, and the result's shape and axis names.
inline std::vector<patch_index> patch_plan(patch_target t, const model_config& c, std::size_t positions,
                                           shape_t& shape, std::vector<std::string>& axes) {
    std::vector<patch_index> plan;
    const long L = long(c.n_layers), T = long(positions);
    switch (t) {
    case patch_target::head:
        shape = shape_t{c.n_layers, c.n_heads};
        axes = {"layer", "head"};
        for (long l = 0; l < L; ++l)
            for (long h = 0; h < long(c.n_heads); ++h) plan.push_back({int(l), -1, h});
        break;
    case patch_target::head_by_position:
        shape = shape_t{c.n_layers, positions, c.n_heads};
        axes = {"layer", "position", "head"};
        for (long l = 0; l < L; ++l)
            for (long p = 0; p < T; ++p)
                for (long h = 0; h < long(c.n_heads); ++h) plan.push_back({int(l), p, h});
        break;
    case patch_target::neuron:
        shape = shape_t{c.n_layers, c.d_mlp};
        axes = {"layer", "neuron"};
        for (long l = 0; l < L; ++l)
            for (long n = 0; n < long(c.d_mlp); ++n) plan.push_back({int(l), -1, n});
        break;
    default:
        shape = shape_t{c.n_layers, positions};
        axes = {"layer", "position"};
        for (long l = 0; l < L; ++l)
            for (long p = 0; p < T; ++p) plan.push_back({int(l), p, -1});
    }
    return plan;
}

// Copies patch `idx`'s part of one position's activation (`width` values, from the source run's
// row `src`): the whole row, one head's d_head values (attn.hook_z, `source` [B, S, H, d_h]) or
// one neuron.
template <class T>
void copy_patched_part(const T* src, T* dst, std::size_t width, const tensor<T>& source, const patch_index& idx) {
    if (idx.unit < 0) {
        std::copy(src, src + width, dst);
    } else if (source.rank() == 4) {
        const std::size_t dh = source.extent(3), o = std::size_t(idx.unit) * dh;
        std::copy(src + o, src + o + dh, dst + o);
    } else {
        dst[idx.unit] = src[idx.unit];
    }
}

// Overwrites, in `target` (an activation [B, T, ...] of a full forward), the entries of patch `idx`
// with the source run's values (`source`, of the same shape).
template <class T>
void write_patch(tensor_view<T> target, const tensor<T>& source, const patch_index& idx) {
    const std::size_t B = target.extent(0), S = target.extent(1), w = target.size() / (B * S);
    const std::size_t p_begin = idx.position < 0 ? 0 : std::size_t(idx.position);
    const std::size_t p_end = idx.position < 0 ? S : p_begin + 1;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t p = p_begin; p < p_end; ++p)
            copy_patched_part(source.data() + (b * S + p) * w, target.data() + (b * S + p) * w, w, source, idx);
}

// The same for the stacked rows of a wave: patch `idx` owns runs first_run.. first_run + batch - 1
// (one per batch row) and `source` is [B, S, ...].
template <class T>
void write_patch(const ragged_activation<T>& act, const tensor<T>& source, std::size_t first_run, std::size_t batch,
                 const patch_index& idx) {
    const std::size_t S = source.extent(1), w = act.width;
    for (std::size_t b = 0; b < batch; ++b) {
        const ragged_run& r = (*act.runs)[first_run + b];
        const std::size_t p_begin = idx.position < 0 ? r.start : std::size_t(idx.position);
        const std::size_t p_end = idx.position < 0 ? r.start + r.length : p_begin + 1;
        for (std::size_t p = p_begin; p < p_end; ++p)
            if (T* row = act.row(first_run + b, p)) // else not computed here: it cannot reach the metric
                copy_patched_part(source.data() + (b * S + p) * w, row, w, source, idx);
    }
}

template <class Metric, class = void>
struct has_position : std::false_type {};
template <class Metric>
struct has_position<Metric, std::void_t<decltype(std::declval<const Metric&>().position)>> : std::true_type {};
template <class Metric, class = void>
struct has_base : std::false_type {};
template <class Metric>
struct has_base<Metric, std::void_t<decltype(std::declval<const Metric&>().base)>> : std::true_type {};

template <class Metric, class = void>
struct has_logit_tokens : std::false_type {};
template <class Metric>
struct has_logit_tokens<Metric, std::void_t<decltype(std::declval<const Metric&>().logit_tokens())>>
    : std::true_type {};

// The logits of a metric that reads a few vocabulary ids at the last position (logit_tokens()):
// the final norm of each run's last row and a product with only those rows of the unembedding
// (2 instead of 50257 columns for a logit difference). value() then gets a [B, 1, V] tensor whose
// other columns are 0.
template <class T>
class sparse_last_logits {
public:
    sparse_last_logits(const basic_transformer<T>& model, std::vector<std::int32_t> tokens, std::size_t batch)
        : m_model(model), m_tokens(std::move(tokens)) {
        const model_config& c = model.config();
        m_unembedding.reshape_uninitialized({m_tokens.size(), c.d_model});
        for (std::size_t j = 0; j < m_tokens.size(); ++j) {
            const std::int32_t id = m_tokens[j];
            if (id < 0 || std::size_t(id) >= c.vocab_size)
                fail(errc::token_out_of_range,
                     "activation_patch: the metric reads token {}, outside the vocabulary [0, {})", id, c.vocab_size);
            model.weights().unembedding.widen_row(std::size_t(id), &m_unembedding(j, 0)); // no f32 copy of all
        }
        m_logits.resize({batch, 1, c.vocab_size});
    }

    // Computes the chosen logits of every row of `final_resid` [rows, d].
    void compute(tensor_view<const T> final_resid) {
        const model_config& c = m_model.config();
        const std::size_t rows = final_resid.extent(0);
        m_normed.reshape_uninitialized({rows, c.d_model});
        m_model.final_norm(final_resid.data(), rows, m_normed.data());
        m_columns.reshape_uninitialized({rows, m_tokens.size()});
        if (m_tokens.empty()) return; // value() reports the metric's missing tokens
        kernels::linear(static_cast<const T*>(m_normed.data()), rows, c.d_model,
                        static_cast<const T*>(m_unembedding.data()), m_tokens.size(), static_cast<const T*>(nullptr),
                        m_columns.data());
        m_model.cap_logits(m_columns.data(), rows, m_tokens.size()); // as unembed() caps its rows
    }

    // The [B, 1, V] logits of rows first_row .. first_row + B - 1.
    tensor_view<const T> rows(std::size_t first_row) {
        const std::size_t B = m_logits.extent(0), V = m_logits.extent(2);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t j = 0; j < m_tokens.size(); ++j)
                m_logits.data()[b * V + std::size_t(m_tokens[j])] = m_columns(first_row + b, j);
        return static_cast<const tensor<T>&>(m_logits).view();
    }

private:
    const basic_transformer<T>& m_model;
    std::vector<std::int32_t> m_tokens;
    tensor<T> m_unembedding, m_normed, m_columns, m_logits;
};

// Whether a metric reads the last position only (then the positions before a patch can reuse the
// target run's keys and values, and only the last row of logits is needed). A wrapper such as
// normalized_metric reads where its base metric reads; a metric with neither member is assumed to
// read every position.
template <class Metric>
bool reads_last_position(const Metric& metric) {
    if constexpr (has_position<Metric>::value)
        return metric.position == -1;
    else if constexpr (has_base<Metric>::value)
        return reads_last_position(metric.base);
    else
        return false;
}

} // namespace detail

/// Activation patching sweep, computed with the fast plan (see the file comment). Inputs are
/// [B, T] token batches of equal shape. Returns the metric of every patched run.
/// Throws actlens::error for shape mismatches and anything forward() rejects.
template <class T, class Metric>
patching_result activation_patch(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                 tensor_view<const std::int32_t> corrupted, const Metric& metric, patch_target target,
                                 const patching_options& options = {});

/// The same sweep by brute force: one full forward of the target run per patch, with a hook.
template <class T, class Metric>
patching_result activation_patch_reference(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                           tensor_view<const std::int32_t> corrupted, const Metric& metric,
                                           patch_target target, const patching_options& options = {});

/// One prompt's tokens as a [1, T] view: what the std::vector overloads of the patching and
/// attribution methods pass on. The view borrows `tokens`.
inline tensor_view<const std::int32_t> prompt_view(const std::vector<std::int32_t>& tokens) {
    return {tokens.data(), {1, tokens.size()}};
}

/// activation_patch on one clean and one corrupted prompt given as token vectors.
template <class T, class Metric>
patching_result activation_patch(const basic_transformer<T>& model, const std::vector<std::int32_t>& clean,
                                 const std::vector<std::int32_t>& corrupted, const Metric& metric, patch_target target,
                                 const patching_options& options = {}) {
    return activation_patch(model, prompt_view(clean), prompt_view(corrupted), metric, target, options);
}

/// activation_patch_reference on one clean and one corrupted prompt given as token vectors.
template <class T, class Metric>
patching_result activation_patch_reference(const basic_transformer<T>& model, const std::vector<std::int32_t>& clean,
                                           const std::vector<std::int32_t>& corrupted, const Metric& metric,
                                           patch_target target, const patching_options& options = {}) {
    return activation_patch_reference(model, prompt_view(clean), prompt_view(corrupted), metric, target, options);
}

namespace detail {

template <class T>
struct patch_runs {
    activation_cache<T> source, target; // source: the values patched in; target: the run patched
    std::size_t batch = 0, positions = 0;
};

template <class T>
patch_runs<T> cache_patch_runs(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                               tensor_view<const std::int32_t> corrupted, patch_target t, patch_direction dir,
                               bool with_target_tape) {
    if (clean.rank() == 1) clean = clean.reshaped({1, clean.extent(0)});
    if (corrupted.rank() == 1) corrupted = corrupted.reshaped({1, corrupted.extent(0)});
    if (clean.shape() != corrupted.shape())
        fail(errc::shape_mismatch, "activation_patch: clean tokens {} and corrupted tokens {} differ in shape",
             clean.shape().to_string(), corrupted.shape().to_string());
    const auto& src_tokens = dir == patch_direction::denoising ? clean : corrupted;
    const auto& dst_tokens = dir == patch_direction::denoising ? corrupted : clean;
    patch_runs<T> r;
    r.batch = clean.extent(0);
    r.positions = clean.extent(1);
    const site s = patch_site(t);
    std::vector<hook_point> src_points, dst_points;
    for (int l = 0; l < int(model.config().n_layers); ++l) {
        src_points.push_back({s, l});
        if (with_target_tape) {
            const bool rotary = model.config().position == position_kind::rotary;
            dst_points.push_back({site::resid_pre, l});
            dst_points.push_back({rotary ? site::attn_rot_q : site::attn_q, l});
            dst_points.push_back({rotary ? site::attn_rot_k : site::attn_k, l});
            dst_points.push_back({site::attn_v, l});
        }
    }
    hook_set<T> src_hooks, dst_hooks;
    r.source.capture_into(src_hooks, src_points);
    r.target.capture_into(dst_hooks, dst_points);
    run_options<T> o;
    o.last_position_only = true;
    o.hooks = &src_hooks;
    workspace<T> ws;
    model.forward_into(ws, src_tokens, o);
    o.hooks = &dst_hooks;
    model.forward_into(ws, dst_tokens, o);
    return r;
}

} // namespace detail

template <class T, class Metric>
patching_result activation_patch_reference(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                           tensor_view<const std::int32_t> corrupted, const Metric& metric,
                                           patch_target target, const patching_options& options) {
    if (clean.rank() == 1) clean = clean.reshaped({1, clean.extent(0)});
    if (corrupted.rank() == 1) corrupted = corrupted.reshaped({1, corrupted.extent(0)});
    const auto runs = detail::cache_patch_runs(model, clean, corrupted, target, options.direction, false);
    const auto& dst_tokens = options.direction == patch_direction::denoising ? corrupted : clean;
    patching_result result;
    shape_t shape;
    const auto plan = detail::patch_plan(target, model.config(), runs.positions, shape, result.axes);
    result.scores.resize(shape);
    workspace<T> ws;
    const site s = detail::patch_site(target);
    for (std::size_t i = 0; i < plan.size(); ++i) {
        const detail::patch_index& idx = plan[i];
        const tensor<T>& src = runs.source.at(hook_point{s, idx.layer});
        hook_set<T> hooks;
        hooks.add(hook_point{s, idx.layer}, [&](tensor_view<T> a, const hook_context&) {
            detail::write_patch(a, src, idx);
        });
        run_options<T> o;
        o.hooks = &hooks;
        result.scores.data()[i] = metric.value(model.forward_into(ws, dst_tokens, o));
        if (options.progress) options.progress(i + 1, plan.size());
    }
    return result;
}

template <class T, class Metric>
patching_result activation_patch(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                 tensor_view<const std::int32_t> corrupted, const Metric& metric, patch_target target,
                                 const patching_options& options) {
    const model_config& c = model.config();
    const auto runs = detail::cache_patch_runs(model, clean, corrupted, target, options.direction, true);
    const std::size_t B = runs.batch, S = runs.positions, V = c.vocab_size;
    const bool last_only = detail::reads_last_position(metric);
    patching_result result;
    shape_t shape;
    const auto plan = detail::patch_plan(target, c, S, shape, result.axes);
    result.scores.resize(shape);
    const site s = detail::patch_site(target);
    const bool rotary = c.position == position_kind::rotary;
    ragged_base<T> base;
    std::vector<const tensor<T>*> sources;
    for (int l = 0; l < int(c.n_layers); ++l) {
        base.resid_pre.push_back(runs.target.at(hook_point{site::resid_pre, l}).view());
        base.keys.push_back(runs.target.at(hook_point{rotary ? site::attn_rot_k : site::attn_k, l}).view());
        base.values.push_back(runs.target.at(hook_point{site::attn_v, l}).view());
        base.queries.push_back(runs.target.at(hook_point{rotary ? site::attn_rot_q : site::attn_q, l}).view());
        sources.push_back(&runs.source.at(hook_point{s, l}));
    }
    ragged_workspace<T> ws;
    std::optional<detail::sparse_last_logits<T>> sparse;
    if constexpr (detail::has_logit_tokens<Metric>::value)
        if (last_only) sparse.emplace(model, metric.logit_tokens(), B);
    std::vector<ragged_run> wave;
    const std::size_t budget = std::max<std::size_t>(1, options.rows_per_forward);
    std::size_t i = 0;
    while (i < plan.size()) {
        // A wave: the next patches of the plan, one run per batch row each, while their rows fit.
        wave.clear();
        std::size_t rows = 0, count = 0;
        for (; i + count < plan.size(); ++count) {
            const detail::patch_index& idx = plan[i + count];
            const std::size_t start = last_only && idx.position >= 0 ? std::size_t(idx.position) : 0;
            if (count > 0 && rows + B * (S - start) > budget) break;
            // A resid_pre patch at the run's first position leaves the other rows' q, k, v as they were.
            const bool reuse = s == site::resid_pre && last_only && idx.position >= 0;
            for (std::size_t b = 0; b < B; ++b) wave.push_back(ragged_run{b, start, S - start, idx.layer, reuse});
            rows += B * (S - start);
        }
        auto patch = [&](site at, int layer, const ragged_activation<T>& act) {
            if (at != s) return;
            for (std::size_t g = 0; g < count; ++g)
                if (plan[i + g].layer == layer)
                    detail::write_patch(act, *sources[std::size_t(layer)], g * B, B, plan[i + g]);
        };
        const tensor_view<const T> final_resid = ragged_forward(model, ws, wave, base, last_only, patch);
        double* scores = result.scores.data() + i;
        if (sparse) {
            sparse->compute(final_resid);
            for (std::size_t g = 0; g < count; ++g) scores[g] = metric.value(sparse->rows(g * B));
        } else if (last_only) {
            const tensor_view<const T> logits = ragged_logits(model, ws, final_resid).reshaped({count * B, 1, V});
            for (std::size_t g = 0; g < count; ++g) scores[g] = metric.value(logits.rows(g * B, (g + 1) * B));
        } else {
            for (std::size_t g = 0; g < count; ++g) {
                const tensor_view<const T> logits =
                    ragged_logits(model, ws, final_resid.rows(g * B * S, (g + 1) * B * S));
                scores[g] = metric.value(logits.reshaped({B, S, V}));
            }
        }
        i += count;
        if (options.progress) options.progress(i, plan.size());
    }
    return result;
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE patching_result activation_patch(const transformer&, tensor_view<const std::int32_t>,
                                                    tensor_view<const std::int32_t>, const logit_difference&,
                                                    patch_target, const patching_options&);
ACTLENS_EXTERN_TEMPLATE patching_result activation_patch(const transformer&, tensor_view<const std::int32_t>,
                                                    tensor_view<const std::int32_t>, const token_log_prob&,
                                                    patch_target, const patching_options&);
ACTLENS_EXTERN_TEMPLATE patching_result activation_patch(const transformer&, tensor_view<const std::int32_t>,
                                                    tensor_view<const std::int32_t>, const kl_divergence&,
                                                    patch_target, const patching_options&);
#endif

} // namespace actlens
