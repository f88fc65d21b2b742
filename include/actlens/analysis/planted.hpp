// actlens/analysis/planted.hpp: transformers whose mechanism is known because it was built in, and
// how well an attribution method recovers it.
//
// Attribution methods disagree, and on a trained model nobody knows which is right. Controlled
// settings with a known ground truth settle it ("Better Understanding Differences in Attribution
// Methods via Systematic Evaluations", seed papers). planted_induction builds a two-layer model
// whose weights implement induction by hand:
//
//   residual = [ A: token (V) | B: previous token (V) | P: position (T) | O: output (V) | C: noise (c) ]
//   layer 0, head 0 (previous-token head): query P_p, key P_{j+1}: attends from p to p − 1;
//                    copies A (the token there) into B.
//   layer 1, head 0 (induction head): query A_p, key B_j: attends to the j whose previous token is
//                    the current one; copies A_j into O.
//   unembedding reads O.  Every other head (head 1.. of each layer) has random queries, keys and
//   values and writes random vectors into C, which nothing reads: it matters only through the
//   norms' scale. The MLPs are zero.
//
// On a prompt "… a b … a" the model predicts b; with the first a replaced, it cannot. The heads
// that matter are exactly (0, 0) and (1, 0). evaluate_recovery scores a method's [layer, head]
// importances against that truth: precision at k (k = the number of true components), AUROC of
// |score| separating true from other components (Mann–Whitney), and Spearman's rank correlation
// with a reference (e.g. activation patching).
#pragma once

#include <actlens/analysis/correlation.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace actlens {

struct planted_options {
    std::size_t vocab = 16;         ///< V: token ids 0..V-1 (0 is used as the first token of prompts)
    std::size_t positions = 16;     ///< T: the context
    std::size_t heads = 2;          ///< heads per layer: head 0 is the circuit, the rest distractors
    std::size_t noise_width = 8;    ///< c: the subspace distractors write into
    double sharpness = 60.0;        ///< β: query scale of the circuit heads (attention ~ one-hot)
    double distractor_scale = 0.5;  ///< standard deviation of the distractors' output weights
    std::uint64_t seed = 0;         ///< the distractors' random weights
};

/// A planted model and what is known about it.
template <class T>
struct planted_circuit {
    basic_transformer<T> model;
    tensor<double> truth;           ///< [layers, heads]: 1 for heads of the circuit, else 0
    planted_options options;
};

/// Clean and corrupted prompts [N, T] for planted_induction, and the metric's tokens.
struct planted_prompts {
    std::vector<std::int32_t> clean, corrupted; ///< N rows of T tokens
    std::vector<std::int32_t> answer, distractor; ///< per row: the induced token b, and a token not in the prompt
    std::size_t rows = 0, positions = 0;
    tensor_view<const std::int32_t> clean_view() const { return {clean.data(), {rows, positions}}; }
    tensor_view<const std::int32_t> corrupted_view() const { return {corrupted.data(), {rows, positions}}; }
};

/// The two-layer induction model described at the top of this header.
template <class T>
planted_circuit<T> planted_induction(const planted_options& o = {}) {
    if (o.vocab < 6 || o.positions < 4 || o.heads < 1)
        fail(errc::invalid_argument, "planted_induction: needs vocab >= 6, positions >= 4 and heads >= 1 (got {}, {}, {})",
             o.vocab, o.positions, o.heads);
    const std::size_t V = o.vocab, Tn = o.positions, H = o.heads, dh = std::max(V, Tn);
    const std::size_t A = 0, B = V, P = 2 * V, O = 2 * V + Tn, C = 3 * V + Tn, d = C + o.noise_width;
    model_config c;
    c.family = "planted";
    c.n_layers = 2;
    c.d_model = d;
    c.n_heads = c.n_kv_heads = H;
    c.d_head = dh;
    c.d_mlp = 4;
    c.vocab_size = V;
    c.max_seq_len = Tn;
    c.norm = norm_kind::rms_norm;
    c.norm_eps = 1e-12;
    c.position = position_kind::learned;
    c.mlp = mlp_kind::gelu_tanh;
    c.qkv_bias = c.out_bias = false;
    c.tied_embeddings = false;

    rng gen(o.seed);
    model_weights<T> w;
    auto zeros = [&](shape_t s) { return tensor<T>(s); };
    auto own = [&](tensor<T>&& t) { return w.own(std::move(t)); };
    tensor<T> embed = zeros({V, d}), pos = zeros({Tn, d}), unembed = zeros({V, d});
    for (std::size_t v = 0; v < V; ++v) {
        embed(v, A + v) = T(1);
        unembed(v, O + v) = T(1);
    }
    for (std::size_t p = 0; p < Tn; ++p) pos(p, P + p) = T(1);
    w.token_embedding = own(std::move(embed));
    w.position_embedding = own(std::move(pos));
    w.unembedding = own(std::move(unembed));
    tensor<T> ones({d});
    for (T& x : ones) x = T(1);
    w.final_norm_weight = own(tensor<T>::copy_of(ones.view()));
    // Token plus position is a residual of norm sqrt(2): an RMSNorm gain of sqrt(2/d) passes the
    // embeddings through unchanged, so the circuit reads exact one-hot codes in layer 0.
    tensor<T> gain({d});
    for (T& x : gain) x = T(std::sqrt(2.0 / double(d)));
    const T beta = T(o.sharpness);
    for (int layer = 0; layer < 2; ++layer) {
        layer_weights<T> l;
        l.ln1_weight = own(tensor<T>::copy_of(gain.view()));
        l.ln2_weight = own(tensor<T>::copy_of(gain.view()));
        tensor<T> wq = zeros({H * dh, d}), wk = zeros({H * dh, d}), wv = zeros({H * dh, d}), wo = zeros({d, H * dh});
        if (layer == 0) { // previous-token head
            for (std::size_t p = 0; p < Tn; ++p) wq(p, P + p) = beta;
            for (std::size_t p = 1; p < Tn; ++p) wk(p, P + p - 1) = T(1); // key j lights head dim j + 1
            for (std::size_t v = 0; v < V; ++v) {
                wv(v, A + v) = T(1);
                wo(B + v, v) = T(1);
            }
        } else { // induction head
            for (std::size_t v = 0; v < V; ++v) {
                wq(v, A + v) = beta;
                wk(v, B + v) = T(1);
                wv(v, A + v) = T(1);
                wo(O + v, v) = T(1);
            }
        }
        for (std::size_t h = 1; h < H; ++h) // distractors: random reads of A and P, writes into C
            for (std::size_t i = 0; i < dh; ++i) {
                for (std::size_t j = A; j < O; ++j) {
                    wq(h * dh + i, j) = T(gen.normal());
                    wk(h * dh + i, j) = T(gen.normal());
                    wv(h * dh + i, j) = T(gen.normal() / std::sqrt(double(dh)));
                }
                for (std::size_t j = C; j < d; ++j) wo(j, h * dh + i) = T(o.distractor_scale * gen.normal());
            }
        l.w_q = own(std::move(wq));
        l.w_k = own(std::move(wk));
        l.w_v = own(std::move(wv));
        l.w_o = own(std::move(wo));
        l.w_in = own(zeros({c.d_mlp, d}));
        l.w_out = own(zeros({d, c.d_mlp}));
        w.layers.push_back(l);
    }
    planted_circuit<T> out{basic_transformer<T>(c, std::move(w)), tensor<double>({2, H}), o};
    out.truth(0, 0) = 1.0;
    out.truth(1, 0) = 1.0;
    return out;
}

/// A two-step recall in MLP neurons (ACE's query → value pathway, methods/neuron_pathways.hpp): the
/// residual is [ A: token (V) | R: intermediate subject (M) | O: output (V) | C: noise (c) ]; query
/// neuron x of layer 0 fires on token x and writes subject R_{x mod M}; value neuron y of layer 1
/// reads R_y and writes the answer O_{(y + 1) mod V}. So the answer to token x is
/// recall_answer(x) and the one pathway that carries it is (0, x) -> (1, x mod M). Distractor
/// neurons (d_mlp beyond V in layer 0 and beyond M in layer 1) read A at random and write into C.
/// Attention writes nothing (W_O = 0).
struct planted_recall_options {
    std::size_t vocab = 12, subjects = 4, positions = 8, noise_width = 4;
    std::size_t distractors = 6; ///< extra neurons per layer
    double gain = 4.0;           ///< pre-activation of a firing neuron (GELU(4) ≈ 4)
    std::uint64_t seed = 0;
};

namespace detail {

/// The shape of the two-layer MLP circuits (planted_recall, planted_concept_model): RMSNorm, learned
/// positions (all zero), GELU MLPs and one 4-wide attention head whose weights are zero, so that only
/// the MLPs and the residual stream carry the mechanism.
inline model_config planted_mlp_config(std::size_t d, std::size_t d_mlp, std::size_t vocab, std::size_t positions) {
    model_config c;
    c.family = "planted";
    c.n_layers = 2;
    c.d_model = d;
    c.n_heads = c.n_kv_heads = 1;
    c.d_head = 4;
    c.d_mlp = d_mlp;
    c.vocab_size = vocab;
    c.max_seq_len = positions;
    c.norm = norm_kind::rms_norm;
    c.norm_eps = 1e-12;
    c.position = position_kind::learned;
    c.mlp = mlp_kind::gelu_tanh;
    c.tied_embeddings = false;
    return c;
}

/// One layer of those circuits: both norms with the gain `gain`, the silent attention head, and the
/// MLP (w_in [d_mlp, d], w_out [d, d_mlp]); the tensors go into `w`'s storage.
template <class T>
layer_weights<T> planted_mlp_layer(model_weights<T>& w, const tensor<T>& gain, tensor<T>&& w_in, tensor<T>&& w_out) {
    const std::size_t d = gain.size();
    layer_weights<T> l;
    l.ln1_weight = w.own(tensor<T>::copy_of(gain.view()));
    l.ln2_weight = w.own(tensor<T>::copy_of(gain.view()));
    l.w_q = w.own(tensor<T>({4, d}));
    l.w_k = w.own(tensor<T>({4, d}));
    l.w_v = w.own(tensor<T>({4, d}));
    l.w_o = w.own(tensor<T>({d, 4}));
    l.w_in = w.own(std::move(w_in));
    l.w_out = w.own(std::move(w_out));
    return l;
}

} // namespace detail

inline std::int32_t recall_answer(const planted_recall_options& o, std::int32_t token) {
    return std::int32_t((std::size_t(token) % o.subjects + 1) % o.vocab);
}

template <class T>
basic_transformer<T> planted_recall(const planted_recall_options& o = {}) {
    if (o.vocab < 3 || o.subjects < 1 || o.subjects > o.vocab || o.positions < 1)
        fail(errc::invalid_argument, "planted_recall: needs vocab >= 3 and 1 <= subjects <= vocab (got {}, {})", o.vocab,
             o.subjects);
    const std::size_t V = o.vocab, M = o.subjects, A = 0, R = V, O = V + M, C = 2 * V + M, d = C + o.noise_width;
    const std::size_t d_mlp = V + o.distractors;
    const model_config c = detail::planted_mlp_config(d, d_mlp, V, o.positions);
    rng gen(o.seed);
    model_weights<T> w;
    tensor<T> embed({V, d}), pos({o.positions, d}), unembed({V, d}), final_gain({d}), gain({d});
    for (std::size_t v = 0; v < V; ++v) {
        embed(v, A + v) = T(1);
        unembed(v, O + v) = T(1);
    }
    for (T& x : final_gain) x = T(1);
    for (T& x : gain) x = T(1.0 / std::sqrt(double(d))); // a one-hot token passes the first norm unchanged
    w.token_embedding = w.own(std::move(embed));
    w.position_embedding = w.own(std::move(pos));
    w.unembedding = w.own(std::move(unembed));
    w.final_norm_weight = w.own(std::move(final_gain));
    for (int layer = 0; layer < 2; ++layer) {
        tensor<T> w_in({d_mlp, d}), w_out({d, d_mlp});
        const std::size_t real = layer == 0 ? V : M;
        for (std::size_t n = 0; n < real; ++n) {
            if (layer == 0) {
                w_in(n, A + n) = T(o.gain);
                w_out(R + n % M, n) = T(1);
            } else {
                w_in(n, R + n) = T(o.gain); // R arrives near 1 after the norm (token 1, subject ~4)
                w_out(O + (n + 1) % V, n) = T(2);
            }
        }
        for (std::size_t n = real; n < d_mlp; ++n) {
            for (std::size_t j = A; j < A + V; ++j) w_in(n, j) = T(gen.normal());
            for (std::size_t j = C; j < d; ++j) w_out(j, n) = T(0.5 * gen.normal());
        }
        w.layers.push_back(detail::planted_mlp_layer(w, gain, std::move(w_in), std::move(w_out)));
    }
    return basic_transformer<T>(c, std::move(w));
}

/// `rows` prompts for planted_induction: token 0 first, then distinct tokens from 1..V-1 with "a b"
/// somewhere and a at the end (clean), or that first a replaced by a token absent from the prompt
/// (corrupted). Seeded.
inline planted_prompts make_planted_prompts(const planted_options& o, std::size_t rows, std::uint64_t seed) {
    const std::size_t V = o.vocab, Tn = o.positions;
    if (V < Tn)
        fail(errc::invalid_argument,
             "make_planted_prompts: {} distinct tokens per prompt plus a spare need vocab >= {}, got {}", Tn - 2, Tn, V);
    if (rows == 0) fail(errc::invalid_argument, "make_planted_prompts: rows must be >= 1");
    planted_prompts out;
    out.rows = rows;
    out.positions = Tn;
    rng gen(seed);
    for (std::size_t r = 0; r < rows; ++r) {
        std::vector<std::int32_t> pool(V - 1);
        std::iota(pool.begin(), pool.end(), 1);
        for (std::size_t i = pool.size(); i > 1; --i)
            std::swap(pool[i - 1], pool[std::min(i - 1, std::size_t(gen.uniform() * double(i)))]);
        // pool[0..Tn-2) fill positions 1..Tn-2 (distinct), pool[Tn-2] is the spare.
        std::vector<std::int32_t> row(Tn);
        row[0] = 0;
        for (std::size_t p = 1; p + 1 < Tn; ++p) row[p] = pool[p - 1];
        const std::size_t at = 1 + std::min(Tn - 4, std::size_t(gen.uniform() * double(Tn - 3))); // a at [1, Tn-3]
        row[Tn - 1] = row[at];
        const std::int32_t spare = pool[Tn - 2];
        out.clean.insert(out.clean.end(), row.begin(), row.end());
        out.answer.push_back(row[at + 1]);
        out.distractor.push_back(spare);
        row[at] = spare;
        out.corrupted.insert(out.corrupted.end(), row.begin(), row.end());
    }
    return out;
}

/// How well `scores` ([layers, heads] or any shape) recover `truth` (same size, 1 = matters).
struct recovery {
    double precision_at_k = 0.0; ///< of the k largest |score|, the fraction that are true (k = #true)
    double auroc = 0.0;          ///< P(|score| of a true component > that of a false one), ties 1/2
    double spearman = std::numeric_limits<double>::quiet_NaN(); ///< with the reference's |scores|, if given
    std::size_t k = 0;
};

template <class U>
recovery evaluate_recovery(tensor_view<const U> scores, const tensor<double>& truth,
                           const tensor<double>* reference = nullptr) {
    const std::size_t n = scores.size();
    if (truth.size() != n) fail(errc::shape_mismatch, "evaluate_recovery: {} scores for {} truth entries", n, truth.size());
    std::vector<double> mag(n);
    for (std::size_t i = 0; i < n; ++i) {
        mag[i] = std::fabs(double(scores.data()[i]));
        if (!std::isfinite(mag[i])) fail(errc::non_finite, "evaluate_recovery: score {} is {}", i, double(scores.data()[i]));
    }
    recovery r;
    std::vector<std::size_t> yes, no;
    for (std::size_t i = 0; i < n; ++i) (truth.data()[i] > 0.5 ? yes : no).push_back(i);
    if (yes.empty() || no.empty())
        fail(errc::invalid_argument, "evaluate_recovery: the truth must hold both true and false components");
    r.k = yes.size();
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return mag[a] > mag[b]; });
    std::size_t hits = 0;
    for (std::size_t i = 0; i < r.k; ++i) hits += truth.data()[order[i]] > 0.5;
    r.precision_at_k = double(hits) / double(r.k);
    double wins = 0.0;
    for (std::size_t a : yes)
        for (std::size_t b : no) wins += mag[a] > mag[b] ? 1.0 : (mag[a] == mag[b] ? 0.5 : 0.0);
    r.auroc = wins / double(yes.size() * no.size());
    if (reference) {
        if (reference->size() != n)
            fail(errc::shape_mismatch, "evaluate_recovery: the reference has {} entries, the scores {}", reference->size(), n);
        std::vector<double> ref(n);
        for (std::size_t i = 0; i < n; ++i) ref[i] = std::fabs(reference->data()[i]);
        r.spearman = spearman(mag, ref).value;
    }
    return r;
}

} // namespace actlens
