// actlens/model/random_weights.hpp: a transformer with seeded random weights, for tests and
// benchmarks (shapes of real models without downloading them).
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <cmath>
#include <cstdint>

namespace actlens {

/// Weights drawn from N(0, std^2) (norm gains around 1, biases small), deterministic for a seed.
/// `std` defaults to 1/sqrt(d_model), which keeps activations O(1) through the layers.
template <class T>
model_weights<T> make_random_weights(const model_config& c, std::uint64_t seed, double std = 0.0) {
    c.validate();
    rng gen(seed);
    const double s = std > 0.0 ? std : 1.0 / std::sqrt(double(c.d_model));
    model_weights<T> w;
    auto make = [&](shape_t shape, double scale, double mean = 0.0) {
        tensor<T> t(shape);
        for (T& x : t) x = T(mean + scale * gen.normal());
        return w.own(std::move(t));
    };
    const std::size_t d = c.d_model, qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;
    const bool ln = c.norm == norm_kind::layer_norm;
    w.token_embedding = make({c.vocab_size, d}, 1.0);
    if (c.position == position_kind::learned) w.position_embedding = make({c.max_seq_len, d}, 0.5);
    w.layers.resize(c.n_layers);
    for (auto& l : w.layers) {
        l.ln1_weight = make({d}, 0.1, 1.0);
        if (ln) l.ln1_bias = make({d}, 0.1);
        l.w_q = make({qw, d}, s);
        l.w_k = make({kvw, d}, s);
        l.w_v = make({kvw, d}, s);
        if (c.qk_norm) {
            l.q_norm = make({c.d_head}, 0.1, 1.0);
            l.k_norm = make({c.d_head}, 0.1, 1.0);
        }
        if (c.qkv_bias) {
            l.b_q = make({qw}, 0.1);
            l.b_k = make({kvw}, 0.1);
            l.b_v = make({kvw}, 0.1);
        }
        l.w_o = make({d, qw}, 1.0 / std::sqrt(double(qw)));
        if (c.out_bias) l.b_o = make({d}, 0.1);
        l.ln2_weight = make({d}, 0.1, 1.0);
        if (ln) l.ln2_bias = make({d}, 0.1);
        if (c.gated_mlp()) l.w_gate = make({c.d_mlp, d}, s);
        l.w_in = make({c.d_mlp, d}, s);
        if (c.out_bias) l.b_in = make({c.d_mlp}, 0.1);
        l.w_out = make({d, c.d_mlp}, 1.0 / std::sqrt(double(c.d_mlp)));
        if (c.out_bias) l.b_out = make({d}, 0.1);
        if (c.post_norms) {
            l.ln1_post_weight = make({d}, 0.1, 1.0);
            l.ln2_post_weight = make({d}, 0.1, 1.0);
        }
    }
    w.final_norm_weight = make({d}, 0.1, 1.0);
    if (ln) w.final_norm_bias = make({d}, 0.1);
    w.unembedding = c.tied_embeddings ? w.token_embedding : make({c.vocab_size, d}, s);
    return w;
}

/// A transformer of the given config with seeded random weights.
template <class T = float>
basic_transformer<T> make_random_transformer(const model_config& c, std::uint64_t seed, double std = 0.0) {
    return basic_transformer<T>(c, make_random_weights<T>(c, seed, std));
}

} // namespace actlens
