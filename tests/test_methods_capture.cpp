#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/methods/capture.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

using namespace actlens;

namespace {

/// A corpus of sequences of different lengths; every sequence starts with token 1 (a "BOS").
std::vector<std::vector<std::int32_t>> small_corpus(std::size_t vocab) {
    std::vector<std::vector<std::int32_t>> corpus;
    for (std::uint32_t s = 0; s < 7; ++s) {
        auto seq = tiny::tokens(4 + (s * 5) % 9, vocab, s + 1);
        for (auto& t : seq)
            if (t == 1) t = 2; // BOS appears only in front
        seq.insert(seq.begin(), 1);
        corpus.push_back(seq);
    }
    return corpus;
}

std::string fresh_capture_dir(const std::string& name) {
    const std::string dir = (std::filesystem::temp_directory_path() / ("actlens_test_capture_" + name)).string();
    std::filesystem::remove_all(dir);
    return dir;
}

} // namespace

TEST_CASE("capture_activations: rows equal run_with_cache of each sequence, BOS skipped", "[capture]") {
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            const auto m = make_random_transformer<float>(named.config, 5);
            const auto corpus = small_corpus(named.config.vocab_size);
            for (const char* hook : {"blocks.1.mlp.hook_post", "blocks.0.attn.hook_z", "hook_embed",
                                     "ln_final.hook_normalized"}) {
                capture_options o;
                o.skip_tokens = {1};
                std::vector<std::pair<std::size_t, std::size_t>> progress;
                o.on_progress = [&](std::size_t done, std::size_t total) { progress.push_back({done, total}); };
                const captured_activations cap = capture_activations(m, corpus, hook, o);
                INFO(hook);
                CHECK(cap.hook == hook);
                REQUIRE(progress.size() == corpus.size());
                CHECK(progress.back() == std::pair<std::size_t, std::size_t>{corpus.size(), corpus.size()});
                std::size_t row = 0;
                for (std::size_t s = 0; s < corpus.size(); ++s) {
                    const auto [logits, cache] = m.run_with_cache(corpus[s], hook);
                    const tensor<float>& a = cache[hook];
                    const std::size_t width = a.size() / corpus[s].size();
                    REQUIRE(width == cap.width());
                    for (std::size_t t = 1; t < corpus[s].size(); ++t, ++row) { // position 0 is the BOS
                        REQUIRE(row < cap.rows.size());
                        CHECK(cap.rows.token[row] == corpus[s][t]);
                        CHECK(cap.rows.sequence[row] == s);
                        CHECK(cap.rows.position[row] == t);
                        for (std::size_t i = 0; i < width; ++i)
                            REQUIRE(cap.values(row, i) == a.data()[t * width + i]);
                    }
                }
                CHECK(row == cap.values.extent(0));
            }
        }
    }
}

TEST_CASE("capture_to_shards: shards equal the in-memory capture", "[capture]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 8);
    const auto corpus = small_corpus(config.vocab_size);
    capture_options o;
    o.skip_tokens = {1};
    o.shard_rows = 9;
    const captured_activations mem = capture_activations(m, corpus, "blocks.2.mlp.hook_post", o);
    const std::string dir = fresh_capture_dir("shards");
    const std::size_t written = capture_to_shards(m, corpus, "blocks.2.mlp.hook_post", dir, o);
    const std::size_t n = mem.values.extent(0);
    CHECK(written == n);

    capture_reader reader(dir);
    CHECK(reader.hook() == "blocks.2.mlp.hook_post");
    CHECK(reader.width() == config.d_mlp);
    CHECK(reader.rows() == n);
    CHECK(reader.shard_count() == (n + 8) / 9);
    CHECK(reader.manifest().at("model").at("d_mlp").as_uint64() == config.d_mlp);
    CHECK(reader.manifest().at("skip_tokens") == actlens::io::json_value::array({1}));
    for (std::size_t i = 0; i + 1 < reader.shard_count(); ++i) CHECK(reader.shard_rows(i) == 9);

    const captured_activations disk = reader.read_all();
    REQUIRE(disk.values.shape() == mem.values.shape());
    CHECK(std::equal(disk.values.begin(), disk.values.end(), mem.values.begin()));
    CHECK(disk.rows.token == mem.rows.token);
    CHECK(disk.rows.sequence == mem.rows.sequence);
    CHECK(disk.rows.position == mem.rows.position);

    // Blocks that straddle shard boundaries are gathered; blocks inside one shard are views.
    tensor<float> scratch;
    for (std::size_t begin : {std::size_t(0), std::size_t(5), std::size_t(9), std::size_t(13)})
        for (std::size_t count : {std::size_t(1), std::size_t(4), std::size_t(11), std::size_t(20)}) {
            if (begin + count > n) continue;
            const tensor_view<const float> b = reader.block(begin, count, scratch);
            REQUIRE(b.shape() == shape_t{count, config.d_mlp});
            for (std::size_t r = 0; r < count; ++r)
                for (std::size_t i = 0; i < config.d_mlp; ++i) REQUIRE(b(r, i) == mem.values(begin + r, i));
        }
    require_error([&] { reader.block(n - 2, 3, scratch); }, errc::out_of_range);
    std::filesystem::remove_all(dir);
}

TEST_CASE("capture: bad arguments and damaged captures give clear errors", "[capture]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 3);
    auto corpus = small_corpus(config.vocab_size);
    require_error([&] { capture_activations(m, corpus, "blocks.9.mlp.hook_post"); }, errc::bad_layer_range,
                  "capture: hook point 'blocks.9.mlp.hook_post' is at layer 9, but the model's layers are 0..2");
    require_error([&] { capture_activations(m, corpus, "blocks.0.attn.hook_rot_q"); }, errc::bad_hook_name,
                  "rotary positions");
    require_error([&] { capture_activations(m, corpus, "blocks.0.mlp.hook_pots"); }, errc::bad_hook_name,
                  "did you mean 'blocks.0.mlp.hook_post'?");
    require_error([&] { capture_activations(m, corpus, "blocks.0.attn.hook_pattern"); }, errc::bad_hook_name);
    require_error([&] { capture_activations(m, corpus, "blocks.0.mlp.hook_pre_linear"); }, errc::bad_hook_name);
    require_error([&] { capture_activations(m, corpus, "not a hook"); }, errc::bad_hook_name);
    auto with_empty = corpus;
    with_empty[3].clear();
    require_error([&] { capture_activations(m, with_empty, "blocks.0.hook_resid_pre"); }, errc::empty_prompt);
    auto with_bad_id = corpus;
    with_bad_id[2][1] = 999;
    require_error([&] { capture_activations(m, with_bad_id, "blocks.0.hook_resid_pre"); }, errc::token_out_of_range);

    const std::string dir = fresh_capture_dir("bad");
    capture_options zero;
    zero.shard_rows = 0;
    require_error([&] { capture_to_shards(m, corpus, "blocks.0.hook_resid_pre", dir, zero); },
                  errc::invalid_argument);
    require_error([&] { capture_reader r(dir + "/missing"); }, errc::file_open);

    capture_options o;
    o.shard_rows = 10;
    capture_to_shards(m, corpus, "blocks.0.hook_resid_pre", dir, o);
    capture_reader ok(dir);
    CHECK(ok.rows() == capture_activations(m, corpus, "blocks.0.hook_resid_pre").values.extent(0));
    CHECK(ok.rows() > 20);

    // A shard whose shape disagrees with the manifest.
    {
        tensor<float> wrong({10, config.d_model + 1});
        io::save_npy(dir + "/shard_00001.npy", wrong);
        require_error([&] { capture_reader r(dir); }, errc::bad_header);
        tensor<double> wrong_type({10, config.d_model});
        io::save_npy(dir + "/shard_00001.npy", wrong_type);
        require_error([&] { capture_reader r(dir); }, errc::unsupported_format);
    }
    // A manifest that is not JSON, and one without its shard list.
    {
        std::ofstream(dir + "/manifest.json") << "{ not json";
        require_error([&] { capture_reader r(dir); }, errc::bad_header);
        std::ofstream(dir + "/manifest.json") << R"({"hook": "blocks.0.hook_resid_pre", "width": 24, "rows": 3})";
        require_error([&] { capture_reader r(dir); }, errc::bad_header);
        // Nesting deep enough to overflow the stack of a recursive parser (24,000 levels) is refused.
        std::ofstream(dir + "/manifest.json") << R"({"hook": "x", "deep": )" << std::string(24000, '[')
                                              << std::string(24000, ']') << "}";
        require_error([&] { capture_reader r(dir); }, errc::bad_header, "nests deeper than 128 levels");
        // Shard files are names beside the manifest, never paths elsewhere.
        std::ofstream(dir + "/manifest.json")
            << R"({"hook": "blocks.0.hook_resid_pre", "width": 24, "rows": 3, "shards": [)"
            << R"({"values": "../../etc/passwd", "rows_file": "r.npy", "rows": 3, "first_row": 0}]})";
        require_error([&] { capture_reader r(dir); }, errc::bad_header, "\"../../etc/passwd\" is not a file name");
    }
    std::filesystem::remove_all(dir);
}
