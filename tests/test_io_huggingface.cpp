// Tests of actlens/io/huggingface.hpp (and load_model's directory detection): tiny GPT-2, Llama
// and Qwen2 checkpoints in Hugging Face's layout, made with random weights by
// tests/fixtures/hf/make_hf_fixtures.py, whose independent float64 PyTorch forward pass recorded
// the logits and activations actlens must reproduce; then damaged configs and checkpoints.
//
// Tolerance: 1e-4 max abs. The reference is float64 and actlens runs float32 on O(1) activations
// (logits up to ~12): float32 rounding through two blocks stays near 1e-6, so 1e-4 leaves room for
// summation-order differences while any layout or formula error (a transposed or permuted weight,
// a wrong RoPE pairing, a missing bias) shows up at 1e-2 or more.
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "paths.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/io/huggingface.hpp>
#include <actlens/io/safetensors.hpp>
#include <actlens/model/load.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;
using Catch::Contains;

namespace {

const std::string hf_dir = actlens::test_paths::fixture("hf");

double max_abs_diff_4d(tensor_view<const float> a, tensor_view<const float> b) {
    double worst = 0;
    const shape_t& s = a.shape();
    for (std::size_t i = 0; i < s[0]; ++i)
        for (std::size_t j = 0; j < s[1]; ++j)
            for (std::size_t k = 0; k < s[2]; ++k)
                for (std::size_t l = 0; l < s[3]; ++l)
                    worst =
                        std::max(worst, std::fabs(double(a(i, j, k, l)) - double(b(i, j, k, l))));
    return worst;
}

tensor<std::int32_t> reference_tokens(const io::safetensors_file& ref) {
    const io::safetensors_tensor_info& t = ref.info("tokens");
    REQUIRE(t.dtype == dtype::i32);
    REQUIRE(t.shape == std::vector<std::size_t>{2, 7});
    tensor<std::int32_t> tokens({2, 7});
    std::memcpy(tokens.data(), ref.data(t), t.bytes());
    return tokens;
}

/// Runs `model` on the reference tokens and compares the logits and every recorded activation.
void check_against_reference(const transformer& model, const std::string& reference_name,
                             double tolerance = 1e-4) {
    const io::safetensors_file ref(hf_dir + "/" + reference_name);
    const tensor<std::int32_t> tokens = reference_tokens(ref);
    const auto [logits, cache] = model.run_with_cache(tokens.view(), "*");
    const tensor<float> want_logits = ref.to_float("logits");
    REQUIRE(logits.shape() == want_logits.shape());
    INFO(reference_name);
    CHECK(max_abs_diff_4d(logits, want_logits) < tolerance);
    std::size_t hooks = 0;
    for (const io::safetensors_tensor_info& t : ref.tensors()) {
        if (t.name == "tokens" || t.name == "logits") continue;
        INFO("hook " << t.name);
        REQUIRE(cache.contains(t.name));
        const tensor<float> want = ref.to_float(t.name);
        const tensor<float>& got = cache.at(t.name);
        REQUIRE(got.shape() == want.shape());
        CHECK(max_abs_diff_4d(got, want) < tolerance);
        ++hooks;
    }
    CHECK(hooks >= 18);
}

fs::path temp_root() {
    const fs::path dir = fs::temp_directory_path() / "actlens_test_hf";
    fs::create_directories(dir);
    return dir;
}

/// A fresh copy of a fixture checkpoint in a temporary folder.
fs::path copy_fixture(const std::string& fixture, const std::string& name) {
    const fs::path dir = temp_root() / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(hf_dir + "/" + fixture))
        fs::copy_file(entry.path(), dir / entry.path().filename());
    return dir;
}

std::string hf_load_error(const fs::path& path) {
    return error_of([&] { load_model(path.string()); });
}

/// The checkpoint's tensors rewritten by save_safetensors, without `drop`, in `type`.
void rewrite_weights(const fs::path& dir, const std::vector<std::string>& drop,
                     dtype type = dtype::f32) {
    const fs::path file = dir / "model.safetensors";
    std::map<std::string, tensor<float>> kept;
    {
        const io::safetensors_file f(file.string());
        for (const auto& t : f.tensors())
            if (std::find(drop.begin(), drop.end(), t.name) == drop.end() &&
                t.dtype != dtype::boolean)
                kept.emplace(t.name, f.to_float(t.name));
    }
    std::map<std::string, tensor_view<const float>> views;
    for (const auto& [name, t] : kept)
        views.emplace(name, t.view());
    io::save_safetensors(file.string(), views, type);
}

} // namespace

TEST_CASE("huggingface: GPT-2 matches the PyTorch reference from F32 and BF16 files",
          "[huggingface]") {
    const transformer m = load_model(hf_dir + "/gpt2_tiny");
    const model_config& c = m.config();
    CHECK(c.family == "gpt2");
    CHECK(c.n_layers == 2);
    CHECK(c.d_model == 32);
    CHECK(c.n_heads == 4);
    CHECK(c.d_mlp == 128);
    CHECK(c.vocab_size == 64);
    CHECK(c.max_seq_len == 32);
    CHECK(c.norm == norm_kind::layer_norm);
    CHECK(c.position == position_kind::learned);
    CHECK(c.tied_embeddings);
    CHECK(m.weights().unembedding.data() == m.weights().token_embedding.data());
    check_against_reference(m, "gpt2_tiny_reference.safetensors");

    // BF16 weights with a "transformer." prefix; the reference ran on the same rounded weights.
    const transformer b = load_model(hf_dir + "/gpt2_tiny_bf16/config.json");
    CHECK(b.config().d_mlp == 128);
    check_against_reference(b, "gpt2_tiny_bf16_reference.safetensors");
}

TEST_CASE("huggingface: Llama with GQA matches the PyTorch reference from F32, BF16 and shards",
          "[huggingface]") {
    const transformer m = load_model(hf_dir + "/llama_tiny");
    const model_config& c = m.config();
    CHECK(c.family == "llama");
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 2);
    CHECK(c.d_head == 8);
    CHECK(c.d_mlp == 48);
    CHECK(c.max_seq_len == 64);
    CHECK(c.rope == kernels::rope_style::half_split);
    CHECK(c.norm_eps == 1e-5);
    CHECK_FALSE(c.tied_embeddings);
    CHECK_FALSE(c.qkv_bias);
    // Every F32 tensor is used in place: the only owner is the mapped file.
    CHECK(m.weights().owners.size() == 1);
    check_against_reference(m, "llama_tiny_reference.safetensors");

    const transformer b = load_model(hf_dir + "/llama_tiny_bf16");
    // BF16: the projections and lm_head stay bf16 in the mapped file, multiplied as bf16 panels
    // (model/weight_tensor.hpp); the norm gains and the embedding are converted copies.
    CHECK(b.weights().layers[1].w_gate.type() == dtype::bf16);
    CHECK(b.packed().layers[1].w_gate.element_type() == dtype::bf16);
    CHECK(b.packed().unembedding.element_type() == dtype::bf16);
    CHECK(b.weights().owners.size() > 1);
    check_against_reference(b, "llama_tiny_bf16_reference.safetensors");

    const transformer s = load_model(hf_dir + "/llama_tiny_sharded");
    CHECK(s.weights().owners.size() == 2); // both shards, in place
    check_against_reference(s, "llama_tiny_reference.safetensors");
}

TEST_CASE("huggingface: Qwen2 with q/k/v biases, tied embeddings and head_dim != d / H",
          "[huggingface]") {
    const transformer m = load_model(hf_dir + "/qwen2_tiny");
    const model_config& c = m.config();
    CHECK(c.family == "qwen2");
    CHECK(c.qkv_bias);
    CHECK_FALSE(c.out_bias);
    CHECK(c.d_head == 16);
    CHECK(c.rope_theta == 1e6);
    CHECK(c.tied_embeddings);
    CHECK(c.max_seq_len == 64); // use_sliding_window is false: sliding_window 32 does not apply
    CHECK(m.weights().unembedding.data() == m.weights().token_embedding.data());
    check_against_reference(m, "qwen2_tiny_reference.safetensors");
}

TEST_CASE("huggingface: writer and loader agree; F16 checkpoints load", "[huggingface]") {
    const transformer original = load_model(hf_dir + "/llama_tiny");
    const fs::path f32 = copy_fixture("llama_tiny", "rewritten_f32");
    rewrite_weights(f32, {});
    const transformer again = load_model(f32.string());
    const tensor<std::int32_t> tokens =
        reference_tokens(io::safetensors_file(hf_dir + "/llama_tiny_reference.safetensors"));
    const tensor<float> a = original.forward(tokens.view()), b = again.forward(tokens.view());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);

    // F16 weights: each weight moves by up to 2^-11 relative, so logits (|x| < 12) move by ~1e-2.
    const fs::path f16 = copy_fixture("llama_tiny", "rewritten_f16");
    rewrite_weights(f16, {}, dtype::f16);
    CHECK(io::safetensors_file((f16 / "model.safetensors").string()).tensors()[0].dtype ==
          dtype::f16);
    const transformer h = load_model(f16.string());
    const tensor<float> c = h.forward(tokens.view());
    CHECK(max_abs_diff_4d(a, c) < 0.05);
    CHECK(max_abs_diff_4d(a, c) > 0);

    // Llama with attention_bias: q/k/v/o biases, all zero here, so the logits are unchanged.
    const fs::path biased = copy_fixture("llama_tiny", "attention_bias");
    replace_in_file(biased / "config.json", "\"attention_bias\": false", "\"attention_bias\": true");
    {
        const io::safetensors_file f((biased / "model.safetensors").string());
        std::map<std::string, tensor<float>> all;
        for (const auto& t : f.tensors())
            all.emplace(t.name, f.to_float(t.name));
        for (int l = 0; l < 2; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
            all.emplace(p + "q_proj.bias", tensor<float>({32}));
            all.emplace(p + "k_proj.bias", tensor<float>({16}));
            all.emplace(p + "v_proj.bias", tensor<float>({16}));
            all.emplace(p + "o_proj.bias", tensor<float>({32}));
        }
        std::map<std::string, tensor_view<const float>> views;
        for (const auto& [name, t] : all)
            views.emplace(name, t.view());
        io::save_safetensors((biased / "model.safetensors").string(), views);
    }
    const transformer with_bias = load_model(biased.string());
    CHECK(with_bias.config().qkv_bias);
    CHECK(with_bias.config().out_bias);
    const tensor<float> d = with_bias.forward(tokens.view());
    CHECK(max_abs_diff_4d(a, d) < 1e-6);
}

TEST_CASE("huggingface: missing tensors are listed in one error", "[huggingface][errors]") {
    const fs::path dir = copy_fixture("llama_tiny", "missing");
    rewrite_weights(dir,
                    {"model.layers.1.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"});
    CHECK_THAT(hf_load_error(dir), Contains("[actlens.model.401]") &&
                                    Contains("3 tensors are missing") &&
                                    Contains("model.layers.1.mlp.up_proj.weight") &&
                                    Contains("model.norm.weight") && Contains("lm_head.weight"));
    // Tied embeddings need no lm_head.
    replace_in_file(dir / "config.json", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    CHECK_THAT(hf_load_error(dir), Contains("2 tensors are missing") && !Contains("lm_head"));

    const fs::path gpt2 = copy_fixture("gpt2_tiny", "missing_gpt2");
    rewrite_weights(gpt2, {"h.0.attn.c_attn.bias"});
    CHECK_THAT(hf_load_error(gpt2),
               Contains("1 tensor is missing") && Contains("h.0.attn.c_attn.bias"));
}

TEST_CASE("huggingface: config.json problems name the file and the field",
          "[huggingface][errors]") {
    const fs::path dir = copy_fixture("llama_tiny", "config");
    const fs::path config = dir / "config.json";
    const std::string good = read_file(config);
    auto with = [&](const std::string& from, const std::string& to) {
        write_file(config, good);
        replace_in_file(config, from, to);
        return hf_load_error(dir);
    };
    CHECK_THAT(with("\"model_type\": \"llama\"", "\"model_type\": \"bert\""),
               Contains("[actlens.io.206]") && Contains("model_type 'bert'") &&
                   Contains("LlamaForCausalLM") && Contains("config.json"));
    CHECK_THAT(
        with("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}"),
        Contains("[actlens.model.401]") && Contains("rope_scaling.type 'dynamic'") && Contains("not supported"));
    CHECK_THAT(with("\"hidden_size\": 32", "\"hidden_size\": \"32\""),
               Contains("[actlens.model.401]") &&
                   Contains("'hidden_size' must be a positive integer") && Contains("\"32\""));
    CHECK_THAT(with("\"num_attention_heads\": 4", "\"num_attention_heads\": 0"),
               Contains("'num_attention_heads' must be a positive integer"));
    CHECK_THAT(with("\"num_attention_heads\": 4", "\"num_attention_heads\": -4"),
               Contains("'num_attention_heads' must be a positive integer"));
    CHECK_THAT(with("\"hidden_size\": 32", "\"hidden_size\": 30"),
               Contains("hidden_size = 30 is not a multiple of num_attention_heads = 4"));
    CHECK_THAT(with("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
               Contains("[actlens.model.401]") && Contains("not a multiple of n_kv_heads (3)") &&
                   !Contains("] [actlens"));
    CHECK_THAT(with("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1"),
               Contains("'rms_norm_eps' must be a positive"));
    CHECK_THAT(with("\"vocab_size\": 64", "\"vocab_sizes\": 64"),
               Contains("field 'vocab_size' is missing"));
    CHECK_THAT(with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""),
               Contains("hidden_act 'gelu'"));
    CHECK_THAT(with("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0"),
               Contains("'tie_word_embeddings' must be true or false"));
    CHECK_THAT(with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 99999999999"),
               Contains("at most 2^31"));
    CHECK_THAT(with("{", "["), Contains("[actlens.io.204]") && Contains("not valid JSON"));
    // Hostile values (fuzzing): nesting that would overflow the stack in nlohmann's dump() or
    // destructor is refused before parsing; a huge value is cut in the message.
    const std::string deep = std::string(24000, '[') + std::string(24000, ']');
    CHECK_THAT(with("\"architectures\": [", "\"architectures\": [" + deep + ","),
               Contains("[actlens.io.204]") && Contains("nests deeper than 128 levels") && Contains("config.json"));
    CHECK_THAT(with("\"rope_scaling\": null", "\"rope_scaling\": " + std::string(100, '[') + std::string(100, ']')),
               Contains("field 'rope_scaling' must be an object or null, got an array of 1 elements"));
    const std::string huge(1000000, 'x');
    for (const char* field : {"\"hidden_size\": 32", "\"hidden_act\": \"silu\"", "\"model_type\": \"llama\""}) {
        const std::string key = std::string(field).substr(0, std::string(field).find(':'));
        const std::string message = with(field, key + ": \"" + huge + "\"");
        INFO(key);
        CHECK_THAT(message, Contains("xxx") && Contains("... (1000000 bytes)"));
        CHECK(message.size() < 1000);
    }
    write_file(config, good);
    replace_in_file(config, "\"model_type\": \"llama\",", "");
    replace_in_file(config, "\"LlamaForCausalLM\"", "\"" + huge + "\", [[[1]]], 2, 3, 4, 5");
    const std::string architectures = hf_load_error(dir);
    CHECK_THAT(architectures, Contains("(architectures [\"xxx") && Contains("... (1000000 bytes), an array of 1 elements, 2, 3, ... (6 entries)]"));
    CHECK(architectures.size() < 1000);
    // Sizes that disagree with the tensors.
    CHECK_THAT(with("\"intermediate_size\": 48", "\"intermediate_size\": 64"),
               Contains("[actlens.model.401]") &&
                   Contains("tensor 'model.layers.0.mlp.gate_proj.weight' has shape [48, 32], but "
                            "config.json implies [64, 32]"));
    CHECK_THAT(with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
               Contains("tensors are missing") &&
                   Contains("model.layers.2.self_attn.q_proj.weight"));
    // model_type may be absent when architectures names the class.
    write_file(config, good);
    replace_in_file(config, "\"model_type\": \"llama\",", "");
    CHECK(load_model(dir.string()).config().family == "llama");
    replace_in_file(config, "\"LlamaForCausalLM\"", "\"T5ForConditionalGeneration\"");
    CHECK_THAT(hf_load_error(dir),
               Contains("model_type ''") && Contains("T5ForConditionalGeneration"));

    const fs::path g = copy_fixture("gpt2_tiny", "config_gpt2");
    replace_in_file(g / "config.json", "\"activation_function\": \"gelu_new\"",
         "\"activation_function\": \"relu\"");
    CHECK_THAT(hf_load_error(g),
               Contains("[actlens.model.401]") && Contains("activation_function 'relu'"));
    write_file(g / "config.json", read_file(hf_dir + "/gpt2_tiny/config.json"));
    replace_in_file(g / "config.json", "\"n_positions\": 32", "\"n_positions\": 16");
    CHECK_THAT(
        hf_load_error(g),
        Contains("tensor 'wpe.weight' has shape [32, 32], but config.json implies [16, 32]"));
}

TEST_CASE("huggingface: damaged directories, indexes and shards", "[huggingface][errors]") {
    // A directory without config.json is not a checkpoint.
    const fs::path empty = temp_root() / "no_config";
    fs::create_directories(empty);
    CHECK_THAT(hf_load_error(empty), Contains("[actlens.io.206]") && Contains("without config.json"));
    CHECK_THAT(error_of([&] { io::load_huggingface(empty.string()); }),
               Contains("[actlens.io.201]"));
    // config.json but no weights.
    const fs::path no_weights = temp_root() / "no_weights";
    fs::remove_all(no_weights);
    fs::create_directories(no_weights);
    fs::copy_file(hf_dir + "/llama_tiny/config.json", no_weights / "config.json");
    CHECK_THAT(hf_load_error(no_weights),
               Contains("[actlens.io.201]") &&
                   Contains("neither model.safetensors nor model.safetensors.index.json"));
    // A single weight file given instead of its directory.
    CHECK_THAT(hf_load_error(hf_dir + "/llama_tiny/model.safetensors"),
               Contains("[actlens.io.206]") && Contains("pass its directory"));

    const fs::path sharded = copy_fixture("llama_tiny_sharded", "shards");
    const fs::path index = sharded / "model.safetensors.index.json";
    const std::string good = read_file(index);
    fs::remove(sharded / "model-00002-of-00002.safetensors");
    CHECK_THAT(hf_load_error(sharded),
               Contains("[actlens.io.201]") && Contains("model-00002-of-00002.safetensors"));
    replace_in_file(index, "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
         "\"model.norm.weight\": \"../../etc/passwd\"");
    CHECK_THAT(hf_load_error(sharded), Contains("[actlens.io.204]") && Contains("'../../etc/passwd'"));
    fs::copy_file(hf_dir + "/llama_tiny_sharded/model-00002-of-00002.safetensors",
                  sharded / "model-00002-of-00002.safetensors");
    write_file(index, good);
    CHECK(load_model(sharded.string()).config().n_layers == 2);
    replace_in_file(index, "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"",
         "\"model.norm.weight\": \"model-00001-of-00002.safetensors\"");
    CHECK_THAT(hf_load_error(sharded), Contains("[actlens.io.204]") &&
                                        Contains("puts 'model.norm.weight' in") &&
                                        Contains("which has no such tensor"));
    write_file(index, "{\"weight_map\": [1, 2]}");
    CHECK_THAT(hf_load_error(sharded), Contains("'weight_map' must be an object"));
    write_file(index, "{\"weight_map\": ");
    CHECK_THAT(hf_load_error(sharded), Contains("[actlens.io.204]") && Contains("not valid JSON"));

    // A damaged shard: its error names the shard file.
    const fs::path damaged = copy_fixture("llama_tiny", "damaged");
    fs::resize_file(damaged / "model.safetensors", 1000);
    CHECK_THAT(hf_load_error(damaged), Contains("[actlens.io.202]") && Contains("model.safetensors"));
    // Integer weights are not converted.
    const fs::path ints = copy_fixture("llama_tiny", "int_weights");
    {
        const io::safetensors_file f((ints / "model.safetensors").string());
        CHECK(f.info("model.norm.weight").dtype == dtype::f32);
    }
    std::string bytes = read_file(ints / "model.safetensors");
    const std::size_t at = bytes.find("\"model.norm.weight\":{\"dtype\":\"F32\"");
    REQUIRE(at != std::string::npos);
    bytes.replace(bytes.find("F32", at), 3, "I32");
    write_file(ints / "model.safetensors", bytes);
    CHECK_THAT(hf_load_error(ints),
               Contains("[actlens.io.206]") && Contains("'model.norm.weight'") && Contains("I32"));
}
