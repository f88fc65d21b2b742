// actlens/io/gguf_model.hpp: llama-like models from GGUF files (llama.cpp's format).
//
// general.architecture names the family; its hyperparameters are keys prefixed with that name
// ("{arch}.block_count", ...):
//   llama   Llama 1/2/3, TinyLlama, SmolLM, Mistral 7B and llama2.c models converted by llama.cpp.
//           Its q/k rows are in the interleaved RoPE order (pairs (2j, 2j+1), llama.cpp's "normal"
//           rope; its HF converter permutes HF's half-split rows into it): rope_style::adjacent.
//   qwen2   Qwen2 / Qwen2.5: q/k/v biases; RoPE on half-split pairs (llama.cpp's "neox" rope, rows
//           unpermuted).
//   qwen3   Qwen3: as qwen2 without biases, with blk.{i}.attn_q_norm / attn_k_norm.weight [head]
//           (per-head RMSNorm of q and k before RoPE).
//   gemma2  Gemma 2 (llama.cpp's "neox" rope, rows unpermuted; model_config::gemma2): embeddings
//           times sqrt(embedding_length), GeGLU, tied; norm gains stored with Gemma's 1 already added
//           (llama.cpp's converter adds it to every *norm.weight), so they load as they are; blk.{i}.
//           post_attention_norm and post_ffw_norm.weight on the sublayer outputs, ffn_norm before the
//           MLP; keys gemma2.attn_logit_softcapping and final_logit_softcapping (absent: no capping),
//           gemma2.attention.sliding_window (required; the even layers use it); the query scale is
//           llama.cpp's: head size, or embedding_length / head_count for the 46-layer 27B
//           (query_pre_attn_scalar is not stored).
//   gptneox GPT-NeoX / Pythia (model_config as the Hugging Face gpt_neox row): LayerNorm with biases
//           (attention.layer_norm_epsilon), rope.dimension_count of each head rotated (llama.cpp's
//           "neox" rope: half-split pairs of those dimensions), use_parallel_residual (default true),
//           biases everywhere, an untied output.weight, and blk.{i}.attn_qkv.weight / .bias [3 d, d]
//           whose rows are all of q, then k, then v (llama.cpp's converter reorders HF's per-head
//           [q | k | v] rows this way). The MLP runs the exact GELU of the Hugging Face checkpoints
//           (GGUF does not record the activation; llama.cpp itself runs ggml_gelu's tanh form).
//   hyperparameters  block_count, embedding_length, feed_forward_length, attention.head_count,
//                    attention.head_count_kv (default: head count), attention.layer_norm_rms_epsilon,
//                    context_length, rope.freq_base (default 10000); optional attention.key_length /
//                    value_length (the head size) and rope.dimension_count (must be the whole head:
//                    partial rotary is not supported); rope.scaling.type "none" or "linear" (with
//                    rope.scaling.factor)
//   tensors          token_embd.weight, blk.{i}.attn_norm / attn_q / attn_k / attn_v / attn_output /
//                    ffn_norm / ffn_gate / ffn_up / ffn_down .weight, output_norm.weight, and
//                    output.weight (absent: the unembedding is tied to the embedding); optional
//                    blk.{i}.attn_q/attn_k/attn_v.bias (all three) and attn_output.bias;
//                    rope_freqs.weight [head/2]: per-frequency RoPE divisors (llama.cpp writes Llama
//                    3.1's rope_scaling this way; model_config::rope_freq_divisors)
//
// F32 tensors are used in place from the mapped file. The projections and output.weight (the
// unembedding, tied or not) of type F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K stay in the file, in the
// file's rows (model/weight_tensor.hpp), and gguf_load_options::weights says how the model multiplies
// with them:
//   mapped  in place in the mapped file (kernels/gemm_rows.hpp): loading costs the mapping (its pages
//           entered into the page tables at once, gguf_file::populate), the resident memory is the
//           file's pages (shared with other processes), decode streams the file's bytes as fast as
//           panels do; F16 prompts of 64-256 tokens run at ~0.55-0.75x the speed of panels (one
//           thread, 2048 x 8192 products), quantised ones about as fast as Q8_0's f32 panels;
//   packed  packed at load (kernels/packed_weight.hpp): 16-bit panels for F16 / BF16 (then the file's
//           pages are dropped), f32 panels of the decoded values for the quantised types (8.5x a
//           Q8_0 file's bytes); the fastest F16 prompts, but the load writes a fresh copy of the
//           weights (~0.6-1 s per GB on these machines: 15-60 s for the 1B benchmark model, against
//           0.1-0.6 s mapped; benchmarks/run_vs_llamacpp.sh);
//   automatic (the default) mapped for every type: a load within llama.cpp's, and the memory of the
//           file; choose packed for an F16 / BF16 model that will run many long prompts (a patching
//           sweep), where the faster prompts repay the load after a few dozen forwards.
// Other F16, BF16, F64 and quantised tensors (norm gains, biases, the token embedding) are converted
// to float (the model computes in f32; quantised values as ggml dequantises them).
//
// Errors (actlens::error), each naming the file and the key or tensor: io.206 for another
// architecture, mixture-of-experts ({arch}.expert_count > 0), a rope.scaling.type other than "none"
// and "linear", partial rotary, a tensor type that does not convert, or tensors the model would not
// use (also a projection of a type no kernel reads, e.g. Q5_K: io.206 naming the tensor and the
// type); model.401 for a missing or out-of-range hyperparameter, and missing tensors (one error
// listing all of them) or tensors whose shape disagrees with the hyperparameters; plus whatever
// gguf_file reports about the container.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace actlens::io {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// The model config a llama, qwen2, qwen3, gemma2 or gptneox GGUF's metadata and tensor shapes describe. Throws as the
/// top of this header says.
inline model_config gguf_model_config(const gguf_file& file);

/// How load_gguf multiplies with the projections and the unembedding (see the top of this header).
enum class gguf_weights {
    automatic, ///< mapped for every type (see the top of this header for why)
    mapped,    ///< in place in the mapped file's rows (kernels/gemm_rows.hpp)
    packed,    ///< packed into panels at load (kernels/packed_weight.hpp)
};

/// Options of load_gguf.
struct gguf_load_options {
    gguf_weights weights = gguf_weights::automatic;
};

/// Loads a llama, qwen2, qwen3, gemma2 or gptneox GGUF file. Thread-safe (touches no shared state).
/// (A template of nothing, so that only the files that call it compile it, and actlens::compiled
/// holds it compiled once: README "Compile time".)
template <class Deferred = void>
transformer load_gguf(const std::string& path, const gguf_load_options& options = {});

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// A positive integer hyperparameter no larger than 2^31.
inline std::size_t gguf_count(const gguf_file& f, const std::string& key) {
    if (!f.contains(key)) fail(errc::bad_config, "'{}': hyperparameter '{}' is missing", f.path(), key);
    const std::uint64_t v = f.get_uint(key);
    if (v == 0 || v > (std::uint64_t(1) << 31))
        fail(errc::bad_config, "'{}': hyperparameter '{}' = {} must be a positive integer (at most 2^31)",
             f.path(), key, v);
    return static_cast<std::size_t>(v);
}

inline double gguf_positive(const gguf_file& f, const std::string& key, double fallback, bool required) {
    if (!f.contains(key)) {
        if (required) fail(errc::bad_config, "'{}': hyperparameter '{}' is missing", f.path(), key);
        return fallback;
    }
    const double v = f.get_double(key);
    if (!(v > 0.0) || !std::isfinite(v))
        fail(errc::bad_config, "'{}': hyperparameter '{}' = {} must be a positive number", f.path(), key, v);
    return v;
}

/// RoPE frequency divisors (model_config::rope_freq_divisors) from {arch}.rope.scaling.type "linear"
/// (every frequency over rope.scaling.factor, as llama.cpp's freq_scale = 1 / factor) and the
/// rope_freqs.weight tensor (per-frequency divisors, ggml_rope_ext's freq_factors); both multiply.
inline std::vector<double> gguf_rope_divisors(const gguf_file& f, const std::string& p, std::size_t head) {
    std::vector<double> divisors;
    const std::string scaling = f.get_string(p + "rope.scaling.type", "none");
    if (scaling == "linear") {
        divisors.assign(head / 2, gguf_positive(f, p + "rope.scaling.factor", 1.0, true));
    } else if (scaling != "none") {
        fail(errc::unsupported_format,
             "'{}': {}rope.scaling.type = '{}' is not supported; actlens runs 'none' and 'linear' (and "
             "rope_freqs.weight)",
             f.path(), p, scaling);
    }
    const gguf_tensor_info* t = f.find_tensor("rope_freqs.weight");
    if (!t) return divisors;
    if (t->ne != std::vector<std::uint64_t>{head / 2})
        fail(errc::bad_config, "'{}': tensor 'rope_freqs.weight' has ne {}, expected [{}] (head size / 2)", f.path(),
             t->ne_string(), head / 2);
    tensor<float> storage;
    const tensor_view<const float> factors = f.float_view("rope_freqs.weight", storage);
    if (divisors.empty()) divisors.assign(head / 2, 1.0);
    for (std::size_t j = 0; j < head / 2; ++j) divisors[j] *= factors.data()[j];
    return divisors;
}

} // namespace detail

inline model_config gguf_model_config(const gguf_file& f) {
    const std::string arch = f.get_string("general.architecture", "");
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "gemma2" && arch != "gptneox")
        fail(errc::unsupported_format,
             "'{}': general.architecture is '{}'; actlens reads GGUF models of architecture 'llama', 'qwen2', "
             "'qwen3', 'gemma2' and 'gptneox'",
             f.path(), arch.empty() ? std::string("(missing)") : arch);
    const std::string p = arch + ".";
    if (f.get_uint(p + "expert_count", 0) > 0)
        fail(errc::unsupported_format, "'{}': {}expert_count = {}: mixture-of-experts models are not supported",
             f.path(), p, f.get_uint(p + "expert_count"));

    const std::size_t L = detail::gguf_count(f, p + "block_count");
    const std::size_t d = detail::gguf_count(f, p + "embedding_length");
    const std::size_t ff = detail::gguf_count(f, p + "feed_forward_length");
    const std::size_t heads = detail::gguf_count(f, p + "attention.head_count");
    const std::size_t kv_heads =
        f.contains(p + "attention.head_count_kv") ? detail::gguf_count(f, p + "attention.head_count_kv") : heads;
    const std::size_t ctx = detail::gguf_count(f, p + "context_length");
    if (d % heads != 0 && !f.contains(p + "attention.key_length"))
        fail(errc::bad_config, "'{}': {}embedding_length = {} is not a multiple of {}attention.head_count = {}",
             f.path(), p, d, p, heads);
    std::size_t head = d / heads;
    if (f.contains(p + "attention.key_length")) head = detail::gguf_count(f, p + "attention.key_length");
    if (f.contains(p + "attention.value_length") && detail::gguf_count(f, p + "attention.value_length") != head)
        fail(errc::unsupported_format, "'{}': {}attention.value_length = {} differs from the key length {}",
             f.path(), p, f.get_uint(p + "attention.value_length"), head);
    const bool neox = arch == "gptneox";
    const std::string rotary_key = p + "rope.dimension_count";
    const std::size_t rotary = f.contains(rotary_key) ? detail::gguf_count(f, rotary_key) : head;
    if (!neox && rotary != head)
        fail(errc::unsupported_format,
             "'{}': {}rope.dimension_count = {} rotates part of the head (size {}); partial rotary is not "
             "supported",
             f.path(), p, f.get_uint(p + "rope.dimension_count"), head);

    const gguf_tensor_info* embedding = f.find_tensor("token_embd.weight");
    if (!embedding) fail(errc::bad_config, "'{}': tensor 'token_embd.weight' is missing", f.path());
    if (embedding->ne.size() != 2)
        fail(errc::bad_config, "'{}': tensor 'token_embd.weight' has ne {}, expected [{}, vocab]", f.path(),
             embedding->ne_string(), d);
    std::size_t vocab = static_cast<std::size_t>(std::min<std::uint64_t>(embedding->ne[1], std::uint64_t(1) << 32));
    if (f.contains(p + "vocab_size") && detail::gguf_count(f, p + "vocab_size") != vocab)
        fail(errc::bad_config, "'{}': {}vocab_size = {} but token_embd.weight has {} rows", f.path(), p,
             f.get_uint(p + "vocab_size"), vocab);

    // llama.cpp runs qwen2/qwen3 with its "neox" rope: HF's half-split pairs, rows unpermuted.
    const kernels::rope_style style = arch == "llama" ? kernels::rope_style::adjacent : kernels::rope_style::half_split;
    model_config c = model_config::llama(L, d, heads, kv_heads, ff, vocab, ctx, style);
    c.family = arch;
    c.d_head = head;
    c.norm_eps = detail::gguf_positive(
        f, p + (neox ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"), 1e-5, true);
    c.rope_theta = detail::gguf_positive(f, p + "rope.freq_base", 10000.0, false);
    if (neox) {
        if (rotary > head || rotary % 2 != 0)
            fail(errc::bad_config, "'{}': {}rope.dimension_count = {} must be even and at most the head size {}",
                 f.path(), p, rotary, head);
        c.rotary_dims = rotary == head ? 0 : rotary;
        c.norm = norm_kind::layer_norm;
        c.mlp = mlp_kind::gelu_erf;
        c.parallel_residual = !f.contains(p + "use_parallel_residual") ||
                              detail::gguf_typed(f.path(), [&] {
                                  return f.value(p + "use_parallel_residual").as_bool(p + "use_parallel_residual");
                              });
        c.qkv_bias = c.out_bias = true;
    }
    c.rope_freq_divisors = detail::gguf_rope_divisors(f, p, c.rotary());
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    if (!neox) {
        c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
        c.out_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
    }
    c.qk_norm = arch == "qwen3";
    if (arch == "gemma2") {
        c.mlp = mlp_kind::geglu;
        c.scale_embeddings = true;
        c.post_norms = true;
        c.query_pre_attn_scalar = L == 46 ? double(d / heads) : double(head);
        c.attn_logit_softcap = detail::gguf_positive(f, p + "attn_logit_softcapping", 0.0, false);
        c.final_logit_softcap = detail::gguf_positive(f, p + "final_logit_softcapping", 0.0, false);
        c.sliding_window = detail::gguf_count(f, p + "attention.sliding_window");
    }
    try {
        c.validate();
    } catch (const error& e) {
        const std::string what = e.what();
        const std::size_t close = what.find("] ");
        fail(errc::bad_config, "'{}': {}", f.path(), close == std::string::npos ? what : what.substr(close + 2));
    }
    return c;
}

template <class Deferred>
transformer load_gguf(const std::string& path, const gguf_load_options& options) {
    const gguf_file f(path);
    const model_config c = gguf_model_config(f);
    const std::size_t d = c.d_model, ff = c.d_mlp, L = c.n_layers, V = c.vocab_size;
    const std::size_t qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;

    // Every expected tensor with its ne (contiguous dimension first), checked before any is read.
    std::vector<std::pair<std::string, std::vector<std::uint64_t>>> expected;
    expected.push_back({"token_embd.weight", {d, V}});
    const bool neox = c.family == "gptneox", ln = c.norm == norm_kind::layer_norm;
    for (std::size_t l = 0; l < L; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        expected.push_back({b + "attn_norm.weight", {d}});
        if (ln) expected.push_back({b + "attn_norm.bias", {d}});
        if (neox) {
            expected.push_back({b + "attn_qkv.weight", {d, qw + 2 * kvw}});
            expected.push_back({b + "attn_qkv.bias", {qw + 2 * kvw}});
        } else {
            expected.push_back({b + "attn_q.weight", {d, qw}});
            expected.push_back({b + "attn_k.weight", {d, kvw}});
            expected.push_back({b + "attn_v.weight", {d, kvw}});
        }
        expected.push_back({b + "attn_output.weight", {qw, d}});
        if (c.qk_norm) {
            expected.push_back({b + "attn_q_norm.weight", {c.d_head}});
            expected.push_back({b + "attn_k_norm.weight", {c.d_head}});
        }
        if (c.qkv_bias && !neox) {
            expected.push_back({b + "attn_q.bias", {qw}});
            expected.push_back({b + "attn_k.bias", {kvw}});
            expected.push_back({b + "attn_v.bias", {kvw}});
        }
        if (c.out_bias) expected.push_back({b + "attn_output.bias", {d}});
        expected.push_back({b + "ffn_norm.weight", {d}});
        if (ln) expected.push_back({b + "ffn_norm.bias", {d}});
        if (c.post_norms)
            for (const char* norm : {"post_attention_norm", "post_ffw_norm"})
                expected.push_back({b + norm + ".weight", {d}});
        if (c.gated_mlp()) expected.push_back({b + "ffn_gate.weight", {d, ff}});
        expected.push_back({b + "ffn_up.weight", {d, ff}});
        expected.push_back({b + "ffn_down.weight", {ff, d}});
        if (neox)
            for (auto [name, n] : {std::pair{"ffn_up.bias", ff}, {"ffn_down.bias", d}})
                expected.push_back({b + name, {n}});
    }
    expected.push_back({"output_norm.weight", {d}});
    if (ln) expected.push_back({"output_norm.bias", {d}});
    if (!c.tied_embeddings) expected.push_back({"output.weight", {d, V}});
    if (f.find_tensor("rope_freqs.weight")) expected.push_back({"rope_freqs.weight", {c.d_head / 2}});

    std::vector<std::string> missing;
    std::set<std::string> used;
    for (const auto& [name, ne] : expected) {
        used.insert(name);
        const gguf_tensor_info* t = f.find_tensor(name);
        if (!t) {
            missing.push_back(name);
            continue;
        }
        if (t->ne != ne) {
            gguf_tensor_info want;
            want.ne = ne;
            fail(errc::bad_config, "'{}': tensor '{}' has ne {}, but the hyperparameters imply {}", path, name,
                 t->ne_string(), want.ne_string());
        }
    }
    if (!missing.empty()) {
        std::string list;
        const std::size_t shown = std::min<std::size_t>(missing.size(), 100);
        for (std::size_t i = 0; i < shown; ++i) list += (i ? ", " : "") + missing[i];
        if (shown < missing.size()) list += fmt::format(", ... ({} more)", missing.size() - shown);
        fail(errc::bad_config, "'{}': {} tensor{} missing: {}", path, missing.size(),
             missing.size() == 1 ? " is" : "s are", list);
    }
    std::string unused;
    for (const gguf_tensor_info& t : f.tensors())
        if (!used.count(t.name)) unused += (unused.empty() ? "" : ", ") + t.name;
    if (!unused.empty())
        fail(errc::unsupported_format, "'{}': tensors that a {} model does not use: {}", path, c.family, unused);

    model_weights<float> w;
    bool in_place = false;
    auto load = [&](const std::string& name) -> tensor_view<const float> {
        tensor<float> storage;
        const tensor_view<const float> v = f.float_view(name, storage);
        if (storage.empty()) {
            in_place = true;
            return v;
        }
        return w.own(std::move(storage));
    };
    // Whether a tensor stays in the file's rows as a weight_tensor (every narrow or quantised type a
    // kernel reads, except quantised ones to be packed: those are decoded to f32 by load()).
    const bool packed = options.weights == gguf_weights::packed;
    auto kept_in_rows = [&](const gguf_tensor_info& t, kernels::weight_format& format) {
        return ggml_weight_format(t.type, format) && format != kernels::weight_format::f32 &&
               !(packed && kernels::is_quantised(format));
    };
    // A projection: the file's rows when kept_in_rows, multiplied in place unless packed; else as
    // load() gives it (which names the tensor and its type when no kernel reads it).
    auto projection = [&](const std::string& name) -> weight_tensor<float> {
        const gguf_tensor_info& t = f.tensor_info(name);
        kernels::weight_format format{};
        if (!kept_in_rows(t, format)) return load(name);
        in_place = true;
        return weight_tensor<float>(f.data(t), format, t.shape(), true, !packed);
    };
    // Rows [begin, begin + count) of a fused projection kept in the file's rows.
    auto projection_rows = [](const weight_tensor<float>& m, std::size_t begin, std::size_t count) {
        return weight_tensor<float>(static_cast<const unsigned char*>(m.raw()) + begin * m.row_bytes(), m.format(),
                                    {count, m.extent(1)}, m.in_mapped_file(), m.multiplied_in_place());
    };
    // A 1-row bias [n] for out_bias' MLP slots, which a llama block does not have.
    tensor_view<const float> zeros;
    if (c.out_bias && !neox) zeros = w.own(tensor<float>({std::max(d, ff)}));
    // Rows [begin, begin + count) of a fused [rows, cols] matrix (or elements of a bias).
    auto rows = [](const tensor_view<const float>& m, std::size_t begin, std::size_t count) {
        const std::size_t cols = m.rank() == 2 ? m.extent(1) : 1;
        return m.rank() == 2 ? tensor_view<const float>(m.data() + begin * cols, {count, cols})
                             : tensor_view<const float>(m.data() + begin, {count});
    };

    w.token_embedding = load("token_embd.weight");
    w.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        layer_weights<float>& lw = w.layers[l];
        lw.ln1_weight = load(b + "attn_norm.weight");
        if (ln) lw.ln1_bias = load(b + "attn_norm.bias");
        if (neox) {
            const weight_tensor<float> qkv = projection(b + "attn_qkv.weight");
            const tensor_view<const float> bias = load(b + "attn_qkv.bias");
            if (qkv.is_narrow()) {
                lw.w_q = projection_rows(qkv, 0, qw);
                lw.w_k = projection_rows(qkv, qw, kvw);
                lw.w_v = projection_rows(qkv, qw + kvw, kvw);
            } else {
                lw.w_q = rows(qkv.view(), 0, qw);
                lw.w_k = rows(qkv.view(), qw, kvw);
                lw.w_v = rows(qkv.view(), qw + kvw, kvw);
            }
            lw.b_q = rows(bias, 0, qw);
            lw.b_k = rows(bias, qw, kvw);
            lw.b_v = rows(bias, qw + kvw, kvw);
        } else {
            lw.w_q = projection(b + "attn_q.weight");
            lw.w_k = projection(b + "attn_k.weight");
            lw.w_v = projection(b + "attn_v.weight");
        }
        lw.w_o = projection(b + "attn_output.weight");
        if (c.qk_norm) {
            lw.q_norm = load(b + "attn_q_norm.weight");
            lw.k_norm = load(b + "attn_k_norm.weight");
        }
        if (c.qkv_bias && !neox) {
            lw.b_q = load(b + "attn_q.bias");
            lw.b_k = load(b + "attn_k.bias");
            lw.b_v = load(b + "attn_v.bias");
        }
        if (neox) {
            lw.b_o = load(b + "attn_output.bias");
            lw.b_in = load(b + "ffn_up.bias");
            lw.b_out = load(b + "ffn_down.bias");
        } else if (c.out_bias) {
            lw.b_o = load(b + "attn_output.bias");
            lw.b_in = tensor_view<const float>(zeros.data(), {ff});
            lw.b_out = tensor_view<const float>(zeros.data(), {d});
        }
        lw.ln2_weight = load(b + "ffn_norm.weight");
        if (ln) lw.ln2_bias = load(b + "ffn_norm.bias");
        if (c.post_norms) {
            lw.ln1_post_weight = load(b + "post_attention_norm.weight");
            lw.ln2_post_weight = load(b + "post_ffw_norm.weight");
        }
        if (c.gated_mlp()) lw.w_gate = projection(b + "ffn_gate.weight");
        lw.w_in = projection(b + "ffn_up.weight");
        lw.w_out = projection(b + "ffn_down.weight");
    }
    w.final_norm_weight = load("output_norm.weight");
    if (ln) w.final_norm_bias = load("output_norm.bias");
    // Tied: the embedding's rows in the file (token_embedding is an f32 copy), else the same view.
    kernels::weight_format embedding_format{};
    const bool embedding_in_rows = kept_in_rows(f.tensor_info("token_embd.weight"), embedding_format);
    w.unembedding = !c.tied_embeddings ? projection("output.weight")
                    : embedding_in_rows ? projection("token_embd.weight")
                                        : weight_tensor<float>(w.token_embedding);
    if (in_place) {
        if (packed)
            f.prefetch(); // read once, by the packing
        else
            f.populate(); // read by every forward, where it is
        w.owners.push_back(f.keep_alive());
    }
    return transformer(c, std::move(w));
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE transformer load_gguf<void>(const std::string&, const gguf_load_options&);
#endif

} // namespace actlens::io
