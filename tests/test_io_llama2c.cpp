#include <actlens/io/llama2c.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>

#include "paths.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;

namespace {

const std::string model_path = actlens::test_paths::model("stories260K.bin");

std::vector<char> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

/// Writes bytes to a fresh file in a per-test temporary folder and returns its path.
std::string write_temp(const std::string& name, const std::vector<char>& bytes) {
    const fs::path dir = fs::temp_directory_path() / "actlens_test_llama2c";
    fs::create_directories(dir);
    const fs::path path = dir / name;
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return path.string();
}

std::vector<char> with_header(std::vector<char> bytes, int field, std::int32_t value) {
    std::memcpy(bytes.data() + 4 * field, &value, 4);
    return bytes;
}

std::string checkpoint_load_error(const std::string& path) {
    try {
        load_model(path);
    } catch (const error& e) {
        return e.what();
    }
    return "no error";
}

} // namespace

TEST_CASE("llama2c: stories260K loads with the shape its README gives", "[llama2c]") {
    const transformer m = load_model(model_path);
    const model_config& c = m.config();
    CHECK(c.d_model == 64);
    CHECK(c.d_mlp == 172);
    CHECK(c.n_layers == 5);
    CHECK(c.n_heads == 8);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.max_seq_len == 512);
    CHECK(c.tied_embeddings);
    CHECK(c.rope == kernels::rope_style::adjacent);
    // Weights are used in place from the mapped file: the unembedding is the embedding.
    CHECK(m.weights().unembedding.data() == m.weights().token_embedding.data());
}

TEST_CASE("llama2c: greedy decoding from BOS reproduces the reference story token for token", "[llama2c]") {
    const transformer m = load_model(model_path);
    // 256 ids from an independent PyTorch implementation (tests/fixtures/make_stories260k_greedy.py).
    std::vector<std::int32_t> expect;
    std::ifstream in(actlens::test_paths::fixture("stories260k_greedy.txt"));
    for (std::int32_t id; in >> id;) expect.push_back(id);
    REQUIRE(expect.size() == 256);
    // The README's first twelve ids, independently of the fixture.
    CHECK(std::vector<std::int32_t>(expect.begin(), expect.begin() + 12) ==
          std::vector<std::int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421});
    generate_options<float> o;
    o.max_new_tokens = expect.size();
    const auto out = generate(m, std::vector<std::int32_t>{1}, o);
    CHECK(std::vector<std::int32_t>(out.begin() + 1, out.end()) == expect);
}

TEST_CASE("llama2c: hostile and damaged files give actlens::error naming the file and field", "[llama2c][errors]") {
    const std::vector<char> good = read_all(model_path);
    REQUIRE(good.size() == 1056540);

    CHECK_THAT(checkpoint_load_error("/nonexistent/stories.bin"), Catch::Contains("[actlens.io.201]") &&
                                                           Catch::Contains("/nonexistent/stories.bin"));
    CHECK_THAT(checkpoint_load_error(write_temp("empty.bin", {})), Catch::Contains("[actlens.io.202]") && Catch::Contains("'dim'"));
    CHECK_THAT(checkpoint_load_error(write_temp("short_header.bin", std::vector<char>(good.begin(), good.begin() + 17))),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("'n_kv_heads'") &&
                   Catch::Contains("short_header.bin"));
    CHECK_THAT(checkpoint_load_error(write_temp("truncated.bin", std::vector<char>(good.begin(), good.begin() + 500000))),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("implies 1056540 bytes, but the file has 500000"));
    std::vector<char> longer = good;
    longer.resize(good.size() + 8);
    CHECK_THAT(checkpoint_load_error(write_temp("trailing.bin", longer)), Catch::Contains("[actlens.io.204]") &&
                                                                   Catch::Contains("the file has 1056548"));
    CHECK_THAT(checkpoint_load_error(write_temp("negative_dim.bin", with_header(good, 0, -64))),
               Catch::Contains("[actlens.io.204]") && Catch::Contains("'dim' = -64"));
    CHECK_THAT(checkpoint_load_error(write_temp("zero_layers.bin", with_header(good, 2, 0))), Catch::Contains("'n_layers' = 0"));
    CHECK_THAT(checkpoint_load_error(write_temp("heads.bin", with_header(good, 3, 7))),
               Catch::Contains("'dim' = 64 is not a multiple of 'n_heads' = 7"));
    CHECK_THAT(checkpoint_load_error(write_temp("kv_heads.bin", with_header(good, 4, 16))), Catch::Contains("'n_kv_heads' = 16"));
    CHECK_THAT(checkpoint_load_error(write_temp("kv_heads3.bin", with_header(good, 4, 3))), Catch::Contains("'n_kv_heads' = 3"));
    // Sizes that would overflow or exhaust memory are rejected before anything is read.
    auto huge = with_header(with_header(with_header(good, 0, 1 << 30), 1, 1 << 30), 2, 1 << 30);
    CHECK_THAT(checkpoint_load_error(write_temp("huge.bin", huge)), Catch::Contains("[actlens.io.204]"));
    auto big = with_header(with_header(good, 0, 1 << 22), 1, 1 << 23);
    CHECK_THAT(checkpoint_load_error(write_temp("big.bin", with_header(big, 3, 1 << 16))),
               Catch::Contains("implies") && Catch::Contains("but the file has 1056540"));
    // A vocabulary of INT32_MIN has no positive magnitude in int32: still a clear error.
    CHECK_THAT(checkpoint_load_error(write_temp("vocab_min.bin", with_header(good, 5, INT32_MIN))), Catch::Contains("vocab_size"));
    // A separate classifier (negative vocab size) must be present in the file.
    CHECK_THAT(checkpoint_load_error(write_temp("unshared.bin", with_header(good, 5, -512))),
               Catch::Contains("[actlens.io.202]") && Catch::Contains("implies 1187612 bytes"));
    // Other formats are named.
    CHECK_THAT(checkpoint_load_error(write_temp("model.gguf", {'G', 'G', 'U', 'F', 3, 0, 0, 0})), Catch::Contains("GGUF"));
    CHECK_THAT(checkpoint_load_error(fs::temp_directory_path().string()), Catch::Contains("[actlens.io.206]"));
}

TEST_CASE("llama2c: a checkpoint with its own classifier uses it", "[llama2c]") {
    // Append a classifier equal to twice the embedding: logits must double exactly.
    std::vector<char> bytes = with_header(read_all(model_path), 5, -512);
    const std::size_t emb_bytes = 512 * 64 * 4;
    bytes.insert(bytes.end(), bytes.begin() + 28, bytes.begin() + 28 + std::ptrdiff_t(emb_bytes));
    float* cls = reinterpret_cast<float*>(bytes.data() + (bytes.size() - emb_bytes));
    for (std::size_t i = 0; i < 512 * 64; ++i) cls[i] *= 2.0f;
    const transformer untied = load_model(write_temp("untied.bin", bytes));
    const transformer tied = load_model(model_path);
    CHECK_FALSE(untied.config().tied_embeddings);
    const std::vector<std::int32_t> toks{1, 403, 407};
    const tensor<float> a = tied.forward(toks), b = untied.forward(toks);
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(b.data()[i] == 2.0f * a.data()[i]);
}
