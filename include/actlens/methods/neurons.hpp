// actlens/methods/neurons.hpp: what MLP neurons say through the LM head, and clamping them.
//
// Neuron decoding (Davies, arXiv 2501.02688): project a neuron's weight vector
// through the unembedding and read its top tokens. The write side is the neuron's column of W_out
// (what it adds to the residual stream: a logit lens on the weight); the read side is its row of
// W_in (up projection, the paper's choice) or W_gate. Whether the final norm's gain belongs before
// the head is not settled, so both modes exist: `raw` = W_U w, `normed` = W_U ln_final(w) (the
// model's own final RMSNorm/LayerNorm applied to w as if it were a residual vector; the ranking
// ignores w's scale but not the gain).
//
// The whole model is decoded in blocks of neurons: a block's logits [block, V] are computed, reduced
// to top-k per neuron and overwritten by the next block, so d_mlp × V is never materialised.
//
// Clamping: hooks that set or scale one neuron at every position, on the gated product entering
// W_out (blocks.l.mlp.hook_post, the default) or on the up projection's output.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// How a weight vector meets the unembedding.
enum class vocab_norm {
    raw,   ///< logits = W_U w
    normed ///< logits = W_U ln_final(w), with the model's final norm (gain, and bias for LayerNorm)
};

/// Which weight vector of a neuron is decoded.
enum class neuron_side {
    write,     ///< W_out[:, i], what the neuron writes to the residual stream
    read_up,   ///< W_in[i, :] (GPT-2 c_fc, Llama up_proj): the paper's up-projection decode
    read_gate  ///< W_gate[i, :] (SwiGLU models only)
};

/// One decoded token: its id, its logit and its probability under softmax of the whole logit row.
struct token_score {
    std::int32_t token = 0;
    float logit = 0.0f;
    float probability = 0.0f;
};

struct neuron_decode_options {
    std::size_t top_k = 10;
    vocab_norm norm = vocab_norm::normed;
    neuron_side side = neuron_side::write;
    std::vector<int> layers;         ///< empty: every layer
    std::size_t block_neurons = 0;   ///< neurons per block; 0 picks ~16 MiB of logits per block
    /// Called after every block with (neurons done, neurons in all).
    std::function<void(std::size_t, std::size_t)> on_progress;
};

/// Top tokens of every decoded neuron: entry [l, i, r] is the r-th best token of neuron i in
/// layers[l], best first (ties: lower id first).
struct neuron_decoding {
    std::vector<int> layers;
    tensor<std::int32_t> tokens; ///< [layers, d_mlp, top_k]
    tensor<float> logits;        ///< [layers, d_mlp, top_k]
    tensor<float> probabilities; ///< [layers, d_mlp, top_k]
    /// The decoded tokens of one neuron (l indexes `layers`).
    std::vector<token_score> neuron(std::size_t l, std::size_t i) const;
};

// The functions that take a model are templates of nothing (`template <int = 0>`): the forward code
// they call is then compiled only where they are called, not in every file that includes this
// header (README "Compile time").

/// Decodes neurons through the LM head (see the top of this header). Throws actlens::error:
/// arg.101 for top_k == 0 or top_k > vocab, read_gate on a model without a gate; model.403 for a
/// layer outside the model. Complexity: d_mlp·d·V multiply-adds per layer, memory one block of logits.
template <int = 0>
neuron_decoding decode_neurons(const transformer& model, const neuron_decode_options& options = {});

/// The top-k tokens of one residual-stream direction `direction` [d_model] (logit lens of a vector).
/// Throws arg.102 when the size is not d_model, arg.101 for a bad top_k.
template <int = 0>
std::vector<token_score> decode_direction(const transformer& model, tensor_view<const float> direction,
                                                 std::size_t top_k, vocab_norm norm = vocab_norm::normed);

/// Where a clamp acts.
enum class clamp_site {
    post, ///< blocks.l.mlp.hook_post: the (gated) activation multiplying W_out
    up    ///< the up projection's output: hook_pre_linear (SwiGLU) or hook_pre (GELU models)
};

/// Adds a hook that sets neuron `neuron` of layer `layer` to `value` at every position of every
/// batch row. Throws model.403 for a bad layer, arg.103 for a neuron >= d_mlp, arg.104 for a
/// non-finite value.
template <int = 0>
void add_neuron_clamp(hook_set<float>& hooks, const transformer& model, int layer, std::size_t neuron,
                             float value, clamp_site where = clamp_site::post);

/// Adds a hook that multiplies the neuron by `factor` at every position (0 ablates it).
template <int = 0>
void add_neuron_scale(hook_set<float>& hooks, const transformer& model, int layer, std::size_t neuron,
                             float factor, clamp_site where = clamp_site::post);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// Reduces one row of V logits to its top-k (best first, ties by lower id) with probabilities.
/// `heap` is reused scratch.
inline void top_k_of_row(const float* logits, std::size_t vocab, std::size_t k, std::vector<std::pair<float, std::int32_t>>& heap,
                         std::int32_t* tokens, float* values, float* probs) {
    // "a before b" = a ranks better. A min-heap on rank keeps the worst of the kept k on top.
    auto better = [](const std::pair<float, std::int32_t>& a, const std::pair<float, std::int32_t>& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    heap.clear();
    float max = -std::numeric_limits<float>::infinity();
    for (std::size_t v = 0; v < vocab; ++v) {
        const std::pair<float, std::int32_t> e{logits[v], std::int32_t(v)};
        max = std::max(max, e.first);
        if (heap.size() < k) {
            heap.push_back(e);
            std::push_heap(heap.begin(), heap.end(), better);
        } else if (better(e, heap.front())) {
            std::pop_heap(heap.begin(), heap.end(), better);
            heap.back() = e;
            std::push_heap(heap.begin(), heap.end(), better);
        }
    }
    double sum = 0.0;
    for (std::size_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - double(max));
    std::sort(heap.begin(), heap.end(), better);
    for (std::size_t r = 0; r < k; ++r) {
        tokens[r] = heap[r].second;
        values[r] = heap[r].first;
        probs[r] = float(std::exp(double(heap[r].first) - double(max)) / sum);
    }
}

inline void check_decode_top_k(std::size_t k, std::size_t vocab, const char* who) {
    if (k == 0 || k > vocab) fail(errc::invalid_argument, "{}: top_k must be in 1..{} (the vocabulary), got {}", who, vocab, k);
}

template <int = 0>
void check_mlp_layer(const transformer& model, int layer, const char* who) {
    if (layer < 0 || layer >= int(model.config().n_layers))
        fail(errc::bad_layer_range, "{}: layer {} is outside 0..{}", who, layer, int(model.config().n_layers) - 1);
}

} // namespace detail

inline std::vector<token_score> neuron_decoding::neuron(std::size_t l, std::size_t i) const {
    if (l >= tokens.extent(0) || i >= tokens.extent(1))
        fail(errc::out_of_range, "neuron_decoding: ({}, {}) is outside [{}, {}]", l, i, tokens.extent(0), tokens.extent(1));
    std::vector<token_score> out(tokens.extent(2));
    for (std::size_t r = 0; r < out.size(); ++r) out[r] = {tokens(l, i, r), logits(l, i, r), probabilities(l, i, r)};
    return out;
}

template <int>
neuron_decoding decode_neurons(const transformer& model, const neuron_decode_options& o) {
    const model_config& c = model.config();
    const model_weights<float>& w = model.weights();
    const std::size_t d = c.d_model, V = c.vocab_size, F = c.d_mlp, k = o.top_k;
    detail::check_decode_top_k(k, V, "decode_neurons");
    if (o.side == neuron_side::read_gate && !c.gated_mlp())
        fail(errc::invalid_argument, "decode_neurons: side read_gate needs a gated (SwiGLU) MLP; this model is {}",
             c.family);
    neuron_decoding out;
    out.layers = o.layers;
    if (out.layers.empty())
        for (int l = 0; l < int(c.n_layers); ++l) out.layers.push_back(l);
    for (int l : out.layers) detail::check_mlp_layer(model, l, "decode_neurons");

    const std::size_t L = out.layers.size();
    out.tokens.resize({L, F, k});
    out.logits.resize({L, F, k});
    out.probabilities.resize({L, F, k});
    // About 16 MiB of logits per block, rounded to the GEMM's 8-row tile.
    std::size_t block = o.block_neurons ? o.block_neurons : std::max<std::size_t>(8, (std::size_t(1) << 22) / V / 8 * 8);
    block = std::min(block, F);
    tensor<float> x({block, d}), logits({block, V});
    const std::size_t total = L * F;
    std::size_t done = 0;
    for (std::size_t li = 0; li < L; ++li) {
        const layer_weights<float>& lw = w.layers[std::size_t(out.layers[li])];
        for (std::size_t first = 0; first < F; first += block) {
            const std::size_t rows = std::min(block, F - first);
            for (std::size_t r = 0; r < rows; ++r) {
                const std::size_t i = first + r;
                float* dst = x.data() + r * d;
                if (o.side == neuron_side::write)
                    for (std::size_t e = 0; e < d; ++e) dst[e] = lw.w_out(e, i); // column i of [d, d_mlp]
                else {
                    const tensor_view<const float>& src = o.side == neuron_side::read_up ? lw.w_in : lw.w_gate;
                    std::copy(&src(i, 0), &src(i, 0) + d, dst);
                }
            }
            if (o.norm == vocab_norm::normed) model.final_norm(x.data(), rows, x.data());
            model.unembed(x.data(), rows, logits.data());
#pragma omp parallel
            {
                std::vector<std::pair<float, std::int32_t>> heap;
#pragma omp for schedule(static)
                for (long r = 0; r < long(rows); ++r) {
                    const std::size_t i = first + std::size_t(r);
                    detail::top_k_of_row(logits.data() + std::size_t(r) * V, V, k, heap, &out.tokens(li, i, 0),
                                         &out.logits(li, i, 0), &out.probabilities(li, i, 0));
                }
            }
            done += rows;
            if (o.on_progress) o.on_progress(done, total);
        }
    }
    return out;
}

template <int>
std::vector<token_score> decode_direction(const transformer& model, tensor_view<const float> direction,
                                                 std::size_t top_k, vocab_norm norm) {
    const model_config& c = model.config();
    if (direction.size() != c.d_model || direction.data() == nullptr)
        fail(errc::shape_mismatch, "decode_direction: direction has {} elements, the model's d_model is {}",
             direction.size(), c.d_model);
    detail::check_decode_top_k(top_k, c.vocab_size, "decode_direction");
    tensor<float> x({1, c.d_model}), logits({1, c.vocab_size});
    const auto flat = direction.reshaped({c.d_model});
    for (std::size_t e = 0; e < c.d_model; ++e) x(0, e) = flat(e);
    if (norm == vocab_norm::normed) model.final_norm(x.data(), 1, x.data());
    model.unembed(x.data(), 1, logits.data());
    std::vector<std::int32_t> tokens(top_k);
    std::vector<float> values(top_k), probs(top_k);
    std::vector<std::pair<float, std::int32_t>> heap;
    detail::top_k_of_row(logits.data(), c.vocab_size, top_k, heap, tokens.data(), values.data(), probs.data());
    std::vector<token_score> out(top_k);
    for (std::size_t r = 0; r < top_k; ++r) out[r] = {tokens[r], values[r], probs[r]};
    return out;
}

namespace detail {
template <int = 0>
hook_point clamp_point(const transformer& model, int layer, std::size_t neuron, clamp_site where,
                              const char* who) {
    check_mlp_layer(model, layer, who);
    if (neuron >= model.config().d_mlp)
        fail(errc::out_of_range, "{}: neuron {} is outside 0..{} (d_mlp)", who, neuron, model.config().d_mlp - 1);
    if (where == clamp_site::post) return {site::mlp_post, layer};
    return {model.config().gated_mlp() ? site::mlp_pre_linear : site::mlp_pre, layer};
}

/// Applies op to the neuron's value at every (batch row, position) of a [B, T, d_mlp] activation.
template <class Op>
void for_neuron(tensor_view<float> a, std::size_t neuron, Op op) {
    for (std::size_t b = 0; b < a.extent(0); ++b)
        for (std::size_t t = 0; t < a.extent(1); ++t) op(a(b, t, neuron));
}
} // namespace detail

template <int>
void add_neuron_clamp(hook_set<float>& hooks, const transformer& model, int layer, std::size_t neuron,
                             float value, clamp_site where) {
    const hook_point p = detail::clamp_point(model, layer, neuron, where, "add_neuron_clamp");
    if (!std::isfinite(value)) fail(errc::non_finite, "add_neuron_clamp: value {} is not finite", value);
    hooks.add(p, [neuron, value](tensor_view<float> a, const hook_context&) {
        detail::for_neuron(a, neuron, [value](float& x) { x = value; });
    });
}

template <int>
void add_neuron_scale(hook_set<float>& hooks, const transformer& model, int layer, std::size_t neuron,
                             float factor, clamp_site where) {
    const hook_point p = detail::clamp_point(model, layer, neuron, where, "add_neuron_scale");
    if (!std::isfinite(factor)) fail(errc::non_finite, "add_neuron_scale: factor {} is not finite", factor);
    hooks.add(p, [neuron, factor](tensor_view<float> a, const hook_context&) {
        detail::for_neuron(a, neuron, [factor](float& x) { x *= factor; });
    });
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE neuron_decoding decode_neurons<0>(const transformer&, const neuron_decode_options&);
ACTLENS_EXTERN_TEMPLATE std::vector<token_score> decode_direction<0>(const transformer&, tensor_view<const float>,
                                                                     std::size_t, vocab_norm);
#endif

} // namespace actlens
