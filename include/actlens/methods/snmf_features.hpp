// actlens/methods/snmf_features.hpp: reading and using the features of an SNMF fit of MLP neurons.
//
// For a fit of blocks.l.mlp.hook_post (methods/snmf.hpp; Shafran et al., arXiv 2506.10920):
//   - feature_neurons:      the neurons of feature j (non-zero entries of z_j), largest |weight| first;
//   - top_activating:       the tokens with the largest coefficient G[t, j], with their context in
//                           the corpus (input-centric description);
//   - feature_vocab:        ln_final(W_out z_j) through the unembedding (output-centric description);
//   - add_feature_steering: a hook adding alpha · z_j / ‖z_j‖ to hook_post at every position of every
//                           forward (prompt and KV-cache decode steps alike).
// The functions that take a model are templates of nothing (`template <int = 0>`): the model code
// they call is then compiled only where they are called, not in every file that includes this
// header (README "Compile time").
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// One neuron of a feature and its weight in z_j.
struct feature_neuron {
    std::size_t neuron = 0;
    float weight = 0.0f;
};

/// One token where a feature is active, with context.
struct feature_example {
    std::size_t row = 0;                ///< row of the capture / coefficients
    float coefficient = 0.0f;           ///< G[row, j]
    std::uint32_t sequence = 0, position = 0;
    std::int32_t token = 0;
    std::vector<std::int32_t> context;  ///< corpus[sequence][position - before .. position + after]
    std::size_t token_in_context = 0;   ///< index of `token` in `context`
};

/// Up to `k` neurons of feature j with non-zero weight, by decreasing |weight| (ties: lower index).
/// Throws arg.103 for j >= K.
inline std::vector<feature_neuron> feature_neurons(const snmf_result& fit, std::size_t j, std::size_t k);

/// The `k` rows with the largest coefficient of feature j (ties: lower row), with `before` / `after`
/// tokens of context from `corpus` (the sequences the capture ran; `rows` its row_info). Throws
/// arg.103 for j >= K, arg.102 when `rows` does not have one entry per coefficient row, arg.103 when
/// a row points outside the corpus.
inline std::vector<feature_example> top_activating(const snmf_result& fit, std::size_t j, std::size_t k,
                                                   const capture_rows& rows,
                                                   const std::vector<std::vector<std::int32_t>>& corpus,
                                                   std::size_t before = 15, std::size_t after = 15);

/// Output-centric description of feature j of a fit of blocks.`layer`.mlp.hook_post: the top-k
/// tokens of ln_final(W_out z_j) · W_Uᵀ. Throws model.403 for a bad layer, arg.102 when the fit's
/// width is not d_mlp, arg.103 for j >= K.
template <int = 0>
std::vector<token_score> feature_vocab(const transformer& model, int layer, const snmf_result& fit, std::size_t j,
                                       std::size_t k, vocab_norm norm = vocab_norm::normed);

/// Adds alpha · z_j / ‖z_j‖ to blocks.`layer`.mlp.hook_post at every position. Throws as
/// feature_vocab, and arg.101 when z_j is zero or alpha is not finite.
template <int = 0>
void add_feature_steering(hook_set<float>& hooks, const transformer& model, int layer, const snmf_result& fit,
                          std::size_t j, float alpha);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {
inline void check_feature(const snmf_result& fit, std::size_t j, const char* who) {
    if (fit.features.rank() != 2 || j >= fit.features.extent(0))
        fail(errc::out_of_range, "{}: feature {} is outside 0..{}", who, j,
             fit.features.rank() == 2 ? long(fit.features.extent(0)) - 1 : -1L);
}
template <int = 0>
void check_fit_width(const transformer& model, int layer, const snmf_result& fit, const char* who) {
    check_mlp_layer(model, layer, who);
    if (fit.features.rank() != 2 || fit.features.extent(1) != model.config().d_mlp)
        fail(errc::shape_mismatch, "{}: the fit has width {}, blocks.{}.mlp.hook_post has d_mlp = {}", who,
             fit.features.rank() == 2 ? fit.features.extent(1) : 0, layer, model.config().d_mlp);
}
} // namespace detail

inline std::vector<feature_neuron> feature_neurons(const snmf_result& fit, std::size_t j, std::size_t k) {
    detail::check_feature(fit, j, "feature_neurons");
    std::vector<feature_neuron> out;
    const std::size_t d = fit.features.extent(1);
    for (std::size_t i = 0; i < d; ++i)
        if (fit.features(j, i) != 0.0f) out.push_back({i, fit.features(j, i)});
    std::stable_sort(out.begin(), out.end(), [](const feature_neuron& a, const feature_neuron& b) {
        return std::fabs(a.weight) > std::fabs(b.weight);
    });
    if (out.size() > k) out.resize(k);
    return out;
}

inline std::vector<feature_example> top_activating(const snmf_result& fit, std::size_t j, std::size_t k,
                                                   const capture_rows& rows,
                                                   const std::vector<std::vector<std::int32_t>>& corpus,
                                                   std::size_t before, std::size_t after) {
    detail::check_feature(fit, j, "top_activating");
    const std::size_t n = fit.coefficients.extent(0);
    if (rows.size() != n || rows.sequence.size() != n || rows.position.size() != n)
        fail(errc::shape_mismatch, "top_activating: row info has {} rows, the fit has {}", rows.size(), n);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    k = std::min(k, n);
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(), [&](std::size_t a, std::size_t b) {
        const float ga = fit.coefficients(a, j), gb = fit.coefficients(b, j);
        return ga != gb ? ga > gb : a < b;
    });
    std::vector<feature_example> out;
    for (std::size_t r = 0; r < k; ++r) {
        feature_example e;
        e.row = order[r];
        e.coefficient = fit.coefficients(e.row, j);
        e.sequence = rows.sequence[e.row];
        e.position = rows.position[e.row];
        e.token = rows.token[e.row];
        if (e.sequence >= corpus.size() || e.position >= corpus[e.sequence].size())
            fail(errc::out_of_range, "top_activating: row {} is sequence {} position {}, outside the corpus", e.row,
                 e.sequence, e.position);
        const std::vector<std::int32_t>& seq = corpus[e.sequence];
        const std::size_t from = e.position >= before ? e.position - before : 0;
        const std::size_t to = std::min(seq.size(), std::size_t(e.position) + after + 1);
        e.context.assign(seq.begin() + std::ptrdiff_t(from), seq.begin() + std::ptrdiff_t(to));
        e.token_in_context = e.position - from;
        out.push_back(std::move(e));
    }
    return out;
}

template <int>
std::vector<token_score> feature_vocab(const transformer& model, int layer, const snmf_result& fit, std::size_t j,
                                       std::size_t k, vocab_norm norm) {
    detail::check_fit_width(model, layer, fit, "feature_vocab");
    detail::check_feature(fit, j, "feature_vocab");
    const model_config& c = model.config();
    const tensor_view<const float>& w_out = model.weights().layers[std::size_t(layer)].w_out; // [d, d_mlp]
    tensor<float> f({c.d_model});
    for (std::size_t e = 0; e < c.d_model; ++e) {
        double s = 0.0;
        for (std::size_t i = 0; i < c.d_mlp; ++i) s += double(w_out(e, i)) * double(fit.features(j, i));
        f(e) = float(s);
    }
    return decode_direction(model, f.view(), k, norm);
}

template <int>
void add_feature_steering(hook_set<float>& hooks, const transformer& model, int layer, const snmf_result& fit,
                          std::size_t j, float alpha) {
    detail::check_fit_width(model, layer, fit, "add_feature_steering");
    detail::check_feature(fit, j, "add_feature_steering");
    if (!std::isfinite(alpha)) fail(errc::invalid_argument, "add_feature_steering: alpha {} is not finite", alpha);
    const std::size_t d = fit.features.extent(1);
    std::vector<float> step(d);
    double norm = 0.0;
    for (std::size_t i = 0; i < d; ++i) norm += double(fit.features(j, i)) * double(fit.features(j, i));
    if (!(norm > 0.0)) fail(errc::invalid_argument, "add_feature_steering: feature {} is the zero vector", j);
    const double scale = double(alpha) / std::sqrt(norm);
    for (std::size_t i = 0; i < d; ++i) step[i] = float(double(fit.features(j, i)) * scale);
    hooks.add(hook_point{site::mlp_post, layer}, [step = std::move(step)](tensor_view<float> a, const hook_context&) {
        for (std::size_t b = 0; b < a.extent(0); ++b)
            for (std::size_t t = 0; t < a.extent(1); ++t) {
                float* row = &a(b, t, 0);
                for (std::size_t i = 0; i < step.size(); ++i) row[i * std::size_t(a.stride(2))] += step[i];
            }
    });
}

#ifdef ACTLENS_EXTERN_TEMPLATE
// SNMF on a capture directory: listed here, the first header that sees both the solver and the reader.
ACTLENS_EXTERN_TEMPLATE snmf_result fit_snmf(capture_reader&, const snmf_options&);
ACTLENS_EXTERN_TEMPLATE void add_feature_steering<0>(hook_set<float>&, const transformer&, int, const snmf_result&,
                                                     std::size_t, float);
ACTLENS_EXTERN_TEMPLATE std::vector<token_score> feature_vocab<0>(const transformer&, int, const snmf_result&,
                                                                  std::size_t, std::size_t, vocab_norm);
#endif

} // namespace actlens
