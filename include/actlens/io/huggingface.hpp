// actlens/io/huggingface.hpp: Hugging Face checkpoint directories (config.json + safetensors).
//
// A directory holds config.json and either model.safetensors or a sharded checkpoint:
// model.safetensors.index.json, whose "weight_map" names the shard file of every tensor.
//
// Families (config.json "model_type", or its "architectures" when model_type is absent):
//   gpt2                 GPT-2: LayerNorm, learned positions, GELU (tanh; activation_function
//                        "gelu_new"), biases everywhere, tied unembedding. Conv1D weights are
//                        stored [in, out] and are transposed into owned [out, in] copies; c_attn is
//                        split into q, k, v. Names may carry a "transformer." prefix; the causal
//                        mask buffers h.{i}.attn.bias / masked_bias are ignored.
//   llama, mistral       RMSNorm, RoPE on half-split pairs (HF's rotate_half: the q/k weights need
//                        no permutation), SwiGLU (gate_proj, up_proj, down_proj), grouped-query
//                        attention; attention_bias adds q/k/v/o biases.
//   qwen2                Llama's row with q/k/v biases (Qwen2 and Qwen2.5; SmolLM and TinyLlama are
//                        "llama"); tied or untied (lm_head.weight) unembedding.
//   qwen3                Llama's row with a per-head RMSNorm of q and of k before RoPE
//                        (self_attn.q_norm / k_norm, [head_dim]); head_dim defaults to 128.
//   gpt_neox             GPT-NeoX / Pythia: LayerNorm with biases, RoPE on the first rotary_pct of each
//                        head (half-split pairs), exact GELU (hidden_act "gelu"), biases everywhere,
//                        use_parallel_residual, untied embed_out. The fused query_key_value rows are
//                        per head [q | k | v] and are split into owned q, k, v copies.
//   gemma2               Gemma 2: Llama's row with embeddings times sqrt(hidden_size), RMSNorm gains
//                        (1 + w) (owned copies with the 1 added), post_attention_layernorm on the
//                        attention output and pre_/post_feedforward_layernorm around the MLP, GeGLU
//                        (hidden_activation gelu_pytorch_tanh), query_pre_attn_scalar, attention and
//                        final logit soft-capping (null: none), sliding_window on the even layers
//                        (layer_types, when given, must say so), tied embeddings, head_dim default 256.
// Every Llama-like family takes rope_scaling of rope_type "default", "linear" or "llama3" (Llama 3.1+).
// F32 tensors that need no transpose are used in place in the memory-mapped files. F16 and BF16
// projections of Llama-family and GPT-NeoX checkpoints (not NeoX's fused query_key_value, which is
// reordered, nor GPT-2's transposed Conv1D weights) and their lm_head / tied embedding stay 16-bit: the
// model packs them straight from the mapped file into 16-bit panels, with no f32 copy
// (model/weight_tensor.hpp). Other F16, BF16 and F64 tensors are converted to float.
//
// Errors (actlens::error), each naming the file and the field or tensor:
//   io.201  the directory has no config.json, or no model.safetensors / index, or a shard is
//   missing io.204  config.json or the index is not valid JSON, or the index is malformed io.206 an
//   unsupported model_type / architecture (named), or a tensor dtype that is not a float model.401
//   a config.json field missing, mistyped or out of range; an unsupported option
//           (rope_scaling other than default / linear / llama3, another activation function,
//           mlp_bias, ...); tensors missing (one
//           error listing all of them); a tensor whose shape disagrees with config.json
// plus whatever safetensors_file reports about a damaged shard.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/json.hpp>
#include <actlens/io/safetensors.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>


#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace actlens::io {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// What config.json says, as actlens runs it.
struct huggingface_config {
    model_config config;      ///< family row, sizes and options
    std::string model_type;   ///< "gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox" or "gemma2"
    bool o_proj_bias = false; ///< Llama/Mistral attention_bias: o_proj has a bias too
};

/// Reads and validates a config.json. Throws actlens::error (see the top of this header). A template
/// (of nothing) so that the JSON parser is compiled only where it is called (io/json.hpp).
template <class Deferred = void>
huggingface_config read_huggingface_config(const std::string& config_path);

/// Loads a Hugging Face checkpoint: `path` is its directory or its config.json. Throws
/// actlens::error (see the top of this header). Thread-safe (touches no shared state).
/// (A template only so that it is compiled where it is called, or once with actlens::compiled.)
template <class Deferred = void>
transformer load_huggingface(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// A JSON file (config.json, an index) read whole and parsed; errors name the file.
template <class Deferred = void>
json_value read_json_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(errc::file_open, "cannot open '{}'", path);
    // Config and index files are small; a huge one is not what it claims to be.
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0 || static_cast<std::uint64_t>(size) > safetensors_max_header)
        fail(errc::bad_header, "'{}' is not a JSON file of a plausible size ({} bytes)", path,
             static_cast<long long>(size));
    in.seekg(0);
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), size);
    if (!in) fail(errc::file_open, "cannot read '{}'", path);
    json_value j = parse_json<Deferred>(text, path, errc::bad_header);
    if (!j.is_object())
        fail(errc::bad_header, "'{}' must hold a JSON object, got {}", path, j.type_name());
    return j;
}

/// The message of an actlens::error without its "[actlens.x.n] " id (to re-throw it with context).
inline std::string error_text(const error& e) {
    const std::string what = e.what();
    const std::size_t close = what.find("] ");
    return what.size() > 0 && what[0] == '[' && close != std::string::npos ? what.substr(close + 2)
                                                                           : what;
}

/// Typed, range-checked reads of config.json fields; every error names the file and the field.
class config_fields {
public:
    /// `prefix` names the object the fields are in ("rope_scaling.") in messages.
    config_fields(const json_value& j, const std::string& path, std::string prefix = "")
        : m_json(j), m_path(path), m_prefix(std::move(prefix)) {}

    /// True when the field is present and not null.
    bool has(const char* key) const {
        const json_value* it = m_json.find(key);
        return it && !it->is_null();
    }
    const json_value& get(const char* key) const {
        if (!has(key)) fail(errc::bad_config, "'{}': field '{}{}' is missing", m_path, m_prefix, key);
        return *m_json.find(key);
    }
    /// A positive integer no larger than 2^31 (sizes; products of two stay far from overflow).
    std::size_t count(const char* key) const {
        const json_value& v = get(key);
        // Parsed JSON holds every non-negative integer as unsigned.
        if (!v.is_unsigned() || v.integer_magnitude() == 0 || v.integer_magnitude() > (std::uint64_t(1) << 31))
            fail(errc::bad_config,
                 "'{}': field '{}{}' must be a positive integer (at most 2^31), got {}", m_path, m_prefix, key,
                 json_excerpt(v));
        return static_cast<std::size_t>(v.integer_magnitude());
    }
    std::size_t count(const char* key, std::size_t fallback) const {
        return has(key) ? count(key) : fallback;
    }
    /// A positive finite number that must be present.
    double positive(const char* key) const {
        get(key);
        return positive(key, 0.0);
    }
    /// A positive finite number.
    double positive(const char* key, double fallback) const {
        if (!has(key)) return fallback;
        const json_value& v = get(key);
        if (!v.is_number() || !(v.as_double() > 0.0) || !std::isfinite(v.as_double()))
            fail(errc::bad_config, "'{}': field '{}{}' must be a positive number, got {}", m_path,
                 m_prefix, key, json_excerpt(v));
        return v.as_double();
    }
    bool flag(const char* key, bool fallback) const {
        if (!has(key)) return fallback;
        const json_value& v = get(key);
        if (!v.is_bool())
            fail(errc::bad_config, "'{}': field '{}{}' must be true or false, got {}", m_path, m_prefix, key,
                 json_excerpt(v));
        return v.as_bool();
    }
    std::string text(const char* key, const std::string& fallback) const {
        if (!has(key)) return fallback;
        const json_value& v = get(key);
        if (!v.is_string())
            fail(errc::bad_config, "'{}': field '{}{}' must be a string, got {}", m_path, m_prefix, key,
                 json_excerpt(v));
        return v.as_string();
    }

private:
    const json_value& m_json;
    const std::string& m_path;
    std::string m_prefix;
};

/// The `architectures` field for a message: its first entries, each cut by json_excerpt.
inline std::string architecture_list(const json_value& j) {
    const json_value* it = j.find("architectures");
    if (!it) return "none";
    if (!it->is_array()) return json_excerpt(*it);
    constexpr std::size_t shown = 4;
    std::string out = "[";
    for (std::size_t i = 0; i < std::min(it->size(), shown); ++i) out += (i ? ", " : "") + json_excerpt((*it)[i]);
    if (it->size() > shown) out += ", ... (" + std::to_string(it->size()) + " entries)";
    return out + "]";
}

/// model_type, from the field or else from the first architecture.
inline std::string huggingface_model_type(const json_value& j, const std::string& path) {
    const config_fields f(j, path);
    std::string type = f.text("model_type", "");
    if (type.empty()) {
        const json_value* it = j.find("architectures");
        if (it && it->is_array() && !it->empty() && (*it)[0].is_string()) {
            constexpr std::pair<const char*, const char*> known[] = {
                {"GPT2LMHeadModel", "gpt2"},
                {"GPT2Model", "gpt2"},
                {"LlamaForCausalLM", "llama"},
                {"MistralForCausalLM", "mistral"},
                {"Qwen2ForCausalLM", "qwen2"},
                {"Qwen3ForCausalLM", "qwen3"},
                {"GPTNeoXForCausalLM", "gpt_neox"},
                {"Gemma2ForCausalLM", "gemma2"}};
            const std::string arch = (*it)[0].as_string();
            for (const auto& [name, row] : known)
                if (arch == name) type = row;
        }
    }
    if (type != "gpt2" && type != "llama" && type != "mistral" && type != "qwen2" && type != "qwen3" &&
        type != "gpt_neox" && type != "gemma2")
        fail(errc::unsupported_format,
             "'{}': model_type '{}' (architectures {}) is not supported; actlens reads gpt2, "
             "llama, mistral, qwen2, qwen3, gpt_neox and gemma2 checkpoints",
             path, text_excerpt(type), architecture_list(j));
    return type;
}

/// The RoPE frequency divisors (model_config::rope_freq_divisors) of config.json's rope_scaling, for
/// a model whose rotary dimensions and rope_theta `c` already holds. rope_type (or the older "type") "default"
/// or an absent/null rope_scaling is plain RoPE; "linear" divides every frequency by `factor` (position
/// interpolation); "llama3" is Llama 3.1's per-frequency scaling. Others (dynamic NTK, YaRN, LongRoPE)
/// change the attention scale or depend on the sequence length, and are refused by name.
inline std::vector<double> rope_scaling_divisors(const json_value& j, const std::string& path,
                                                 const model_config& c) {
    const config_fields top(j, path);
    if (!top.has("rope_scaling")) return {};
    const json_value& scaling = *j.find("rope_scaling");
    if (!scaling.is_object())
        fail(errc::bad_config, "'{}': field 'rope_scaling' must be an object or null, got {}", path,
             json_excerpt(scaling));
    const config_fields f(scaling, path, "rope_scaling.");
    const char* type_key = f.has("rope_type") ? "rope_type" : "type";
    const std::string type = f.text(type_key, "default");
    if (type == "default") return {};
    if (type == "linear") return std::vector<double>(c.rotary() / 2, f.positive("factor"));
    if (type == "llama3") {
        const double factor = f.positive("factor");
        const double low = f.positive("low_freq_factor"), high = f.positive("high_freq_factor");
        if (!(high > low))
            fail(errc::bad_config,
                 "'{}': rope_scaling.high_freq_factor ({}) must be larger than rope_scaling.low_freq_factor ({})", path,
                 high, low);
        return llama3_rope_divisors(c.rotary(), c.rope_theta, factor, low, high,
                                    double(f.count("original_max_position_embeddings")));
    }
    fail(errc::bad_config,
         "'{}': rope_scaling.{} '{}' is not supported; actlens runs 'default', 'linear' and 'llama3' RoPE", path,
         type_key, text_excerpt(type));
}

/// Gemma 2's options beyond Llama's row (Gemma2Config's defaults), into `c`.
inline void read_gemma2_options(const json_value& j, const std::string& path, model_config& c) {
    const config_fields f(j, path);
    c.family = "gemma2";
    // Gemma2Config reads hidden_activation; checkpoints carry hidden_act beside it.
    const char* act_key = f.has("hidden_activation") ? "hidden_activation" : "hidden_act";
    const std::string act = f.text(act_key, "gelu_pytorch_tanh");
    if (act != "gelu_pytorch_tanh" && act != "gelu_new")
        fail(errc::bad_config, "'{}': {} '{}' is not supported; gemma2 models run gelu_pytorch_tanh (GeGLU)", path,
             act_key, text_excerpt(act));
    c.mlp = mlp_kind::geglu;
    c.scale_embeddings = true;
    c.post_norms = true;
    c.query_pre_attn_scalar = f.positive("query_pre_attn_scalar", 256.0);
    // A null soft cap turns the capping off (as Gemma2Config allows); a number must be positive.
    c.attn_logit_softcap = f.positive("attn_logit_softcapping", 0.0);
    c.final_logit_softcap = f.positive("final_logit_softcapping", 0.0);
    c.sliding_window = f.count("sliding_window", 4096);
    // Newer configs spell the alternation out; actlens runs Gemma 2's (model_config::window).
    const json_value* types = j.find("layer_types");
    if (!types || types->is_null()) return;
    if (!types->is_array() || types->size() != c.n_layers)
        fail(errc::bad_config, "'{}': field 'layer_types' must list the {} layers, got {}", path, c.n_layers,
             json_excerpt(*types));
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        const char* want = l % 2 == 0 ? "sliding_attention" : "full_attention";
        if (!(*types)[l].is_string() || (*types)[l].as_string() != want)
            fail(errc::bad_config, "'{}': layer_types[{}] is {}; Gemma 2 alternates, layer {} is '{}'", path, l,
                 json_excerpt((*types)[l]), l, want);
    }
}

} // namespace detail

template <class Deferred>
huggingface_config read_huggingface_config(const std::string& config_path) {
    const json_value j = detail::read_json_file(config_path);
    const detail::config_fields f(j, config_path);
    huggingface_config out;
    out.model_type = detail::huggingface_model_type(j, config_path);
    model_config& c = out.config;

    if (out.model_type == "gpt2") {
        const std::size_t d = f.count("n_embd"), heads = f.count("n_head");
        const std::size_t positions =
            f.has("n_positions") ? f.count("n_positions") : f.count("n_ctx");
        if (d % heads != 0)
            fail(errc::bad_config, "'{}': n_embd = {} is not a multiple of n_head = {}",
                 config_path, d, heads);
        c = model_config::gpt2(f.count("n_layer"), d, heads, f.count("vocab_size"), positions);
        c.d_mlp = f.count("n_inner", 4 * d);
        c.norm_eps = f.positive("layer_norm_epsilon", 1e-5);
        c.tied_embeddings = f.flag("tie_word_embeddings", true);
        // gelu_new and gelu_pytorch_tanh are the same tanh approximation.
        const std::string act = f.text("activation_function", "gelu_new");
        if (act != "gelu_new" && act != "gelu_pytorch_tanh")
            fail(errc::bad_config,
                 "'{}': activation_function '{}' is not supported; GPT-2 models run gelu_new (tanh "
                 "approximation)",
                 config_path, detail::text_excerpt(act));
        if (!f.flag("scale_attn_weights", true))
            fail(errc::bad_config, "'{}': scale_attn_weights = false is not supported",
                 config_path);
        if (f.flag("scale_attn_by_inverse_layer_idx", false))
            fail(errc::bad_config, "'{}': scale_attn_by_inverse_layer_idx = true is not supported",
                 config_path);
    } else if (out.model_type == "gpt_neox") {
        // Defaults are those of transformers' GPTNeoXConfig.
        const std::size_t d = f.count("hidden_size"), heads = f.count("num_attention_heads");
        if (d % heads != 0)
            fail(errc::bad_config, "'{}': hidden_size = {} is not a multiple of num_attention_heads = {}",
                 config_path, d, heads);
        c = model_config::gpt2(f.count("num_hidden_layers"), d, heads, f.count("vocab_size"),
                               f.count("max_position_embeddings", 2048));
        c.family = "gpt_neox";
        c.d_mlp = f.count("intermediate_size", 4 * d);
        c.norm_eps = f.positive("layer_norm_eps", 1e-5);
        c.position = position_kind::rotary;
        c.rope = kernels::rope_style::half_split;
        c.rope_theta = f.positive("rotary_emb_base", f.positive("rope_theta", 10000.0));
        const double pct = f.positive("rotary_pct", 0.25);
        if (pct > 1.0) fail(errc::bad_config, "'{}': field 'rotary_pct' = {} must be at most 1", config_path, pct);
        c.rotary_dims = static_cast<std::size_t>(double(c.d_head) * pct); // as GPTNeoX: int(head_size * rotary_pct)
        if (c.rotary_dims == 0 || c.rotary_dims % 2 != 0)
            fail(errc::bad_config, "'{}': rotary_pct = {} rotates {} of the {} dimensions of a head; it must be a "
                 "positive even number", config_path, pct, c.rotary_dims, c.d_head);
        c.parallel_residual = f.flag("use_parallel_residual", true);
        c.tied_embeddings = f.flag("tie_word_embeddings", false);
        const std::string act = f.text("hidden_act", "gelu");
        if (act == "gelu")
            c.mlp = mlp_kind::gelu_erf;
        else if (act == "gelu_new" || act == "gelu_pytorch_tanh")
            c.mlp = mlp_kind::gelu_tanh;
        else
            fail(errc::bad_config, "'{}': hidden_act '{}' is not supported; gpt_neox models run gelu or gelu_new",
                 config_path, detail::text_excerpt(act));
        if (!f.flag("attention_bias", true))
            fail(errc::bad_config, "'{}': attention_bias = false is not supported", config_path);
        c.rope_freq_divisors = detail::rope_scaling_divisors(j, config_path, c);
    } else {
        const std::size_t d = f.count("hidden_size"), heads = f.count("num_attention_heads");
        // Qwen3Config's head_dim defaults to 128; the others' to hidden_size / num_attention_heads.
        const bool qwen3 = out.model_type == "qwen3";
        if (!qwen3 && !f.has("head_dim") && d % heads != 0)
            fail(errc::bad_config,
                 "'{}': hidden_size = {} is not a multiple of num_attention_heads = {}",
                 config_path, d, heads);
        // Defaults are those of transformers' LlamaConfig / MistralConfig / Qwen2Config.
        const bool gemma2 = out.model_type == "gemma2";
        const std::size_t default_positions = out.model_type == "llama"     ? 2048
                                              : out.model_type == "mistral" ? 4096 * 32
                                              : gemma2                      ? 8192
                                                                            : 32768;
        c = model_config::llama(
            f.count("num_hidden_layers"), d, heads, f.count("num_key_value_heads", heads),
            f.count("intermediate_size"), f.count("vocab_size"),
            f.count("max_position_embeddings", default_positions), kernels::rope_style::half_split);
        c.family = out.model_type;
        c.d_head = f.count("head_dim", qwen3 ? 128 : gemma2 ? 256 : d / heads);
        c.qk_norm = qwen3;
        c.norm_eps = f.positive("rms_norm_eps", 1e-6);
        c.rope_theta = f.positive("rope_theta", 10000.0);
        c.tied_embeddings = f.flag("tie_word_embeddings", gemma2);
        c.rope_freq_divisors = detail::rope_scaling_divisors(j, config_path, c);
        if (gemma2) {
            detail::read_gemma2_options(j, config_path, c);
        } else {
            const std::string act = f.text("hidden_act", "silu");
            if (act != "silu")
                fail(errc::bad_config, "'{}': hidden_act '{}' is not supported; {} models run silu (SwiGLU)",
                     config_path, detail::text_excerpt(act), out.model_type);
        }
        if (f.flag("mlp_bias", false))
            fail(errc::bad_config, "'{}': mlp_bias = true is not supported", config_path);
        if (out.model_type == "qwen2") {
            c.qkv_bias = true;
        } else if (f.flag("attention_bias", false)) {
            c.qkv_bias = true;
            out.o_proj_bias = true;
            c.out_bias = true; // the MLP biases this implies are loaded as zeros
        }
        // Sliding-window attention equals full causal attention up to the window's length, so the
        // model is exact if its context stops there.
        const bool sliding = out.model_type == "mistral" || f.flag("use_sliding_window", false);
        if (sliding && f.has("sliding_window"))
            c.max_seq_len = std::min(c.max_seq_len, f.count("sliding_window"));
    }
    try {
        c.validate();
    } catch (const error& e) {
        fail(errc::bad_config, "'{}': {}", config_path, detail::error_text(e));
    }
    return out;
}

namespace detail {

/// Where each tensor of a checkpoint lives: one file, or the shards an index names.
class huggingface_tensors {
public:
    template <class Deferred = void> // the JSON parser compiled only where a checkpoint is opened
    explicit huggingface_tensors(const std::filesystem::path& dir) {
        namespace fs = std::filesystem;
        const fs::path single = dir / "model.safetensors",
                       index = dir / "model.safetensors.index.json";
        if (fs::exists(single)) {
            m_files.emplace_back(single.string());
            for (const safetensors_tensor_info& t : m_files[0].tensors())
                m_where.emplace(t.name, 0);
            return;
        }
        if (!fs::exists(index))
            fail(errc::file_open,
                 "'{}' has neither model.safetensors nor model.safetensors.index.json",
                 dir.string());
        const std::string index_path = index.string();
        const json_value j = read_json_file(index_path);
        const json_value* map = j.find("weight_map");
        if (!map || !map->is_object())
            fail(errc::bad_header,
                 "'{}': 'weight_map' must be an object of tensor name -> shard file", index_path);
        // The whole map is checked before any shard is opened.
        std::map<std::string, std::size_t> shard_ids;
        for (const auto& [name, shard] : map->members()) {
            if (!shard.is_string())
                fail(errc::bad_header, "'{}': weight_map entry '{}' must be a file name, got {}",
                     index_path, name, json_excerpt(shard));
            const std::string& file = shard.as_string();
            // Shards are plain file names beside the index, never paths elsewhere.
            if (file.empty() || file == "." || file == ".." ||
                file.find('/') != std::string::npos || file.find('\\') != std::string::npos)
                fail(errc::bad_header,
                     "'{}': weight_map entry '{}' names '{}', which is not a file name in '{}'",
                     index_path, name, file, dir.string());
            const std::size_t id = shard_ids.emplace(file, shard_ids.size()).first->second;
            m_where.emplace(name, id);
        }
        std::vector<std::string> files(shard_ids.size());
        for (const auto& [file, id] : shard_ids)
            files[id] = file;
        for (const std::string& file : files)
            m_files.emplace_back((dir / file).string());
        for (const auto& [name, id] : m_where)
            if (!m_files[id].contains(name))
                fail(errc::bad_header,
                     "'{}': weight_map puts '{}' in '{}', which has no such tensor", index_path,
                     name, m_files[id].path());
    }

    const safetensors_file* file_of(const std::string& name) const {
        const auto it = m_where.find(name);
        return it == m_where.end() ? nullptr : &m_files[it->second];
    }
    bool contains(const std::string& name) const { return m_where.count(name) != 0; }
    std::size_t file_count() const noexcept { return m_files.size(); }
    const safetensors_file& file(std::size_t i) const { return m_files[i]; }
    std::size_t file_index(const std::string& name) const { return m_where.at(name); }

private:
    std::vector<safetensors_file> m_files;
    std::map<std::string, std::size_t> m_where;
};

/// Builds model_weights from a checkpoint: first every expected tensor is declared with its
/// shape (check() then reports all missing ones at once, and any shape mismatch), then loaded.
class huggingface_builder {
public:
    huggingface_builder(const huggingface_tensors& source, model_weights<float>& weights)
        : m_source(source), m_weights(weights), m_in_place(source.file_count(), false) {}

    /// Declares a tensor that must exist with this shape (as stored in the file).
    void expect(const std::string& name, std::vector<std::size_t> shape) {
        m_expected.emplace_back(name, std::move(shape));
    }

    void check(const std::string& dir) const {
        std::vector<std::string> missing;
        for (const auto& [name, shape] : m_expected)
            if (!m_source.contains(name)) missing.push_back(name);
        if (!missing.empty()) {
            const std::size_t shown = std::min<std::size_t>(missing.size(), 100);
            std::string list;
            for (std::size_t i = 0; i < shown; ++i)
                list += (i ? ", " : "") + missing[i];
            if (shown < missing.size())
                list += fmt::format(", ... ({} more)", missing.size() - shown);
            fail(errc::bad_config, "'{}': {} tensor{} missing from the checkpoint: {}", dir,
                 missing.size(), missing.size() == 1 ? " is" : "s are", list);
        }
        for (const auto& [name, shape] : m_expected) {
            const safetensors_file& f = *m_source.file_of(name);
            const safetensors_tensor_info& t = f.info(name);
            if (t.shape != shape) {
                safetensors_tensor_info want;
                want.shape = shape;
                fail(errc::bad_config, "'{}': tensor '{}' has shape {}, but config.json implies {}",
                     f.path(), name, t.shape_string(), want.shape_string());
            }
        }
    }

    /// The tensor as stored: in place when it is aligned F32, else a converted copy.
    tensor_view<const float> plain(const std::string& name) {
        const std::size_t i = m_source.file_index(name);
        tensor<float> storage;
        const tensor_view<const float> v = m_source.file(i).float_view(name, storage);
        if (storage.empty() && v.size() != 0) {
            m_in_place[i] = true;
            return v;
        }
        return m_weights.own(std::move(storage));
    }

    /// A projection [out, in]: its 16-bit values in place when it is F16 or BF16 (the model packs
    /// them into 16-bit panels, model/weight_tensor.hpp), else as plain() gives it.
    weight_tensor<float> projection(const std::string& name) {
        const std::size_t i = m_source.file_index(name);
        const safetensors_file& f = m_source.file(i);
        const safetensors_tensor_info& t = f.info(name);
        if (t.dtype != dtype::f16 && t.dtype != dtype::bf16) return plain(name);
        m_in_place[i] = true;
        return weight_tensor<float>(f.data(t), t.dtype, f.tensor_shape(t), true);
    }

    /// The unembedding tied to the embedding `name` (already loaded as `embedding`): the embedding's
    /// own 16-bit values when it is F16 or BF16 (embedding is then an f32 copy), else `embedding`.
    weight_tensor<float> tied_unembedding(const std::string& name, const tensor_view<const float>& embedding) {
        const dtype type = m_source.file_of(name)->info(name).dtype;
        return type == dtype::f16 || type == dtype::bf16 ? projection(name) : weight_tensor<float>(embedding);
    }

    /// A matrix stored [rows, cols] (GPT-2's Conv1D [in, out]) as an owned [cols, rows] copy.
    tensor_view<const float> transposed(const std::string& name) {
        tensor<float> storage;
        const tensor_view<const float> m = m_source.file_of(name)->float_view(name, storage);
        const std::size_t rows = m.extent(0), cols = m.extent(1);
        tensor<float> t({cols, rows});
        // Blocked so that both sides stay in cache for large matrices.
        constexpr std::size_t block = 32;
        for (std::size_t r0 = 0; r0 < rows; r0 += block)
            for (std::size_t c0 = 0; c0 < cols; c0 += block)
                for (std::size_t r = r0; r < std::min(rows, r0 + block); ++r)
                    for (std::size_t c = c0; c < std::min(cols, c0 + block); ++c)
                        t.data()[c * rows + r] = m.data()[r * cols + c];
        return m_weights.own(std::move(t));
    }

    /// Keeps the files that views point into alive with the weights.
    void finish() {
        for (std::size_t i = 0; i < m_in_place.size(); ++i)
            if (m_in_place[i]) {
                m_source.file(i).prefetch();
                m_weights.owners.push_back(m_source.file(i).keep_alive());
            }
    }

private:
    const huggingface_tensors& m_source;
    model_weights<float>& m_weights;
    std::vector<bool> m_in_place;
    std::vector<std::pair<std::string, std::vector<std::size_t>>> m_expected;
};

/// Rows [begin, begin + count) of a contiguous [n, cols] matrix, or elements of a vector.
inline tensor_view<const float> rows_of(const tensor_view<const float>& m, std::size_t begin,
                                        std::size_t count) {
    if (m.rank() == 1) return tensor_view<const float>(m.data() + begin, {count});
    return tensor_view<const float>(m.data() + begin * m.extent(1), {count, m.extent(1)});
}

/// q, k and v of a layer whose projections are one [3 width, d] matrix (rows q, then k, then v) and
/// one [3 width] bias: views of their row ranges.
inline void set_qkv_rows(layer_weights<float>& lw, const tensor_view<const float>& qkv,
                         const tensor_view<const float>& qkv_bias, std::size_t width) {
    lw.w_q = rows_of(qkv, 0, width);
    lw.w_k = rows_of(qkv, width, width);
    lw.w_v = rows_of(qkv, 2 * width, width);
    lw.b_q = rows_of(qkv_bias, 0, width);
    lw.b_k = rows_of(qkv_bias, width, width);
    lw.b_v = rows_of(qkv_bias, 2 * width, width);
}

inline model_weights<float> load_gpt2_weights(const huggingface_config& hc,
                                              const huggingface_tensors& source,
                                              const std::string& dir) {
    const model_config& c = hc.config;
    const std::size_t d = c.d_model, f = c.d_mlp, L = c.n_layers;
    const std::string p = source.contains("transformer.wte.weight") ? "transformer." : "";
    const bool own_head = !c.tied_embeddings;
    model_weights<float> w;
    huggingface_builder b(source, w);
    b.expect(p + "wte.weight", {c.vocab_size, d});
    b.expect(p + "wpe.weight", {c.max_seq_len, d});
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = p + "h." + std::to_string(l) + ".";
        for (const char* ln : {"ln_1", "ln_2"}) {
            b.expect(h + ln + ".weight", {d});
            b.expect(h + ln + ".bias", {d});
        }
        b.expect(h + "attn.c_attn.weight", {d, 3 * d});
        b.expect(h + "attn.c_attn.bias", {3 * d});
        b.expect(h + "attn.c_proj.weight", {d, d});
        b.expect(h + "attn.c_proj.bias", {d});
        b.expect(h + "mlp.c_fc.weight", {d, f});
        b.expect(h + "mlp.c_fc.bias", {f});
        b.expect(h + "mlp.c_proj.weight", {f, d});
        b.expect(h + "mlp.c_proj.bias", {d});
    }
    b.expect(p + "ln_f.weight", {d});
    b.expect(p + "ln_f.bias", {d});
    if (own_head) b.expect("lm_head.weight", {c.vocab_size, d});
    b.check(dir);

    w.token_embedding = b.plain(p + "wte.weight");
    w.position_embedding = b.plain(p + "wpe.weight");
    w.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = p + "h." + std::to_string(l) + ".";
        layer_weights<float>& lw = w.layers[l];
        lw.ln1_weight = b.plain(h + "ln_1.weight");
        lw.ln1_bias = b.plain(h + "ln_1.bias");
        // c_attn is x W with W [d, 3d] = [W_q | W_k | W_v]; transposed, its rows are q, k, v
        // outputs.
        const tensor_view<const float> qkv = b.transposed(h + "attn.c_attn.weight");
        const tensor_view<const float> qkv_bias = b.plain(h + "attn.c_attn.bias");
        set_qkv_rows(lw, qkv, qkv_bias, d);
        lw.w_o = b.transposed(h + "attn.c_proj.weight");
        lw.b_o = b.plain(h + "attn.c_proj.bias");
        lw.ln2_weight = b.plain(h + "ln_2.weight");
        lw.ln2_bias = b.plain(h + "ln_2.bias");
        lw.w_in = b.transposed(h + "mlp.c_fc.weight");
        lw.b_in = b.plain(h + "mlp.c_fc.bias");
        lw.w_out = b.transposed(h + "mlp.c_proj.weight");
        lw.b_out = b.plain(h + "mlp.c_proj.bias");
    }
    w.final_norm_weight = b.plain(p + "ln_f.weight");
    w.final_norm_bias = b.plain(p + "ln_f.bias");
    w.unembedding = own_head ? b.plain("lm_head.weight") : w.token_embedding;
    b.finish();
    return w;
}

inline model_weights<float> load_llama_weights(const huggingface_config& hc,
                                               const huggingface_tensors& source,
                                               const std::string& dir) {
    const model_config& c = hc.config;
    const std::size_t d = c.d_model, f = c.d_mlp, L = c.n_layers;
    const std::size_t qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;
    model_weights<float> w;
    huggingface_builder b(source, w);
    b.expect("model.embed_tokens.weight", {c.vocab_size, d});
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = "model.layers." + std::to_string(l) + ".";
        b.expect(h + "input_layernorm.weight", {d});
        b.expect(h + "self_attn.q_proj.weight", {qw, d});
        b.expect(h + "self_attn.k_proj.weight", {kvw, d});
        b.expect(h + "self_attn.v_proj.weight", {kvw, d});
        b.expect(h + "self_attn.o_proj.weight", {d, qw});
        if (c.qk_norm) {
            b.expect(h + "self_attn.q_norm.weight", {c.d_head});
            b.expect(h + "self_attn.k_norm.weight", {c.d_head});
        }
        if (c.qkv_bias) {
            b.expect(h + "self_attn.q_proj.bias", {qw});
            b.expect(h + "self_attn.k_proj.bias", {kvw});
            b.expect(h + "self_attn.v_proj.bias", {kvw});
        }
        if (hc.o_proj_bias) b.expect(h + "self_attn.o_proj.bias", {d});
        b.expect(h + "post_attention_layernorm.weight", {d});
        if (c.post_norms)
            for (const char* norm : {"pre_feedforward_layernorm", "post_feedforward_layernorm"})
                b.expect(h + norm + ".weight", {d});
        b.expect(h + "mlp.gate_proj.weight", {f, d});
        b.expect(h + "mlp.up_proj.weight", {f, d});
        b.expect(h + "mlp.down_proj.weight", {d, f});
    }
    b.expect("model.norm.weight", {d});
    if (!c.tied_embeddings) b.expect("lm_head.weight", {c.vocab_size, d});
    b.check(dir);

    // attention_bias gives o_proj a bias but the MLP none; the transformer's out_bias row has both,
    // so the MLP's are zeros.
    tensor_view<const float> zeros;
    if (c.out_bias) zeros = w.own(tensor<float>({std::max(d, f)}));
    // Gemma's norms multiply by (1 + w): their gains are owned copies with the 1 added.
    auto gain = [&](const std::string& name) {
        const tensor_view<const float> stored = b.plain(name);
        if (!c.post_norms) return stored;
        tensor<float> t(stored.shape());
        for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = 1.0f + stored.data()[i];
        return w.own(std::move(t));
    };
    w.token_embedding = b.plain("model.embed_tokens.weight");
    w.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = "model.layers." + std::to_string(l) + ".";
        layer_weights<float>& lw = w.layers[l];
        lw.ln1_weight = gain(h + "input_layernorm.weight");
        lw.w_q = b.projection(h + "self_attn.q_proj.weight");
        lw.w_k = b.projection(h + "self_attn.k_proj.weight");
        lw.w_v = b.projection(h + "self_attn.v_proj.weight");
        lw.w_o = b.projection(h + "self_attn.o_proj.weight");
        if (c.qk_norm) {
            lw.q_norm = b.plain(h + "self_attn.q_norm.weight");
            lw.k_norm = b.plain(h + "self_attn.k_norm.weight");
        }
        if (c.qkv_bias) {
            lw.b_q = b.plain(h + "self_attn.q_proj.bias");
            lw.b_k = b.plain(h + "self_attn.k_proj.bias");
            lw.b_v = b.plain(h + "self_attn.v_proj.bias");
        }
        if (hc.o_proj_bias) lw.b_o = b.plain(h + "self_attn.o_proj.bias");
        if (c.out_bias) {
            lw.b_in = rows_of(zeros, 0, f);
            lw.b_out = rows_of(zeros, 0, d);
        }
        if (c.post_norms) { // Gemma 2: post_attention_layernorm is on the attention output
            lw.ln1_post_weight = gain(h + "post_attention_layernorm.weight");
            lw.ln2_weight = gain(h + "pre_feedforward_layernorm.weight");
            lw.ln2_post_weight = gain(h + "post_feedforward_layernorm.weight");
        } else {
            lw.ln2_weight = b.plain(h + "post_attention_layernorm.weight");
        }
        lw.w_gate = b.projection(h + "mlp.gate_proj.weight");
        lw.w_in = b.projection(h + "mlp.up_proj.weight");
        lw.w_out = b.projection(h + "mlp.down_proj.weight");
    }
    w.final_norm_weight = gain("model.norm.weight");
    w.unembedding = c.tied_embeddings ? b.tied_unembedding("model.embed_tokens.weight", w.token_embedding)
                                      : b.projection("lm_head.weight");
    b.finish();
    return w;
}

/// GPT-NeoX's fused query_key_value (rows per head: d_h of q, of k, of v; bias alike) as one owned
/// [3 d, d] matrix whose rows are all of q, then k, then v, so that w_q/w_k/w_v are row ranges.
inline tensor_view<const float> neox_split_qkv(const tensor_view<const float>& fused, std::size_t heads,
                                               std::size_t dh, model_weights<float>& w) {
    const std::size_t cols = fused.rank() == 2 ? fused.extent(1) : 1, d = heads * dh;
    tensor<float> out(fused.shape());
    for (std::size_t h = 0; h < heads; ++h)
        for (std::size_t part = 0; part < 3; ++part)
            std::copy(fused.data() + (h * 3 + part) * dh * cols, fused.data() + (h * 3 + part + 1) * dh * cols,
                      out.data() + (part * d + h * dh) * cols);
    return w.own(std::move(out));
}

inline model_weights<float> load_neox_weights(const huggingface_config& hc, const huggingface_tensors& source,
                                              const std::string& dir) {
    const model_config& c = hc.config;
    const std::size_t d = c.d_model, f = c.d_mlp, L = c.n_layers;
    model_weights<float> w;
    huggingface_builder b(source, w);
    b.expect("gpt_neox.embed_in.weight", {c.vocab_size, d});
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = "gpt_neox.layers." + std::to_string(l) + ".";
        for (const char* ln : {"input_layernorm", "post_attention_layernorm"}) {
            b.expect(h + ln + ".weight", {d});
            b.expect(h + ln + ".bias", {d});
        }
        b.expect(h + "attention.query_key_value.weight", {3 * d, d});
        b.expect(h + "attention.query_key_value.bias", {3 * d});
        b.expect(h + "attention.dense.weight", {d, d});
        b.expect(h + "attention.dense.bias", {d});
        b.expect(h + "mlp.dense_h_to_4h.weight", {f, d});
        b.expect(h + "mlp.dense_h_to_4h.bias", {f});
        b.expect(h + "mlp.dense_4h_to_h.weight", {d, f});
        b.expect(h + "mlp.dense_4h_to_h.bias", {d});
    }
    b.expect("gpt_neox.final_layer_norm.weight", {d});
    b.expect("gpt_neox.final_layer_norm.bias", {d});
    if (!c.tied_embeddings) b.expect("embed_out.weight", {c.vocab_size, d});
    b.check(dir);

    w.token_embedding = b.plain("gpt_neox.embed_in.weight");
    w.layers.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
        const std::string h = "gpt_neox.layers." + std::to_string(l) + ".";
        layer_weights<float>& lw = w.layers[l];
        lw.ln1_weight = b.plain(h + "input_layernorm.weight");
        lw.ln1_bias = b.plain(h + "input_layernorm.bias");
        const tensor_view<const float> qkv =
            neox_split_qkv(b.plain(h + "attention.query_key_value.weight"), c.n_heads, c.d_head, w);
        const tensor_view<const float> qkv_bias =
            neox_split_qkv(b.plain(h + "attention.query_key_value.bias"), c.n_heads, c.d_head, w);
        set_qkv_rows(lw, qkv, qkv_bias, d);
        lw.w_o = b.projection(h + "attention.dense.weight");
        lw.b_o = b.plain(h + "attention.dense.bias");
        lw.ln2_weight = b.plain(h + "post_attention_layernorm.weight");
        lw.ln2_bias = b.plain(h + "post_attention_layernorm.bias");
        lw.w_in = b.projection(h + "mlp.dense_h_to_4h.weight");
        lw.b_in = b.plain(h + "mlp.dense_h_to_4h.bias");
        lw.w_out = b.projection(h + "mlp.dense_4h_to_h.weight");
        lw.b_out = b.plain(h + "mlp.dense_4h_to_h.bias");
    }
    w.final_norm_weight = b.plain("gpt_neox.final_layer_norm.weight");
    w.final_norm_bias = b.plain("gpt_neox.final_layer_norm.bias");
    w.unembedding = c.tied_embeddings ? b.tied_unembedding("gpt_neox.embed_in.weight", w.token_embedding)
                                      : b.projection("embed_out.weight");
    b.finish();
    return w;
}

} // namespace detail

template <class Deferred>
transformer load_huggingface(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path dir(path);
    if (!fs::is_directory(dir, ec)) dir = dir.parent_path();
    if (dir.empty()) dir = ".";
    const fs::path config_path = dir / "config.json";
    if (!fs::exists(config_path, ec))
        fail(errc::file_open, "'{}' has no config.json: not a Hugging Face checkpoint directory",
             dir.string());
    const huggingface_config hc = read_huggingface_config(config_path.string());
    const detail::huggingface_tensors source(dir);
    model_weights<float> w = hc.model_type == "gpt2"       ? detail::load_gpt2_weights(hc, source, dir.string())
                             : hc.model_type == "gpt_neox" ? detail::load_neox_weights(hc, source, dir.string())
                                                           : detail::load_llama_weights(hc, source, dir.string());
    return transformer(hc.config, std::move(w));
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE transformer load_huggingface<void>(const std::string&);
ACTLENS_EXTERN_TEMPLATE huggingface_config read_huggingface_config<void>(const std::string&);
#endif

} // namespace actlens::io
