// actlens/model/config.hpp: the shape and family options of a transformer.
//
// One transformer with a row of options per family, not a class per model: GPT-2 is LayerNorm +
// learned positions + GELU + biases + tied unembedding; Llama is RMSNorm + RoPE + SwiGLU + GQA;
// GPT-NeoX (Pythia) is LayerNorm + partial RoPE + exact GELU + biases + a parallel residual; Gemma 2 is
// Llama's row with scaled embeddings, norms after each sublayer too, GeGLU, soft-capped logits and
// sliding-window attention on alternate layers.
#pragma once

#include <actlens/error.hpp>
#include <actlens/kernels/rope.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

enum class norm_kind { layer_norm, rms_norm };
enum class position_kind { learned, rotary };
enum class mlp_kind {
    gelu_tanh, ///< GELU's tanh approximation (GPT-2's "gelu_new")
    swiglu,    ///< silu(gate) * up (Llama)
    gelu_erf,  ///< exact GELU, 0.5 u (1 + erf(u / sqrt 2)) (GPT-NeoX's "gelu")
    geglu      ///< gelu_tanh(gate) * up (Gemma's "gelu_pytorch_tanh" gated MLP)
};

/// Everything that fixes a transformer's computation apart from its weights.
struct model_config {
    std::string family = "llama"; ///< informative: "gpt2", "llama", ...
    std::size_t n_layers = 0;
    std::size_t d_model = 0;
    std::size_t n_heads = 0;
    std::size_t n_kv_heads = 0; ///< = n_heads without grouped-query attention
    std::size_t d_head = 0;     ///< usually d_model / n_heads
    std::size_t d_mlp = 0;
    std::size_t vocab_size = 0;
    std::size_t max_seq_len = 0; ///< positions the model supports (learned table size or RoPE table)

    norm_kind norm = norm_kind::rms_norm;
    double norm_eps = 1e-5;
    position_kind position = position_kind::rotary;
    kernels::rope_style rope = kernels::rope_style::adjacent;
    std::size_t rotary_dims = 0; ///< leading dimensions of each head that RoPE rotates; 0: all (GPT-NeoX rotary_pct)
    double rope_theta = 10000.0;
    /// RoPE scaling as per-pair divisors of the frequencies theta^(-2j/d_h), j < d_h/2 (empty: none).
    /// Llama 3's rope_scaling, linear position interpolation and GGUF's rope_freqs tensor all take
    /// this form (model/family.hpp: llama3_rope_divisors).
    std::vector<double> rope_freq_divisors;
    mlp_kind mlp = mlp_kind::swiglu;
    bool qkv_bias = false;      ///< biases on q, k, v (GPT-2, Qwen2)
    bool qk_norm = false;       ///< RMSNorm over each head of q and of k before RoPE (Qwen3)
    bool out_bias = false;      ///< biases on the attention output and MLP projections (GPT-2)
    bool tied_embeddings = true;
    /// Attention and MLP both read the block's input and add into it, x + attn(ln1(x)) + mlp(ln2(x))
    /// (GPT-NeoX's use_parallel_residual): there is no hook_resid_mid.
    bool parallel_residual = false;

    // Gemma 2 (Gemma Team 2024, "Gemma 2: Improving Open Language Models at a Practical Size", section 2).
    // Its RMSNorm gains (1 + w) are stored with the 1 added, as llama.cpp's GGUF converter writes them
    // (the Hugging Face loader adds it), so its norms are the ordinary RMSNorm.
    /// Token embeddings multiplied by sqrt(d_model), rounded to the model's dtype (as Hugging Face does).
    bool scale_embeddings = false;
    /// Norms on the attention and MLP outputs before they join the residual (Gemma 2's
    /// post_attention_layernorm and post_feedforward_layernorm; TransformerLens's ln1_post, ln2_post).
    bool post_norms = false;
    /// Attention scores are scaled by query_pre_attn_scalar^(-1/2) instead of d_head^(-1/2); 0: d_head.
    double query_pre_attn_scalar = 0.0;
    /// Scores become cap * tanh(scores / cap) before the mask and softmax; 0: no capping.
    double attn_logit_softcap = 0.0;
    /// Logits become cap * tanh(logits / cap); 0: no capping.
    double final_logit_softcap = 0.0;
    /// Layers with an even index (0, 2, ...) attend only to the last `sliding_window` positions,
    /// themselves included (query i sees keys j with i - j < window); the odd layers attend globally.
    /// This is Hugging Face's Gemma2Attention (sliding_window unless layer_idx % 2) and llama.cpp's
    /// swa pattern 2. 0: every layer is global.
    std::size_t sliding_window = 0;

    /// True for the gated MLPs (SwiGLU, GeGLU): a gate and an up projection (mlp.hook_pre_linear).
    bool gated_mlp() const noexcept { return mlp == mlp_kind::swiglu || mlp == mlp_kind::geglu; }

    /// The keys layer `layer` attends to: the last window() positions, or all of them (0).
    std::size_t window(int layer) const noexcept { return layer % 2 == 0 ? sliding_window : 0; }

    /// The dimensions of each head that RoPE rotates.
    std::size_t rotary() const noexcept { return rotary_dims ? rotary_dims : d_head; }

    /// Query heads per key/value head.
    std::size_t group_size() const noexcept { return n_kv_heads ? n_heads / n_kv_heads : 0; }

    /// Throws actlens::error (model.401) naming the first inconsistent field.
    void validate() const {
        auto positive = [](std::size_t v, const char* name) {
            if (v == 0) fail(errc::bad_config, "model config: '{}' must be positive", name);
        };
        positive(n_layers, "n_layers");
        positive(d_model, "d_model");
        positive(n_heads, "n_heads");
        positive(n_kv_heads, "n_kv_heads");
        positive(d_head, "d_head");
        positive(d_mlp, "d_mlp");
        positive(vocab_size, "vocab_size");
        positive(max_seq_len, "max_seq_len");
        if (n_heads % n_kv_heads != 0)
            fail(errc::bad_config, "model config: n_heads ({}) is not a multiple of n_kv_heads ({})", n_heads,
                 n_kv_heads);
        if (position == position_kind::rotary && rotary() % 2 != 0)
            fail(errc::bad_config, "model config: rotary embeddings need an even number of rotated dimensions, got {}",
                 rotary());
        if (rotary_dims > d_head)
            fail(errc::bad_config, "model config: rotary_dims ({}) exceeds d_head ({})", rotary_dims, d_head);
        if (qk_norm && position != position_kind::rotary)
            fail(errc::bad_config, "model config: qk_norm needs rotary positions");
        for (auto [v, name] : {std::pair{query_pre_attn_scalar, "query_pre_attn_scalar"},
                               {attn_logit_softcap, "attn_logit_softcap"},
                               {final_logit_softcap, "final_logit_softcap"}})
            if (!(v >= 0.0) || !std::isfinite(v))
                fail(errc::bad_config, "model config: {} must be a positive number (0: none), got {}", name, v);
        if (!(norm_eps > 0.0)) fail(errc::bad_config, "model config: norm_eps must be positive, got {}", norm_eps);
        if (position == position_kind::rotary && !(rope_theta > 1.0))
            fail(errc::bad_config, "model config: rope_theta must be > 1, got {}", rope_theta);
        if (!rope_freq_divisors.empty()) {
            if (position != position_kind::rotary || rope_freq_divisors.size() != rotary() / 2)
                fail(errc::bad_config,
                     "model config: rope_freq_divisors has {} entries, expected one per rotated pair ({})",
                     rope_freq_divisors.size(), position == position_kind::rotary ? rotary() / 2 : 0);
            for (std::size_t j = 0; j < rope_freq_divisors.size(); ++j)
                if (!(rope_freq_divisors[j] > 0.0) || !std::isfinite(rope_freq_divisors[j]))
                    fail(errc::bad_config, "model config: rope_freq_divisors[{}] = {} must be a positive number", j,
                         rope_freq_divisors[j]);
        }
        // Bound the sizes so that later products of widths cannot overflow (2^24 covers every real model).
        const std::size_t limit = std::size_t(1) << 24;
        for (auto [v, name] : {std::pair{d_model, "d_model"}, {d_mlp, "d_mlp"}, {vocab_size, "vocab_size"},
                               {max_seq_len, "max_seq_len"}, {n_heads * d_head, "n_heads * d_head"},
                               {sliding_window, "sliding_window"}})
            if (v > limit) fail(errc::bad_config, "model config: '{}' = {} is implausibly large", name, v);
        if (n_layers > 4096) fail(errc::bad_config, "model config: n_layers = {} is implausibly large", n_layers);
    }

    /// GPT-2's family row with the given sizes.
    static model_config gpt2(std::size_t n_layers, std::size_t d_model, std::size_t n_heads, std::size_t vocab_size,
                             std::size_t max_seq_len = 1024) {
        model_config c;
        c.family = "gpt2";
        c.n_layers = n_layers;
        c.d_model = d_model;
        c.n_heads = c.n_kv_heads = n_heads;
        c.d_head = n_heads ? d_model / n_heads : 0;
        c.d_mlp = 4 * d_model;
        c.vocab_size = vocab_size;
        c.max_seq_len = max_seq_len;
        c.norm = norm_kind::layer_norm;
        c.position = position_kind::learned;
        c.mlp = mlp_kind::gelu_tanh;
        c.qkv_bias = c.out_bias = true;
        c.tied_embeddings = true;
        return c;
    }

    /// Llama's family row with the given sizes.
    static model_config llama(std::size_t n_layers, std::size_t d_model, std::size_t n_heads, std::size_t n_kv_heads,
                              std::size_t d_mlp, std::size_t vocab_size, std::size_t max_seq_len,
                              kernels::rope_style rope = kernels::rope_style::half_split) {
        model_config c;
        c.family = "llama";
        c.n_layers = n_layers;
        c.d_model = d_model;
        c.n_heads = n_heads;
        c.n_kv_heads = n_kv_heads;
        c.d_head = n_heads ? d_model / n_heads : 0;
        c.d_mlp = d_mlp;
        c.vocab_size = vocab_size;
        c.max_seq_len = max_seq_len;
        c.rope = rope;
        c.tied_embeddings = false;
        return c;
    }

    /// Gemma 2's family row with the given sizes (tied embeddings, head_dim 256 unless changed).
    static model_config gemma2(std::size_t n_layers, std::size_t d_model, std::size_t n_heads, std::size_t n_kv_heads,
                               std::size_t d_head, std::size_t d_mlp, std::size_t vocab_size, std::size_t max_seq_len,
                               std::size_t sliding_window) {
        model_config c = llama(n_layers, d_model, n_heads, n_kv_heads, d_mlp, vocab_size, max_seq_len);
        c.family = "gemma2";
        c.d_head = d_head;
        c.norm_eps = 1e-6;
        c.mlp = mlp_kind::geglu;
        c.tied_embeddings = true;
        c.scale_embeddings = true;
        c.post_norms = true;
        c.query_pre_attn_scalar = double(d_head);
        c.attn_logit_softcap = 50.0;
        c.final_logit_softcap = 30.0;
        c.sliding_window = sliding_window;
        return c;
    }
};

} // namespace actlens
