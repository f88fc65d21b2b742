// End to end on the bundled real model: tokenizer + loader + generation reproduce the behaviour
// recorded in examples/models/stories260K/README.md.
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include "paths.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace actlens;

namespace {
std::string greedy(const transformer& m, const llama2c_tokenizer& tok, const std::string& prompt, std::size_t steps) {
    generate_options<float> o;
    o.max_new_tokens = steps;
    return tok.decode(generate(m, tok.encode(prompt, true), o));
}
} // namespace

TEST_CASE("stories260K: greedy stories match the model's README", "[llama2c][e2e]") {
    const transformer m = load_model(actlens::test_paths::model("stories260K.bin"));
    const auto tok = llama2c_tokenizer::load(actlens::test_paths::model("tok512.bin"), m.config().vocab_size);

    // From BOS alone.
    generate_options<float> o;
    o.max_new_tokens = 80;
    const std::string story = tok.decode(generate(m, std::vector<std::int32_t>{tok.bos_id()}, o));
    CHECK_THAT(story, Catch::StartsWith("Once upon a time, there was a little girl named Lily. She loved to play "
                                        "outside in the park. One day, she saw a big, red ball. She wanted to play "
                                        "with it, but it was too high."));

    // From a prompt, encoded as run.c does (BOS, dummy prefix, merges).
    CHECK(tok.encode("The cat", true) == std::vector<std::int32_t>{1, 291, 280, 294});
    CHECK_THAT(greedy(m, tok, "The cat", 40),
               Catch::StartsWith("The cat and a boy were playing in the park. They liked to play with their toys and "
                                 "run around the park."));

    // The README's warning: the model does not solve the indirect-object task.
    CHECK_THAT(greedy(m, tok, "Lily and Ben went to the park. Ben gave the ball to", 6),
               Catch::StartsWith("Lily and Ben went to the park. Ben gave the ball to the park."));
}
