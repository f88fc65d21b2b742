// actlens/methods/neuron_pathways.hpp: query neurons and the value neurons they activate (ACE).
//
// Yang et al., "ACE: Attribution-Controlled Knowledge Editing for Multi-hop Factual Recall" (seed
// papers): in a multi-step recall, an intermediate subject acts through query neurons in earlier
// MLPs that activate value neurons in later ones, which write the answer. Two neuron-level scores
// find such pathways:
//
//   value score of MLP neuron i of layer l:   a_i · ∂M/∂a_i = a_i · (W_out[:, i] · ∇_{resid} M)
//       (activation times its effect on the metric M, summed over the positions M reads;
//        a_i = blocks.l.mlp.hook_post, the gradient from one backward pass);
//   query score of neuron q (layer l_q) for value neuron v (layer l_v > l_q):
//       a_q · Σ_j W_out^{l_q}[j, q] · g^{l_v}_j · W_in^{l_v}[v, j] / rms_{l_v}
//       (q's write into the residual, read by v's pre-activation through the direct path: v's
//        norm gain g and the norm's scale at that position; for SwiGLU, v's gate row).
//
// The paper's exact formulas are not in its abstract; these are the standard activation × gradient
// and direct-path ("virtual weight") scores the method builds on. edit_pathway scales the query
// neurons' activations (0 ablates them) with hooks, so the edit's effect on any metric is measured
// by running the model with them.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/model/backward.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace actlens {

struct pathway_neuron {
    int layer = 0;
    std::size_t neuron = 0;
    double score = 0.0;
};

/// A value neuron and the query neurons of earlier layers that activate it most.
struct neuron_pathway {
    pathway_neuron value;
    std::vector<pathway_neuron> queries; ///< by decreasing query score
};

struct pathway_options {
    std::size_t values = 5;  ///< value neurons kept (largest value score)
    std::size_t queries = 5; ///< query neurons kept per value neuron (largest query score)
    int first_value_layer = 1; ///< value neurons from this layer on (layer 0 has no query neurons)
};

/// The top value neurons for `metric` on `tokens` ([T] or [1, T]) and, for each, its top query
/// neurons, read at the last position (where next-token metrics are read). Throws arg.102 for a
/// batch of more than one row, and whatever the forward, metric and backward throw.
template <class T, class Metric>
std::vector<neuron_pathway> neuron_pathways(const basic_transformer<T>& model, tensor_view<const std::int32_t> tokens,
                                            const Metric& metric, const pathway_options& options = {}) {
    tokens = detail::as_batch<T>(tokens);
    if (tokens.extent(0) != 1)
        fail(errc::shape_mismatch, "neuron_pathways: one prompt at a time, got a batch of {}", tokens.extent(0));
    const model_config& c = model.config();
    const int L = static_cast<int>(c.n_layers);
    const std::size_t Tn = tokens.extent(1), last = Tn - 1, d = c.d_model, dm = c.d_mlp;
    std::vector<hook_point> post;
    for (int l = 0; l < L; ++l) post.push_back({site::mlp_post, l});

    // One forward (taped: the tape holds every hook_post and resid_mid) and one backward to every hook_post.
    activation_cache<T> tape;
    hook_set<T> record;
    tape.capture_into(record, tape_points(model));
    run_options<T> run;
    run.hooks = &record;
    run.last_position_only = detail::reads_last_position(metric);
    workspace<T> ws;
    const tensor_view<const T> logits = model.forward_into(ws, tokens, run);
    const tensor<T> d_norm = detail::final_norm_gradient(model, logits, metric, 1, Tn);
    const activation_cache<T> grads = backward(model, tape, d_norm.view(), post, backward_options{});

    if (options.first_value_layer < 0 || options.first_value_layer >= L)
        fail(errc::bad_layer_range, "neuron_pathways: first_value_layer {} is outside the model's layers 0..{}",
             options.first_value_layer, L - 1);
    std::vector<pathway_neuron> values;
    for (int l = options.first_value_layer; l < L; ++l) {
        const tensor<T>& a = tape.at(post[std::size_t(l)]);
        const tensor<T>& g = grads.at(post[std::size_t(l)]);
        for (std::size_t i = 0; i < dm; ++i) {
            double s = 0.0;
            for (std::size_t t = 0; t < Tn; ++t) s += double(a(0, t, i)) * double(g(0, t, i));
            values.push_back({l, i, s});
        }
    }
    const auto by_magnitude = [](const pathway_neuron& x, const pathway_neuron& y) {
        return std::fabs(x.score) > std::fabs(y.score) ||
               (std::fabs(x.score) == std::fabs(y.score) && (x.layer < y.layer || (x.layer == y.layer && x.neuron < y.neuron)));
    };
    std::stable_sort(values.begin(), values.end(), by_magnitude);
    values.resize(std::min(values.size(), options.values));

    std::vector<neuron_pathway> out;
    for (const pathway_neuron& v : values) {
        neuron_pathway p;
        p.value = v;
        const layer_weights<T>& wv = model.weights().layers[std::size_t(v.layer)];
        const tensor_view<const T>& reader = c.gated_mlp() ? wv.w_gate : wv.w_in;
        // v's read of the residual at the last position: W_in[v, j] g_j / rms (RMSNorm) or / std (LayerNorm).
        // ln2 reads resid_mid, or resid_pre with a parallel residual (GPT-NeoX).
        const tensor<T>& x = tape.at(hook_point{c.parallel_residual ? site::resid_pre : site::resid_mid, v.layer});
        double mean = 0.0, sq = 0.0;
        for (std::size_t j = 0; j < d; ++j) mean += double(x(0, last, j)) / double(d);
        const double center = c.norm == norm_kind::layer_norm ? mean : 0.0;
        for (std::size_t j = 0; j < d; ++j) sq += (double(x(0, last, j)) - center) * (double(x(0, last, j)) - center);
        const double scale = 1.0 / std::sqrt(sq / double(d) + c.norm_eps);
        std::vector<double> read(d);
        for (std::size_t j = 0; j < d; ++j)
            read[j] = double(reader(v.neuron, j)) * double(wv.ln2_weight.data()[j]) * scale;
        std::vector<pathway_neuron> queries;
        for (int l = 0; l < v.layer; ++l) {
            const layer_weights<T>& wq = model.weights().layers[std::size_t(l)];
            const tensor<T>& a = tape.at(post[std::size_t(l)]);
            for (std::size_t q = 0; q < dm; ++q) {
                double w = 0.0;
                for (std::size_t j = 0; j < d; ++j) w += double(wq.w_out(j, q)) * read[j];
                queries.push_back({l, q, double(a(0, last, q)) * w});
            }
        }
        std::stable_sort(queries.begin(), queries.end(), by_magnitude);
        queries.resize(std::min(queries.size(), options.queries));
        p.queries = std::move(queries);
        out.push_back(std::move(p));
    }
    return out;
}

/// Hooks that multiply the activations (blocks.l.mlp.hook_post, every position) of a pathway's query
/// neurons by `scale`: 0 ablates the pathway, 2 doubles it. Run the model with them to measure the
/// edit's effect. Throws arg.101 for a scale that is not finite.
template <class T>
void edit_pathway(hook_set<T>& hooks, const neuron_pathway& pathway, double scale) {
    if (!std::isfinite(scale)) fail(errc::invalid_argument, "edit_pathway: scale {} is not finite", scale);
    for (const pathway_neuron& q : pathway.queries) {
        const std::size_t n = q.neuron;
        hooks.add(hook_point{site::mlp_post, q.layer}, [n, scale](tensor_view<T> a, const hook_context&) {
            for (std::size_t b = 0; b < a.extent(0); ++b)
                for (std::size_t t = 0; t < a.extent(1); ++t) a(b, t, n) = T(double(a(b, t, n)) * scale);
        });
    }
}

} // namespace actlens
