// actlens/io/gguf_save.hpp: writes a model as a GGUF file that llama.cpp runs (and load_gguf reads).
//
// Any model actlens loads in a llama-like family (llama2.c, HF Llama / Mistral, Qwen2.5, Qwen3, GGUF)
// can be handed to llama.cpp this way, e.g. to compare the two runtimes on the same weights
// (README "Export to llama.cpp"). The file follows llama.cpp's conventions, as its own converter
// (convert_hf_to_gguf.py) writes them:
//   architecture  "llama" for RMSNorm + RoPE + SwiGLU models without q/k norms (q/k/v biases allowed
//                 with adjacent-pair RoPE); "qwen2" when q/k/v have biases and RoPE rotates half-split
//                 pairs; "qwen3" with per-head q/k RMSNorm.
//   q/k rows      llama.cpp's "llama" graph rotates adjacent pairs (2j, 2j+1); a model whose RoPE
//                 rotates half-split pairs (HF layout) has each head's q and k rows permuted into that
//                 order (row 2j <- j, row 2j+1 <- j + d_head/2), which leaves q·k unchanged. qwen2/qwen3
//                 keep HF's order: llama.cpp runs them with its half-split ("neox") rope.
//   tensors       2-D weights in the chosen type (F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K; a quantised
//                 weight whose rows are not a multiple of its block (32; 256 for the K-quants) falls back
//                 to F16, as llama.cpp's converter does); norm
//                 weights and biases in F32; RoPE frequency divisors (Llama 3.x rope_scaling) as
//                 rope_freqs.weight.
//   vocabulary    optional; a llama2.c vocabulary becomes llama.cpp's "llama" (sentencepiece) vocabulary:
//                 the pieces with U+2581 for spaces, "<s>" / "</s>", scores, and token types (unknown,
//                 control, byte, normal), which llama.cpp needs to load the file at all.
//
// Errors (actlens::error): arg.101 for a model outside these families (naming the option that has no
// GGUF form), an unsupported dtype, or a vocabulary of another size; io.201 when the file cannot be
// written. Vocabularies of other kinds (BPE, tokenizer.json) are not embedded yet.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace actlens::io {

struct gguf_save_options {
    ggml_type dtype = ggml_type::f16;     ///< of the 2-D weights: f32, f16, bf16, q8_0, q4_0, q4_k or q6_k
    /// Embedded when given (llama.cpp needs a vocabulary to load the file); from a `tokenizer`, as_llama2c().
    const llama2c_tokenizer* vocabulary = nullptr;
    std::string name;                     ///< general.name (left out when empty)
};

/// Writes `model` to `path` as described at the top of this header.
template <class T>
void save_gguf(const basic_transformer<T>& model, const std::string& path, const gguf_save_options& options = {});

/// save_gguf with only the weights' type given.
template <class T>
void save_gguf(const basic_transformer<T>& model, const std::string& path, ggml_type dtype) {
    gguf_save_options o;
    o.dtype = dtype;
    save_gguf(model, path, o);
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// The f16 bits of the smallest f16 >= v (v >= 0, finite, below f16's largest value): a super-block
/// scale that never makes a sub-block's scale overflow its bits.
inline std::uint16_t f16_at_least(float v) {
    std::uint16_t h = f32_to_f16(v);
    if (f16_to_f32(h) < v) ++h; // positive f16 bits are ordered as their values
    return h;
}

/// ceil(v / d) in [0, top] (0 when d is 0).
inline int steps_at_least(double v, double d, int top) {
    return d > 0 ? std::clamp(int(std::ceil(v / d)), 0, top) : 0;
}

/// Quantises one block of 256 values into Q4_K (kernels/weight_format.hpp's layout: x = (d sc) q - dmin m
/// per sub-block of 32). Not llama.cpp's search for the best scales (make_qkx2_quants): every grid is
/// chosen to cover its sub-block, so that each value is within half a step, (d sc) / 2, of x.
/// Sub-block j: its offset dmin m >= -min(0, min x) (m rounded up, dmin >= the largest offset / 63),
/// its step d sc >= (max x + dmin m) / 15 (sc rounded up), so 0 <= (x + dmin m) / (d sc) <= 15.
inline void quantise_q4_k(const float* x, unsigned char* block) {
    double offset[8], range[8];
    double dmin_want = 0;
    for (std::size_t j = 0; j < 8; ++j) {
        const float* v = x + 32 * j;
        offset[j] = -std::min(0.0f, *std::min_element(v, v + 32));
        dmin_want = std::max(dmin_want, offset[j] / 63);
    }
    const std::uint16_t dmin_bits = f16_at_least(float(dmin_want));
    const double dmin = f16_to_f32(dmin_bits);
    int sc[8], m[8];
    double d_want = 0;
    for (std::size_t j = 0; j < 8; ++j) {
        m[j] = steps_at_least(offset[j], dmin, 63);
        range[j] = (*std::max_element(x + 32 * j, x + 32 * j + 32) + dmin * m[j]) / 15;
        d_want = std::max(d_want, range[j] / 63);
    }
    const std::uint16_t d_bits = f16_at_least(float(d_want));
    const double d = f16_to_f32(d_bits);
    std::memcpy(block, &d_bits, 2);
    std::memcpy(block + 2, &dmin_bits, 2);
    unsigned char* scales = block + 4;
    std::fill(scales, scales + 12, 0);
    for (std::size_t j = 0; j < 8; ++j) {
        sc[j] = steps_at_least(range[j], d, 63);
        // The inverse of kernels::detail::q4_k_scale_min (ggml's get_scale_min_k4).
        if (j < 4) {
            scales[j] |= static_cast<unsigned char>(sc[j]);
            scales[j + 4] |= static_cast<unsigned char>(m[j]);
        } else {
            scales[j + 4] = static_cast<unsigned char>((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
            scales[j - 4] |= static_cast<unsigned char>((sc[j] >> 4) << 6);
            scales[j] |= static_cast<unsigned char>((m[j] >> 4) << 6);
        }
    }
    unsigned char* q = block + 16;
    std::fill(q, q + 128, 0);
    for (std::size_t j = 0; j < 8; ++j) {
        const double step = d * sc[j], shift = dmin * m[j];
        for (std::size_t l = 0; l < 32; ++l) {
            const int v = step > 0 ? std::clamp(int(std::lround((x[32 * j + l] + shift) / step)), 0, 15) : 0;
            // Sub-blocks 2i and 2i + 1 share 32 bytes: low nibbles, then high ones.
            q[32 * (j / 2) + l] |= static_cast<unsigned char>(j % 2 ? v << 4 : v);
        }
    }
}

/// Quantises one block of 256 values into Q6_K (x = (d sc) (q - 32) per sub-block of 16, q in
/// [0, 63]): sub-block s's step d sc >= max |x| / 31 (sc rounded up, d >= the largest step / 127), so
/// every value is within half a step of x and q - 32 stays in [-31, 31].
inline void quantise_q6_k(const float* x, unsigned char* block) {
    double step_want[16], d_want = 0;
    for (std::size_t s = 0; s < 16; ++s) {
        double amax = 0;
        for (std::size_t i = 0; i < 16; ++i) amax = std::max(amax, double(std::abs(x[16 * s + i])));
        step_want[s] = amax / 31;
        d_want = std::max(d_want, step_want[s] / 127);
    }
    const std::uint16_t d_bits = f16_at_least(float(d_want));
    const double d = f16_to_f32(d_bits);
    unsigned char *ql = block, *qh = block + 128;
    std::fill(block, block + 192, 0);
    for (std::size_t s = 0; s < 16; ++s) {
        const int sc = steps_at_least(step_want[s], d, 127);
        block[192 + s] = static_cast<unsigned char>(static_cast<std::int8_t>(sc));
        const double step = d * sc;
        for (std::size_t i = 0; i < 16; ++i) {
            const std::size_t v = 16 * s + i;
            const int q = (step > 0 ? std::clamp(int(std::lround(x[v] / step)), -31, 31) : 0) + 32;
            // Value v = 128 h + 32 k + l: ql[64 h + l (+ 32 for odd k)] holds its low 4 bits (the high
            // nibble for k >= 2), qh[32 h + l] its high 2 bits at bit 2 k.
            const std::size_t h = v / 128, k = v % 128 / 32, l = v % 32;
            ql[64 * h + l + (k % 2) * 32] |= static_cast<unsigned char>(k >= 2 ? (q & 0xF) << 4 : q & 0xF);
            qh[32 * h + l] |= static_cast<unsigned char>((q >> 4) << (2 * k));
        }
    }
    std::memcpy(block + 208, &d_bits, 2);
}

/// The rows of m [.., in] (in a multiple of 256) as Q4_K or Q6_K blocks.
inline std::vector<unsigned char> quantise_k_rows(const tensor<float>& m, ggml_type type) {
    const ggml_type_traits traits = ggml_traits(type);
    const std::size_t blocks = m.size() / 256;
    std::vector<unsigned char> bytes(blocks * traits.bytes);
    for (std::size_t b = 0; b < blocks; ++b) {
        if (type == ggml_type::q4_k)
            quantise_q4_k(m.data() + 256 * b, bytes.data() + b * traits.bytes);
        else
            quantise_q6_k(m.data() + 256 * b, bytes.data() + b * traits.bytes);
    }
    return bytes;
}

/// The GGUF architecture llama.cpp runs `c` as; throws arg.101 naming what has no GGUF form here.
inline std::string gguf_architecture(const model_config& c) {
    auto refuse = [&](const char* what) {
        fail(errc::invalid_argument,
             "save_gguf: the model ({}) has {}; save_gguf writes llama, qwen2 and qwen3 architectures", c.family,
             what);
    };
    if (c.norm != norm_kind::rms_norm) refuse("LayerNorm");
    if (c.position != position_kind::rotary) refuse("learned positions");
    if (c.mlp != mlp_kind::swiglu) refuse("a GELU MLP");
    if (c.parallel_residual) refuse("a parallel residual");
    if (c.out_bias) refuse("output biases");
    if (c.rotary() != c.d_head) refuse("partial rotary embeddings");
    // Gemma 2's options (its own GGUF architecture, not written here yet).
    if (c.scale_embeddings || c.post_norms || c.query_pre_attn_scalar > 0.0 || c.attn_logit_softcap > 0.0 ||
        c.final_logit_softcap > 0.0 || c.sliding_window > 0)
        refuse("Gemma 2's options (scaled embeddings, post norms, soft caps or a sliding window)");
    if (c.qk_norm) {
        if (c.qkv_bias) refuse("q/k norms together with q/k/v biases");
        if (c.rope != kernels::rope_style::half_split) refuse("q/k norms with adjacent-pair RoPE");
        if (!c.rope_freq_divisors.empty()) refuse("RoPE scaling with q/k norms");
        return "qwen3";
    }
    // llama.cpp's llama graph takes optional q/k/v biases, but its permuted rows would need permuted
    // biases too; a half-split model with biases is what llama.cpp calls qwen2.
    if (c.qkv_bias && c.rope == kernels::rope_style::half_split) {
        if (!c.rope_freq_divisors.empty()) refuse("RoPE scaling with q/k/v biases");
        return "qwen2";
    }
    return "llama";
}

/// A copy of the projection `w` [heads * d_head, in] with each head's rows moved from half-split to
/// adjacent-pair order (see the top of this header).
template <class T>
tensor<float> gguf_adjacent_rows(tensor_view<const T> w, std::size_t d_head) {
    const std::size_t rows = w.extent(0), cols = w.extent(1), half = d_head / 2;
    tensor<float> out({rows, cols});
    for (std::size_t h = 0; h < rows / d_head; ++h)
        for (std::size_t j = 0; j < half; ++j)
            for (std::size_t i = 0; i < cols; ++i) {
                out(h * d_head + 2 * j, i) = float(w(h * d_head + j, i));
                out(h * d_head + 2 * j + 1, i) = float(w(h * d_head + half + j, i));
            }
    return out;
}

/// llama.cpp's "llama" vocabulary from a llama2.c one (whose file spells the sentencepiece space
/// U+2581 as ' ' and BOS / EOS as "\n<s>\n" / "\n</s>\n").
inline void gguf_add_llama2c_vocabulary(gguf_writer& writer, const llama2c_tokenizer& vocab) {
    const std::size_t n = vocab.vocab_size();
    std::vector<std::string> pieces(n);
    std::vector<float> scores(n);
    std::vector<std::int32_t> types(n);
    // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<std::int32_t>(i);
        const std::string& piece = vocab.piece(id);
        scores[i] = vocab.score(id);
        const bool byte = piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>';
        types[i] = i == 0 ? 2 : (i == 1 || i == 2) ? 3 : byte ? 6 : 1;
        if (i == 1) {
            pieces[i] = "<s>";
        } else if (i == 2) {
            pieces[i] = "</s>";
        } else {
            for (char ch : piece) pieces[i] += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
        }
    }
    writer.set("tokenizer.ggml.model", gguf_value::string("llama"));
    writer.set("tokenizer.ggml.tokens", gguf_value::string_array(std::move(pieces)));
    writer.set("tokenizer.ggml.scores", gguf_value::f32_array(scores));
    writer.set("tokenizer.ggml.token_type", gguf_value::i32_array(types));
    writer.set("tokenizer.ggml.bos_token_id", gguf_value::u32(1));
    writer.set("tokenizer.ggml.eos_token_id", gguf_value::u32(2));
    writer.set("tokenizer.ggml.unknown_token_id", gguf_value::u32(0));
}

} // namespace detail

template <class T>
void save_gguf(const basic_transformer<T>& model, const std::string& path, const gguf_save_options& options) {
    const model_config& c = model.config();
    const std::string arch = detail::gguf_architecture(c);
    const ggml_type dtype = options.dtype;
    std::uint32_t file_type = 0; // llama.cpp's LLAMA_FTYPE_*: the type of most weights
    switch (dtype) {
    case ggml_type::f32: file_type = 0; break;
    case ggml_type::f16: file_type = 1; break;
    case ggml_type::q8_0: file_type = 7; break;
    case ggml_type::q4_0: file_type = 2; break;
    case ggml_type::bf16: file_type = 32; break;
    case ggml_type::q4_k: file_type = 14; break; // LLAMA_FTYPE_MOSTLY_Q4_K_S
    case ggml_type::q6_k: file_type = 18; break;
    default:
        fail(errc::invalid_argument, "save_gguf('{}'): dtype {} is not one of F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K",
             path,
             ggml_traits(dtype).name ? ggml_traits(dtype).name : "?");
    }
    const llama2c_tokenizer* vocab = options.vocabulary;
    if (vocab) {
        if (vocab->vocab_size() != c.vocab_size)
            fail(errc::invalid_argument, "save_gguf('{}'): options.vocabulary has {} tokens, the model {}", path,
                 vocab->vocab_size(), c.vocab_size);
    }

    gguf_writer writer;
    const std::string p = arch + ".";
    writer.set("general.architecture", gguf_value::string(arch));
    if (!options.name.empty()) writer.set("general.name", gguf_value::string(options.name));
    writer.set("general.file_type", gguf_value::u32(file_type));
    auto count = [](std::size_t v) { return gguf_value::u32(static_cast<std::uint32_t>(v)); };
    writer.set(p + "context_length", count(c.max_seq_len));
    writer.set(p + "embedding_length", count(c.d_model));
    writer.set(p + "feed_forward_length", count(c.d_mlp));
    writer.set(p + "block_count", count(c.n_layers));
    writer.set(p + "attention.head_count", count(c.n_heads));
    writer.set(p + "attention.head_count_kv", count(c.n_kv_heads));
    if (c.d_head * c.n_heads != c.d_model) {
        writer.set(p + "attention.key_length", count(c.d_head));
        writer.set(p + "attention.value_length", count(c.d_head));
    }
    writer.set(p + "attention.layer_norm_rms_epsilon", gguf_value::f32(float(c.norm_eps)));
    writer.set(p + "rope.dimension_count", count(c.d_head));
    writer.set(p + "rope.freq_base", gguf_value::f32(float(c.rope_theta)));
    if (vocab) detail::gguf_add_llama2c_vocabulary(writer, *vocab);

    const model_weights<T>& w = model.weights();
    auto as_float = [](tensor_view<const T> v) {
        if constexpr (std::is_same_v<T, float>) {
            return tensor<float>::copy_of(v);
        } else {
            tensor<float> out;
            out.reshape_uninitialized(v.shape());
            for (std::size_t i = 0; i < v.size(); ++i) out.data()[i] = float(v.data()[i]);
            return out;
        }
    };
    auto vector = [&](const std::string& name, tensor_view<const T> v) {
        writer.add_tensor(name, as_float(v).view(), ggml_type::f32);
    };
    auto matrix = [&](const std::string& name, const tensor<float>& m) {
        // Rows must be whole blocks of the type (1 value for F32/F16/BF16, 32 or 256 when quantised).
        const bool fits = m.view().extent(m.rank() - 1) % ggml_traits(dtype).block == 0;
        if (fits && (dtype == ggml_type::q4_k || dtype == ggml_type::q6_k)) {
            const std::vector<unsigned char> bytes = detail::quantise_k_rows(m, dtype);
            writer.add_tensor_bytes(name, dtype, m.shape(), bytes.data(), bytes.size());
        } else {
            writer.add_tensor(name, m.view(), fits ? dtype : ggml_type::f16);
        }
    };
    // llama.cpp's "llama" graph rotates adjacent pairs: permute half-split q/k rows into that order.
    const bool permute = arch == "llama" && c.rope == kernels::rope_style::half_split;
    auto qk = [&](tensor_view<const T> m) { return permute ? detail::gguf_adjacent_rows(m, c.d_head) : as_float(m); };

    matrix("token_embd.weight", as_float(w.token_embedding));
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        const layer_weights<T>& lw = w.layers[l];
        vector(b + "attn_norm.weight", lw.ln1_weight);
        matrix(b + "attn_q.weight", qk(lw.w_q));
        matrix(b + "attn_k.weight", qk(lw.w_k));
        matrix(b + "attn_v.weight", as_float(lw.w_v));
        matrix(b + "attn_output.weight", as_float(lw.w_o));
        if (c.qkv_bias) {
            vector(b + "attn_q.bias", lw.b_q);
            vector(b + "attn_k.bias", lw.b_k);
            vector(b + "attn_v.bias", lw.b_v);
        }
        if (c.qk_norm) {
            vector(b + "attn_q_norm.weight", lw.q_norm);
            vector(b + "attn_k_norm.weight", lw.k_norm);
        }
        vector(b + "ffn_norm.weight", lw.ln2_weight);
        matrix(b + "ffn_gate.weight", as_float(lw.w_gate));
        matrix(b + "ffn_up.weight", as_float(lw.w_in));
        matrix(b + "ffn_down.weight", as_float(lw.w_out));
    }
    vector("output_norm.weight", w.final_norm_weight);
    if (!c.tied_embeddings) matrix("output.weight", as_float(w.unembedding));
    if (!c.rope_freq_divisors.empty()) {
        tensor<float> divisors({c.rope_freq_divisors.size()});
        for (std::size_t j = 0; j < divisors.size(); ++j) divisors.data()[j] = float(c.rope_freq_divisors[j]);
        writer.add_tensor("rope_freqs.weight", divisors.view(), ggml_type::f32);
    }
    writer.write(path);
}

} // namespace actlens::io
