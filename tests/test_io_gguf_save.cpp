// Tests of io/gguf_save.hpp against GGUF files written by other implementations:
// - stories260K_f16.gguf / stories260K_q8_0.gguf, written by llama.cpp's own gguf-py from the llama2.c
//   checkpoint and tok512.bin (tests/fixtures/gguf/make_gguf_fixtures.py): save_gguf of the same
//   model and vocabulary must produce the same tensors byte for byte (F16 rounding, Q8_0 blocks, the
//   F16 fallback of ffn_down) and the same vocabulary and hyperparameters;
// - the families' GGUFs written by tests/fixtures/families/make_family_fixtures.py (llama.cpp's
//   converter rules: q/k rows permuted for "llama", rope_freqs for Llama 3): save_gguf of the HF
//   models must hold the same F32 tensors, and load back with the HF model's logits.
#include "paths.hpp"
#include "test_files.hpp"
#include "test_helpers.hpp"

#include <actlens/core/dtype.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/io/huggingface.hpp>
#include <actlens/model/load.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/tokenizer/llama2c.hpp>
#include <actlens/tokenizer/load.hpp>

#include "tiny_models.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;

namespace {

fs::path save_dir() {
    const fs::path dir = fs::temp_directory_path() / "actlens_test_gguf_save";
    fs::create_directories(dir);
    return dir;
}

/// Every tensor of `reference` is in `ours` with the same type, ne and bytes (all but `except`,
/// which are compared as floats within `tolerance`); both have the same set of tensors.
void check_same_tensors(const io::gguf_file& ours, const io::gguf_file& reference, const std::string& except = "",
                        double tolerance = 0.0) {
    CHECK(ours.tensors().size() == reference.tensors().size());
    for (const io::gguf_tensor_info& r : reference.tensors()) {
        INFO("tensor " << r.name);
        const io::gguf_tensor_info* o = ours.find_tensor(r.name);
        REQUIRE(o != nullptr);
        CHECK(o->ne == r.ne);
        if (r.name == except) {
            const tensor<float> a = ours.to_float(r.name), b = reference.to_float(r.name);
            CHECK(max_abs_diff(a, b) <= tolerance);
            continue;
        }
        CHECK(io::ggml_traits(o->type).name == std::string(io::ggml_traits(r.type).name));
        REQUIRE(o->bytes == r.bytes);
        CHECK(std::memcmp(ours.data(*o), reference.data(r), r.bytes) == 0);
    }
}

/// The keys of `reference` have the same values in `ours` (all but those in `skipped`).
void check_same_metadata(const io::gguf_file& ours, const io::gguf_file& reference,
                         const std::vector<std::string>& skipped = {}) {
    for (const auto& [key, value] : reference.metadata()) {
        if (std::find(skipped.begin(), skipped.end(), key) != skipped.end()) continue;
        INFO("key " << key);
        const io::gguf_value* mine = ours.find(key);
        REQUIRE(mine != nullptr);
        CHECK(*mine == value);
    }
}

} // namespace

TEST_CASE("save_gguf: stories260K as F16 and Q8_0 equals llama.cpp's gguf-py conversion byte for byte",
          "[gguf][save]") {
    const transformer model = load_model(test_paths::model("stories260K.bin"));
    const llama2c_tokenizer vocab = llama2c_tokenizer::load(test_paths::model("tok512.bin"), 512);
    for (const auto& [dtype, fixture] : {std::pair{io::ggml_type::f16, "stories260K_f16.gguf"},
                                         std::pair{io::ggml_type::q8_0, "stories260K_q8_0.gguf"}}) {
        INFO(fixture);
        io::gguf_save_options o;
        o.dtype = dtype;
        o.vocabulary = &vocab;
        o.name = "stories260K";
        const std::string path = (save_dir() / fixture).string();
        io::save_gguf(model, path, o);
        const io::gguf_file ours(path), reference(test_paths::fixture(std::string("gguf/") + fixture));
        check_same_tensors(ours, reference);
        check_same_metadata(ours, reference);
        // What we add beyond gguf-py's file: the declared value and key lengths only when they differ
        // from d / heads, which they do not here; so the key sets are equal.
        CHECK(ours.metadata().size() == reference.metadata().size());
        // And it runs as the llama2.c model with its weights rounded as stored.
        const transformer back = load_model(path), rounded = load_model(reference.path());
        const std::vector<std::int32_t> prompt = vocab.encode("Once upon a time, Sue", true);
        CHECK(max_abs_diff(back.forward(prompt), rounded.forward(prompt)) == 0.0);
        CHECK(load_tokenizer(path, 512).encode("Once upon a time, Sue") == prompt);
    }
}

TEST_CASE("save_gguf: HF Llama 3 / Qwen2.5 / Qwen3 give the converter's tensors and the HF logits",
          "[gguf][save][families]") {
    for (const char* name : {"llama3_tiny", "qwen2_5_tiny", "qwen3_tiny"}) {
        INFO(name);
        const transformer hf = io::load_huggingface(test_paths::fixture(std::string("families/") + name));
        const std::string path = (save_dir() / (std::string(name) + ".gguf")).string();
        io::save_gguf(hf, path, io::ggml_type::f32);
        const io::gguf_file ours(path), reference(test_paths::fixture(std::string("families/") + name + ".gguf"));
        CHECK(ours.get_string("general.architecture") == reference.get_string("general.architecture"));
        // llama.cpp's converter computes the Llama 3 RoPE factors in float32, we round our doubles once.
        check_same_tensors(ours, reference, "rope_freqs.weight", 1e-6);
        // The converter always states the head size; we do where it differs from d / heads (Qwen3).
        const std::string arch = reference.get_string("general.architecture");
        check_same_metadata(ours, reference, {arch + ".attention.key_length", arch + ".attention.value_length"});
        const transformer back = load_model(path);
        const std::vector<std::int32_t> tokens = tiny::tokens(12, hf.config().vocab_size);
        CHECK(max_abs_diff(back.forward(tokens), hf.forward(tokens)) < 1e-5);
    }
}

TEST_CASE("save_gguf: BF16 weights are the bf16 rounding of the model's, adjacent-pair models keep their rows",
          "[gguf][save]") {
    // llama_variant: adjacent-pair RoPE, q/k/v biases, tied embeddings -> "llama" with biases, rows as they are.
    const transformer m = make_random_transformer(tiny::llama_variant(), 7);
    const std::string path = (save_dir() / "variant_bf16.gguf").string();
    io::save_gguf(m, path, io::ggml_type::bf16);
    const io::gguf_file f(path);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_uint("general.file_type") == 32);
    CHECK(f.find_tensor("output.weight") == nullptr); // tied
    const io::gguf_tensor_info& q = f.tensor_info("blk.1.attn_q.weight");
    CHECK(std::string(io::ggml_traits(q.type).name) == "BF16");
    const tensor<float> stored = f.to_float("blk.1.attn_q.weight");
    const tensor_view<const float> original = m.weights().layers[1].w_q;
    REQUIRE(stored.size() == original.size());
    std::size_t exact = 0;
    for (std::size_t i = 0; i < stored.size(); ++i)
        exact += stored.data()[i] == bf16_to_f32(f32_to_bf16(original.data()[i]));
    CHECK(exact == stored.size());
    CHECK(f.to_float("blk.0.attn_k.bias").size() == m.weights().layers[0].b_k.size());
    CHECK(std::string(io::ggml_traits(f.tensor_info("blk.0.attn_k.bias").type).name) == "F32");
    const transformer back = load_model(path);
    CHECK(back.config().rope == kernels::rope_style::adjacent);
    CHECK(back.config().qkv_bias);
}

TEST_CASE("save_gguf: models and arguments without a GGUF form give actlens::error", "[gguf][save][errors]") {
    const std::string path = (save_dir() / "refused.gguf").string();
    const transformer gpt2 = make_random_transformer(tiny::gpt2(), 1);
    CHECK_THAT(error_of([&] { io::save_gguf(gpt2, path); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("LayerNorm") && Catch::Contains("gpt2"));
    const transformer pythia = make_random_transformer(tiny::pythia(), 1);
    CHECK_THAT(error_of([&] { io::save_gguf(pythia, path); }), Catch::Contains("[actlens.arg.101]"));
    const transformer gemma2 = make_random_transformer(tiny::gemma2(), 1);
    CHECK_THAT(error_of([&] { io::save_gguf(gemma2, path); }), Catch::Contains("[actlens.arg.101]"));
    const transformer llama = make_random_transformer(tiny::llama(), 1);
    CHECK_THAT(error_of([&] { io::save_gguf(llama, path, io::ggml_type::q4_1); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("Q4_1"));
    const llama2c_tokenizer vocab = llama2c_tokenizer::load(test_paths::model("tok512.bin"), 512);
    io::gguf_save_options o;
    o.vocabulary = &vocab;
    CHECK_THAT(error_of([&] { io::save_gguf(llama, path, o); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("512 tokens") && Catch::Contains("60"));
    CHECK_THAT(error_of([&] { io::save_gguf(llama, "/nonexistent/dir/x.gguf"); }), Catch::Contains("[actlens.io.201]"));
    CHECK_FALSE(fs::exists(path));
}

TEST_CASE("gguf_writer: Q8_0 needs rows of whole blocks and finite values", "[gguf][save][errors]") {
    tensor<float> rows({2, 40});
    io::gguf_writer w;
    CHECK_THAT(error_of([&] { w.add_tensor("x", rows.view(), io::ggml_type::q8_0); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("length 40"));
    tensor<float> bad({1, 32});
    bad.data()[5] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THAT(error_of([&] { w.add_tensor("y", bad.view(), io::ggml_type::q8_0); }),
               Catch::Contains("[actlens.arg.101]") && Catch::Contains("element 5"));
}

TEST_CASE("save_gguf Q4_K and Q6_K: every weight within half its sub-block's step, loaded in place in the format",
          "[gguf][save][rows]") {
    // Rows of 256 and 512 values: whole super-blocks everywhere.
    model_config c = model_config::llama(2, 256, 4, 2, 512, 48, 32, kernels::rope_style::adjacent);
    c.tied_embeddings = true;
    const transformer source = make_random_transformer(c, 9);
    for (io::ggml_type type : {io::ggml_type::q4_k, io::ggml_type::q6_k}) {
        const bool q4 = type == io::ggml_type::q4_k;
        INFO((q4 ? "Q4_K" : "Q6_K"));
        const std::string path =
            (temp_folder("actlens_test_gguf_save") / (q4 ? "k_q4.gguf" : "k_q6.gguf")).string();
        io::save_gguf(source, path, type);
        io::gguf_load_options options;
        options.weights = io::gguf_weights::mapped;
        const transformer loaded = io::load_gguf(path, options);
        const auto format = q4 ? kernels::weight_format::q4_k : kernels::weight_format::q6_k;
        auto check = [&](const weight_tensor<float>& original, const weight_tensor<float>& stored) {
            REQUIRE(stored.format() == format);
            const tensor<float> x = tensor<float>::copy_of(original.view()), decoded = tensor<float>::copy_of(stored.view());
            const auto* bytes = static_cast<const unsigned char*>(stored.raw());
            double worst = 0;
            for (std::size_t i = 0; i < x.size(); ++i) {
                // The step of value i's sub-block, from its block's bytes (kernels/weight_format.hpp).
                const unsigned char* b = bytes + i / 256 * (q4 ? 144 : 210);
                const std::size_t v = i % 256;
                double step;
                if (q4) {
                    int sc = 0, m = 0;
                    kernels::detail::q4_k_scale_min(v / 32, b + 4, sc, m);
                    step = double(kernels::detail::f16_at(b)) * sc;
                } else {
                    step = double(kernels::detail::f16_at(b + 208)) * static_cast<std::int8_t>(b[192 + v / 16]);
                }
                // Half a step (the nearest grid point; the grids cover their sub-blocks), plus the
                // decoding's one rounding (2^-24 relative) and slack for the quantiser's rounding
                // near a midpoint (1e-6 of the step).
                const double bound = 0.5 * step * (1 + 1e-6) + std::ldexp(std::abs(decoded.data()[i]), -23);
                worst = std::max(worst, std::abs(double(x.data()[i]) - decoded.data()[i]) / std::max(bound, 1e-30));
            }
            CHECK(worst <= 1.0);
        };
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const layer_weights<float>&a = source.weights().layers[l], &b = loaded.weights().layers[l];
            for (auto member : {&layer_weights<float>::w_q, &layer_weights<float>::w_k, &layer_weights<float>::w_v,
                                &layer_weights<float>::w_o, &layer_weights<float>::w_gate, &layer_weights<float>::w_in,
                                &layer_weights<float>::w_out})
                check(a.*member, b.*member);
        }
        check(source.weights().unembedding, loaded.weights().unembedding);
        CHECK(loaded.packed().layers[0].w_in.is_mapped());
        // Close to the source's logits (a loose check: 4 or 6 bits per weight).
        const std::vector<std::int32_t> tokens = tiny::tokens(6, 48, 3);
        const tensor<float> expected = source.forward(tokens), got = loaded.forward(tokens);
        double gap = 0, scale = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            gap = std::max(gap, double(std::abs(got.data()[i] - expected.data()[i])));
            scale = std::max(scale, double(std::abs(expected.data()[i])));
        }
        CHECK(gap < (q4 ? 0.5 : 0.1) * scale);
    }
}
