// actlens/analysis/planted_concepts.hpp: a concept built from two sub-concepts of an earlier layer.
//
// The test bed of CRAFT's recursion (methods/concept_recursion.hpp): a two-layer model where one
// layer-1 neuron, the parent concept, is the sum of two layer-0 sub-concepts that distinct token sets
// switch on, so the sub-concepts and their weights in the parent are known by construction.
//
//   residual = [ A: token (V) | U: sub-concepts (2) | P: parent (1) | C: noise (c) ]
//   layer 0 MLP: sub-concept i is a group of neurons that fire, with a fixed pattern, exactly on the
//                tokens of set S_i (tokens 1 + i·s .. s + i·s, s = set_size) and write U_i (1 when
//                the group fires as planted); distractor neurons read every token at random and
//                write into C.
//   layer 1 MLP: neuron 0, the parent, reads read_0 · U_0 + read_1 · U_1 and writes P; the other
//                neurons are distractors like layer 0's.
//   attention writes nothing (W_O = 0), so each position is computed on its own; the unembedding
//   reads P into the logit of token 0 (parent_token) and nothing else.
//
// So blocks.0.mlp.hook_post holds sub-concept i on the tokens of S_i (the planted direction:
// the group's activation pattern, zero elsewhere) plus distractor noise, and the parent
// (blocks.1.mlp.hook_post, neuron 0) is active on S_0 ∪ S_1 only, more strongly on S_0 when
// read_0 > read_1.
#pragma once

#include <actlens/analysis/planted.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace actlens {

struct planted_concepts_options {
    std::size_t vocab = 12;        ///< V; needs 1 + 2 · set_size <= V
    std::size_t set_size = 3;      ///< s: tokens per sub-concept's set
    std::size_t positions = 8;     ///< the context
    std::size_t group = 3;         ///< layer-0 neurons per sub-concept
    std::size_t distractors = 4;   ///< distractor neurons (layer 0; layer 1 has d_mlp − 1)
    std::size_t noise_width = 4;   ///< c
    double gain = 4.0;             ///< pre-activation of a group's first neuron (then gain / 2, gain / 3, …)
    double read_0 = 3.0, read_1 = 1.0; ///< the parent's weights on the sub-concepts
    double distractor_scale = 0.5; ///< standard deviation of the distractors' weights
    std::uint64_t seed = 0;        ///< the distractors' weights
};

/// A planted parent concept and what is known about it.
template <class T>
struct planted_concepts {
    basic_transformer<T> model;
    tensor<double> sub_concepts;      ///< [2, d_mlp]: sub-concept i at blocks.0.mlp.hook_post (its group's pattern)
    std::vector<int> token_set;       ///< [V]: i for a token of S_i, −1 for the others
    std::size_t parent_neuron = 0;    ///< of blocks.1.mlp.hook_post
    std::int32_t parent_token = 0;    ///< the token whose logit reads the parent
    planted_concepts_options options;
};

/// The model described at the top of this header. Throws arg.101 for sizes that do not fit.
template <class T>
planted_concepts<T> planted_concept_model(const planted_concepts_options& o = {}) {
    if (o.set_size < 1 || o.group < 1 || o.positions < 1 || 1 + 2 * o.set_size > o.vocab)
        fail(errc::invalid_argument,
             "planted_concept_model: needs set_size, group, positions >= 1 and 1 + 2 set_size <= vocab (got {}, {}, {}, {})",
             o.set_size, o.group, o.positions, o.vocab);
    const std::size_t V = o.vocab, A = 0, U = V, P = V + 2, C = V + 3, d = C + o.noise_width;
    const std::size_t d_mlp = 2 * o.group + o.distractors;
    const model_config c = detail::planted_mlp_config(d, d_mlp, V, o.positions);

    const std::size_t parent_neuron = 0;
    const std::int32_t parent_token = 0;
    std::vector<int> token_set(V, -1);
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t k = 0; k < o.set_size; ++k) token_set[1 + i * o.set_size + k] = int(i);
    // The group pattern: neuron j of a group has pre-activation gain / (j + 1) and activation
    // GELU_tanh of that (the model's MLP nonlinearity); U_i is the pattern's weighted sum, scaled to 1.
    auto gelu = [](double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); };
    std::vector<double> pattern(o.group), fired(o.group);
    double scale = 0.0;
    for (std::size_t j = 0; j < o.group; ++j) {
        pattern[j] = 1.0 / double(j + 1);
        fired[j] = gelu(o.gain * pattern[j]);
        scale += pattern[j] * fired[j];
    }
    tensor<double> sub_concepts({2, d_mlp});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < o.group; ++j) sub_concepts(i, i * o.group + j) = fired[j];

    rng gen(o.seed);
    model_weights<T> w;
    tensor<T> embed({V, d}), pos({o.positions, d}), unembed({V, d}), final_gain({d}), gain({d});
    for (std::size_t v = 0; v < V; ++v) embed(v, A + v) = T(1);
    unembed(std::size_t(parent_token), P) = T(1);
    for (T& x : final_gain) x = T(1);
    // RMSNorm with gain 1/sqrt(d) maps x to x / ‖x‖: a one-hot token passes layer 0's norms unchanged.
    for (T& x : gain) x = T(1.0 / std::sqrt(double(d)));
    w.token_embedding = w.own(std::move(embed));
    w.position_embedding = w.own(std::move(pos));
    w.unembedding = w.own(std::move(unembed));
    w.final_norm_weight = w.own(std::move(final_gain));
    auto distractor = [&](tensor<T>& w_in, tensor<T>& w_out, std::size_t n) {
        for (std::size_t j = A; j < A + V; ++j) w_in(n, j) = T(o.distractor_scale * gen.normal());
        for (std::size_t j = C; j < d; ++j) w_out(j, n) = T(o.distractor_scale * gen.normal());
    };
    for (int layer = 0; layer < 2; ++layer) {
        tensor<T> w_in({d_mlp, d}), w_out({d, d_mlp});
        if (layer == 0) {
            for (std::size_t v = 0; v < V; ++v) {
                if (token_set[v] < 0) continue;
                const std::size_t i = std::size_t(token_set[v]);
                for (std::size_t j = 0; j < o.group; ++j) w_in(i * o.group + j, A + v) = T(o.gain * pattern[j]);
            }
            for (std::size_t i = 0; i < 2; ++i)
                for (std::size_t j = 0; j < o.group; ++j) w_out(U + i, i * o.group + j) = T(pattern[j] / scale);
            for (std::size_t n = 2 * o.group; n < d_mlp; ++n) distractor(w_in, w_out, n);
        } else {
            // ln2 sees e_token + U_i (+ noise): about (e_token + U_i) / sqrt(2), hence the sqrt(2).
            w_in(parent_neuron, U + 0) = T(o.read_0 * o.gain * std::sqrt(2.0));
            w_in(parent_neuron, U + 1) = T(o.read_1 * o.gain * std::sqrt(2.0));
            w_out(P, parent_neuron) = T(1);
            for (std::size_t n = 1; n < d_mlp; ++n) distractor(w_in, w_out, n);
        }
        w.layers.push_back(detail::planted_mlp_layer(w, gain, std::move(w_in), std::move(w_out)));
    }
    return planted_concepts<T>{basic_transformer<T>(c, std::move(w)), std::move(sub_concepts), std::move(token_set),
                               parent_neuron, parent_token, o};
}

/// `rows` prompts of `options.positions` tokens for planted_concept_model, drawn uniformly from
/// 1..V−1 (seeded), except that every row ends with a token of S_1: the logit of parent_token at the
/// last position then reads sub-concept 1 only, while the parent's activation over all tokens
/// depends mostly on sub-concept 0 (when read_0 > read_1) — two questions with different answers.
inline std::vector<std::int32_t> planted_concept_prompts(const planted_concepts_options& o, std::size_t rows,
                                                         std::uint64_t seed) {
    if (rows == 0) fail(errc::invalid_argument, "planted_concept_prompts: rows must be >= 1");
    rng gen(seed);
    auto draw = [&](std::size_t n) { return std::min(n - 1, std::size_t(gen.uniform() * double(n))); };
    std::vector<std::int32_t> out(rows * o.positions);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t t = 0; t + 1 < o.positions; ++t) out[r * o.positions + t] = std::int32_t(1 + draw(o.vocab - 1));
        out[r * o.positions + o.positions - 1] = std::int32_t(1 + o.set_size + draw(o.set_size));
    }
    return out;
}

/// The cosine of every feature (row of `features` [k, d_mlp], e.g. concept_recursion's fit) with
/// each planted sub-concept: out[j][i] for feature j and sub-concept i (0 for a zero feature).
/// Throws arg.102 for features of another width.
template <class T>
std::vector<std::vector<double>> sub_concept_cosines(const planted_concepts<T>& planted, tensor_view<const float> features) {
    const tensor<double>& v = planted.sub_concepts;
    if (features.rank() != 2 || features.extent(1) != v.extent(1))
        fail(errc::shape_mismatch, "sub_concept_cosines: features have shape {}, expected [k, {}]",
             features.shape().to_string(), v.extent(1));
    std::vector<std::vector<double>> out(features.extent(0), std::vector<double>(v.extent(0), 0.0));
    for (std::size_t j = 0; j < features.extent(0); ++j)
        for (std::size_t i = 0; i < v.extent(0); ++i) {
            double dot = 0, ff = 0, vv = 0;
            for (std::size_t n = 0; n < v.extent(1); ++n) {
                dot += double(features(j, n)) * v(i, n);
                ff += double(features(j, n)) * double(features(j, n));
                vv += v(i, n) * v(i, n);
            }
            if (ff > 0.0) out[j][i] = dot / std::sqrt(ff * vv);
        }
    return out;
}

} // namespace actlens
