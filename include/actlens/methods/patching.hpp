// actlens/methods/patching.hpp: activation patching, the ground truth of causal attribution.
//
// Denoising runs the corrupted input and overwrites one component with its value from the clean
// run; noising runs the clean input and overwrites with the corrupted value. The score is the
// metric of the patched run (use normalize() for "fraction of clean behaviour"). As in
// TransformerLens, one index is patched in every batch row at once and the metric is the batch mean.
//
// A sweep is a plan, not a loop of full forwards (ARCHITECTURE.md §7):
//   - both runs are cached once;
//   - a patch at layer l restarts the forward from the target run's resid_pre at layer l;
//   - a patch at position p reuses the target run's keys and values of positions before p and
//     recomputes only positions p.. (the metric must read the last position for this);
//   - patches of one layer run as rows of one batched forward: heads and neurons, and nearby
//     positions (a copy starts at its group's first position; see patching_options).
// activation_patch_reference() is the brute-force loop (one full forward per patch); tests compare
// the two and benchmarks time them.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/kv_cache.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
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
    /// Patches of one layer run together as stacked copies of the target run in one forward.
    std::size_t patches_per_forward = 16;
    /// Position sweeps with key/value reuse: a copy starts at its group's first patched position,
    /// so a copy patched later recomputes the positions in between. Patches at different
    /// positions join a group while it stays within this many rows (copies x batch x positions
    /// run): few-row products run far below the GEMM's peak, long groups waste work.
    std::size_t rows_per_forward = 128;
    /// Called after each forward with (patches done, patches in all).
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

// Overwrites, in `target` (an activation of `rows` = copies x B rows, computed for positions
// offset.. of the sequence), the entries of patch `idx` with the source run's values.
template <class T>
void write_patch(tensor_view<T> target, const tensor<T>& source, std::size_t copy, std::size_t batch,
                 std::size_t offset, const patch_index& idx) {
    const std::size_t T_here = target.extent(1);
    const std::size_t p_begin = idx.position < 0 ? 0 : std::size_t(idx.position) - offset;
    const std::size_t p_end = idx.position < 0 ? T_here : p_begin + 1;
    const bool unit = idx.unit >= 0;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = p_begin; t < p_end; ++t) {
            const std::size_t row = copy * batch + b, src_t = t + offset;
            if (target.rank() == 4) { // attn.hook_z [rows, T, H, d_h]: one head
                for (std::size_t e = 0; e < target.extent(3); ++e)
                    target(row, t, std::size_t(idx.unit), e) = source(b, src_t, std::size_t(idx.unit), e);
            } else if (unit) { // mlp.hook_post: one neuron
                target(row, t, std::size_t(idx.unit)) = source(b, src_t, std::size_t(idx.unit));
            } else {
                for (std::size_t e = 0; e < target.extent(2); ++e) target(row, t, e) = source(b, src_t, e);
            }
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
    model.forward(ws, src_tokens, o);
    o.hooks = &dst_hooks;
    model.forward(ws, dst_tokens, o);
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
        hooks.add(hook_point{s, idx.layer}, [&](tensor_view<T> a, const hook_context& c) {
            detail::write_patch(a, src, 0, runs.batch, c.position_offset, idx);
        });
        run_options<T> o;
        o.hooks = &hooks;
        result.scores.data()[i] = metric.value(model.forward(ws, dst_tokens, o));
        if (options.progress) options.progress(i + 1, plan.size());
    }
    return result;
}

template <class T, class Metric>
patching_result activation_patch(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                 tensor_view<const std::int32_t> corrupted, const Metric& metric, patch_target target,
                                 const patching_options& options) {
    const model_config& c = model.config();
    auto runs = detail::cache_patch_runs(model, clean, corrupted, target, options.direction, true);
    const std::size_t B = runs.batch, S = runs.positions, d = c.d_model;
    const bool last_only = detail::reads_last_position(metric);
    patching_result result;
    shape_t shape;
    const auto plan = detail::patch_plan(target, c, S, shape, result.axes);
    result.scores.resize(shape);
    const site s = detail::patch_site(target);
    const bool rotary = c.position == position_kind::rotary;
    workspace<T> ws;
    tensor<T> input;
    std::vector<kv_cache<T>> caches; // one per number of rows, allocated once (fresh pages are slow)
    std::size_t done = 0;

    // Groups of patches of one layer run as one batched forward of `group` stacked copies of the
    // target run (see patching_options for how large).
    const std::size_t max_group = std::max<std::size_t>(1, options.patches_per_forward);
    std::size_t i = 0;
    while (i < plan.size()) {
        const detail::patch_index first = plan[i];
        const bool positional = first.position >= 0 && last_only;
        // Positions before the group's first patch are reused from the target run's keys and values.
        const std::size_t offset = positional ? std::size_t(first.position) : 0;
        std::size_t group = 1;
        while (i + group < plan.size() && group < max_group && plan[i + group].layer == first.layer) {
            if (positional && plan[i + group].position != first.position &&
                (group + 1) * B * (S - offset) > options.rows_per_forward)
                break;
            ++group;
        }
        const std::size_t rows = group * B, len = S - offset;
        const tensor<T>& resid = runs.target.at(hook_point{site::resid_pre, first.layer});
        input.reshape_uninitialized({rows, len, d});
        for (std::size_t g = 0; g < group; ++g)
            for (std::size_t b = 0; b < B; ++b)
                std::copy(&resid(b, offset, 0), &resid(b, offset, 0) + len * d, &input(g * B + b, 0, 0));
        run_options<T> o;
        o.last_position_only = last_only;
        if (offset > 0) {
            auto it = std::find_if(caches.begin(), caches.end(), [&](const kv_cache<T>& k) { return k.batch() == rows; });
            if (it == caches.end()) it = caches.insert(caches.end(), model.make_kv_cache(rows, S));
            kv_cache<T>& cache = *it;
            cache.clear();
            for (int l = first.layer; l < int(c.n_layers); ++l) {
                const tensor<T>& k = runs.target.at(hook_point{rotary ? site::attn_rot_k : site::attn_k, l});
                const tensor<T>& v = runs.target.at(hook_point{site::attn_v, l});
                const std::size_t kvw = cache.kv_width();
                for (std::size_t g = 0; g < group; ++g)
                    for (std::size_t b = 0; b < B; ++b) {
                        std::copy(k.data() + b * S * kvw, k.data() + (b * S + offset) * kvw,
                                  cache.keys(std::size_t(l)).data() + (g * B + b) * S * kvw);
                        std::copy(v.data() + b * S * kvw, v.data() + (b * S + offset) * kvw,
                                  cache.values(std::size_t(l)).data() + (g * B + b) * S * kvw);
                    }
            }
            cache.advance(offset);
            o.cache = &cache;
        }
        const tensor<T>& src = runs.source.at(hook_point{s, first.layer});
        hook_set<T> hooks;
        hooks.add(hook_point{s, first.layer}, [&](tensor_view<T> a, const hook_context& ctx) {
            for (std::size_t g = 0; g < group; ++g) detail::write_patch(a, src, g, B, ctx.position_offset, plan[i + g]);
        });
        o.hooks = &hooks;
        const tensor_view<const T> logits = model.forward_from(ws, input.view(), first.layer, o);
        for (std::size_t g = 0; g < group; ++g)
            result.scores.data()[i + g] = metric.value(logits.rows(g * B, (g + 1) * B));
        i += group;
        done += group;
        if (options.progress) options.progress(done, plan.size());
    }
    return result;
}

} // namespace actlens
