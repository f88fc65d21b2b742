// Tests of the actlens command-line tool (examples/cli): every subcommand runs on the bundled
// stories260K model and its .npy / GGUF / JSON outputs must equal, bit for bit, what the library
// calls the tool stands for return in this process; bad arguments give one line with the error id
// and exit code 2. examples/CMakeLists.txt defines ACTLENS_CLI_BUILT for this file when it builds the
// tool, whose path comes from tests/paths.hpp; without the examples the tests say so and pass.
#include "test_files.hpp"
#include "test_helpers.hpp"
#include <actlens/io/npy.hpp>
#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/control_vector.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include "paths.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace actlens;
namespace fs = std::filesystem;

#if defined(ACTLENS_CLI_BUILT)

namespace {

const std::string model_file = actlens::test_paths::model("stories260K.bin");
const char* const clean_text = "Sue had a big red ball. One day, S";
const char* const corrupted_text = "Sara had a big red ball. One day, S";

struct run_result {
    int code = -1;
    std::string out, err;
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs the tool with `arguments` (already quoted for the shell).
run_result run(const std::string& arguments) {
    const fs::path dir = temp_folder("actlens_test_cli");
    const std::string command = "'" + actlens::test_paths::cli() + "' " + arguments + " > '" +
                                (dir / "stdout.txt").string() + "' 2> '" + (dir / "stderr.txt").string() + "'";
    const int status = std::system(command.c_str());
    run_result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir / "stdout.txt");
    r.err = slurp(dir / "stderr.txt");
    return r;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }
std::string path_of(const char* name) { return (temp_folder("actlens_test_cli") / name).string(); }

struct cli_fixture {
    transformer model = load_model(model_file);
    llama2c_tokenizer tok = llama2c_tokenizer::load(actlens::test_paths::model("tok512.bin"), model.config().vocab_size);
    std::vector<std::int32_t> clean = tok.encode(clean_text, true), corrupted = tok.encode(corrupted_text, true);
    logit_difference metric{{*tok.find_piece("u")}, {*tok.find_piece("a")}};
    tensor_view<const std::int32_t> clean_view() const { return {clean.data(), {1, clean.size()}}; }
    tensor_view<const std::int32_t> corrupted_view() const { return {corrupted.data(), {1, corrupted.size()}}; }
};

std::string sweep_arguments(const char* command, const char* out) {
    return std::string(command) + " --model " + quoted(model_file) + " --clean " + quoted(clean_text) +
           " --corrupted " + quoted(corrupted_text) + " --correct u --wrong a --out " + quoted(path_of(out));
}

} // namespace

TEST_CASE("cli: info and generate report what the library does", "[cli]") {
    const cli_fixture f;
    const run_result info = run("info --json " + quoted(model_file));
    REQUIRE(info.code == 0);
    const nlohmann::json j = nlohmann::json::parse(info.out);
    CHECK(j["n_layers"] == f.model.config().n_layers);
    CHECK(j["d_model"] == f.model.config().d_model);
    CHECK(j["vocab_size"] == f.model.config().vocab_size);
    CHECK(j["hook_points"] == f.model.hook_points().size());

    const run_result gen = run("generate --model " + quoted(model_file) + " --prompt 'Once upon a time' --steps 12 "
                               "--temperature 0.8 --seed 3 --json " + quoted(path_of("gen.json")));
    REQUIRE(gen.code == 0);
    generate_options<float> o;
    o.max_new_tokens = 12;
    o.sampling.temperature = 0.8;
    o.sampling.seed = 3;
    o.stop_tokens = {f.tok.eos_id()};
    const auto expected = generate(f.model, f.tok.encode("Once upon a time", true), o);
    CHECK(nlohmann::json::parse(slurp(path_of("gen.json")))["tokens"].get<std::vector<std::int32_t>>() == expected);
}

TEST_CASE("cli: patch scores equal activation_patch bit for bit", "[cli]") {
    const cli_fixture f;
    for (const char* site : {"resid_pre", "head"}) {
        const run_result r = run(sweep_arguments("patch", "patch.npy") + " --site " + site + " --report " +
                                 quoted(path_of("patch.html")));
        REQUIRE(r.code == 0);
        const patching_result expected = activation_patch(f.model, f.clean_view(), f.corrupted_view(), f.metric,
                                                          std::string(site) == "head" ? patch_target::head
                                                                                      : patch_target::resid_pre);
        CHECK(same_bits(io::load_npy<double>(path_of("patch.npy")), expected.scores));
        CHECK(slurp(path_of("patch.html")).find("<svg") != std::string::npos);
        CHECK(r.err.find("patching [") != std::string::npos); // the progress bar
    }
}

TEST_CASE("cli: attribute scores equal AtP, AtP*, RelP and IG bit for bit", "[cli]") {
    const cli_fixture f;
    attribution_options atp, relp;
    relp.backward.rule = rule::relp;
    const tensor<double> expected_atp =
        attribution_patch(f.model, f.clean_view(), f.corrupted_view(), f.metric, patch_target::resid_pre, atp).scores;
    const tensor<double> expected_relp =
        attribution_patch(f.model, f.clean_view(), f.corrupted_view(), f.metric, patch_target::resid_pre, relp).scores;
    attribution_options ig;
    ig.ig_steps = 4;
    const tensor<double> expected_ig =
        integrated_gradients(f.model, f.clean_view(), f.corrupted_view(), f.metric, patch_target::mlp_out, ig).scores;
    const tensor<double> expected_star = atp_star(f.model, f.clean_view(), f.corrupted_view(), f.metric).scores;

    REQUIRE(run(sweep_arguments("attribute", "atp.npy") + " --method atp").code == 0);
    CHECK(same_bits(io::load_npy<double>(path_of("atp.npy")), expected_atp));
    REQUIRE(run(sweep_arguments("attribute", "relp.npy") + " --method relp").code == 0);
    CHECK(same_bits(io::load_npy<double>(path_of("relp.npy")), expected_relp));
    REQUIRE(run(sweep_arguments("attribute", "ig.npy") + " --method ig --ig-steps 4 --site mlp_out").code == 0);
    CHECK(same_bits(io::load_npy<double>(path_of("ig.npy")), expected_ig));
    REQUIRE(run(sweep_arguments("attribute", "star.npy") + " --method 'atp*'").code == 0);
    CHECK(same_bits(io::load_npy<double>(path_of("star.npy")), expected_star));
}

TEST_CASE("cli: steer writes the diff-in-means vector and its control vector", "[cli]") {
    const cli_fixture f;
    const std::vector<std::string> tim = {"Tim went to the park. He saw a big", "Tim had a dog. He played with"};
    const std::vector<std::string> lily = {"Lily went to the park. She saw a big", "Lily had a dog. She played with"};
    {
        std::ofstream pairs(path_of("pairs.tsv"));
        for (std::size_t i = 0; i < tim.size(); ++i) pairs << tim[i] << '\t' << lily[i] << '\n';
    }
    const run_result r = run("steer --model " + quoted(model_file) + " --pairs " + quoted(path_of("pairs.tsv")) +
                             " --layer 2 --strength 1.5 --out " + quoted(path_of("vector.npy")) +
                             " --control-vector " + quoted(path_of("vector.gguf")) + " --prompt 'Lily had' --steps 8");
    REQUIRE(r.code == 0);
    std::vector<std::vector<std::int32_t>> pos, neg;
    for (const auto& t : tim) pos.push_back(f.tok.encode(t, true));
    for (const auto& t : lily) neg.push_back(f.tok.encode(t, true));
    steering_build_options build;
    build.policy = position_policy::mean_over_tokens;
    build.normalize = true;
    const auto v = mean_diff_vector(f.model, pos, neg, hook_point{site::resid_post, 2}, build);
    CHECK(same_bits(io::load_npy<float>(path_of("vector.npy")), v.direction));
    const control_vector expected = to_control_vector(v, 1.5 * v.scale);
    const control_vector got = load_control_vector(path_of("vector.gguf"));
    CHECK(got.directions == expected.directions);
    CHECK(r.out.find("steered:") != std::string::npos);
}

TEST_CASE("cli: capture, snmf and neurons equal the library's results", "[cli]") {
    const cli_fixture f;
    const std::vector<std::string> lines = {"Once upon a time there was a cat.", "Tom and his dog ran to the park.",
                                            "Lily wanted a red ball. She was happy."};
    {
        std::ofstream corpus(path_of("corpus.txt"));
        for (const auto& l : lines) corpus << l << '\n';
    }
    std::vector<std::vector<std::int32_t>> corpus;
    for (const auto& l : lines) corpus.push_back(f.tok.encode(l, true));
    capture_options co;
    co.skip_tokens = {f.tok.bos_id()};
    const captured_activations cap = capture_activations(f.model, corpus, "blocks.1.mlp.hook_post", co);

    const std::string common = " --model " + quoted(model_file) + " --corpus " + quoted(path_of("corpus.txt"));
    REQUIRE(run("capture" + common + " --hook blocks.1.mlp.hook_post --out " + quoted(path_of("cap.npy"))).code == 0);
    CHECK(same_bits(io::load_npy<float>(path_of("cap.npy")), cap.values));

    snmf_options so;
    so.rank = 4;
    so.sparsity = 0.05;
    so.max_iter = 40;
    so.patience = 100;
    so.seed = 7;
    const snmf_result fit = fit_snmf(cap.values.view(), so);
    const run_result s = run("snmf" + common + " --layer 1 --rank 4 --sparsity 0.05 --iterations 40 --patience 100 "
                             "--seed 7 --out " + quoted(path_of("features.npy")) + " --json " +
                             quoted(path_of("features.json")) + " --report " + quoted(path_of("features.html")));
    REQUIRE(s.code == 0);
    CHECK(same_bits(io::load_npy<float>(path_of("features.npy")), fit.features));
    CHECK(nlohmann::json::parse(slurp(path_of("features.json"))).size() == 4);

    neuron_decode_options no;
    no.top_k = 5;
    const neuron_decoding d = decode_neurons(f.model, no);
    REQUIRE(run("neurons --model " + quoted(model_file) + " --top-k 5 --out " + quoted(path_of("neurons.npy"))).code ==
            0);
    CHECK(same_bits(io::load_npy<float>(path_of("neurons.npy")), d.probabilities));
}

TEST_CASE("cli: --help works for the tool and every command", "[cli]") {
    const run_result overview = run("--help");
    CHECK(overview.code == 0);
    for (const char* command : {"info", "generate", "patch", "attribute", "steer", "capture", "snmf", "neurons"}) {
        INFO(command);
        CHECK(overview.out.find(std::string("  ") + command + " ") != std::string::npos);
        const run_result help = run(std::string(command) + " --help");
        CHECK(help.code == 0);
        CHECK(help.out.find(std::string("usage: actlens ") + command) != std::string::npos);
        CHECK(help.out.find("--help") != std::string::npos);
    }
}

TEST_CASE("cli: bad arguments give one line with the error id and exit code 2", "[cli]") {
    struct bad {
        std::string arguments, id, text;
    };
    const std::string m = " --model " + quoted(model_file);
    for (const bad& b : std::vector<bad>{
             {"frobnicate", "[actlens.arg.101]", "unknown command 'frobnicate'"},
             {"patch --bogus 1", "[actlens.arg.101]", "unknown option '--bogus'"},
             {"generate --prompt hi", "[actlens.arg.101]", "--model is required"},
             {"generate" + m + " --prompt hi --steps many", "[actlens.arg.101]", "--steps 'many'"},
             {sweep_arguments("patch", "x.npy") + " --site nowhere", "[actlens.arg.101]", "--site 'nowhere'"},
             {sweep_arguments("attribute", "x.npy") + " --method magic", "[actlens.arg.101]", "--method 'magic'"},
             {"patch" + m + " --clean 'a b' --corrupted 'a b c d' --correct 1 --wrong 2", "[actlens.arg.102]",
              "as long"},
             {"neurons" + m + " --layer 9", "[actlens.model.403]", "--layer 9"},
             {"info /nonexistent/model.bin", "[actlens.io.", "/nonexistent/model.bin"},
         }) {
        const run_result r = run(b.arguments);
        INFO(b.arguments << " -> " << r.err);
        CHECK(r.code == 2);
        CHECK(r.err.find(b.id) != std::string::npos);
        CHECK(r.err.find(b.text) != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1); // one line
    }
}

#else

TEST_CASE("cli: skipped (the examples, and with them the tool, are not built)", "[cli]") {
    WARN("the actlens tool is not built: build with ACTLENS_BUILD_EXAMPLES=ON to test the actlens tool");
}

#endif
