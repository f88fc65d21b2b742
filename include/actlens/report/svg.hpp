// actlens/report/svg.hpp: a small SVG writer and the heatmap every score map is drawn with.
//
// heatmap_svg() draws values [rows, cols] as coloured cells with row labels on the left, column
// labels on top (rotated), the value printed in each cell when it fits, a title, and a legend that
// states the colour scale. Each cell is a <rect class="cell"> carrying data-row, data-col and
// data-value (exact_value()) and a <title> child, "L3 · t5 ' cat': 0.4123", which browsers and
// Jupyter show on hover. NaN cells are grey with a cross and data-value="nan", never a colour that
// could be read as a value. The output has no ids, scripts or external references, so several
// heatmaps can sit in one HTML page and the file renders offline.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/report/color.hpp>
#include <actlens/report/text.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace actlens::report {

/// Builds the body of an <svg> element. Text content and titles are escaped with safe_text();
/// nothing a caller passes can become markup, except through raw().
class svg_writer {
public:
    /// A rectangle; `css_class` and `title` (hover text) are optional, `data` is appended verbatim
    /// and must come from data_attributes().
    void rect(double x, double y, double w, double h, rgb fill, std::string_view css_class = {},
              std::string_view title = {}, std::string_view data = {});

    /// Text at (x, y) (baseline); `anchor` is start, middle or end; `rotate` in degrees about (x, y).
    void text(double x, double y, std::string_view content, double font_size, std::string_view anchor = "start",
              rgb color = {0, 0, 0}, double rotate = 0, std::string_view css_class = {}, bool bold = false);

    void line(double x1, double y1, double x2, double y2, rgb color, double width = 1);

    /// Markup the caller vouches for (another svg_writer's output).
    void raw(std::string_view markup) { m_body += markup; }

    /// The complete <svg> element of the given size.
    std::string str(double width, double height) const;

private:
    std::string m_body;
};

/// data-row="r" data-col="c" data-value="v" for a heatmap cell.
inline std::string data_attributes(std::size_t row, std::size_t col, double value) {
    return fmt::format(" data-row=\"{}\" data-col=\"{}\" data-value=\"{}\"", row, col, exact_value(value));
}

struct heatmap_options {
    std::string title;
    std::string row_axis;   ///< caption of the rows, e.g. "layer"
    std::string col_axis;   ///< caption of the columns, e.g. "position"
    std::string value_name = "value"; ///< what the colour means, in the legend
    scale_kind kind = scale_kind::diverging;
    double limit = 0;       ///< |value| of the full colour; 0 fits it to the largest finite |value|
    double cell_width = 34, cell_height = 24;
    double font_size = 11;
    bool show_values = true; ///< print the value in cells wide enough for it
    std::size_t max_label_chars = 24; ///< longer labels are cut with "…" (the hover text keeps them whole)
};

/// The heatmap of `values` [rows, cols] as an <svg> element. Empty `row_labels` / `col_labels`
/// mean the indices. Throws actlens::error: arg.101 when `values` is empty, arg.102 when it is not
/// rank 2 or a label list has the wrong length. Complexity O(rows · cols).
inline std::string heatmap_svg(tensor_view<const double> values, const std::vector<std::string>& row_labels,
                               const std::vector<std::string>& col_labels, const heatmap_options& options = {});

/// The same for float values.
inline std::string heatmap_svg(tensor_view<const float> values, const std::vector<std::string>& row_labels,
                               const std::vector<std::string>& col_labels, const heatmap_options& options = {});

/// The extent a drawing used.
struct svg_extent {
    double width = 0, height = 0;
};

/// A horizontal colour bar with its end and middle values and a caption stating the scale, drawn at
/// (x, y) with the given bar width; returns the width and height used.
inline svg_extent draw_legend(svg_writer& svg, double x, double y, double width, const color_scale& scale,
                          std::string_view value_name, double font_size);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

inline std::string svg_number(double v) { return fmt::format("{:.1f}", v); }

// Number of UTF-8 characters (code points) of valid UTF-8 text.
inline std::size_t utf8_chars(std::string_view s) {
    std::size_t n = 0;
    for (const char ch : s) n += (static_cast<unsigned char>(ch) & 0xc0) != 0x80;
    return n;
}

// The first `max_chars` characters of valid UTF-8 text, with "…" when cut.
inline std::string cut_label(const std::string& s, std::size_t max_chars) {
    if (utf8_chars(s) <= max_chars) return s;
    std::size_t chars = 0, i = 0;
    for (; i < s.size(); ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80 && chars++ == max_chars - 1) break;
    return s.substr(0, i) + "\u2026";
}

// Labels of an axis: the caller's (checked against `count`) or the indices, made printable.
inline std::vector<std::string> axis_labels(const std::vector<std::string>& given, std::size_t count,
                                            const char* argument) {
    if (!given.empty() && given.size() != count)
        fail(errc::shape_mismatch, "heatmap: argument '{}' has {} labels for {} {}", argument, given.size(), count,
             std::string_view(argument) == "row_labels" ? "rows" : "columns");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < count; ++i) out.push_back(given.empty() ? std::to_string(i) : display_text(given[i]));
    return out;
}

// Monospace glyphs are ~0.6 em wide; layout uses this to reserve room for labels.
constexpr double char_width = 0.62;
constexpr const char* font_family = "DejaVu Sans Mono, Menlo, Consolas, monospace";

} // namespace detail

inline void svg_writer::rect(double x, double y, double w, double h, rgb fill, std::string_view css_class,
                             std::string_view title, std::string_view data) {
    m_body += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"", detail::svg_number(x),
                          detail::svg_number(y), detail::svg_number(w), detail::svg_number(h), fill.hex());
    if (!css_class.empty()) m_body += fmt::format(" class=\"{}\"", safe_text(css_class));
    m_body += data;
    if (title.empty()) {
        m_body += "/>";
    } else {
        m_body += "><title>" + safe_text(title) + "</title></rect>";
    }
}

inline void svg_writer::text(double x, double y, std::string_view content, double font_size, std::string_view anchor,
                             rgb color, double rotate, std::string_view css_class, bool bold) {
    m_body += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{}\" fill=\"{}\"",
                          detail::svg_number(x), detail::svg_number(y), detail::svg_number(font_size),
                          safe_text(anchor), color.hex());
    if (rotate != 0)
        m_body += fmt::format(" transform=\"rotate({} {} {})\"", detail::svg_number(rotate), detail::svg_number(x),
                              detail::svg_number(y));
    if (!css_class.empty()) m_body += fmt::format(" class=\"{}\"", safe_text(css_class));
    if (bold) m_body += " font-weight=\"bold\"";
    m_body += ">" + safe_text(content) + "</text>";
}

inline void svg_writer::line(double x1, double y1, double x2, double y2, rgb color, double width) {
    m_body += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/>",
                          detail::svg_number(x1), detail::svg_number(y1), detail::svg_number(x2),
                          detail::svg_number(y2), color.hex(), detail::svg_number(width));
}

inline std::string svg_writer::str(double width, double height) const {
    // xml:space keeps the leading spaces of token labels (" cat") in standalone SVG; the style does
    // the same inside HTML. pointer-events lets hover reach the cell under a printed value.
    return fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
                       "viewBox=\"0 0 {0} {1}\" xml:space=\"preserve\" font-family=\"{2}\" "
                       "style=\"white-space:pre\"><style>text{{pointer-events:none}}</style>{3}</svg>",
                       detail::svg_number(width), detail::svg_number(height), detail::font_family, m_body);
}

inline svg_extent draw_legend(svg_writer& svg, double x, double y, double width, const color_scale& scale,
                              std::string_view value_name, double font_size) {
    constexpr int steps = 48;
    const double bar_h = 10, step_w = width / steps;
    const bool diverging = scale.kind == scale_kind::diverging;
    const double lo = diverging ? -scale.limit : 0.0;
    for (int i = 0; i < steps; ++i) {
        const double v = lo + (scale.limit - lo) * (i + 0.5) / steps;
        svg.rect(x + i * step_w, y, step_w + 0.5, bar_h, scale(v));
    }
    const double ty = y + bar_h + font_size + 2;
    const rgb grey{80, 80, 80};
    svg.text(x, ty, format_value(lo), font_size, "start", grey);
    svg.text(x + width / 2, ty, diverging ? "0" : format_value(scale.limit / 2), font_size, "middle", grey);
    svg.text(x + width, ty, format_value(scale.limit), font_size, "end", grey);
    const std::string caption =
        diverging ? fmt::format("{}: blue < 0 < red, white = 0, full colour at |{}| \u2265 {}", value_name,
                                value_name, format_value(scale.limit))
                  : fmt::format("{}: white = 0, full colour at \u2265 {}", value_name, format_value(scale.limit));
    svg.text(x, ty + font_size + 4, caption, font_size, "start", grey);
    const double caption_w = double(detail::utf8_chars(caption)) * font_size * detail::char_width;
    return {std::max(width, caption_w), bar_h + 2 * font_size + 8};
}

namespace detail {

inline std::string heatmap_from(const std::vector<double>& v, std::size_t rows, std::size_t cols,
                                const std::vector<std::string>& row_labels_in,
                                const std::vector<std::string>& col_labels_in, const heatmap_options& o) {
    const std::vector<std::string> row_labels = axis_labels(row_labels_in, rows, "row_labels");
    const std::vector<std::string> col_labels = axis_labels(col_labels_in, cols, "col_labels");
    const color_scale scale =
        o.limit > 0 ? color_scale{o.kind, o.limit} : color_scale::fit(o.kind, v.data(), v.size());
    const double fs = o.font_size, cw = o.cell_width, ch = o.cell_height, glyph = fs * char_width;
    const auto widest = [&](const std::vector<std::string>& labels) {
        std::size_t n = 0;
        for (const auto& l : labels) n = std::max(n, utf8_chars(cut_label(l, o.max_label_chars)));
        return double(n) * glyph;
    };
    // Column labels are rotated by -50 degrees above the grid; they need sin(50°)·width of height
    // and cos(50°)·width past the last column.
    const double pad = 10, col_w = widest(col_labels), sin50 = 0.766, cos50 = 0.643;
    const double left = pad + (o.row_axis.empty() ? 0 : fs + 8) + widest(row_labels) + 8;
    const double title_h = o.title.empty() ? 0 : fs * 1.4 + 12;
    const double top = pad + title_h + col_w * sin50 + fs + 6;
    const double grid_w = cw * double(cols), grid_h = ch * double(rows);
    const double legend_w = std::max(220.0, std::min(grid_w, 360.0));

    svg_writer svg;
    if (!o.title.empty()) svg.text(pad, pad + fs * 1.4, o.title, fs * 1.4, "start", {0, 0, 0}, 0, "title", true);
    for (std::size_t c = 0; c < cols; ++c) {
        const double x = left + cw * (double(c) + 0.5) + fs * 0.3;
        svg.text(x, top - 6, cut_label(col_labels[c], o.max_label_chars), fs, "start", {0, 0, 0}, -50, "col-label");
    }
    for (std::size_t r = 0; r < rows; ++r)
        svg.text(left - 6, top + ch * (double(r) + 0.5) + fs * 0.35, cut_label(row_labels[r], o.max_label_chars), fs,
                 "end", {0, 0, 0}, 0, "row-label");
    if (!o.row_axis.empty())
        svg.text(pad + fs, top + grid_h / 2, o.row_axis, fs, "middle", {80, 80, 80}, -90, "axis-label");
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) {
            const double value = v[r * cols + c], x = left + cw * double(c), y = top + ch * double(r);
            const bool nan = std::isnan(value);
            const rgb fill = scale(value);
            const std::string hover = fmt::format("{} \u00b7 {}: {}", row_labels[r], col_labels[c], format_value(value));
            svg.rect(x, y, cw, ch, fill, nan ? "cell nan" : "cell", hover, data_attributes(r, c, value));
            if (nan) {
                svg.line(x + 3, y + 3, x + cw - 3, y + ch - 3, {120, 120, 120});
                svg.line(x + 3, y + ch - 3, x + cw - 3, y + 3, {120, 120, 120});
            }
            // Values that round to zero print as "0": a wall of "-0.00" hides the cells that matter.
            const std::string two = fmt::format("{:.2f}", value);
            const std::string shown = nan ? "nan" : two == "0.00" || two == "-0.00" ? "0" : two;
            if (o.show_values && double(shown.size()) * glyph * 0.9 <= cw - 2)
                svg.text(x + cw / 2, y + ch / 2 + fs * 0.32, shown, fs * 0.9, "middle", text_color_on(fill), 0,
                         "cell-value");
        }
    // A frame, so that white (zero) cells at the edge still show where the map ends.
    svg.raw(fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999999\"/>",
                        svg_number(left), svg_number(top), svg_number(grid_w), svg_number(grid_h)));
    double y = top + grid_h + 6;
    if (!o.col_axis.empty()) {
        svg.text(left + grid_w / 2, y + fs, o.col_axis, fs, "middle", {80, 80, 80}, 0, "axis-label");
        y += fs + 8;
    }
    const svg_extent legend = draw_legend(svg, left, y + 6, legend_w, scale, o.value_name, fs);
    y += 6 + legend.height;
    const double title_w = double(utf8_chars(display_text(o.title))) * fs * 1.4 * char_width;
    const double width = std::max({left + grid_w + col_w * cos50 + fs, left + legend.width, pad + title_w}) + pad;
    return svg.str(std::ceil(width), std::ceil(y + pad));
}

template <class T>
std::string heatmap_of(tensor_view<const T> values, const std::vector<std::string>& row_labels,
                       const std::vector<std::string>& col_labels, const heatmap_options& options) {
    if (values.empty()) fail(errc::invalid_argument, "heatmap: argument 'values' is empty (shape {})",
                             values.shape().to_string());
    if (values.rank() != 2)
        fail(errc::shape_mismatch, "heatmap: argument 'values' must be [rows, cols], got shape {}",
             values.shape().to_string());
    const std::size_t rows = values.extent(0), cols = values.extent(1);
    std::vector<double> v(rows * cols);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) v[r * cols + c] = double(values(r, c));
    return heatmap_from(v, rows, cols, row_labels, col_labels, options);
}

} // namespace detail

inline std::string heatmap_svg(tensor_view<const double> values, const std::vector<std::string>& row_labels,
                               const std::vector<std::string>& col_labels, const heatmap_options& options) {
    return detail::heatmap_of(values, row_labels, col_labels, options);
}

inline std::string heatmap_svg(tensor_view<const float> values, const std::vector<std::string>& row_labels,
                               const std::vector<std::string>& col_labels, const heatmap_options& options) {
    return detail::heatmap_of(values, row_labels, col_labels, options);
}

} // namespace actlens::report
