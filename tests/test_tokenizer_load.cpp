#include <actlens/tokenizer/load.hpp>
#include <actlens/tokenizer/printable.hpp>

#include "paths.hpp"

#include <catch2/catch.hpp>

using namespace actlens;

TEST_CASE("load_tokenizer: picks the format from the path", "[tokenizer]") {
    const tokenizer llama = load_tokenizer(actlens::test_paths::model("tok512.bin"), 512);
    REQUIRE(llama.as_llama2c() != nullptr);
    CHECK(llama.encode("The cat") == std::vector<std::int32_t>{1, 291, 280, 294});
    CHECK(llama.decode(llama.encode("The cat")) == "The cat");
    CHECK(llama.eos_id() == 2);
    // A llama2.c model directory: its one tok*.bin.
    const tokenizer from_dir = load_tokenizer(actlens::test_paths::model_dir(), 512);
    REQUIRE(from_dir.as_llama2c() != nullptr);
    CHECK(from_dir.encode("The cat") == llama.encode("The cat"));

    const tokenizer gpt2 = load_tokenizer(actlens::test_paths::fixture("gpt2_bpe"));
    REQUIRE(gpt2.as_bpe() != nullptr);
    CHECK(gpt2.vocab_size() == 50257);
    CHECK(gpt2.eos_id() == 50256);
    // " Mary" and " John" are single GPT-2 tokens.
    CHECK(gpt2.encode(" Mary John", false) == std::vector<std::int32_t>{5335, 1757});

    CHECK_THROWS_WITH(load_tokenizer("/nonexistent/tokenizer.json"), Catch::Contains("[actlens.io.201]"));
    CHECK_THROWS_WITH(load_tokenizer(actlens::test_paths::model("tok512.bin"), 500), Catch::Contains("tok512.bin"));
}

TEST_CASE("printable_piece: control bytes become visible, text and UTF-8 pass through", "[tokenizer]") {
    CHECK(printable_piece(" Lily") == " Lily");
    CHECK(printable_piece("a\nb") == "a\\nb");
    CHECK(printable_piece(std::string("\t\x01\x7f", 3)) == "\\x09\\x01\\x7f");
    CHECK(printable_piece(std::string("\0", 1)) == "\\x00");
    CHECK(printable_piece("caf\xc3\xa9") == "caf\xc3\xa9");
    const tokenizer llama = load_tokenizer(actlens::test_paths::model("tok512.bin"), 512);
    CHECK(printable_piece(llama.decode(llama.encode("Hi.\nBye"))) == "Hi.\\nBye");
}
