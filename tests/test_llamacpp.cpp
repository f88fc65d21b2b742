// actlens against llama.cpp on the same GGUF file: greedy continuations must be the same tokens.
//
// llama.cpp runs through node-llama-cpp@3.21.1 (npm; prebuilt CPU binaries) and
// tests/llamacpp/greedy.mjs. The package is looked up in $ACTLENS_LLAMACPP_NODE_MODULES, else in
// ~/.cache/actlens-llamacpp/node_modules, where .ci/run installs it when the npm registry is reachable;
// without node or the package the test passes with a warning that says "skipped".
//
// The two runtimes do not compute the same numbers: llama.cpp multiplies F16 weights with activations
// rounded to f16, actlens with f32 activations. Greedy decoding of a trained model still picks the same
// token while the top two logits are further apart than those rounding differences, which holds for
// the 96 tokens here (the test prints the first position where they part if they do).
#include "paths.hpp"

#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace actlens;
namespace fs = std::filesystem;

namespace {

std::string node_modules() {
    if (const char* env = std::getenv("ACTLENS_LLAMACPP_NODE_MODULES"); env && *env) return env;
    const char* home = std::getenv("HOME");
    return home ? std::string(home) + "/.cache/actlens-llamacpp/node_modules" : std::string();
}

bool have_node() { return std::system("command -v node >/dev/null 2>&1") == 0; }

/// llama.cpp's greedy continuation of `prompt` by `count` tokens.
std::vector<std::int32_t> llamacpp_greedy(const std::string& gguf, const std::vector<std::int32_t>& prompt,
                                          std::size_t count) {
    const fs::path out = fs::temp_directory_path() / ("actlens_llamacpp_" + std::to_string(::getpid()) + ".json");
    std::string command = "timeout 300 node '" + test_paths::source_dir() + "/tests/llamacpp/greedy.mjs' '" +
                          node_modules() + "' '" + gguf + "' " + std::to_string(count);
    for (std::int32_t id : prompt) command += " " + std::to_string(id);
    command += " > '" + out.string() + "'";
    const int status = std::system(command.c_str());
    INFO(command);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    std::ifstream in(out);
    std::stringstream text;
    text << in.rdbuf();
    fs::remove(out);
    const nlohmann::json result = nlohmann::json::parse(text.str());
    REQUIRE(result.at("prompt").get<std::vector<std::int32_t>>() == prompt);
    return result.at("generated").get<std::vector<std::int32_t>>();
}

} // namespace

TEST_CASE("llama.cpp (skipped without node-llama-cpp): greedy tokens equal actlens's on the same F16 GGUF",
          "[gguf][llamacpp]") {
    if (!have_node() || !fs::exists(fs::path(node_modules()) / "node-llama-cpp")) {
        WARN("skipped: node or node-llama-cpp not found (npm i -E node-llama-cpp@3.21.1 in "
             "~/.cache/actlens-llamacpp, or set ACTLENS_LLAMACPP_NODE_MODULES)");
        return;
    }
    // The F16 file written by llama.cpp's own gguf-py (tests/fixtures/gguf/make_gguf_fixtures.py).
    const std::string gguf = test_paths::fixture("gguf/stories260K_f16.gguf");
    const transformer model = load_model(gguf);
    const llama2c_tokenizer tok = llama2c_tokenizer::load(test_paths::model("tok512.bin"), 512);
    const std::size_t count = 96;
    for (const char* text : {"Once upon a time, there was a little girl named Lily.", "Tom and Sue went to the park"}) {
        INFO(text);
        const std::vector<std::int32_t> prompt = tok.encode(text, true);
        const std::vector<std::int32_t> theirs = llamacpp_greedy(gguf, prompt, count);
        generate_options<float> o;
        o.max_new_tokens = count;
        const std::vector<std::int32_t> all = generate(model, prompt, o);
        const std::vector<std::int32_t> ours(all.begin() + std::ptrdiff_t(prompt.size()), all.end());
        std::size_t same = 0;
        while (same < ours.size() && same < theirs.size() && ours[same] == theirs[same]) ++same;
        INFO("the first " << same << " tokens agree; actlens: " << tok.decode(ours)
                          << "\nllama.cpp: " << tok.decode(theirs));
        CHECK(theirs.size() == count);
        CHECK(same == count);
    }
}
