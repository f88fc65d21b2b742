// Tests of actlens/report/html.hpp (self-contained reports, token strips, tables) and
// actlens/report/display.hpp (notebook mime bundles of tensors and result views).
#include <actlens/report/display.hpp>
#include <actlens/report/html.hpp>

// mime_bundle_repr returns nlohmann::json, which the caller includes (report/display.hpp).
#include <nlohmann/json.hpp>

#include "test_helpers.hpp"
#include "test_report_helpers.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace actlens;
using namespace actlens::report;

namespace {

// Things that would make a browser fetch something, which a self-contained report must not have.
void require_self_contained(const std::string& html) {
    for (const char* needle : {"src=", "href=", "@import", "url(", "<script", "<link", "<iframe", "<img"}) {
        INFO(needle);
        CHECK(html.find(needle) == std::string::npos);
    }
}

} // namespace

TEST_CASE("report html: a report is one self-contained document with escaped text", "[report]") {
    html_report r("Patching <study>");
    tensor<double> v({2, 2});
    v(0, 1) = 0.5;
    r.heading("Section & more").paragraph("x < y").figure(heatmap_svg(v, {}, {}), "a map");
    r.table({"token", "logit"}, {{"<b>", "1.5"}, {" cat"}});
    const std::string html = r.str();
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(html.find("<meta charset=\"utf-8\">") != std::string::npos);
    CHECK(html.find("<title>Patching &lt;study&gt;</title>") != std::string::npos);
    CHECK(html.find("<h2>Section &amp; more</h2>") != std::string::npos);
    CHECK(html.find("<p>x &lt; y</p>") != std::string::npos);
    CHECK(html.find("<figcaption>a map</figcaption>") != std::string::npos);
    CHECK(html.find("<td>&lt;b&gt;</td><td>1.5</td></tr><tr><td> cat</td></tr>") != std::string::npos);
    CHECK(count_of(html, "class=\"cell\"") == 4);
    CHECK(count_of(html, "<style>") == 2); // the page's and the SVG's
    require_self_contained(html);
    require_error([&] { r.heading("x", 1); }, errc::invalid_argument, "heading level 1");
}

TEST_CASE("report html: save writes str() and names a path it cannot write", "[report]") {
    html_report r("saved");
    r.paragraph("body");
    const auto path = std::filesystem::temp_directory_path() / "actlens_test_report_html.html";
    r.save(path.string());
    std::ifstream in(path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text == r.str());
    std::filesystem::remove(path);
    require_error([&] { r.save("/nonexistent-folder/x.html"); }, errc::file_open, "/nonexistent-folder/x.html");
}

TEST_CASE("report html: token strips colour values, frame the focus and check their arguments", "[report]") {
    token_strip_options o;
    o.focus = 1;
    o.value_name = "act";
    const std::string html = token_strip_html({"a", " <b>", "\n"}, {0.0, 2.0, -1.0}, o);
    CHECK(count_of(html, "<span") == 3);
    CHECK(count_of(html, "actlens-token focus") == 1);
    CHECK(html.find("data-index=\"1\" data-value=\"2\" style=\"background:" + color_scale::high.hex()) !=
          std::string::npos);
    CHECK(html.find("title=\"t1 &#39; &lt;b&gt;&#39;: act = 2\">") != std::string::npos);
    CHECK(html.find(">\\n</span>") != std::string::npos);
    CHECK(token_strip_html({"a"}, {}).find("style=") == std::string::npos);
    require_error([] { token_strip_html({"a", "b"}, {1.0}); }, errc::shape_mismatch, "'values' has 1 entries for 2");
    require_error([&] { token_strip_html({"a"}, {}, {{}, 3, ""}); }, errc::out_of_range, "'focus' is 3");
}

TEST_CASE("report display: a tensor shows its type, shape, statistics and leading block", "[report]") {
    tensor<float> t({3, 12});
    for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(i) - 4.0f;
    t(2, 11) = std::nanf("");
    const nlohmann::json bundle = mime_bundle_repr(t);
    const std::string text = bundle["text/plain"], html = bundle["text/html"];
    CHECK(text.rfind("tensor<float32> [3, 12], 36 elements; min -4, max 30, mean 13; 1 non-finite\n", 0) == 0);
    CHECK(count_of(text, "\n") == 3);
    CHECK(count_of(html, "<td style=") == 30); // 3 rows x the first 10 columns
    CHECK(html.find("showing 3 rows x 10 columns of 3 x 12") != std::string::npos);
    tensor<double> cube({2, 3, 4});
    const nlohmann::json b3 = mime_bundle_repr(tensor_view<const double>(cube));
    CHECK(b3["text/plain"].get<std::string>().find("\n[0, :, :]\n") != std::string::npos);
    CHECK(mime_bundle_repr(tensor<std::int32_t>())["text/plain"] == "tensor<int32> [], 0 elements");
}

TEST_CASE("report display: a score map is a heatmap; its text names the largest score", "[report]") {
    score_map m;
    m.values = tensor<double>({2, 3});
    m.values(1, 2) = -0.9;
    m.values(0, 0) = 0.3;
    m.row_labels = {"L0", "L1"};
    m.col_labels = {"a", "b", "c"};
    m.options.title = "heads";
    const nlohmann::json b = mime_bundle_repr(m);
    CHECK(b["text/plain"] == "heads [2 x 3]; largest |score| at L1 \u00b7 c: -0.9");
    CHECK(count_of(b["text/html"].get<std::string>(), "class=\"cell\"") == 6);
}

TEST_CASE("report display: attention patterns draw one 0..1 map per head", "[report]") {
    attention_pattern p;
    p.pattern = tensor<float>({2, 3, 3});
    for (std::size_t h = 0; h < 2; ++h)
        for (std::size_t q = 0; q < 3; ++q) p.pattern(h, q, h == 0 ? 0 : q) = 1.0f;
    p.tokens = {"BOS", " a", " b"};
    p.layer = 2;
    const nlohmann::json b = mime_bundle_repr(p);
    const std::string html = b["text/html"];
    CHECK(count_of(html, "class=\"cell\"") == 18);
    CHECK(html.find(">L2 H1</text>") != std::string::npos);
    CHECK(html.find("<title>2 &#39; b&#39; \u00b7 0 &#39;BOS&#39;: 0</title>") != std::string::npos);
    CHECK(b["text/plain"] == "L2 H0: strongest key per query: 0->0 (1.00) 1->0 (1.00) 2->0 (1.00)\n"
                             "L2 H1: strongest key per query: 0->0 (1.00) 1->1 (1.00) 2->2 (1.00)");
    p.heads = {1};
    CHECK(count_of(render_html(p), "class=\"cell\"") == 9);
    p.heads = {2};
    require_error([&] { render_html(p); }, errc::out_of_range, "head 2 in 'heads'");
    p.heads.clear();
    p.tokens.pop_back();
    require_error([&] { render_html(p); }, errc::shape_mismatch, "does not match 2 'tokens'");
    require_error([] { render_html(attention_pattern{}); }, errc::invalid_argument, "'pattern' is empty");
}

TEST_CASE("report display: a readout lists top tokens and highlights the context token", "[report]") {
    token_readout r;
    r.title = "L1 N42";
    r.top_tokens = {{" cat", 3.5}, {"<", 2.0}};
    r.examples = {{{"The", " cat", " sat"}, {0.1, 2.5, 0.0}, 1, 2.5}};
    const nlohmann::json b = mime_bundle_repr(r);
    const std::string html = b["text/html"];
    CHECK(html.find("<h3>L1 N42</h3>") != std::string::npos);
    CHECK(html.find("<td>2</td><td>&#39;&lt;&#39;</td><td>2</td>") != std::string::npos);
    CHECK(count_of(html, "actlens-token focus") == 1);
    CHECK(b["text/plain"] == "L1 N42\ntop tokens (logit): ' cat' 3.5 '<' 2\nactivation 2.5: The[[ cat]] sat");
}

TEST_CASE("report display: generation comparisons mark the tokens outside a common subsequence", "[report]") {
    std::vector<bool> a_diff, b_diff;
    mark_differences({"a", "b", "c", "d"}, {"a", "x", "c", "d", "e"}, a_diff, b_diff);
    CHECK(a_diff == std::vector<bool>{false, true, false, false});
    CHECK(b_diff == std::vector<bool>{false, true, false, false, true});
    mark_differences({}, {"a"}, a_diff, b_diff);
    CHECK(b_diff == std::vector<bool>{true});

    generation_comparison g;
    g.prompt = {"Once", " upon"};
    g.baseline = {" a", " time", "."};
    g.changed = {" a", " dragon", "."};
    const nlohmann::json b = mime_bundle_repr(g);
    CHECK(b["text/plain"] == "unsteered: Once upon| a[- time-].\nsteered: Once upon| a{+ dragon+}.");
    const std::string html = b["text/html"];
    CHECK(count_of(html, "actlens-token removed") == 1);
    CHECK(count_of(html, "actlens-token added") == 1);
    CHECK(count_of(html, "actlens-token prompt") == 4);
    CHECK(html.find("1 of 3 tokens only in unsteered (struck out), 1 of 3 only in steered (green)") != std::string::npos);
}
