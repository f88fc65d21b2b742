// actlens/model/backward.hpp: the backward pass of a transformer, with propagation rules.
//
// One hand-written backward for the fixed block structure yields, in one pass, the gradient of a
// scalar metric at every requested hook point. The forward's activations come from a tape: an
// activation_cache filled by run_with_cache(tokens, tape_glob(...)) or by capture hooks, so the
// forward pass itself needs no change and the tape holds only what the backward reads.
//
// A rule chooses how each non-linear operation propagates:
//   rule::gradient  the exact gradient (checked against finite differences in double precision);
//   rule::relp      RelP's LRP rules ("RelP: Faithful and Efficient
//                   Circuit Discovery via Relevance Patching", 2025): norm scale held constant (LN-rule),
//                   elementwise activations by the identity rule f(x)/x (stabilised), gated products
//                   split in half (Half-rule), and optionally a frozen attention pattern (AH-rule);
//   rule::attnlrp   AttnLRP's variant: as relp with a 1e-10 stabiliser, and the two bilinear
//                   attention products split uniformly (gradient into Q and K divided by 4, into V by 2).
// Linear maps, residual additions and embeddings always use the ordinary gradient (LRP-0).
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/gemm_input_grad.hpp>
#include <actlens/kernels/gemm_panel_grad.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/kernels/softmax.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

namespace actlens {

/// How the backward pass propagates through non-linear operations.
enum class rule { gradient, relp, attnlrp };

/// Options of a backward pass.
struct backward_options {
    actlens::rule rule = actlens::rule::gradient;
    /// RelP's optional AH-rule: treat the attention pattern as constant (no gradient reaches Q, K).
    bool freeze_attention = false;
    /// Stabiliser of the identity rule: f(x) / (x + eps * sign(x)); 0 picks the rule's default
    /// (1e-6 for relp, 1e-10 for attnlrp).
    double identity_epsilon = 0.0;
    /// Transposed projections packed for the forward's GEMM (model/backward_weights.hpp), made once
    /// from the model being differentiated: about twice as fast input gradients in float. Null (or
    /// another scalar type) multiplies with the weights in place.
    const backward_weights<float>* weights = nullptr;
    /// Layers whose attention (cut_attention) or MLP (cut_mlp) output is held constant: no gradient
    /// flows back through that branch and every gradient inside it is zero, as if its output
    /// projection were zero in the backward only (GradDrop's dropped edges). The forward, and so the
    /// tape, are unchanged.
    std::vector<int> cut_attention, cut_mlp;
};

/// The hook points a backward from the final norm down to block `down_to_layer` reads from the tape.
template <class T>
std::vector<hook_point> tape_points(const basic_transformer<T>& model, int down_to_layer = 0) {
    const model_config& c = model.config();
    std::vector<hook_point> out;
    for (int l = down_to_layer; l < static_cast<int>(c.n_layers); ++l) {
        const bool rotary = c.position == position_kind::rotary;
        for (site s : {site::resid_pre, rotary ? site::attn_rot_q : site::attn_q, rotary ? site::attn_rot_k : site::attn_k,
                       site::attn_v, site::attn_pattern, site::mlp_pre, site::mlp_post})
            out.push_back({s, l});
        if (!c.parallel_residual) out.push_back({site::resid_mid, l}); // ln2's input (else resid_pre)
        if (c.gated_mlp()) out.push_back({site::mlp_pre_linear, l});
        if (c.post_norms) out.push_back({site::attn_z, l}); // W_O z is ln1_post's input (mlp_post W_out is ln2_post's)
        if (c.qk_norm) // the inputs of the per-head norms
            for (site s : {site::attn_q, site::attn_k}) out.push_back({s, l});
        if (l + 1 == static_cast<int>(c.n_layers)) out.push_back({site::resid_post, l});
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// Gradients of a scalar metric at hook points, from one backward pass.
///
/// `d_normalized` is the metric's gradient at ln_final.hook_normalized [B, T, d] (unembed_backward
/// turns a logits gradient into it; a logit difference needs no vocabulary product at all).
/// `tape` must hold tape_points(model, down_to_layer) from the forward pass being differentiated.
/// Returns an activation_cache whose entries are gradients, for every point of `want` at or above
/// `down_to_layer` (ask for hook_embed / hook_pos_embed with down_to_layer = 0).
/// Thread-safe: the model is const and every buffer is local.
template <class T>
activation_cache<T> backward(const basic_transformer<T>& model, const activation_cache<T>& tape,
                             tensor_view<const typename basic_transformer<T>::value_type> d_normalized,
                             const std::vector<hook_point>& want,
                             const backward_options& options = {}, int down_to_layer = 0);

namespace detail {

// f(x) / (x + eps * sign(x)) with sign(0) = 1: the identity rule's coefficient.
template <class T>
T identity_coefficient(T fx, T x, T eps) noexcept {
    return fx / (x + eps * (x < T(0) ? T(-1) : T(1)));
}

/// The default stabiliser of the identity rule under `r` (backward_options::identity_epsilon = 0).
inline double identity_epsilon(const backward_options& o) noexcept {
    return o.identity_epsilon > 0 ? o.identity_epsilon : (o.rule == rule::attnlrp ? 1e-10 : 1e-6);
}

/// Through a soft cap y = cap tanh(x / cap), in place on the gradient d at its outputs `capped`:
/// the exact derivative 1 - (y / cap)^2, or under RelP and AttnLRP the identity rule y / x (Achtibat
/// et al. 2024, "AttnLRP": an elementwise non-linearity passes relevance on unchanged), with
/// x = cap atanh(y / cap) recovered from the output.
template <class T>
void soft_cap_backward(const T* capped, T cap, std::size_t n, T* d, const backward_options& o) {
    const T eps = T(identity_epsilon(o));
    for (std::size_t i = 0; i < n; ++i) {
        const T y = capped[i] / cap;
        if (o.rule == rule::gradient)
            d[i] *= T(1) - y * y;
        else
            d[i] *= identity_coefficient(capped[i], cap * std::atanh(y), eps);
    }
}

} // namespace detail

/// The gradient at ln_final.hook_normalized [B, T, d] of a metric whose logits gradient is
/// `d_logits` [B, T, V] (one product with the unembedding). A model with final_logit_softcap needs
/// the `logits` the forward returned ([B, T, V], capped) to pass the cap, by the exact derivative or,
/// under options.rule relp / attnlrp, by the identity rule; otherwise they are not read.
template <class T>
tensor<T> unembed_backward(const basic_transformer<T>& model,
                           tensor_view<const typename basic_transformer<T>::value_type> d_logits,
                           tensor_view<const typename basic_transformer<T>::value_type> logits = {},
                           const backward_options& options = {}) {
    const model_config& c = model.config();
    if (d_logits.rank() != 3 || d_logits.extent(2) != c.vocab_size || !d_logits.is_contiguous())
        fail(errc::shape_mismatch, "unembed_backward: d_logits has shape {}, expected contiguous [B, T, {}]",
             d_logits.shape().to_string(), c.vocab_size);
    const std::size_t rows = d_logits.extent(0) * d_logits.extent(1);
    tensor<T> capped_grad;
    const T* d = d_logits.data();
    if (c.final_logit_softcap > 0) {
        if (logits.shape() != d_logits.shape() || !logits.is_contiguous())
            fail(errc::shape_mismatch,
                 "unembed_backward: a model with final_logit_softcap needs the forward's logits of shape {}, got {}",
                 d_logits.shape().to_string(), logits.shape().to_string());
        capped_grad = tensor<T>::copy_of(d_logits);
        detail::soft_cap_backward(logits.data(), T(c.final_logit_softcap), capped_grad.size(), capped_grad.data(),
                                  options);
        d = capped_grad.data();
    }
    tensor<T> out({d_logits.extent(0), d_logits.extent(1), c.d_model});
    const weight_tensor<T>& unembedding = model.weights().unembedding;
    if (unembedding.is_narrow()) // from the forward's panels: no f32 copy of a 16-bit unembedding
        kernels::linear_input_grad(d, rows, model.packed().unembedding, out.data());
    else
        kernels::linear_input_grad(d, rows, c.vocab_size, unembedding.data(), c.d_model, out.data());
    return out;
}

namespace detail {

template <class T>
class backward_pass {
public:
    backward_pass(const basic_transformer<T>& model, const activation_cache<T>& tape, const std::vector<hook_point>& want,
                  const backward_options& options, int down_to_layer)
        : c(model.config()), W(model.weights()), P(model.packed()), m_tape(tape), m_want(want), m_opt(options),
          m_down_to(down_to_layer) {
        if (down_to_layer < 0 || down_to_layer > static_cast<int>(c.n_layers))
            fail(errc::bad_layer_range, "backward: down_to_layer {} is outside 0..{}", down_to_layer, c.n_layers);
        if (options.weights && !options.weights->empty() && !options.weights->made_from(model))
            fail(errc::invalid_argument, "backward: backward_options::weights were made from another model");
        m_eps = T(identity_epsilon(options));
    }

    activation_cache<T> run(tensor_view<const T> d_normalized) {
        const tensor<T>& final_resid = tape(hook_point{site::resid_post, static_cast<int>(c.n_layers) - 1});
        B = final_resid.extent(0);
        S = final_resid.extent(1);
        N = B * S;
        if (d_normalized.shape() != shape_t{B, S, c.d_model} || !d_normalized.is_contiguous())
            fail(errc::shape_mismatch, "backward: d_normalized has shape {}, expected [{}, {}, {}]",
                 d_normalized.shape().to_string(), B, S, c.d_model);
        const std::size_t d = c.d_model;
        m_dx.resize({B, S, d});
        record(hook_point{site::ln_final_normalized, -1}, d_normalized.data(), {B, S, d});
        norm_backward(final_resid.data(), W.final_norm_weight, d_normalized.data(), m_dx.data(), false);
        for (int l = static_cast<int>(c.n_layers) - 1; l >= m_down_to; --l) block(l);
        if (m_down_to == 0) {
            record(hook_point{site::embed, -1}, m_dx.data(), {B, S, d});
            if (c.position == position_kind::learned) record(hook_point{site::pos_embed, -1}, m_dx.data(), {B, S, d});
        }
        return std::move(m_out);
    }

private:
    const tensor<T>& tape(const hook_point& p) const {
        if (!m_tape.contains(p))
            fail(errc::bad_hook_name, "backward: the tape holds no '{}' (record tape_points(model) in the forward)",
                 p.name());
        return m_tape.at(p);
    }

    bool wanted(const hook_point& p) const {
        return std::find(m_want.begin(), m_want.end(), p) != m_want.end();
    }

    void record(const hook_point& p, const T* data, const shape_t& shape) {
        if (wanted(p)) m_out.store(p, tensor_view<const T>(data, shape));
    }

    // d_in = (gradient | LN-rule) of the norm at input x, from d_out; accumulate adds to d_in.
    void norm_backward(const T* x, const tensor_view<const T>& weight, const T* d_out, T* d_in, bool accumulate) {
        m_mean.reshape_uninitialized({N});
        m_rstd.reshape_uninitialized({N});
        m_scratch.reshape_uninitialized({N, c.d_model});
        normalize_backward(c, weight, x, N, d_out, d_in, accumulate, m_opt.rule != rule::gradient, m_scratch.data(),
                           m_mean.data(), m_rstd.data());
    }

    // The packed transposes of layer l's projections, when the options carry them (float only).
    const typename backward_weights<T>::layer* packed_layer(int l) const {
        if constexpr (std::is_same_v<T, float>) {
            if (m_opt.weights && !m_opt.weights->empty()) return &m_opt.weights->layers[static_cast<std::size_t>(l)];
        }
        (void)l;
        return nullptr;
    }

    // dx[N, in] (=|+=) dy[N, out] * w[out, in]: the forward GEMM with w^T packed; else, for 16-bit
    // weights, from the forward's panels of w (`forward`; no f32 copy of w is made); else w in place.
    void input_grad(const T* dy, const weight_tensor<T>& w, const kernels::packed_weight<T>& forward,
                    const kernels::packed_weight<T>* packed_t, T* dx, bool accumulate = false) {
        if (packed_t)
            kernels::linear(dy, N, *packed_t, static_cast<const T*>(nullptr), dx, accumulate);
        else if (w.is_narrow())
            kernels::linear_input_grad(dy, N, forward, dx, accumulate);
        else
            kernels::linear_input_grad(dy, N, w.extent(0), w.data(), w.extent(1), dx, accumulate);
    }

    static bool is_cut(const std::vector<int>& layers, int l) {
        return std::find(layers.begin(), layers.end(), l) != layers.end();
    }

    void block(int l) {
        const layer_weights<T>& w = W.layers[static_cast<std::size_t>(l)];
        const auto& pl = P.layers[static_cast<std::size_t>(l)]; // the forward's panels
        const typename backward_weights<T>::layer* bw = packed_layer(l);
        const std::size_t d = c.d_model, f = c.d_mlp, dh = c.d_head, H = c.n_heads;
        const std::size_t qw = H * dh;
        const shape_t resid{B, S, d}, mlp{B, S, f};
        T* dx = m_dx.data();
        record({site::resid_post, l}, dx, resid);
        record({site::mlp_out, l}, dx, resid);
        // A parallel residual's attention output receives resid_post's gradient, not resid_mid's.
        if (c.parallel_residual) {
            m_d_resid.reshape_uninitialized({N, d});
            std::copy(dx, dx + N * d, m_d_resid.data());
        }

        // MLP.
        const T* pre = tape({site::mlp_pre, l}).data();
        const T* post = tape({site::mlp_post, l}).data();
        m_d_post.reshape_uninitialized({N, f});
        if (is_cut(m_opt.cut_mlp, l))
            std::fill(m_d_post.data(), m_d_post.data() + N * f, T(0)); // zeros all the way down the branch
        else
            input_grad(post_norm_backward(l, site::ln2_post_normalized, post, pl.w_out,
                                          w.b_out, w.ln2_post_weight, dx),
                       w.w_out, pl.w_out, bw ? &bw->w_out : nullptr, m_d_post.data());
        record({site::mlp_post, l}, m_d_post.data(), mlp);
        m_d_pre.reshape_uninitialized({N, f});
        m_d_ln.reshape_uninitialized({N, d});
        const std::size_t n_f = N * f;
        if (c.gated_mlp()) {
            const T* up = tape({site::mlp_pre_linear, l}).data();
            m_d_lin.reshape_uninitialized({N, f});
            const T* dp = m_d_post.data();
            T* dg = m_d_pre.data();
            T* du = m_d_lin.data();
            if (m_opt.rule == rule::gradient && c.mlp == mlp_kind::swiglu) {
                kernels::swiglu_backward(pre, up, dp, dg, du, n_f);
            } else if (m_opt.rule == rule::gradient) { // GeGLU: d_u = d gelu(g), d_g = d u gelu'(g)
                kernels::gelu_tanh(pre, du, n_f);
                for (std::size_t i = 0; i < n_f; ++i) {
                    du[i] *= dp[i];
                    dg[i] = dp[i] * up[i];
                }
                kernels::gelu_tanh_backward(pre, dg, dg, n_f);
            } else {
                // Half-rule on act(g) * u, then the identity rule on act: d_g = (u d/2) act(g)/g.
                T* act = du; // act(g), then d_u over it element by element
                if (c.mlp == mlp_kind::swiglu)
                    kernels::silu(pre, act, n_f);
                else
                    kernels::gelu_tanh(pre, act, n_f);
                for (std::size_t i = 0; i < n_f; ++i) {
                    dg[i] = up[i] * dp[i] / T(2) * identity_coefficient(act[i], pre[i], m_eps);
                    du[i] = act[i] * dp[i] / T(2);
                }
            }
            record({site::mlp_pre, l}, m_d_pre.data(), mlp);
            record({site::mlp_pre_linear, l}, m_d_lin.data(), mlp);
            input_grad(m_d_pre.data(), w.w_gate, pl.w_gate, bw ? &bw->w_gate : nullptr, m_d_ln.data());
            input_grad(m_d_lin.data(), w.w_in, pl.w_in, bw ? &bw->w_in : nullptr, m_d_ln.data(), true);
        } else {
            if (m_opt.rule == rule::gradient) {
                if (c.mlp == mlp_kind::gelu_erf)
                    kernels::gelu_erf_backward(pre, m_d_post.data(), m_d_pre.data(), n_f);
                else
                    kernels::gelu_tanh_backward(pre, m_d_post.data(), m_d_pre.data(), n_f);
            } else {
                const T* dp = m_d_post.data();
                T* du = m_d_pre.data();
                for (std::size_t i = 0; i < n_f; ++i) du[i] = dp[i] * identity_coefficient(post[i], pre[i], m_eps);
            }
            record({site::mlp_pre, l}, m_d_pre.data(), mlp);
            input_grad(m_d_pre.data(), w.w_in, pl.w_in, bw ? &bw->w_in : nullptr, m_d_ln.data());
        }
        record({site::ln2_normalized, l}, m_d_ln.data(), resid);
        const T* d_attn_out = dx;
        if (c.parallel_residual) {
            norm_backward(tape({site::resid_pre, l}).data(), w.ln2_weight, m_d_ln.data(), dx, true);
            d_attn_out = m_d_resid.data();
        } else {
            norm_backward(tape({site::resid_mid, l}).data(), w.ln2_weight, m_d_ln.data(), dx, true);
            record({site::resid_mid, l}, dx, resid);
        }
        record({site::attn_out, l}, d_attn_out, resid);

        // Attention.
        m_d_z.reshape_uninitialized({N, qw});
        if (is_cut(m_opt.cut_attention, l))
            std::fill(m_d_z.data(), m_d_z.data() + N * qw, T(0));
        else
            input_grad(post_norm_backward(l, site::ln1_post_normalized,
                                          c.post_norms ? tape({site::attn_z, l}).data() : nullptr,
                                          pl.w_o, w.b_o, w.ln1_post_weight, d_attn_out),
                       w.w_o, pl.w_o, bw ? &bw->w_o : nullptr, m_d_z.data());
        record({site::attn_z, l}, m_d_z.data(), {B, S, H, dh});
        attention_backward(l);
        m_d_ln.reshape_uninitialized({N, d});
        input_grad(m_d_q.data(), w.w_q, pl.w_q, bw ? &bw->w_q : nullptr, m_d_ln.data());
        input_grad(m_d_k.data(), w.w_k, pl.w_k, bw ? &bw->w_k : nullptr, m_d_ln.data(), true);
        input_grad(m_d_v.data(), w.w_v, pl.w_v, bw ? &bw->w_v : nullptr, m_d_ln.data(), true);
        record({site::ln1_normalized, l}, m_d_ln.data(), resid);
        norm_backward(tape({site::resid_pre, l}).data(), w.ln1_weight, m_d_ln.data(), dx, true);
        record({site::resid_pre, l}, dx, resid);
    }

    // Gemma 2's post norm of a sublayer whose output projection `proj` (bias `bias`) reads `in`: from
    // the gradient d_out at what joins the residual to the gradient at the projection's output (the
    // norm's input, recomputed). Records ln*_post.hook_normalized's gradient, d_out times the gain.
    // RelP and AttnLRP hold the norm's scale constant (LN-rule), as for every other norm. Without
    // post norms, d_out itself.
    const T* post_norm_backward(int l, site normalized, const T* in, const kernels::packed_weight<T>& proj,
                                const tensor_view<const T>& bias, const tensor_view<const T>& gain, const T* d_out) {
        if (!c.post_norms) return d_out;
        const std::size_t d = c.d_model;
        m_post_in.reshape_uninitialized({N, d});
        kernels::linear(in, N, proj, bias.data(), m_post_in.data());
        m_d_post_in.reshape_uninitialized({N, d});
        const T* g = gain.data();
        for (std::size_t r = 0; r < N; ++r)
            for (std::size_t i = 0; i < d; ++i) m_d_post_in.data()[r * d + i] = d_out[r * d + i] * g[i];
        record({normalized, l}, m_d_post_in.data(), {B, S, d});
        norm_backward(m_post_in.data(), gain, d_out, m_d_post_in.data(), false);
        return m_d_post_in.data();
    }

    void attention_backward(int l) {
        const std::size_t dh = c.d_head, H = c.n_heads, Hkv = c.n_kv_heads, qw = H * dh, kvw = Hkv * dh;
        const std::size_t group = c.group_size();
        const bool rotary = c.position == position_kind::rotary;
        const T* q = tape({rotary ? site::attn_rot_q : site::attn_q, l}).data();
        const T* k = tape({rotary ? site::attn_rot_k : site::attn_k, l}).data();
        const T* v = tape({site::attn_v, l}).data();
        const T* pattern = tape({site::attn_pattern, l}).data();
        const attention_form<T> form = attention_form<T>::of(c, l);
        const T scale = form.scale;
        const bool attnlrp = m_opt.rule == rule::attnlrp;
        const bool frozen = m_opt.freeze_attention;
        m_d_q.resize({N, qw});
        m_d_k.resize({N, kvw});
        m_d_v.resize({N, kvw});
        m_d_pattern.reshape_uninitialized({B, H, S, S});
        const std::size_t block = S * S;
        // Work items are (row, key/value head): the query heads of one group add into the same
        // d_v and d_k columns, so they run in turn on one thread. The items run on the OpenMP team,
        // which also keeps each small Eigen product single-threaded (Eigen threads a product of
        // 64 x 64 x 64 on its own, and its fork/join per product cost ~10x the product here).
        const long items = static_cast<long>(B * Hkv);
        const bool parallel = B * H * block * dh >= (std::size_t(1) << 16);
        (void)parallel;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
        for (long item = 0; item < items; ++item) {
            const std::size_t b = static_cast<std::size_t>(item) / Hkv, g = static_cast<std::size_t>(item) % Hkv;
            for (std::size_t h = g * group; h < (g + 1) * group; ++h) {
                const T* p = pattern + (b * H + h) * block;
                T* dp = m_d_pattern.data() + (b * H + h) * block;
                const T* dz = m_d_z.data() + b * S * qw + h * dh;
                kernels::attention_mix_backward(dz, qw, p, S, v + b * S * kvw + g * dh, kvw, S, S, dh, dp, S,
                                                m_d_v.data() + b * S * kvw + g * dh, kvw);
            }
        }
        if (attnlrp) // uniform rule on A V: half of the relevance to A, half to V
            for (T& x : m_d_v) x /= T(2);
        if (attnlrp)
            for (std::size_t i = 0; i < m_d_pattern.size(); ++i) m_d_pattern.data()[i] /= T(2);
        record({site::attn_pattern, l}, m_d_pattern.data(), {B, H, S, S});
        record({site::attn_v, l}, m_d_v.data(), {B, S, Hkv, dh});
        if (!frozen) {
            m_d_scores.reshape_uninitialized({B, H, S, S});
            const long heads = static_cast<long>(B * H);
#pragma omp parallel for schedule(static) if (parallel)
            for (long bh = 0; bh < heads; ++bh)
                kernels::softmax_causal_backward(pattern + bh * block, m_d_pattern.data() + bh * block,
                                                 m_d_scores.data() + bh * block, S, S, S, 0);
            if (attnlrp) // uniform rule on Q K^T
                for (T& x : m_d_scores) x /= T(2);
            record({site::attn_scores, l}, m_d_scores.data(), {B, H, S, S});
            if (form.softcap > T(0)) { // through cap tanh(s / cap), from the scores recomputed
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
                for (long bh = 0; bh < heads; ++bh) {
                    const std::size_t b = std::size_t(bh) / H, h = std::size_t(bh) % H;
                    std::vector<T> capped(block);
                    kernels::attention_scores(q + b * S * qw + h * dh, qw, k + b * S * kvw + (h / group) * dh, kvw, S,
                                              S, dh, scale, capped.data(), S);
                    kernels::soft_cap(capped.data(), block, form.softcap);
                    soft_cap_backward(capped.data(), form.softcap, block, m_d_scores.data() + bh * block, m_opt);
                }
            }
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
            for (long item = 0; item < items; ++item) {
                const std::size_t b = static_cast<std::size_t>(item) / Hkv, g = static_cast<std::size_t>(item) % Hkv;
                for (std::size_t h = g * group; h < (g + 1) * group; ++h)
                    kernels::attention_scores_backward(m_d_scores.data() + (b * H + h) * block, S,
                                                       q + b * S * qw + h * dh, qw, k + b * S * kvw + g * dh, kvw, S,
                                                       S, dh, scale, m_d_q.data() + b * S * qw + h * dh, qw,
                                                       m_d_k.data() + b * S * kvw + g * dh, kvw, true);
            }
        }
        if (rotary) {
            record({site::attn_rot_q, l}, m_d_q.data(), {B, S, H, dh});
            record({site::attn_rot_k, l}, m_d_k.data(), {B, S, Hkv, dh});
            cover_rope(c, m_rope, S);
            kernels::rope_backward(m_d_q.data(), N, H, qw, S, 0, m_rope, c.rope, dh);
            kernels::rope_backward(m_d_k.data(), N, Hkv, kvw, S, 0, m_rope, c.rope, dh);
            if (c.qk_norm) {
                const layer_weights<T>& w = W.layers[static_cast<std::size_t>(l)];
                head_norm_backward(tape({site::attn_q, l}).data(), w.q_norm, H, m_d_q.data());
                head_norm_backward(tape({site::attn_k, l}).data(), w.k_norm, Hkv, m_d_k.data());
            }
        }
        record({site::attn_q, l}, m_d_q.data(), {B, S, H, dh});
        record({site::attn_k, l}, m_d_k.data(), {B, S, Hkv, dh});
    }

    // Qwen3's per-head RMSNorm (model/family.hpp: position_heads) at input x [N, n_heads, d_h], in place
    // on the gradient d. RelP and AttnLRP hold its scale constant, the LN-rule as for every other norm.
    void head_norm_backward(const T* x, const tensor_view<const T>& weight, std::size_t n_heads, T* d) {
        const std::size_t rows = N * n_heads, dh = c.d_head;
        m_scratch.reshape_uninitialized({rows, dh});
        m_rstd.reshape_uninitialized({rows});
        kernels::rms_norm(x, rows, dh, static_cast<const T*>(nullptr), T(c.norm_eps), m_scratch.data(), m_rstd.data());
        if (m_opt.rule == rule::gradient)
            kernels::rms_norm_backward(x, rows, dh, weight.data(), m_rstd.data(), d, d);
        else
            kernels::rms_norm_backward_const_scale(x, rows, dh, weight.data(), m_rstd.data(), d, d);
    }

    const model_config& c;
    const model_weights<T>& W;
    const packed_weights<T>& P;
    const activation_cache<T>& m_tape;
    const std::vector<hook_point>& m_want;
    backward_options m_opt;
    int m_down_to;
    T m_eps{};
    std::size_t B = 0, S = 0, N = 0;
    activation_cache<T> m_out;
    tensor<T> m_dx, m_d_resid, m_d_post, m_d_pre, m_d_lin, m_d_ln, m_d_z, m_d_q, m_d_k, m_d_v, m_d_pattern, m_d_scores;
    tensor<T> m_mean, m_rstd, m_scratch, m_post_in, m_d_post_in;
    kernels::rope_table<T> m_rope; // the rotary angles of the taped positions
};

} // namespace detail

template <class T>
activation_cache<T> backward(const basic_transformer<T>& model, const activation_cache<T>& tape,
                             tensor_view<const typename basic_transformer<T>::value_type> d_normalized,
                             const std::vector<hook_point>& want,
                             const backward_options& options, int down_to_layer) {
    return detail::backward_pass<T>(model, tape, want, options, down_to_layer).run(d_normalized);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE activation_cache<float> backward(const transformer&, const activation_cache<float>&,
                                                         tensor_view<const float>, const std::vector<hook_point>&,
                                                         const backward_options&, int);
ACTLENS_EXTERN_TEMPLATE tensor<float> unembed_backward(const transformer&, tensor_view<const float>,
                                                       tensor_view<const float>, const backward_options&);
#endif

} // namespace actlens
