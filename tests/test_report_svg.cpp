// Tests of actlens/report/text.hpp, color.hpp and svg.hpp: escaping of hostile labels, the colour
// scales at 0 and ±limit, and the heatmap's cells, data attributes, NaN cells and argument errors.
#include <actlens/report/svg.hpp>

#include "test_helpers.hpp"
#include "test_report_helpers.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace actlens;
using namespace actlens::report;

namespace {

// The names of all elements opened in `markup`.
std::set<std::string> element_names(const std::string& markup) {
    std::set<std::string> names;
    const std::regex open("<([A-Za-z][A-Za-z0-9:-]*)");
    for (auto it = std::sregex_iterator(markup.begin(), markup.end(), open); it != std::sregex_iterator(); ++it)
        names.insert((*it)[1].str());
    return names;
}

// The attributes of the cell at (row, col): the text of its <rect ...> tag.
std::string cell_tag(const std::string& svg, std::size_t row, std::size_t col) {
    const std::string key = "data-row=\"" + std::to_string(row) + "\" data-col=\"" + std::to_string(col) + "\"";
    const std::size_t at = svg.find(key);
    REQUIRE(at != std::string::npos);
    const std::size_t begin = svg.rfind("<rect", at), end = svg.find('>', at);
    return svg.substr(begin, end - begin + 1);
}

std::string attribute(const std::string& tag, const std::string& name) {
    const std::size_t at = tag.find(" " + name + "=\"");
    REQUIRE(at != std::string::npos);
    const std::size_t begin = at + name.size() + 3;
    return tag.substr(begin, tag.find('"', begin) - begin);
}

const std::string hostile = "<script>alert(\"x&y\")</script>'\x01\n\xff\xc3";

} // namespace

TEST_CASE("report text: markup characters become entities", "[report]") {
    CHECK(escape_markup("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&#39;");
    CHECK(escape_markup("plain \xc3\xa9") == "plain \xc3\xa9");
}

TEST_CASE("report text: control bytes and invalid UTF-8 become visible escapes", "[report]") {
    CHECK(display_text("a\nb\x01") == "a\\nb\\x01");
    CHECK(display_text("caf\xc3\xa9 \xe2\x80\x94") == "caf\xc3\xa9 \xe2\x80\x94");   // valid: kept
    CHECK(display_text("\xff") == "\\xff");                                     // never valid
    CHECK(display_text("x\xc3") == "x\\xc3");                                   // truncated 2-byte
    CHECK(display_text("\x80" "a") == "\\x80a");                                // stray continuation
    CHECK(display_text("\xc0\xaf") == "\\xc0\\xaf");                            // overlong '/'
    CHECK(display_text("\xed\xa0\x80") == "\\xed\\xa0\\x80");                   // surrogate U+D800
    CHECK(display_text("\xef\xbf\xbf") == "\\xef\\xbf\\xbf");                   // U+FFFF, not allowed in XML
    CHECK(display_text("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");          // above U+10FFFF
    CHECK(display_text("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");              // U+1F600 kept
    CHECK(safe_text(hostile) == "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;\\x01\\n\\xff\\xc3");
}

TEST_CASE("report text: values for hover text and data attributes", "[report]") {
    CHECK(format_value(0.41234567) == "0.4123");
    CHECK(format_value(-12345.6) == "-1.235e+04");
    CHECK(format_value(std::nan("")) == "nan");
    CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-inf");
    CHECK(std::stod(exact_value(0.1 + 0.2)) == 0.1 + 0.2);
    CHECK(exact_value(std::nan("")) == "nan");
}

TEST_CASE("report color: the diverging scale is white at 0 and symmetric", "[report]") {
    const color_scale s{scale_kind::diverging, 2.0};
    CHECK(s(0.0) == rgb{255, 255, 255});
    CHECK(s(2.0) == color_scale::positive);
    CHECK(s(-2.0) == color_scale::negative);
    CHECK(s(5.0) == color_scale::positive); // clamped
    CHECK(s(-5.0) == color_scale::negative);
    CHECK(s(2.0).hex() == "#b2182b");
    // Half way: each channel half way from white to the end colour, the same fraction on both sides.
    const rgb half_pos = s(1.0), half_neg = s(-1.0);
    CHECK(half_pos == rgb{217, 140, 149});
    CHECK(half_neg == rgb{144, 179, 214});
    CHECK(s(std::nan("")) == nan_color);
    CHECK(color_scale{scale_kind::diverging, 0.0}(3.0) == rgb{255, 255, 255});
}

TEST_CASE("report color: the sequential scale and fitting the limit", "[report]") {
    const color_scale s{scale_kind::sequential, 0.5};
    CHECK(s(0.0) == rgb{255, 255, 255});
    CHECK(s(0.5) == color_scale::high);
    CHECK(s(-1.0) == rgb{255, 255, 255});
    const double v[] = {0.25, -3.0, std::nan(""), std::numeric_limits<double>::infinity()};
    CHECK(color_scale::fit(scale_kind::diverging, v, 4).limit == 3.0); // finite values only
    const double zeros[] = {0.0, 0.0};
    CHECK(color_scale::fit(scale_kind::diverging, zeros, 2).limit == 1.0);
    CHECK(text_color_on(rgb{255, 255, 255}) == rgb{0, 0, 0});
    CHECK(text_color_on(color_scale::positive) == rgb{255, 255, 255});
}

TEST_CASE("report heatmap: one cell per value with its row, column and exact value", "[report]") {
    tensor<double> v({3, 4});
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 4; ++c) v(r, c) = (double(r) - 1.0) * 0.37 + double(c) * 0.011;
    heatmap_options o;
    o.title = "resid_pre patching";
    const std::string svg = heatmap_svg(v, {"L0", "L1", "L2"}, {"a", " cat", "t2", "t3"}, o);
    CHECK(count_of(svg, "class=\"cell\"") == 12);
    CHECK(count_of(svg, "<title>") == 12);
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 4; ++c) {
            const std::string tag = cell_tag(svg, r, c);
            CHECK(std::stod(attribute(tag, "data-value")) == v(r, c));
            CHECK(attribute(tag, "fill") == color_scale{scale_kind::diverging, 0.37 + 0.033}(v(r, c)).hex());
        }
    CHECK(svg.find("<title>L1 \u00b7  cat: " + format_value(v(1, 1)) + "</title>") != std::string::npos);
    CHECK(svg.find(">resid_pre patching</text>") != std::string::npos);
    CHECK(svg.find("full colour at |value| \u2265 0.403") != std::string::npos); // legend states the scale
    CHECK(element_names(svg) == std::set<std::string>{"svg", "style", "rect", "title", "text"});
}

TEST_CASE("report heatmap: float values, index labels and a fixed limit", "[report]") {
    tensor<float> v({2, 2});
    v(0, 0) = 0.5f;
    v(1, 1) = -1.0f;
    heatmap_options o;
    o.kind = scale_kind::sequential;
    o.limit = 0.5;
    const std::string svg = heatmap_svg(v, {}, {}, o);
    CHECK(count_of(svg, "class=\"cell\"") == 4);
    CHECK(attribute(cell_tag(svg, 0, 0), "fill") == color_scale::high.hex());
    CHECK(attribute(cell_tag(svg, 1, 1), "fill") == "#ffffff");
    CHECK(svg.find("<title>1 \u00b7 0: 0</title>") != std::string::npos);
}

TEST_CASE("report heatmap: NaN cells are marked, not coloured as values", "[report]") {
    tensor<double> v({1, 3});
    v(0, 0) = 1.0;
    v(0, 1) = std::nan("");
    v(0, 2) = -1.0;
    const std::string svg = heatmap_svg(v, {"L0"}, {"a", "b", "c"});
    CHECK(count_of(svg, "class=\"cell nan\"") == 1);
    const std::string tag = cell_tag(svg, 0, 1);
    CHECK(attribute(tag, "data-value") == "nan");
    CHECK(attribute(tag, "fill") == nan_color.hex());
    CHECK(svg.find("<title>L0 \u00b7 b: nan</title>") != std::string::npos);
    CHECK(count_of(svg, "<line") == 2); // the cross
    CHECK(svg.find(">nan</text>") != std::string::npos);
}

TEST_CASE("report heatmap: a hostile label cannot inject markup", "[report]") {
    tensor<double> v({1, 2});
    const std::string svg = heatmap_svg(v, {hostile}, {"ok", hostile});
    CHECK(svg.find("<script") == std::string::npos);
    CHECK(element_names(svg) == std::set<std::string>{"svg", "style", "rect", "title", "text"});
    CHECK(svg.find("&lt;script&gt;alert(&quot;x&amp;y&quot;)") != std::string::npos);
    // No control byte or invalid UTF-8 reaches the output.
    for (const char ch : svg) CHECK((static_cast<unsigned char>(ch) >= 0x20 || ch == '\n'));
    CHECK(display_text(svg) == svg);
}

TEST_CASE("report heatmap: long labels are cut in the map and kept whole on hover", "[report]") {
    tensor<double> v({1, 1});
    heatmap_options o;
    o.max_label_chars = 5;
    const std::string svg = heatmap_svg(v, {"abcdefghij"}, {"x"}, o);
    CHECK(svg.find(">abcd\u2026</text>") != std::string::npos);
    CHECK(svg.find("<title>abcdefghij \u00b7 x: 0</title>") != std::string::npos);
}

TEST_CASE("report heatmap: bad arguments name themselves", "[report]") {
    require_error([] { heatmap_svg(tensor<double>(), {}, {}); }, errc::invalid_argument, "'values' is empty");
    require_error([] { heatmap_svg(tensor<double>({2, 0}), {}, {}); }, errc::invalid_argument, "'values' is empty");
    require_error([] { heatmap_svg(tensor<double>({2, 2, 2}), {}, {}); }, errc::shape_mismatch,
                  "'values' must be [rows, cols], got shape [2, 2, 2]");
    require_error([] { heatmap_svg(tensor<double>({2, 3}), {"a"}, {}); }, errc::shape_mismatch,
                  "'row_labels' has 1 labels for 2 rows");
    require_error([] { heatmap_svg(tensor<double>({2, 3}), {}, {"a", "b", "c", "d"}); }, errc::shape_mismatch,
                  "'col_labels' has 4 labels for 3 columns");
}

TEST_CASE("report heatmap: values that round to zero print as 0, others with two decimals", "[report]") {
    tensor<double> v({1, 3});
    v(0, 0) = 1e-4;
    v(0, 1) = -1e-4;
    v(0, 2) = -0.256;
    const std::string svg = heatmap_svg(v, {}, {});
    CHECK(count_of(svg, "class=\"cell-value\">0</text>") == 2);
    CHECK(count_of(svg, "class=\"cell-value\">-0.26</text>") == 1);
    CHECK(attribute(cell_tag(svg, 0, 1), "data-value") == "-0.0001"); // the exact value stays in the DOM
}
