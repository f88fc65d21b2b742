// actlens/methods/concept_recursion.hpp: the sub-concepts of one concept, found at an earlier layer.
//
// CRAFT (Fel et al., "CRAFT: Concept Recursive Activation FacTorization for Explainability", seed
// papers) splits a concept that is too broad recursively: keep only the inputs where it is present,
// factorise their activations at an earlier layer, and read the factors as its sub-concepts, ranked
// by Sobol indices as the concepts were. For a transformer, with a parent concept at hook point P of
// layer L (row j of directions Z [K, width]; its activation at a token is c_j of the split
// a = c Z + r of methods/concept_importance.hpp, so an SNMF feature passed with its fit's other
// features shares a token's activation with them as in the fit) and an earlier hook point E of
// layer L' < L:
//
//   1. one forward pass: the parent's activation at every token, and E's activation rows;
//   2. the tokens where the parent is active: activation > threshold, then (top_k > 0) the top_k
//      largest;
//   3. SNMF of E's rows at those tokens, rank k' (methods/snmf.hpp): the sub-concepts Z' [k', width'];
//   4. masks m in [0, 1]^k' of the sub-concepts at E, at the selected tokens only (where Z' was fitted:
//      a(m) = a − Σ_k (1 − m_k) c'_k z'_k), and two functions of m read from the same forward passes:
//      the parent's mean activation over the selected tokens, and the metric. Their total-order Sobol
//      indices, with bootstrap intervals (analysis/sobol.hpp), say what each sub-concept contributes
//      to the parent and to the output.
//
// N (k' + 2) forward passes for both indices together (the second Sobol run reads the metric values
// the first one computed: both draw the same masks), plus one for steps 1-2.
#pragma once

#include <actlens/analysis/sobol.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/concept_importance.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// The concept to decompose: row `index` of `directions` [K, width] at hook point `hook`.
template <class U>
struct parent_concept {
    std::string hook;                ///< e.g. "blocks.1.mlp.hook_post"
    tensor_view<const U> directions; ///< [K, width], e.g. an SNMF fit's features
    std::size_t index = 0;           ///< j: the parent is row j
};

struct concept_recursion_options {
    double threshold = 0.0; ///< tokens whose parent activation is above this ...
    std::size_t top_k = 0;  ///< ... and, when > 0, only the top_k largest of them
    std::size_t rank = 2;   ///< k': sub-concepts to find
    snmf_options snmf;      ///< the factorisation (its rank is replaced by `rank`); note that its default
                            ///< sparsity keeps ceil(0.01 · width) values per feature
    sobol_options sobol;    ///< samples, seed and intervals of both Sobol runs
};

struct concept_recursion_result {
    std::vector<double> parent_activation; ///< [B · T]: the parent's activation at token (b, t), index b · T + t
    std::vector<std::size_t> selected;     ///< the tokens kept (indices b · T + t, increasing)
    snmf_result fit;                       ///< fit.features [k', width']: the sub-concepts; fit.coefficients
                                           ///< [selected, k']: their coefficients, row i at token selected[i]
    sobol_result for_parent; ///< total indices of the sub-concepts for the parent's mean activation over `selected`
    sobol_result for_metric; ///< ... and for the metric
};

/// Decomposes `parent` into sub-concepts at `earlier_hook` (steps at the top of this header) on
/// `tokens` [B, T] (or [T]). Throws model.402/403 for a hook point the model lacks or one that is not
/// one row per position, model.403 unless `earlier_hook` is at a layer below the parent's
/// (hook_embed counts as below layer 0, ln_final after the last), arg.103 for an index outside the
/// directions, arg.101 for rank 0, a threshold that is not finite, no token above the threshold or
/// fewer selected tokens than the rank, arg.102 for parent directions of another width than their
/// hook, arg.104 for a NaN or infinity in the directions or the activations, arg.101 when the
/// sub-concepts found are linearly dependent, and as fit_snmf, sobol_total_indices, the forward and
/// the metric.
template <class T, class U, class Metric>
concept_recursion_result concept_recursion(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                           const parent_concept<U>& parent, std::string_view earlier_hook,
                                           const Metric& metric, const concept_recursion_options& options = {});

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// Where a hook point sits among the layers: its block, -1 before them, n_layers after them.
inline int layer_order(const hook_point& p, std::size_t n_layers) {
    if (is_block_site(p.site)) return p.layer;
    return p.site == site::ln_final_normalized ? int(n_layers) : -1;
}

/// The tokens kept: activation > threshold, then the top_k largest (ties: lower index), increasing.
inline std::vector<std::size_t> select_active_tokens(const std::vector<double>& activation, double threshold,
                                                     std::size_t top_k) {
    std::vector<std::size_t> kept;
    for (std::size_t i = 0; i < activation.size(); ++i)
        if (activation[i] > threshold) kept.push_back(i);
    if (top_k > 0 && kept.size() > top_k) {
        std::stable_sort(kept.begin(), kept.end(),
                         [&](std::size_t a, std::size_t b) { return activation[a] > activation[b]; });
        kept.resize(top_k);
        std::sort(kept.begin(), kept.end());
    }
    return kept;
}

} // namespace detail

template <class T, class U, class Metric>
concept_recursion_result concept_recursion(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                           const parent_concept<U>& parent, std::string_view earlier_hook,
                                           const Metric& metric, const concept_recursion_options& o) {
    constexpr std::string_view who = "concept_recursion";
    const hook_point upper = detail::per_position_hook(model, parent.hook, who);
    const hook_point lower = detail::per_position_hook(model, earlier_hook, who);
    const std::size_t n_layers = model.config().n_layers;
    if (detail::layer_order(lower, n_layers) >= detail::layer_order(upper, n_layers))
        fail(errc::bad_layer_range, "{}: the earlier hook '{}' (layer {}) must be at a layer below the parent's '{}' (layer {})",
             who, earlier_hook, detail::layer_order(lower, n_layers), parent.hook, detail::layer_order(upper, n_layers));
    detail::concept_split parent_split(parent.directions, "concept_recursion: parent directions");
    if (parent.index >= parent_split.concepts())
        fail(errc::out_of_range, "{}: parent index {} is outside the {} directions", who, parent.index,
             parent_split.concepts());
    if (o.rank == 0) fail(errc::invalid_argument, "{}: options.rank must be >= 1", who);
    if (!std::isfinite(o.threshold)) fail(errc::invalid_argument, "{}: options.threshold = {} is not finite", who, o.threshold);
    if (!tokens.is_contiguous() || (tokens.rank() != 1 && tokens.rank() != 2))
        fail(errc::shape_mismatch, "{}: tokens must be a contiguous [B, T] or [T], got {}", who, tokens.shape().to_string());
    const std::size_t positions = tokens.extent(tokens.rank() - 1);
    const std::size_t count = tokens.rank() == 1 ? positions : tokens.extent(0) * positions;

    // State the hooks share with the passes below.
    concept_recursion_result out;
    std::vector<double> activation(count);          // the parent's, in the last forward
    std::vector<double> mask;                       // empty: E is only read (step 1)
    std::optional<detail::concept_split> sub_split; // the sub-concepts' split, from step 3 on
    tensor<float> earlier_rows;                     // [count, width'] in step 1
    hook_set<T> hooks;
    hooks.add(lower, [&](tensor_view<T> values, const hook_context&) {
        const tensor_view<T> a = detail::activation_rows(values);
        if (mask.empty()) {
            earlier_rows = tensor<float>({count, a.extent(2)});
            for (std::size_t r = 0; r < count; ++r)
                for (std::size_t i = 0; i < a.extent(2); ++i) {
                    const double x = double(a(r / positions, r % positions, i));
                    if (!std::isfinite(x))
                        fail(errc::non_finite, "{}: '{}' holds {} at token {} (position {})", who, earlier_hook, x, r,
                             r % positions);
                    earlier_rows(r, i) = float(x);
                }
            return;
        }
        for (std::size_t r : out.selected) sub_split->mask_row(&a(r / positions, r % positions, 0), a.stride(2), mask);
    });
    hooks.add(upper, [&](tensor_view<T> values, const hook_context&) {
        const tensor_view<T> a = detail::activation_rows(values);
        if (a.extent(2) != parent_split.width())
            fail(errc::shape_mismatch, "{}: '{}' has rows of {} values, the parent directions {}", who, parent.hook,
                 a.extent(2), parent_split.width());
        for (std::size_t r = 0; r < count; ++r) {
            const double c = parent_split.coefficient(&a(r / positions, r % positions, 0), a.stride(2), parent.index);
            if (!std::isfinite(c))
                fail(errc::non_finite, "{}: the parent's activation is {} at token {} (position {})", who, c, r,
                     r % positions);
            activation[r] = c;
        }
    });
    workspace<T> ws;
    run_options<T> run;
    run.hooks = &hooks;

    // Steps 1-2: nothing above the parent's block is needed yet.
    {
        run_options<T> to_parent = run;
        if (is_block_site(upper.site)) to_parent.stop_at_layer = upper.layer + 1;
        model.forward_into(ws, tokens, to_parent);
    }
    out.parent_activation = activation;
    out.selected = detail::select_active_tokens(out.parent_activation, o.threshold, o.top_k);
    if (out.selected.empty())
        fail(errc::invalid_argument, "{}: no token has a parent activation above options.threshold = {} (the largest is {})",
             who, o.threshold, *std::max_element(out.parent_activation.begin(), out.parent_activation.end()));
    if (o.rank > out.selected.size())
        fail(errc::invalid_argument, "{}: options.rank = {} is larger than the {} selected tokens", who, o.rank,
             out.selected.size());

    // Step 3.
    const std::size_t width = earlier_rows.extent(1);
    tensor<float> data({out.selected.size(), width});
    for (std::size_t i = 0; i < out.selected.size(); ++i)
        std::copy(&earlier_rows(out.selected[i], 0), &earlier_rows(out.selected[i], 0) + width, &data(i, 0));
    earlier_rows = tensor<float>();
    snmf_options fit_options = o.snmf;
    fit_options.rank = o.rank;
    out.fit = fit_snmf(tensor_view<const float>(data.view()), fit_options);
    sub_split.emplace(tensor_view<const float>(out.fit.features.view()), "concept_recursion: sub-concepts");

    // Step 4: each forward gives both values; the metric's Sobol run finds them by mask.
    std::map<std::vector<double>, double> metric_at;
    auto forward_with = [&](const std::vector<double>& m) {
        mask = m;
        const double value = metric.value(model.forward_into(ws, tokens, run));
        metric_at[m] = value;
        return value;
    };
    auto parent_mean = [&](const std::vector<double>& m) {
        forward_with(m);
        double sum = 0.0;
        for (std::size_t r : out.selected) sum += activation[r];
        return sum / double(out.selected.size());
    };
    auto metric_value = [&](const std::vector<double>& m) {
        const auto found = metric_at.find(m);
        return found != metric_at.end() ? found->second : forward_with(m);
    };
    out.for_parent = sobol_total_indices(o.rank, parent_mean, o.sobol);
    out.for_metric = sobol_total_indices(o.rank, metric_value, o.sobol);
    return out;
}

} // namespace actlens
