// A deliberately plain forward pass, written from the published equations of GPT-2 and Llama with scalar loops in
// long double, sharing no code with the library's kernels. Tests compare the library against it. Family
// options: RoPE frequencies divided by rope_freq_divisors (Llama 3.1's scaling), Qwen3's RMSNorm of
// each q and k head before RoPE, and GPT-NeoX's partial rotary (the first r dimensions of a head, with
// frequencies theta^(-2j/r)), exact GELU and parallel residual x + attn(ln1(x)) + mlp(ln2(x)); Gemma 2's
// sqrt(d) embedding scale, norms after attention and MLP, GeGLU, query_pre_attn_scalar, soft caps
// cap tanh(x / cap) on scores and logits, and a sliding window on the even layers.
#pragma once

#include <actlens/model/transformer.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace reference {

using real = long double;
using matrix = std::vector<std::vector<real>>; // [rows][cols]

template <class T>
real w(const actlens::tensor_view<const T>& v, std::size_t i, std::size_t j = 0) {
    return real(v.rank() == 1 ? v(i) : v(i, j));
}

template <class T>
matrix linear(const matrix& x, const actlens::tensor_view<const T>& W, const actlens::tensor_view<const T>& b) {
    const std::size_t out = W.extent(0), in = W.extent(1);
    matrix y(x.size(), std::vector<real>(out, 0));
    for (std::size_t r = 0; r < x.size(); ++r)
        for (std::size_t o = 0; o < out; ++o) {
            real s = b.data() ? w(b, o) : 0;
            for (std::size_t i = 0; i < in; ++i) s += x[r][i] * w(W, o, i);
            y[r][o] = s;
        }
    return y;
}

/// The same for a projection, which may hold 16-bit values (its f32 values, model/weight_tensor.hpp).
template <class T>
matrix linear(const matrix& x, const actlens::weight_tensor<T>& W, const actlens::tensor_view<const T>& b) {
    return linear(x, W.view(), b);
}

template <class T>
matrix norm(const actlens::model_config& c, const matrix& x, const actlens::tensor_view<const T>& g,
            const actlens::tensor_view<const T>& b) {
    matrix y = x;
    for (std::size_t r = 0; r < x.size(); ++r) {
        const std::size_t d = x[r].size();
        real mean = 0, sq = 0;
        if (c.norm == actlens::norm_kind::layer_norm) {
            for (real v : x[r]) mean += v;
            mean /= real(d);
        }
        for (real v : x[r]) sq += (v - mean) * (v - mean);
        const real scale = 1 / std::sqrt(sq / real(d) + real(c.norm_eps));
        for (std::size_t i = 0; i < d; ++i)
            y[r][i] = (x[r][i] - mean) * scale * w(g, i) + (b.data() ? w(b, i) : 0);
    }
    return y;
}

// RMS-normalises each head of a [T][heads*dh] matrix in place, with gain g [dh].
template <class T>
void head_norm(const actlens::model_config& c, matrix& x, std::size_t heads, const actlens::tensor_view<const T>& g) {
    const std::size_t dh = c.d_head;
    for (auto& row : x)
        for (std::size_t h = 0; h < heads; ++h) {
            real sq = 0;
            for (std::size_t e = 0; e < dh; ++e) sq += row[h * dh + e] * row[h * dh + e];
            const real scale = 1 / std::sqrt(sq / real(dh) + real(c.norm_eps));
            for (std::size_t e = 0; e < dh; ++e) row[h * dh + e] *= scale * w(g, e);
        }
}

// Rotates head vectors of a [T][heads*dh] matrix in place.
inline void rope(const actlens::model_config& c, matrix& x, std::size_t heads) {
    const std::size_t dh = c.d_head, r = c.rotary_dims ? c.rotary_dims : dh, half = r / 2;
    for (std::size_t t = 0; t < x.size(); ++t)
        for (std::size_t h = 0; h < heads; ++h)
            for (std::size_t j = 0; j < half; ++j) {
                const real divisor = c.rope_freq_divisors.empty() ? 1 : real(c.rope_freq_divisors[j]);
                const real angle = real(t) * std::pow(real(c.rope_theta), -real(2 * j) / real(r)) / divisor;
                const bool adj = c.rope == actlens::kernels::rope_style::adjacent;
                const std::size_t a = h * dh + (adj ? 2 * j : j), b = h * dh + (adj ? 2 * j + 1 : j + half);
                const real u = x[t][a], v = x[t][b];
                x[t][a] = u * std::cos(angle) - v * std::sin(angle);
                x[t][b] = u * std::sin(angle) + v * std::cos(angle);
            }
}

// Gemma 2's post norm (an RMSNorm with gain g and no bias) of a sublayer output, in place.
template <class T>
void post_norm(const actlens::model_config& c, matrix& x, const actlens::tensor_view<const T>& g) {
    for (auto& row : x) {
        real sq = 0;
        for (real v : row) sq += v * v;
        const real scale = 1 / std::sqrt(sq / real(row.size()) + real(c.norm_eps));
        for (std::size_t i = 0; i < row.size(); ++i) row[i] *= scale * w(g, i);
    }
}

inline real soft_cap(real x, double cap) { return cap > 0 ? real(cap) * std::tanh(x / real(cap)) : x; }

inline real gelu_tanh(real u) {
    const real k = std::sqrt(2 / 3.14159265358979323846264338327950288L);
    return 0.5L * u * (1 + std::tanh(k * (u + 0.044715L * u * u * u)));
}

/// Logits [T][V] of one sequence.
template <class T>
matrix forward(const actlens::basic_transformer<T>& model, const std::vector<std::int32_t>& tokens) {
    const actlens::model_config& c = model.config();
    const auto& W = model.weights();
    const std::size_t n = tokens.size(), d = c.d_model, dh = c.d_head;
    matrix x(n, std::vector<real>(d));
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t i = 0; i < d; ++i)
            x[t][i] = w(W.token_embedding, std::size_t(tokens[t]), i) *
                          (c.scale_embeddings ? real(T(std::sqrt(double(d)))) : 1) +
                      (c.position == actlens::position_kind::learned ? w(W.position_embedding, t, i) : 0);
    const real scale = 1 / std::sqrt(real(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : double(dh)));
    for (std::size_t layer = 0; layer < W.layers.size(); ++layer) {
        const auto& L = W.layers[layer];
        const std::size_t window = layer % 2 == 0 ? c.sliding_window : 0;
        const matrix a = norm(c, x, L.ln1_weight, L.ln1_bias);
        matrix q = linear(a, L.w_q, L.b_q), k = linear(a, L.w_k, L.b_k), v = linear(a, L.w_v, L.b_v);
        if (c.qk_norm) {
            head_norm(c, q, c.n_heads, L.q_norm);
            head_norm(c, k, c.n_kv_heads, L.k_norm);
        }
        if (c.position == actlens::position_kind::rotary) {
            rope(c, q, c.n_heads);
            rope(c, k, c.n_kv_heads);
        }
        matrix z(n, std::vector<real>(c.n_heads * dh, 0));
        for (std::size_t h = 0; h < c.n_heads; ++h) {
            const std::size_t g = h / (c.n_heads / c.n_kv_heads);
            for (std::size_t i = 0; i < n; ++i) {
                // Query i sees keys j <= i, and within a window only those with i - j < window.
                const std::size_t first = window && i + 1 > window ? i + 1 - window : 0;
                std::vector<real> p(i + 1, 0);
                real max = -1e300L, total = 0;
                for (std::size_t j = first; j <= i; ++j) {
                    real s = 0;
                    for (std::size_t e = 0; e < dh; ++e) s += q[i][h * dh + e] * k[j][g * dh + e];
                    p[j] = soft_cap(s * scale, c.attn_logit_softcap);
                    max = std::max(max, p[j]);
                }
                for (std::size_t j = first; j <= i; ++j) total += (p[j] = std::exp(p[j] - max));
                for (std::size_t j = first; j <= i; ++j)
                    for (std::size_t e = 0; e < dh; ++e) z[i][h * dh + e] += p[j] / total * v[j][g * dh + e];
            }
        }
        matrix attn = linear(z, L.w_o, L.b_o);
        if (c.post_norms) post_norm(c, attn, L.ln1_post_weight);
        const matrix resid_pre = x;
        for (std::size_t t = 0; t < n; ++t)
            for (std::size_t i = 0; i < d; ++i) x[t][i] += attn[t][i];
        const matrix m = norm(c, c.parallel_residual ? resid_pre : x, L.ln2_weight, L.ln2_bias);
        matrix hidden = linear(m, L.w_in, L.b_in);
        if (c.mlp == actlens::mlp_kind::swiglu || c.mlp == actlens::mlp_kind::geglu) {
            const matrix gate = linear(m, L.w_gate, actlens::tensor_view<const T>());
            const bool swiglu = c.mlp == actlens::mlp_kind::swiglu;
            for (std::size_t t = 0; t < n; ++t)
                for (std::size_t i = 0; i < c.d_mlp; ++i) {
                    const real u = gate[t][i];
                    hidden[t][i] *= swiglu ? u / (1 + std::exp(-u)) : gelu_tanh(u);
                }
        } else if (c.mlp == actlens::mlp_kind::gelu_erf) {
            for (auto& row : hidden)
                for (real& u : row) u = 0.5L * u * (1 + std::erf(u / std::sqrt(2.0L)));
        } else {
            for (auto& row : hidden)
                for (real& u : row) u = gelu_tanh(u);
        }
        matrix out = linear(hidden, L.w_out, L.b_out);
        if (c.post_norms) post_norm(c, out, L.ln2_post_weight);
        for (std::size_t t = 0; t < n; ++t)
            for (std::size_t i = 0; i < d; ++i) x[t][i] += out[t][i];
    }
    matrix logits = linear(norm(c, x, W.final_norm_weight, W.final_norm_bias), W.unembedding,
                           actlens::tensor_view<const T>());
    for (auto& row : logits)
        for (real& v : row) v = soft_cap(v, c.final_logit_softcap);
    return logits;
}

} // namespace reference
