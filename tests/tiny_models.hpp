// Tiny random-weight models of both families, shared by the model tests.
#pragma once

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

struct named_config {
    std::string name;
    actlens::model_config config;
};

inline std::vector<named_config> all() { return {{"gpt2", gpt2()}, {"llama", llama()}, {"llama_variant", llama_variant()}}; }

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
