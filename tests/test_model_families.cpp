// Tests of the model families that are options of the one transformer (model/config.hpp): Llama 3.1's
// RoPE scaling (llama3 and linear), Qwen2.5 (q/k/v biases, untied), Qwen3 (per-head q/k RMSNorm) and
// GPT-NeoX / Pythia (parallel residual, partial rotary, exact GELU) and
// Gemma 2 (scaled embeddings, post norms, GeGLU, query_pre_attn_scalar, soft caps, sliding window),
// loaded from Hugging Face directories and from GGUF files, against the float64 PyTorch forward of
// tests/fixtures/families/make_family_fixtures.py (written from the published equations).
//
// The fast patching plan, the backward's finite differences, KV-cache generation and the ragged
// forward run on these families through tiny::all() (tests/tiny_models.hpp: llama3, qwen3, pythia, gemma2) in
// their own test files; here: parity with the reference, GGUF = HF, KV-cache decoding = the full
// forward of the loaded checkpoints, and bad input.
//
// Tolerance: 1e-4 max abs against the float64 reference (as tests/test_io_huggingface.cpp); GGUF
// and HF forms of one model agree to 1e-5 (the same f32 weights; GGUF stores eps and rope_freqs in
// f32).
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "paths.hpp"
#include "tiny_models.hpp"

#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
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

const std::string families_dir = actlens::test_paths::fixture("families");

tensor<std::int32_t> reference_prompt(const io::safetensors_file& ref) {
    const io::safetensors_tensor_info& t = ref.info("tokens");
    REQUIRE(t.shape == std::vector<std::size_t>{2, 7});
    tensor<std::int32_t> tokens({2, 7});
    std::memcpy(tokens.data(), ref.data(t), t.bytes());
    return tokens;
}

/// Runs `model` on the reference tokens: the logits and every activation the reference recorded must
/// match. Returns the number of hook points compared.
std::size_t check_against_family_reference(const transformer& model, const std::string& reference_name) {
    INFO(reference_name);
    const io::safetensors_file ref(families_dir + "/" + reference_name);
    const tensor<std::int32_t> tokens = reference_prompt(ref);
    const auto [logits, cache] = model.run_with_cache(tokens.view(), "*");
    CHECK(max_abs_diff(logits, ref.to_float("logits")) < 1e-4);
    std::size_t hooks = 0;
    for (const io::safetensors_tensor_info& t : ref.tensors()) {
        if (t.name == "tokens" || t.name == "logits") continue;
        INFO("hook " << t.name);
        REQUIRE(cache.contains(t.name));
        CHECK(max_abs_diff(cache.at(t.name), ref.to_float(t.name)) < 1e-4);
        ++hooks;
    }
    return hooks;
}

/// Every hook point of the model but attn.hook_attn_scores (masked with -inf; the pattern covers it).
std::size_t hook_points_but_scores(const transformer& model) {
    const auto points = model.hook_points();
    return std::size_t(std::count_if(points.begin(), points.end(),
                                     [](const hook_point& p) { return p.site != site::attn_scores; }));
}

/// Token by token through a KV cache: the logits of each step equal the full forward's row.
void check_kv_cache_decoding(const transformer& model) {
    const std::vector<std::int32_t> tokens{5, 17, 3, 42, 63, 0, 28, 9};
    const tensor<float> full = model.forward(tokens);
    workspace<float> ws;
    auto cache = model.make_kv_cache(1, tokens.size());
    run_options<float> o;
    o.cache = &cache;
    double worst = 0;
    const std::size_t V = model.config().vocab_size;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        const tensor_view<const float> step = model.forward_into(ws, tensor_view<const std::int32_t>(&tokens[t], {1, 1}), o);
        for (std::size_t v = 0; v < V; ++v) worst = std::max(worst, std::fabs(double(step.data()[v]) - full(0, t, v)));
    }
    CHECK(worst < 1e-5);
}

fs::path temp_copy(const std::string& fixture, const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / "actlens_test_families" / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(families_dir + "/" + fixture))
        fs::copy_file(entry.path(), dir / entry.path().filename());
    return dir;
}

/// A copy of a fixture checkpoint whose config.json is rewritten from the original text with one
/// replacement at a time.
class edited_checkpoint {
public:
    edited_checkpoint(const std::string& fixture, const std::string& name) : m_dir(temp_copy(fixture, name)) {
        std::ifstream in(m_dir / "config.json");
        m_good.assign((std::istreambuf_iterator<char>(in)), {});
    }
    /// The checkpoint loaded with `from` replaced by `to` in config.json.
    transformer load_with(const std::string& from, const std::string& to) const {
        std::ofstream(m_dir / "config.json") << m_good;
        replace_in_file(m_dir / "config.json", from, to);
        return io::load_huggingface(m_dir.string());
    }
    /// The error message of load_with.
    std::string error_with(const std::string& from, const std::string& to) const {
        return error_of([&] { load_with(from, to); });
    }

private:
    fs::path m_dir;
    std::string m_good;
};

/// The fixture GGUF `name` rewritten with metadata `set` (added or replaced) and without tensor `drop`.
std::string rewritten_gguf(const std::string& name, const std::map<std::string, io::gguf_value>& set,
                           const std::string& drop = "") {
    const io::gguf_file f(families_dir + "/" + name);
    io::gguf_writer w;
    for (const auto& [key, value] : f.metadata())
        if (!set.count(key)) w.set(key, value);
    for (const auto& [key, value] : set) w.set(key, value);
    for (const io::gguf_tensor_info& t : f.tensors())
        if (t.name != drop) w.add_tensor(t.name, f.to_float(t.name).view());
    const fs::path dir = fs::temp_directory_path() / "actlens_test_families";
    fs::create_directories(dir);
    const std::string path = (dir / ("rewritten_" + name)).string();
    w.write(path);
    return path;
}

} // namespace

TEST_CASE("families: Llama 3.1 rope_scaling (llama3, linear) matches the PyTorch reference, from HF and GGUF",
          "[model][families][huggingface][gguf]") {
    const transformer hf = io::load_huggingface(families_dir + "/llama3_tiny");
    const model_config& c = hf.config();
    REQUIRE(c.rope_freq_divisors.size() == c.d_head / 2);
    // Original context 64, factor 8, low 1, high 4: pair 0 (wavelength 6.3) keeps its frequency, pair 1
    // (32.6) is blended, pairs 2.. (>= 169) are slowed 8 times.
    CHECK(c.rope_freq_divisors[0] == 1.0);
    CHECK(c.rope_freq_divisors[1] > 1.0);
    CHECK(c.rope_freq_divisors[1] < 8.0);
    CHECK(c.rope_freq_divisors[2] == 8.0);
    CHECK(check_against_family_reference(hf, "llama3_tiny_reference.safetensors") == hook_points_but_scores(hf));
    check_kv_cache_decoding(hf);

    // llama.cpp's form: q/k rows permuted to adjacent pairs, the scaling as rope_freqs.weight.
    const transformer gguf = load_model(families_dir + "/llama3_tiny.gguf");
    CHECK(gguf.config().rope == kernels::rope_style::adjacent);
    for (std::size_t j = 0; j < c.d_head / 2; ++j)
        CHECK(gguf.config().rope_freq_divisors[j] == Approx(c.rope_freq_divisors[j]).epsilon(1e-6));
    const tensor<std::int32_t> tokens =
        reference_prompt(io::safetensors_file(families_dir + "/llama3_tiny_reference.safetensors"));
    CHECK(max_abs_diff(gguf.forward(tokens.view()), hf.forward(tokens.view())) < 1e-5);

    // The same weights with linear scaling (position interpolation by 4).
    const fs::path linear = temp_copy("llama3_tiny", "linear");
    replace_in_file(linear / "config.json", "\"rope_type\": \"llama3\"", "\"rope_type\": \"linear\"");
    replace_in_file(linear / "config.json", "\"factor\": 8.0", "\"factor\": 4.0");
    const transformer lin = io::load_huggingface(linear.string());
    CHECK(lin.config().rope_freq_divisors == std::vector<double>(c.d_head / 2, 4.0));
    CHECK(check_against_family_reference(lin, "llama_linear_reference.safetensors") == hook_points_but_scores(lin));
    // ... and as GGUF's rope.scaling.type "linear" (without the rope_freqs tensor).
    const transformer lin_gguf = load_model(rewritten_gguf(
        "llama3_tiny.gguf",
        {{"llama.rope.scaling.type", io::gguf_value::string("linear")},
         {"llama.rope.scaling.factor", io::gguf_value::f32(4.0f)}},
        "rope_freqs.weight"));
    CHECK(max_abs_diff(lin_gguf.forward(tokens.view()), lin.forward(tokens.view())) < 1e-5);
}

TEST_CASE("families: Qwen2.5 (q/k/v biases, untied) matches the PyTorch reference, from HF and GGUF",
          "[model][families][huggingface][gguf]") {
    const transformer hf = io::load_huggingface(families_dir + "/qwen2_5_tiny");
    CHECK(hf.config().qkv_bias);
    CHECK_FALSE(hf.config().tied_embeddings);
    CHECK(hf.weights().unembedding.data() != hf.weights().token_embedding.data());
    CHECK(check_against_family_reference(hf, "qwen2_5_tiny_reference.safetensors") == hook_points_but_scores(hf));
    check_kv_cache_decoding(hf);
    const transformer gguf = load_model(families_dir + "/qwen2_5_tiny.gguf");
    CHECK(gguf.config().family == "qwen2");
    CHECK(gguf.config().rope == kernels::rope_style::half_split);
    const tensor<std::int32_t> tokens =
        reference_prompt(io::safetensors_file(families_dir + "/qwen2_5_tiny_reference.safetensors"));
    CHECK(max_abs_diff(gguf.forward(tokens.view()), hf.forward(tokens.view())) < 1e-5);
}

TEST_CASE("families: Qwen3 (per-head q/k RMSNorm) matches the PyTorch reference, from HF and GGUF",
          "[model][families][huggingface][gguf]") {
    const transformer hf = io::load_huggingface(families_dir + "/qwen3_tiny");
    CHECK(hf.config().qk_norm);
    CHECK_FALSE(hf.config().qkv_bias);
    CHECK(hf.config().d_head == 16); // head_dim, not hidden_size / heads = 8
    CHECK(hf.config().tied_embeddings);
    CHECK(check_against_family_reference(hf, "qwen3_tiny_reference.safetensors") == hook_points_but_scores(hf));
    check_kv_cache_decoding(hf);
    const transformer gguf = load_model(families_dir + "/qwen3_tiny.gguf");
    CHECK(gguf.config().qk_norm);
    const tensor<std::int32_t> tokens =
        reference_prompt(io::safetensors_file(families_dir + "/qwen3_tiny_reference.safetensors"));
    CHECK(max_abs_diff(gguf.forward(tokens.view()), hf.forward(tokens.view())) < 1e-5);
}

TEST_CASE("families: GPT-NeoX / Pythia (parallel residual, partial rotary, exact GELU) matches the PyTorch reference, "
          "from HF and GGUF",
          "[model][families][huggingface][gguf]") {
    const transformer hf = io::load_huggingface(families_dir + "/pythia_tiny");
    const model_config& c = hf.config();
    CHECK(c.parallel_residual);
    CHECK(c.rotary_dims == 4);
    CHECK(c.d_head == 8);
    CHECK(c.mlp == mlp_kind::gelu_erf);
    CHECK(c.norm == norm_kind::layer_norm);
    CHECK_FALSE(c.tied_embeddings);
    CHECK(check_against_family_reference(hf, "pythia_tiny_reference.safetensors") == hook_points_but_scores(hf));
    check_kv_cache_decoding(hf);
    // llama.cpp's form: architecture gptneox, q/k/v rows regrouped into all q, all k, all v.
    const transformer gguf = load_model(families_dir + "/pythia_tiny.gguf");
    CHECK(gguf.config().family == "gptneox");
    CHECK(gguf.config().rotary_dims == 4);
    CHECK(gguf.config().parallel_residual);
    CHECK(gguf.config().mlp == mlp_kind::gelu_erf);
    const tensor<std::int32_t> tokens =
        reference_prompt(io::safetensors_file(families_dir + "/pythia_tiny_reference.safetensors"));
    CHECK(max_abs_diff(gguf.forward(tokens.view()), hf.forward(tokens.view())) < 1e-5);
    // Without the parallel residual the GGUF runs the sequential block (and so differs from HF's).
    const transformer sequential = load_model(
        rewritten_gguf("pythia_tiny.gguf", {{"gptneox.use_parallel_residual", io::gguf_value::boolean(false)}}));
    CHECK_FALSE(sequential.config().parallel_residual);
    CHECK(max_abs_diff(sequential.forward(tokens.view()), hf.forward(tokens.view())) > 1e-3);
    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("pythia_tiny.gguf",
                                             {{"gptneox.rope.dimension_count", io::gguf_value::u32(3)}}));
               }),
               Contains("[actlens.model.401]") && Contains("gptneox.rope.dimension_count = 3"));
    CHECK_THAT(error_of([&] { load_model(rewritten_gguf("pythia_tiny.gguf", {}, "blk.0.attn_qkv.bias")); }),
               Contains("blk.0.attn_qkv.bias") && Contains("missing"));
    // A parallel residual has no hook_resid_mid: asking for it is an error naming why.
    CHECK_THAT(error_of([&] { hf.run_with_cache(std::vector<std::int32_t>{1, 2}, "blocks.0.hook_resid_mid"); }),
               Contains("[actlens.model.402]"));
    hook_set<float> hooks;
    hooks.add(hook_point{site::resid_mid, 0}, [](tensor_view<float>, const hook_context&) {});
    run_options<float> o;
    o.hooks = &hooks;
    CHECK_THAT(error_of([&] { hf.forward(std::vector<std::int32_t>{1, 2}, o); }),
               Contains("[actlens.model.402]") && Contains("blocks.0.hook_resid_mid") && Contains("parallel residual"));

    const edited_checkpoint bad("pythia_tiny", "bad_pythia");
    auto with = [&](const std::string& from, const std::string& to) { return bad.error_with(from, to); };
    CHECK_THAT(with("\"rotary_pct\": 0.5", "\"rotary_pct\": 0.1"),
               Contains("[actlens.model.401]") && Contains("config.json") && Contains("rotary_pct = 0.1 rotates 0"));
    CHECK_THAT(with("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\""),
               Contains("config.json") && Contains("hidden_act 'relu'"));
    CHECK_THAT(with("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
               Contains("hidden_size = 32 is not a multiple of num_attention_heads = 5"));
}

TEST_CASE("families: Gemma 2 (post norms, GeGLU, soft caps, sliding window) matches the PyTorch reference, from HF "
          "and GGUF",
          "[model][families][huggingface][gguf]") {
    const transformer hf = io::load_huggingface(families_dir + "/gemma2_tiny");
    const model_config& c = hf.config();
    CHECK(c.family == "gemma2");
    CHECK(c.mlp == mlp_kind::geglu);
    CHECK((c.post_norms && c.scale_embeddings && c.tied_embeddings));
    CHECK(c.d_head == 16);
    CHECK(c.query_pre_attn_scalar == 24.0);
    CHECK(c.attn_logit_softcap == 1.5);
    CHECK(c.final_logit_softcap == 3.0);
    CHECK(c.sliding_window == 4);
    CHECK(c.window(0) == 4);
    CHECK(c.window(1) == 0);
    // The reference covers both post norms (ln1_post, ln2_post) and a window shorter than its 7 tokens.
    CHECK(check_against_family_reference(hf, "gemma2_tiny_reference.safetensors") == hook_points_but_scores(hf));
    // 8 tokens through the cache: past the window of layer 0.
    check_kv_cache_decoding(hf);
    // Soft capping bounds the logits by the cap.
    const tensor<std::int32_t> tokens =
        reference_prompt(io::safetensors_file(families_dir + "/gemma2_tiny_reference.safetensors"));
    const tensor<float> logits = hf.forward(tokens.view());
    CHECK(*std::max_element(logits.begin(), logits.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); })
          < 3.0f);

    // llama.cpp's form: the same tensors, norm gains with the 1 added, caps and window as metadata.
    const transformer gguf = load_model(families_dir + "/gemma2_tiny.gguf");
    CHECK(gguf.config().family == "gemma2");
    CHECK(gguf.config().sliding_window == 4);
    CHECK(gguf.config().query_pre_attn_scalar == 16.0); // llama.cpp's rule: the head size (below 46 layers)
    // GGUF does not store query_pre_attn_scalar: with HF's set to the head size the two agree.
    const transformer same_scale = edited_checkpoint("gemma2_tiny", "gemma2_head_scale")
                                       .load_with("\"query_pre_attn_scalar\": 24", "\"query_pre_attn_scalar\": 16");
    CHECK(max_abs_diff(gguf.forward(tokens.view()), same_scale.forward(tokens.view())) < 1e-5);
}

TEST_CASE("families: bad Gemma 2 soft caps, windows and layer types name the file and field",
          "[model][families][huggingface][gguf][errors]") {
    const edited_checkpoint bad("gemma2_tiny", "bad_gemma2");
    auto with = [&](const std::string& from, const std::string& to) { return bad.error_with(from, to); };
    CHECK_THAT(with("\"sliding_window\": 4", "\"sliding_window\": 0"),
               Contains("[actlens.model.401]") && Contains("config.json") && Contains("'sliding_window'"));
    CHECK_THAT(with("\"attn_logit_softcapping\": 1.5", "\"attn_logit_softcapping\": -1"),
               Contains("[actlens.model.401]") && Contains("'attn_logit_softcapping' must be a positive number"));
    CHECK_THAT(with("\"final_logit_softcapping\": 3.0", "\"final_logit_softcapping\": 0"),
               Contains("'final_logit_softcapping' must be a positive number"));
    CHECK_THAT(with("\"query_pre_attn_scalar\": 24", "\"query_pre_attn_scalar\": 0"),
               Contains("'query_pre_attn_scalar' must be a positive number"));
    CHECK_THAT(with("\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"silu\""),
               Contains("hidden_activation 'silu' is not supported"));
    CHECK_THAT(with("\"sliding_window\": 4", "\"sliding_window\": 4, \"layer_types\": [\"full_attention\", "
                                              "\"sliding_attention\"]"),
               Contains("layer_types[0] is \"full_attention\"") && Contains("layer 0 is 'sliding_attention'"));
    // A null cap turns it off, as Gemma2Config allows.
    CHECK(bad.load_with("\"final_logit_softcapping\": 3.0", "\"final_logit_softcapping\": null")
              .config()
              .final_logit_softcap == 0.0);

    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("gemma2_tiny.gguf",
                                             {{"gemma2.attention.sliding_window", io::gguf_value::u32(0)}}));
               }),
               Contains("[actlens.model.401]") && Contains(".gguf") && Contains("gemma2.attention.sliding_window"));
    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("gemma2_tiny.gguf",
                                             {{"gemma2.attn_logit_softcapping", io::gguf_value::f32(-2.0f)}}));
               }),
               Contains("[actlens.model.401]") && Contains("'gemma2.attn_logit_softcapping' = -2"));
    CHECK_THAT(error_of([&] { load_model(rewritten_gguf("gemma2_tiny.gguf", {}, "blk.1.post_ffw_norm.weight")); }),
               Contains("[actlens.model.401]") && Contains("blk.1.post_ffw_norm.weight") && Contains("missing"));

    // The config itself refuses what no loader would make.
    model_config negative_cap = tiny::gemma2();
    negative_cap.attn_logit_softcap = -1;
    CHECK_THAT(error_of([&] { negative_cap.validate(); }), Contains("attn_logit_softcap must be a positive number"));
}

TEST_CASE("families: bad rope_scaling, head counts and missing q/k norms name the file and field",
          "[model][families][huggingface][gguf][errors]") {
    const edited_checkpoint bad("llama3_tiny", "bad_config");
    auto with = [&](const std::string& from, const std::string& to) { return bad.error_with(from, to); };
    for (const char* type : {"yarn", "dynamic", "longrope", "su"}) {
        INFO(type);
        CHECK_THAT(with("\"rope_type\": \"llama3\"", std::string("\"rope_type\": \"") + type + "\""),
                   Contains("[actlens.model.401]") && Contains("config.json") && Contains("rope_scaling.rope_type") &&
                       Contains(std::string("'") + type + "'") && Contains("not supported"));
    }
    // The older spelling "type" is named as such.
    CHECK_THAT(with("\"rope_type\": \"llama3\"", "\"type\": \"yarn\""), Contains("rope_scaling.type 'yarn'"));
    CHECK_THAT(with("\"factor\": 8.0,", ""), Contains("config.json") && Contains("'rope_scaling.factor' is missing"));
    CHECK_THAT(with("\"original_max_position_embeddings\": 64", "\"original_max_position_embeddings\": -1"),
               Contains("'rope_scaling.original_max_position_embeddings' must be a positive integer"));
    CHECK_THAT(with("\"high_freq_factor\": 4.0", "\"high_freq_factor\": 0.5"),
               Contains("rope_scaling.high_freq_factor (0.5) must be larger than rope_scaling.low_freq_factor (1)"));
    CHECK_THAT(with("\"rope_scaling\": {", "\"rope_scaling\": \"llama3\", \"unused\": {"),
               Contains("field 'rope_scaling' must be an object or null, got \"llama3\""));
    CHECK_THAT(with("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
               Contains("[actlens.model.401]") && Contains("config.json") && Contains("n_kv_heads (3)"));
    // A plain rope_scaling "default" is plain RoPE.
    CHECK(bad.load_with("\"rope_type\": \"llama3\"", "\"rope_type\": \"default\"").config().rope_freq_divisors.empty());

    // Qwen3 without its q_norm weights.
    const fs::path qwen3 = temp_copy("qwen3_tiny", "no_q_norm");
    {
        std::map<std::string, tensor<float>> kept;
        const io::safetensors_file f((qwen3 / "model.safetensors").string());
        for (const auto& t : f.tensors())
            if (t.name != "model.layers.1.self_attn.q_norm.weight") kept.emplace(t.name, f.to_float(t.name));
        std::map<std::string, tensor_view<const float>> views;
        for (const auto& [name, t] : kept) views.emplace(name, t.view());
        io::save_safetensors((qwen3 / "rewritten.safetensors").string(), views);
    }
    fs::rename(qwen3 / "rewritten.safetensors", qwen3 / "model.safetensors");
    CHECK_THAT(error_of([&] { io::load_huggingface(qwen3.string()); }),
               Contains("[actlens.model.401]") && Contains("model.layers.1.self_attn.q_norm.weight") &&
                   Contains("missing"));

    // GGUF: a scaling type llama.cpp has but actlens does not run, a missing q/k norm, inconsistent
    // head counts (a rope_freqs tensor of the wrong size: tests/test_io_gguf.cpp).
    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("llama3_tiny.gguf",
                                             {{"llama.rope.scaling.type", io::gguf_value::string("yarn")}}));
               }),
               Contains("[actlens.io.206]") && Contains("llama.rope.scaling.type = 'yarn'") && Contains(".gguf"));
    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("qwen3_tiny.gguf", {}, "blk.1.attn_k_norm.weight"));
               }),
               Contains("[actlens.model.401]") && Contains("blk.1.attn_k_norm.weight") && Contains("missing"));
    CHECK_THAT(error_of([&] {
                   load_model(rewritten_gguf("qwen3_tiny.gguf",
                                             {{"qwen3.attention.head_count_kv", io::gguf_value::u32(3)}}));
               }),
               Contains("[actlens.model.401]") && Contains(".gguf") && Contains("n_kv_heads (3)"));
}
