// actlens/analysis/null_models.hpp: models on which a finding should not appear.
//
// An interpretability result is an estimate; a null model says what the same method reports when
// the mechanism is absent ("The Dead Salmons of AI Interpretability", seed papers). Three kinds:
//
//   matched_random_model   every weight tensor redrawn from a normal with that tensor's own mean
//                          and standard deviation: the same scale everywhere, no learned structure.
//   permute_neurons/heads  with permutation_kind::preserving, a relabelling that leaves the function
//                          unchanged (rows of W_in/W_gate/b_in with the columns of W_out; whole key/
//                          value groups with their query heads and W_O's columns): a sanity check,
//                          since a method must then report the same components, relabelled.
//                          With permutation_kind::scrambling only the output side moves (W_out's
//                          columns, W_O's head blocks), so each unit writes another's direction:
//                          a null that keeps every weight's distribution and breaks the wiring.
//   shuffle_labels         the prompt sets of a contrast pooled and re-split at random.
//
// test_against_null runs any method (a callable model -> std::vector<double> of component scores)
// on the model and on K seeded null models and returns analysis/significance.hpp's null_test.
#pragma once

#include <actlens/analysis/significance.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

enum class permutation_kind { preserving, scrambling };

/// A uniformly random permutation of 0..n-1 (Fisher–Yates on the seeded generator).
inline std::vector<std::size_t> random_permutation(std::size_t n, std::uint64_t seed) {
    std::vector<std::size_t> p(n);
    std::iota(p.begin(), p.end(), std::size_t(0));
    rng gen(seed);
    for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[std::min(i - 1, std::size_t(gen.uniform() * double(i)))]);
    return p;
}

/// A uniformly random cyclic permutation of 0..n-1 (Sattolo's algorithm): no element stays in
/// place, so a scrambling null moves every unit (with a fixed point, a small layer would keep its
/// circuit head in place in a quarter of the nulls and the null would contain the finding).
inline std::vector<std::size_t> random_derangement(std::size_t n, std::uint64_t seed) {
    std::vector<std::size_t> p(n);
    std::iota(p.begin(), p.end(), std::size_t(0));
    rng gen(seed);
    for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[std::min(i - 2, std::size_t(gen.uniform() * double(i - 1)))]);
    return p;
}

namespace detail {

/// Calls fn(name, view) for every weight tensor (views may be rebound by fn): a tensor_view<const T>,
/// or a weight_tensor<T> for the projections and the unembedding.
template <class T, class Fn>
void for_each_weight(model_weights<T>& w, Fn&& fn) {
    fn(std::string("token_embedding"), w.token_embedding);
    fn(std::string("position_embedding"), w.position_embedding);
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        layer_weights<T>& x = w.layers[l];
        const std::string p = "layers." + std::to_string(l) + ".";
        for (auto [name, view] : {std::pair{"ln1_weight", &x.ln1_weight}, {"ln1_bias", &x.ln1_bias}, {"b_q", &x.b_q},
                                  {"b_k", &x.b_k}, {"b_v", &x.b_v}, {"q_norm", &x.q_norm}, {"k_norm", &x.k_norm},
                                  {"b_o", &x.b_o}, {"ln2_weight", &x.ln2_weight}, {"ln2_bias", &x.ln2_bias},
                                  {"b_in", &x.b_in}, {"b_out", &x.b_out}, {"ln1_post_weight", &x.ln1_post_weight},
                                  {"ln2_post_weight", &x.ln2_post_weight}})
            fn(p + name, *view);
        for (auto [name, matrix] : {std::pair{"w_q", &x.w_q}, {"w_k", &x.w_k}, {"w_v", &x.w_v}, {"w_o", &x.w_o},
                                    {"w_gate", &x.w_gate}, {"w_in", &x.w_in}, {"w_out", &x.w_out}})
            fn(p + name, *matrix);
    }
    fn(std::string("final_norm_weight"), w.final_norm_weight);
    fn(std::string("final_norm_bias"), w.final_norm_bias);
    fn(std::string("unembedding"), w.unembedding);
}

/// Copies `v` [rows, cols] with rows (or columns) reordered in blocks of `block`: output block j is
/// input block order[j].
template <class T>
tensor<T> reorder_blocks(const tensor_view<const T>& v, const std::vector<std::size_t>& order, std::size_t block,
                         bool columns) {
    tensor<T> out = tensor<T>::copy_of(v);
    const std::size_t rows = v.extent(0), cols = v.rank() == 2 ? v.extent(1) : 1;
    for (std::size_t j = 0; j < order.size(); ++j)
        for (std::size_t i = 0; i < block; ++i) {
            const std::size_t to = j * block + i, from = order[j] * block + i;
            if (columns)
                for (std::size_t r = 0; r < rows; ++r) out.data()[r * cols + to] = v.data()[r * cols + from];
            else
                std::copy(v.data() + from * cols, v.data() + (from + 1) * cols, out.data() + to * cols);
        }
    return out;
}

inline void check_permutation(const std::vector<std::size_t>& perm, std::size_t n, const char* who) {
    if (perm.size() != n) fail(errc::shape_mismatch, "{}: the permutation has {} entries, expected {}", who, perm.size(), n);
    std::vector<bool> seen(n, false);
    for (std::size_t i = 0; i < n; ++i) {
        if (perm[i] >= n || seen[perm[i]])
            fail(errc::invalid_argument, "{}: entry {} = {} makes it not a permutation of 0..{}", who, i, perm[i], n - 1);
        seen[perm[i]] = true;
    }
}

template <class T>
void check_layer(const basic_transformer<T>& m, int layer, const char* who) {
    if (layer < 0 || layer >= static_cast<int>(m.config().n_layers))
        fail(errc::bad_layer_range, "{}: layer {} is outside the model's layers 0..{}", who, layer,
             m.config().n_layers - 1);
}

} // namespace detail

/// Every weight tensor redrawn i.i.d. from N(mean, sd²) of its own entries (seeded). Tied
/// embeddings stay tied. The config is unchanged.
template <class T>
basic_transformer<T> matched_random_model(const basic_transformer<T>& model, std::uint64_t seed) {
    model_weights<T> w = model.weights();
    const bool tied = model.config().tied_embeddings || w.unembedding.raw() == w.token_embedding.data();
    rng gen(seed);
    detail::for_each_weight(w, [&](const std::string& name, auto& stored) {
        if (stored.empty() || (tied && name == "unembedding")) return;
        const tensor_view<const T> v = stored; // 16-bit projections are widened (model/weight_tensor.hpp)
        double sum = 0.0, sq = 0.0;
        const std::size_t n = v.size();
        for (std::size_t i = 0; i < n; ++i) sum += double(v.data()[i]);
        const double mean = sum / double(n);
        for (std::size_t i = 0; i < n; ++i) sq += (double(v.data()[i]) - mean) * (double(v.data()[i]) - mean);
        const double sd = n > 1 ? std::sqrt(sq / double(n - 1)) : 0.0;
        tensor<T> t(v.shape());
        for (T& x : t) x = T(mean + sd * gen.normal());
        stored = w.own(std::move(t));
    });
    if (tied) w.unembedding = w.token_embedding;
    return basic_transformer<T>(model.config(), std::move(w));
}

namespace detail {

template <class T>
void permute_neurons_in(model_weights<T>& w, const model_config& c, int layer, const std::vector<std::size_t>& perm,
                        permutation_kind kind) {
    check_permutation(perm, c.d_mlp, "permute_neurons");
    layer_weights<T>& x = w.layers[std::size_t(layer)];
    x.w_out = w.own(reorder_blocks(x.w_out.view(), perm, 1, true));
    if (kind == permutation_kind::preserving) {
        x.w_in = w.own(reorder_blocks(x.w_in.view(), perm, 1, false));
        if (!x.w_gate.empty()) x.w_gate = w.own(reorder_blocks(x.w_gate.view(), perm, 1, false));
        if (x.b_in.data()) x.b_in = w.own(reorder_blocks(x.b_in, perm, 1, false));
    }
}

template <class T>
void permute_heads_in(model_weights<T>& w, const model_config& c, int layer, const std::vector<std::size_t>& perm,
                      permutation_kind kind) {
    check_permutation(perm, c.n_heads, "permute_heads");
    layer_weights<T>& x = w.layers[std::size_t(layer)];
    const std::size_t dh = c.d_head, group = c.group_size();
    if (kind == permutation_kind::preserving) {
        std::vector<std::size_t> kv(c.n_kv_heads);
        for (std::size_t g = 0; g < c.n_kv_heads; ++g) {
            kv[g] = perm[g * group] / group;
            for (std::size_t h = g * group; h < (g + 1) * group; ++h)
                if (perm[h] / group != kv[g])
                    fail(errc::invalid_argument,
                         "permute_heads: heads {} and {} share a key/value group but map to heads {} and {} of "
                         "different groups; a preserving permutation must move whole groups",
                         g * group, h, perm[g * group], perm[h]);
        }
        x.w_q = w.own(reorder_blocks(x.w_q.view(), perm, dh, false));
        if (x.b_q.data()) x.b_q = w.own(reorder_blocks(x.b_q, perm, dh, false));
        x.w_k = w.own(reorder_blocks(x.w_k.view(), kv, dh, false));
        x.w_v = w.own(reorder_blocks(x.w_v.view(), kv, dh, false));
        if (x.b_k.data()) x.b_k = w.own(reorder_blocks(x.b_k, kv, dh, false));
        if (x.b_v.data()) x.b_v = w.own(reorder_blocks(x.b_v, kv, dh, false));
    }
    x.w_o = w.own(reorder_blocks(x.w_o.view(), perm, dh, true));
}

} // namespace detail

/// The MLP neurons of `layer` relabelled: neuron j of the result is neuron perm[j] of `model`
/// (preserving: the same function), or only W_out's columns permuted (scrambling). Throws
/// model.403 for a layer the model lacks, arg.101/102 for a bad permutation.
template <class T>
basic_transformer<T> permute_neurons(const basic_transformer<T>& model, int layer, const std::vector<std::size_t>& perm,
                                     permutation_kind kind) {
    detail::check_layer(model, layer, "permute_neurons");
    model_weights<T> w = model.weights();
    detail::permute_neurons_in(w, model.config(), layer, perm, kind);
    return basic_transformer<T>(model.config(), std::move(w));
}

/// The attention heads of `layer` relabelled: head j of the result is head perm[j] of `model`.
/// preserving moves whole key/value groups with their query heads, so with grouped-query attention
/// the heads of one group must map into one group (else arg.101, naming the heads); W_O's head
/// blocks follow. scrambling permutes only W_O's head blocks (head j's output is written through
/// head perm[j]'s projection).
template <class T>
basic_transformer<T> permute_heads(const basic_transformer<T>& model, int layer, const std::vector<std::size_t>& perm,
                                   permutation_kind kind) {
    detail::check_layer(model, layer, "permute_heads");
    model_weights<T> w = model.weights();
    detail::permute_heads_in(w, model.config(), layer, perm, kind);
    return basic_transformer<T>(model.config(), std::move(w));
}

/// The two sets of a contrast (e.g. positive and negative prompts of a steering vector) pooled and
/// re-split at random into sets of the same sizes (seeded).
template <class X>
std::pair<std::vector<X>, std::vector<X>> shuffle_labels(const std::vector<X>& a, const std::vector<X>& b,
                                                         std::uint64_t seed) {
    std::vector<X> pool(a);
    pool.insert(pool.end(), b.begin(), b.end());
    const std::vector<std::size_t> order = random_permutation(pool.size(), seed);
    std::pair<std::vector<X>, std::vector<X>> out;
    for (std::size_t i = 0; i < order.size(); ++i) (i < a.size() ? out.first : out.second).push_back(pool[order[i]]);
    return out;
}

enum class null_kind {
    matched_random,    ///< matched_random_model
    scrambled_neurons, ///< permute_neurons(scrambling) by a random derangement in every layer
    scrambled_heads    ///< permute_heads(scrambling) by a random derangement in every layer
};

/// A null model of a kind, seeded (the scrambling kinds permute every layer).
template <class T>
basic_transformer<T> make_null_model(const basic_transformer<T>& model, null_kind kind, std::uint64_t seed) {
    if (kind == null_kind::matched_random) return matched_random_model(model, seed);
    const model_config& c = model.config();
    model_weights<T> w = model.weights();
    for (int l = 0; l < static_cast<int>(c.n_layers); ++l) {
        const std::uint64_t s = seed * 1000003ULL + std::uint64_t(l);
        if (kind == null_kind::scrambled_neurons)
            detail::permute_neurons_in(w, c, l, random_derangement(c.d_mlp, s), permutation_kind::scrambling);
        else
            detail::permute_heads_in(w, c, l, random_derangement(c.n_heads, s), permutation_kind::scrambling);
    }
    return basic_transformer<T>(c, std::move(w));
}

/// Runs `method(model) -> std::vector<double>` on `model` and on `runs` null models of `kind`
/// (seeds seed, seed + 1, ...) and compares them component by component (null_test).
template <class T, class Method>
null_test_result test_against_null(const basic_transformer<T>& model, Method&& method, null_kind kind,
                                   std::size_t runs, std::uint64_t seed,
                                   null_alternative alternative = null_alternative::magnitude) {
    if (runs == 0) fail(errc::invalid_argument, "test_against_null: runs must be >= 1");
    const std::vector<double> observed = method(model);
    std::vector<std::vector<double>> nulls;
    for (std::size_t k = 0; k < runs; ++k) nulls.push_back(method(make_null_model(model, kind, seed + k)));
    return null_test(observed, nulls, alternative);
}

} // namespace actlens
