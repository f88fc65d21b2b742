// Tiny random-weight models of both families, shared by the model tests.
#pragma once

#include <actlens/model/family.hpp>
#include <actlens/model/random_weights.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tiny {

/// GPT-2 family: LayerNorm, learned positions, GELU, biases, tied unembedding.
inline actlens::model_config gpt2() {
    auto c = actlens::model_config::gpt2(/*layers*/ 3, /*d*/ 24, /*heads*/ 4, /*vocab*/ 50, /*ctx*/ 32);
    return c;
}

/// Llama family: RMSNorm, half-split RoPE, SwiGLU, GQA (4 query heads over 2 key/value heads), untied.
inline actlens::model_config llama() {
    return actlens::model_config::llama(/*layers*/ 3, /*d*/ 32, /*heads*/ 4, /*kv heads*/ 2, /*d_mlp*/ 40,
                                        /*vocab*/ 60, /*ctx*/ 32);
}

/// Llama with adjacent-pair RoPE, tied embeddings and QKV bias (llama2.c / Qwen2-style rows).
inline actlens::model_config llama_variant() {
    auto c = actlens::model_config::llama(2, 16, 2, 1, 24, 40, 32, actlens::kernels::rope_style::adjacent);
    c.tied_embeddings = true;
    c.qkv_bias = true;
    return c;
}

/// Llama 3.1's RoPE scaling ("llama3" rope_scaling) on llama(): an original context of 16 puts the
/// first frequency pair in the blended band and slows the others by the factor 8.
inline actlens::model_config llama3() {
    auto c = llama();
    c.family = "llama3";
    c.rope_freq_divisors = actlens::llama3_rope_divisors(c.d_head, c.rope_theta, 8.0, 1.0, 4.0, 16.0);
    return c;
}

/// Qwen3: per-head RMSNorm of q and k before RoPE, head_dim 16 != d / H, tied embeddings.
inline actlens::model_config qwen3() {
    auto c = actlens::model_config::llama(2, 32, 4, 2, 40, 60, 32);
    c.family = "qwen3";
    c.d_head = 16;
    c.qk_norm = true;
    c.rope_theta = 1e6;
    c.tied_embeddings = true;
    return c;
}

/// GPT-NeoX (Pythia): LayerNorm, RoPE on half of each head, exact GELU, biases, parallel residual, untied.
inline actlens::model_config pythia() {
    auto c = actlens::model_config::gpt2(2, 24, 4, 50, 32);
    c.family = "gpt_neox";
    c.position = actlens::position_kind::rotary;
    c.rope = actlens::kernels::rope_style::half_split;
    c.rotary_dims = 2; // of d_head 6
    c.mlp = actlens::mlp_kind::gelu_erf;
    c.parallel_residual = true;
    c.tied_embeddings = false;
    return c;
}

/// Gemma 2: scaled embeddings, norms before and after attention and MLP, GeGLU, head_dim 16 != d / H,
/// query_pre_attn_scalar 24, soft caps small enough to bend (2 on the scores, 5 on the logits), and a
/// window of 3 positions on layers 0 and 2, shorter than the tests' sequences.
inline actlens::model_config gemma2() {
    auto c = actlens::model_config::gemma2(3, 32, 4, 2, /*d_head*/ 16, /*d_mlp*/ 40, 60, 32, /*window*/ 3);
    c.query_pre_attn_scalar = 24;
    c.attn_logit_softcap = 2;
    c.final_logit_softcap = 5;
    return c;
}

struct named_config {
    std::string name;
    actlens::model_config config;
};

inline std::vector<named_config> all() {
    return {{"gpt2", gpt2()},           {"llama", llama()}, {"llama_variant", llama_variant()},
            {"llama3", llama3()}, {"qwen3", qwen3()},           {"pythia", pythia()},
            {"gemma2", gemma2()}};
}

/// A clean and a corrupted batch of two rows each (the patching and attribution tests' inputs).
struct run_pair {
    std::vector<std::int32_t> clean, corrupted;
    actlens::tensor_view<const std::int32_t> cv() const { return {clean.data(), {2, clean.size() / 2}}; }
    actlens::tensor_view<const std::int32_t> xv() const { return {corrupted.data(), {2, corrupted.size() / 2}}; }
};

/// Deterministic token ids below `vocab`.
inline std::vector<std::int32_t> tokens(std::size_t n, std::size_t vocab, std::uint32_t salt = 0) {
    std::vector<std::int32_t> t(n);
    for (std::size_t i = 0; i < n; ++i) t[i] = std::int32_t((i * 7 + 3 + salt * 13 + i * i * salt) % vocab);
    return t;
}

} // namespace tiny
