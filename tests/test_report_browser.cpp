// Browser check of the HTML reports (issue 12, item 5): a report is written to a temporary folder,
// rendered by headless Chromium, and checked in what the browser made of it: the DOM it parsed
// (--dump-dom) holds every heatmap cell with its value and the labels as text, no element came out
// of a hostile label, and the screenshot (--screenshot) shows the heatmap's colours. The PNG is
// decoded by tests/png_colours.py (standard library zlib), so the test needs no image library.
//
// Chromium is found as $ACTLENS_CHROMIUM, chromium, chromium-browser or google-chrome; without one
// (or without python3 for the PNG) the test passes with a warning that says "skipped". Every
// browser run is bounded by `timeout 60`, since a headless browser can hang.
#include <actlens/report/display.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/svg.hpp>

// mime_bundle_repr returns nlohmann::json, which the caller includes (report/display.hpp).
#include <nlohmann/json.hpp>

#include "test_files.hpp"
#include "paths.hpp"
#include "test_report_helpers.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace actlens;
using namespace actlens::report;
namespace fs = std::filesystem;

namespace {

int run_shell(const std::string& command) {
    const int status = std::system(command.c_str());
    return status == -1 ? -1 : WEXITSTATUS(status);
}

bool have_program(const std::string& name) { return run_shell("command -v '" + name + "' >/dev/null 2>&1") == 0; }

std::string find_chromium() {
    if (const char* env = std::getenv("ACTLENS_CHROMIUM"); env && *env) return have_program(env) ? env : "";
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"})
        if (have_program(name)) return name;
    return "";
}

// The report the browser renders: a 4 x 6 signed map with a NaN cell and a hostile column label,
// and a token strip.
html_report make_report(tensor<double>& values, std::vector<std::string>& cols) {
    values = tensor<double>({4, 6});
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t c = 0; c < 6; ++c) values(r, c) = (double(c) - 2.5) * 0.3 * double(r + 1) / 4.0;
    values(2, 3) = std::nan("");
    cols = {"BOS", " Sue", " had", "<script>document.title='pwned'</script>", " S", "u"};
    heatmap_options o;
    o.title = "resid_pre patching";
    o.row_axis = "layer";
    o.col_axis = "position";
    o.value_name = "score";
    html_report report("Browser check");
    report.paragraph("A map with a NaN cell & a hostile label.");
    report.figure(heatmap_svg(values, {"L0", "L1", "L2", "L3"}, cols, o), "4 layers x 6 positions");
    report.token_strip({"BOS", " Sue", " had"}, {0.0, 0.5, 1.0}, {{scale_kind::sequential, 0}, 2, "activation"});
    return report;
}

} // namespace

TEST_CASE("report browser (skipped without chromium): headless Chromium renders the heatmap report",
          "[report][browser]") {
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        WARN("skipped: chromium not found (set ACTLENS_CHROMIUM or install Debian's chromium)");
        return;
    }
    const scratch_folder tmp("report_browser");
    tensor<double> values;
    std::vector<std::string> cols;
    const fs::path page = tmp.path / "report.html";
    make_report(values, cols).save(page.string());
    const std::string browser = "timeout 60 '" + chromium + "' --headless --no-sandbox --disable-gpu --hide-scrollbars ";
    const std::string url = "'file://" + page.string() + "'";

    // What the browser parsed: every cell with its value, the labels as text, no injected element.
    const fs::path dom_file = tmp.path / "dom.html";
    REQUIRE(run_shell(browser + "--dump-dom " + url + " > '" + dom_file.string() + "' 2>/dev/null") == 0);
    const std::string dom = read_file(dom_file);
    INFO("DOM: " << dom.substr(0, 400));
    CHECK(count_of(dom, "class=\"cell\"") == 23);
    CHECK(count_of(dom, "class=\"cell nan\"") == 1);
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t c = 0; c < 6; ++c) {
            const std::string value = std::isnan(values(r, c)) ? "nan" : exact_value(values(r, c));
            CHECK(count_of(dom, fmt::format("data-row=\"{}\" data-col=\"{}\" data-value=\"{}\"", r, c, value)) == 1);
        }
    for (const char* label : {">L0</text>", ">L3</text>", "> Sue</text>", ">BOS</text>", ">layer</text>"})
        CHECK(dom.find(label) != std::string::npos);
    CHECK(dom.find("<title>L1 \u00b7  had: -0.075</title>") != std::string::npos);
    CHECK(dom.find("<script") == std::string::npos);
    CHECK(dom.find("&lt;script&gt;document.title") != std::string::npos);
    CHECK(dom.find("<title>Browser check</title>") != std::string::npos); // not 'pwned'

    // What the browser drew: white page, text, and the scale's end colours in the cells of |score| max.
    const fs::path png = tmp.path / "report.png";
    REQUIRE(run_shell(browser + "--window-size=900,700 --screenshot='" + png.string() + "' " + url +
                      " >/dev/null 2>&1") == 0);
    REQUIRE(fs::exists(png));
    CHECK(fs::file_size(png) > 1000);
    if (!have_program("python3")) {
        WARN("PNG check skipped: python3 not found");
        return;
    }
    const fs::path counts = tmp.path / "colours.txt";
    REQUIRE(run_shell("python3 '" + test_paths::source_dir() + "/tests/png_colours.py' '" + png.string() + "' " +
                      color_scale::positive.hex().substr(1) + " " + color_scale::negative.hex().substr(1) + " " +
                      nan_color.hex().substr(1) + " > '" + counts.string() + "'") == 0);
    std::istringstream lines(read_file(counts));
    std::size_t distinct = 0;
    std::string has_positive, has_negative, has_nan;
    lines >> distinct >> has_positive >> has_negative >> has_nan;
    INFO("distinct colours in the screenshot: " << distinct);
    CHECK(distinct > 50); // a blank page has 1; text antialiasing alone gives a few dozen greys
    CHECK(has_positive == "yes");
    CHECK(has_negative == "yes");
    CHECK(has_nan == "yes");
}

TEST_CASE("report browser (skipped without chromium): a notebook display bundle renders", "[report][browser]") {
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        WARN("skipped: chromium not found (set ACTLENS_CHROMIUM or install Debian's chromium)");
        return;
    }
    const scratch_folder tmp("report_browser");
    // What Jupyter does with a bundle: the "text/html" entry inserted into the page of the notebook.
    tensor<float> pattern({3, 3});
    for (std::size_t q = 0; q < 3; ++q)
        for (std::size_t k = 0; k <= q; ++k) pattern(q, k) = 1.0f / float(q + 1);
    const attention_pattern shown{pattern, {"BOS", " Sue", "<b>"}, 1, {}};
    const nlohmann::json bundle = mime_bundle_repr(shown);
    const fs::path page = tmp.path / "cell.html";
    write_file(page, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>" +
                         bundle["text/html"].get<std::string>() + "</body></html>");
    const fs::path dom_file = tmp.path / "dom.html";
    REQUIRE(run_shell("timeout 60 '" + chromium + "' --headless --no-sandbox --disable-gpu --dump-dom 'file://" +
                      page.string() + "' > '" + dom_file.string() + "' 2>/dev/null") == 0);
    const std::string dom = read_file(dom_file);
    CHECK(count_of(dom, "class=\"cell\"") == 9);
    CHECK(dom.find("data-row=\"2\" data-col=\"0\" data-value=\"0.3333333") != std::string::npos);
    CHECK(dom.find(">1 ' Sue'</text>") != std::string::npos);
    CHECK(dom.find(">2 '&lt;b&gt;'</text>") != std::string::npos);
    CHECK(dom.find("<b>") == std::string::npos);
}
