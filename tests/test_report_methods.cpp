// Tests of actlens/report/methods.hpp: patching results as labelled maps (the labels and the
// [L, T, H] flattening checked entry by entry), notebook bundles of results, and neuron / feature
// readouts built from hand-made decodings.
#include <actlens/report/methods.hpp>

// mime_bundle_repr returns nlohmann::json, which the caller includes (report/display.hpp).
#include <nlohmann/json.hpp>

#include "test_helpers.hpp"
#include "test_report_helpers.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace actlens;
using namespace actlens::report;

TEST_CASE("report methods: a [layer, position] sweep is labelled with layers and tokens", "[report]") {
    patching_result r;
    r.scores = tensor<double>({2, 3});
    for (std::size_t i = 0; i < 6; ++i) r.scores.data()[i] = 0.1 * double(i);
    r.axes = {"layer", "position"};
    const score_map m = patching_map(r, {"BOS", " cat", "<"});
    CHECK(m.row_labels == std::vector<std::string>{"L0", "L1"});
    CHECK(m.col_labels == std::vector<std::string>{"t0 'BOS'", "t1 ' cat'", "t2 '<'"});
    CHECK(m.options.row_axis == "layer");
    CHECK(m.options.col_axis == "position");
    CHECK(m.values(1, 2) == r.scores(1, 2));
    const std::string html = mime_bundle_repr(r)["text/html"];
    CHECK(count_of(html, "class=\"cell\"") == 6);
    CHECK(html.find("<title>L1 \u00b7 t2: 0.5</title>") != std::string::npos); // no tokens: indices
    require_error([&] { patching_map(r, {"a"}); }, errc::shape_mismatch, "1 'tokens' for 3 positions");
    r.axes.pop_back();
    require_error([&] { patching_map(r); }, errc::shape_mismatch, "'axes' names 1");
    require_error([] { patching_map(patching_result{}); }, errc::invalid_argument, "'scores' is empty");
}

TEST_CASE("report methods: a [layer, position, head] sweep becomes rows layer x position", "[report]") {
    tensor<double> s({2, 3, 4});
    for (std::size_t i = 0; i < s.size(); ++i) s.data()[i] = double(i);
    const score_map m = patching_map(s, {"layer", "position", "head"}, {"a", "b", "c"}, "nodes");
    REQUIRE(m.values.shape() == shape_t{6, 4});
    for (std::size_t l = 0; l < 2; ++l)
        for (std::size_t t = 0; t < 3; ++t)
            for (std::size_t h = 0; h < 4; ++h) CHECK(m.values(l * 3 + t, h) == s(l, t, h));
    CHECK(m.row_labels[4] == "L1 t1 'b'");
    CHECK(m.col_labels[3] == "H3");
    CHECK(m.options.row_axis == "layer \u00b7 position");
    CHECK(m.options.title == "nodes");
}

TEST_CASE("report methods: wide maps drop the printed values; AtP* shows its head scores", "[report]") {
    const score_map wide = patching_map(tensor<double>({2, 64}), {"layer", "neuron"});
    CHECK_FALSE(wide.options.show_values);
    CHECK(wide.col_labels[63] == "N63");
    atp_star_result a;
    a.scores = tensor<double>({1, 2});
    a.scores(0, 1) = -2.0;
    const nlohmann::json b = mime_bundle_repr(a);
    CHECK(b["text/plain"] == "AtP* estimates [1 x 2]; largest |score| at L0 \u00b7 H1: -2");
}

TEST_CASE("report methods: neuron and feature readouts carry token text and contexts", "[report]") {
    neuron_decoding d;
    d.layers = {3};
    d.tokens = tensor<std::int32_t>({1, 2, 2});
    d.logits = tensor<float>({1, 2, 2});
    d.probabilities = tensor<float>({1, 2, 2});
    d.tokens(0, 1, 0) = 7;
    d.tokens(0, 1, 1) = 5;
    d.logits(0, 1, 0) = 4.5f;
    d.logits(0, 1, 1) = 1.25f;
    const std::vector<std::string> vocab = {"a", "b", "c", "d", "e", " <f>", "g", " dog"};
    const auto piece = [&](std::int32_t id) { return vocab[std::size_t(id)]; };
    const token_readout r = neuron_readout(d, 0, 1, piece);
    CHECK(r.title == "L3 N1");
    REQUIRE(r.top_tokens.size() == 2);
    CHECK(r.top_tokens[0].token == " dog");
    CHECK(r.top_tokens[1].value == 1.25);
    CHECK(render_text(r) == "L3 N1\ntop tokens (logit): ' dog' 4.5 ' <f>' 1.25");
    require_error([&] { neuron_readout(d, 1, 0, piece); }, errc::out_of_range, "layer index 1");

    feature_example e;
    e.context = {0, 7, 2};
    e.token_in_context = 1;
    e.coefficient = 0.75f;
    const token_readout f = feature_readout(4, {{12, 0.5f}}, {e}, piece);
    CHECK(render_text(f) == "feature 4\ntop neurons (weight): N12 0.5\ncoefficient 0.75: a[[ dog]]c");
    CHECK(count_of(render_html(f), "actlens-token focus") == 1);
}
