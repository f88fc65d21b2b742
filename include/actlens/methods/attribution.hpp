// actlens/methods/attribution.hpp: gradient estimates of activation patching: AtP, RelP and
// Integrated Gradients (Nanda 2023 and Kramár et al. 2024 for AtP; "RelP: Faithful and Efficient
// Circuit Discovery via Relevance Patching", 2025; Sundararajan et al. 2017 for IG).
//
//   AtP(n)  = sum over n's entries of (patch value - base value) * dM/dn at the base run;
//   RelP(n) = the same with the LRP-modified backward (rule::relp) in place of the gradient;
//   IG(n)   = (patch - base) * mean over k of dM/dn at base + (k + 1/2)/N (patch - base), where all
//             entries of one layer's site are interpolated together and everything downstream is
//             recomputed.
// Denoising takes the corrupted run as the base and the clean values as the patch; noising the
// reverse. The scores have the shapes of activation_patch() so the two compare entry by entry.
// AtP and RelP cost two forwards and one backward, whatever the number of components.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/metrics.hpp> // the metrics of the extern template lines at the end
#include <actlens/methods/patching.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/workspace.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace actlens {

struct attribution_options {
    patch_direction direction = patch_direction::denoising;
    /// rule::gradient gives AtP, rule::relp RelP (see backward_options for the AH-rule switch).
    backward_options backward;
    /// Integrated Gradients: interpolation steps (midpoint rule).
    std::size_t ig_steps = 10;
};

namespace detail {

template <class T>
tensor_view<const std::int32_t> as_batch(tensor_view<const std::int32_t> tokens) {
    return tokens.rank() == 1 ? tokens.reshaped({1, tokens.extent(0)}) : tokens;
}

template <class Metric, class T, class = void>
struct has_normalized_gradient : std::false_type {};
template <class Metric, class T>
struct has_normalized_gradient<Metric, T,
                               std::void_t<decltype(std::declval<const Metric&>().normalized_gradient(
                                   std::declval<const basic_transformer<T>&>(), std::size_t(), std::size_t()))>>
    : std::true_type {};

// dM/d(ln_final.hook_normalized) [B, S, d] of the base run, whose logits are [B, S, V] or, when the
// metric reads the last position only, [B, 1, V]. A metric that knows its gradient at the final norm
// (logit_difference: two unembedding rows) skips the vocabulary product unless the model soft-caps its
// logits (the cap's derivative depends on them); otherwise the product runs on the rows the logits
// hold, and a last-position gradient is placed at position S - 1. `options` says how the final soft
// cap, if any, is passed (unembed_backward).
template <class T, class Metric>
tensor<T> final_norm_gradient(const basic_transformer<T>& model, tensor_view<const T> logits, const Metric& metric,
                              std::size_t batch, std::size_t positions, const backward_options& options = {}) {
    if constexpr (has_normalized_gradient<Metric, T>::value)
        if (!(model.config().final_logit_softcap > 0)) return metric.normalized_gradient(model, batch, positions);
    {
        tensor<T> d_logits(logits.shape());
        metric.logits_gradient(logits, d_logits.view());
        tensor<T> d_rows = unembed_backward(model, d_logits.view(), logits, options);
        if (logits.extent(1) == positions) return d_rows;
        const std::size_t d = model.config().d_model;
        tensor<T> out({batch, positions, d});
        for (std::size_t b = 0; b < batch; ++b)
            std::copy(&d_rows(b, 0, 0), &d_rows(b, 0, 0) + d, &out(b, positions - 1, 0));
        return out;
    }
}

// Reduces (patch - base) * grad of one layer's activation into the result entries of that layer.
template <class T>
void reduce_attribution(patch_target target, const tensor<T>& patch, const tensor<T>& base, const tensor<T>& grad,
                        std::size_t layer, tensor<double>& scores) {
    const shape_t& s = grad.shape();
    const std::size_t B = s[0], S = s[1];
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < S; ++t) {
            if (grad.rank() == 4) { // hook_z [B, T, H, d_h]
                for (std::size_t h = 0; h < s[2]; ++h) {
                    double sum = 0;
                    for (std::size_t e = 0; e < s[3]; ++e)
                        sum += (double(patch(b, t, h, e)) - double(base(b, t, h, e))) * double(grad(b, t, h, e));
                    if (target == patch_target::head) scores(layer, h) += sum;
                    else scores(layer, t, h) += sum;
                }
            } else if (target == patch_target::neuron) {
                for (std::size_t n = 0; n < s[2]; ++n)
                    scores(layer, n) += (double(patch(b, t, n)) - double(base(b, t, n))) * double(grad(b, t, n));
            } else {
                double sum = 0;
                for (std::size_t e = 0; e < s[2]; ++e)
                    sum += (double(patch(b, t, e)) - double(base(b, t, e))) * double(grad(b, t, e));
                scores(layer, t) += sum;
            }
        }
}

template <class T>
std::vector<hook_point> site_points(const basic_transformer<T>& model, patch_target target) {
    std::vector<hook_point> out;
    for (int l = 0; l < int(model.config().n_layers); ++l) out.push_back({patch_site(target), l});
    return out;
}

// The activations at `points` from a forward pass of `tokens`, into `cache` (slots reused): the
// patch run of AtP and AtP*, whose activations are patched in, not its logits (so only the last
// position's are computed).
template <class T>
void capture_patch_activations(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                               const std::vector<hook_point>& points, activation_cache<T>& cache, workspace<T>& ws) {
    hook_set<T> capture;
    cache.capture_into(capture, points);
    run_options<T> o;
    o.hooks = &capture;
    o.last_position_only = true;
    model.forward_into(ws, tokens, o);
}

template <class T>
activation_cache<T> capture_patch_activations(const basic_transformer<T>& model,
                                              tensor_view<const std::int32_t> tokens,
                                              const std::vector<hook_point>& points) {
    activation_cache<T> cache;
    workspace<T> ws;
    capture_patch_activations(model, tokens, points, cache, ws);
    return cache;
}

} // namespace detail

/// Buffers of attribution_patch and integrated_gradients that a caller can keep between calls, as
/// with the forward's workspace: the tape and the patch and base runs' activations (36 MB for GPT-2
/// small at T = 64) and the forwards' workspaces.
template <class T>
struct attribution_workspace {
    activation_cache<T> patch, base, tape;
    workspace<T> patch_run, base_run;
};

/// Attribution patching (AtP) or, with options.backward.rule = rule::relp, relevance patching (RelP).
/// One backward pass gives the scores of every component of the target kind. `scratch` holds the
/// buffers between calls (the results do not depend on what it held before).
template <class T, class Metric>
patching_result attribution_patch(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                  tensor_view<const std::int32_t> corrupted, const Metric& metric, patch_target target,
                                  const attribution_options& options, attribution_workspace<T>& scratch) {
    clean = detail::as_batch<T>(clean);
    corrupted = detail::as_batch<T>(corrupted);
    if (clean.shape() != corrupted.shape())
        fail(errc::shape_mismatch, "attribution_patch: clean tokens {} and corrupted tokens {} differ in shape",
             clean.shape().to_string(), corrupted.shape().to_string());
    const bool denoise = options.direction == patch_direction::denoising;
    const auto& base_tokens = denoise ? corrupted : clean;
    const auto& patch_tokens = denoise ? clean : corrupted;
    const auto points = detail::site_points(model, target);

    const activation_cache<T>& patch_cache = scratch.patch;
    detail::capture_patch_activations(model, patch_tokens, points, scratch.patch, scratch.patch_run);
    activation_cache<T>& tape = scratch.tape;
    hook_set<T> record;
    auto tape_list = tape_points(model);
    tape_list.insert(tape_list.end(), points.begin(), points.end());
    tape.capture_into(record, tape_list);
    // The tape records every position; the logits are needed only where the metric reads them.
    run_options<T> o;
    o.hooks = &record;
    o.last_position_only = detail::reads_last_position(metric);
    const tensor_view<const T> base_logits = model.forward_into(scratch.base_run, base_tokens, o);
    const tensor<T> d_norm =
        detail::final_norm_gradient(model, base_logits, metric, base_tokens.extent(0), base_tokens.extent(1),
                                    options.backward);
    const activation_cache<T> grads = backward(model, tape, d_norm.view(), points, options.backward);

    patching_result result;
    shape_t shape;
    detail::patch_plan(target, model.config(), clean.extent(1), shape, result.axes);
    result.scores.resize(shape);
    for (const hook_point& p : points)
        detail::reduce_attribution(target, patch_cache.at(p), tape.at(p), grads.at(p), std::size_t(p.layer),
                                   result.scores);
    return result;
}

/// attribution_patch with buffers of its own (allocated for this call).
template <class T, class Metric>
patching_result attribution_patch(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                  tensor_view<const std::int32_t> corrupted, const Metric& metric, patch_target target,
                                  const attribution_options& options = {}) {
    attribution_workspace<T> scratch;
    return attribution_patch(model, clean, corrupted, metric, target, options, scratch);
}

/// attribution_patch on one clean and one corrupted prompt given as token vectors.
template <class T, class Metric>
patching_result attribution_patch(const basic_transformer<T>& model, const std::vector<std::int32_t>& clean,
                                  const std::vector<std::int32_t>& corrupted, const Metric& metric, patch_target target,
                                  const attribution_options& options = {}) {
    return attribution_patch(model, prompt_view(clean), prompt_view(corrupted), metric, target, options);
}

/// Integrated Gradients with the patch as the end point: for each layer, the whole site (every
/// position and unit) is interpolated from the base run's value to the patch run's, the model is
/// rerun from that layer's cached residual (logits only where the metric reads), and the gradients
/// are averaged (midpoint rule, options.ig_steps steps). Cost: ig_steps forward + backward passes
/// per layer, each from the layer up. `scratch` holds the buffers between steps and calls.
template <class T, class Metric>
patching_result integrated_gradients(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                     tensor_view<const std::int32_t> corrupted, const Metric& metric,
                                     patch_target target, const attribution_options& options,
                                     attribution_workspace<T>& scratch) {
    clean = detail::as_batch<T>(clean);
    corrupted = detail::as_batch<T>(corrupted);
    if (clean.shape() != corrupted.shape())
        fail(errc::shape_mismatch, "integrated_gradients: clean tokens {} and corrupted tokens {} differ in shape",
             clean.shape().to_string(), corrupted.shape().to_string());
    if (options.ig_steps == 0) fail(errc::invalid_argument, "integrated_gradients: ig_steps must be positive");
    const bool denoise = options.direction == patch_direction::denoising;
    const auto& base_tokens = denoise ? corrupted : clean;
    const auto& patch_tokens = denoise ? clean : corrupted;
    const std::size_t B = clean.extent(0), S = clean.extent(1);
    const auto points = detail::site_points(model, target);
    std::vector<hook_point> base_points = points;
    for (int l = 0; l < int(model.config().n_layers); ++l) base_points.push_back({site::resid_pre, l});
    std::sort(base_points.begin(), base_points.end());
    base_points.erase(std::unique(base_points.begin(), base_points.end()), base_points.end());
    detail::capture_patch_activations(model, patch_tokens, points, scratch.patch, scratch.patch_run);
    detail::capture_patch_activations(model, base_tokens, base_points, scratch.base, scratch.patch_run);

    patching_result result;
    shape_t shape;
    detail::patch_plan(target, model.config(), S, shape, result.axes);
    result.scores.resize(shape);
    tensor<T> mean_grad;
    for (const hook_point& p : points) {
        const tensor<T>& base = scratch.base.at(p);
        const tensor<T>& patch = scratch.patch.at(p);
        const tensor<T>& resid = scratch.base.at(hook_point{site::resid_pre, p.layer});
        mean_grad.resize(base.shape());
        for (std::size_t k = 0; k < options.ig_steps; ++k) {
            const T alpha = (T(k) + T(0.5)) / T(options.ig_steps);
            hook_set<T> hooks;
            hooks.add(p, [&](tensor_view<T> a, const hook_context&) {
                for (std::size_t i = 0; i < a.size(); ++i)
                    a.data()[i] = base.data()[i] + alpha * (patch.data()[i] - base.data()[i]);
            });
            auto tape_list = tape_points(model, p.layer);
            tape_list.push_back(p);
            scratch.tape.capture_into(hooks, tape_list);
            run_options<T> o;
            o.hooks = &hooks;
            o.last_position_only = detail::reads_last_position(metric);
            const tensor_view<const T> logits = model.forward_from(scratch.base_run, resid.view(), p.layer, o);
            const tensor<T> d_norm = detail::final_norm_gradient(model, logits, metric, B, S, options.backward);
            const auto grads = backward(model, scratch.tape, d_norm.view(), {p}, options.backward, p.layer);
            const tensor<T>& g = grads.at(p);
            for (std::size_t i = 0; i < g.size(); ++i) mean_grad.data()[i] += g.data()[i] / T(options.ig_steps);
        }
        detail::reduce_attribution(target, patch, base, mean_grad, std::size_t(p.layer), result.scores);
    }
    return result;
}

/// integrated_gradients with buffers of its own (allocated for this call).
template <class T, class Metric>
patching_result integrated_gradients(const basic_transformer<T>& model, tensor_view<const std::int32_t> clean,
                                     tensor_view<const std::int32_t> corrupted, const Metric& metric,
                                     patch_target target, const attribution_options& options = {}) {
    attribution_workspace<T> scratch;
    return integrated_gradients(model, clean, corrupted, metric, target, options, scratch);
}

/// integrated_gradients on one clean and one corrupted prompt given as token vectors.
template <class T, class Metric>
patching_result integrated_gradients(const basic_transformer<T>& model, const std::vector<std::int32_t>& clean,
                                     const std::vector<std::int32_t>& corrupted, const Metric& metric,
                                     patch_target target, const attribution_options& options = {}) {
    return integrated_gradients(model, prompt_view(clean), prompt_view(corrupted), metric, target, options);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE patching_result attribution_patch(const transformer&, tensor_view<const std::int32_t>,
                                                     tensor_view<const std::int32_t>, const logit_difference&,
                                                     patch_target, const attribution_options&,
                                                     attribution_workspace<float>&);
ACTLENS_EXTERN_TEMPLATE patching_result attribution_patch(const transformer&, tensor_view<const std::int32_t>,
                                                     tensor_view<const std::int32_t>, const token_log_prob&,
                                                     patch_target, const attribution_options&,
                                                     attribution_workspace<float>&);
ACTLENS_EXTERN_TEMPLATE patching_result integrated_gradients(const transformer&, tensor_view<const std::int32_t>,
                                                        tensor_view<const std::int32_t>, const logit_difference&,
                                                        patch_target, const attribution_options&,
                                                        attribution_workspace<float>&);
#endif

} // namespace actlens
