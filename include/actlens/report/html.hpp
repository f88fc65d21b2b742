// actlens/report/html.hpp: self-contained HTML reports and the HTML pieces notebooks display.
//
// An html_report collects sections (headings, text, heatmaps, tables, token strips) and writes one
// .html file with its CSS inline and no scripts, fonts, images or links to fetch: it renders the
// same offline, from a CI artifact or an e-mail attachment. Everything a caller passes as text is
// escaped (text.hpp); only figure() and trusted_html() take markup, which must come from this
// library's writers.
#pragma once

#include <actlens/error.hpp>
#include <actlens/report/color.hpp>
#include <actlens/report/text.hpp>

#include <fmt/core.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace actlens::report {

/// How a token strip colours its tokens.
struct token_strip_options {
    color_scale scale{scale_kind::sequential, 0}; ///< limit 0: fitted to the values
    std::optional<std::size_t> focus;             ///< a token drawn with a frame (e.g. the one a feature fires on)
    std::string value_name = "value";
};

/// Tokens as a line of coloured <span>s: background = the token's value on the scale, hover text
/// "t5 ' cat': 0.4123", `focus` framed. `values` may be empty (no colour) or one per token.
/// Throws actlens::error arg.102 when `values` has another length, arg.103 when `focus` is past the end.
inline std::string token_strip_html(const std::vector<std::string>& tokens, const std::vector<double>& values,
                                    const token_strip_options& options = {});

/// An HTML table with escaped header and cells; rows may be shorter than the header.
inline std::string table_html(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

/// The stylesheet reports and notebook outputs share (classes prefixed "actlens-").
inline const char* report_css();

/// A report built section by section and written as one self-contained HTML file.
/// Not thread-safe (it is a string builder).
class html_report {
public:
    explicit html_report(std::string title) : m_title(std::move(title)) {}

    /// A heading of level 2..4 (the title is the level-1 heading).
    html_report& heading(std::string_view text, int level = 2);
    /// A paragraph of plain text.
    html_report& paragraph(std::string_view text);
    /// An SVG (heatmap_svg()) or HTML fragment from this library, with an optional caption.
    html_report& figure(std::string markup, std::string_view caption = {});
    html_report& table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
    html_report& token_strip(const std::vector<std::string>& tokens, const std::vector<double>& values,
                             const token_strip_options& options = {});
    /// Markup the caller vouches for (e.g. a mime bundle's "text/html").
    html_report& trusted_html(std::string markup);

    /// The whole document.
    std::string str() const;
    /// Writes str() to `path`; throws actlens::error io.201 naming the path when it cannot.
    void save(const std::string& path) const;

private:
    std::string m_title, m_body;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline const char* report_css() {
    return ".actlens-report{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
           "color:#1a1a1a;max-width:1200px;margin:24px auto;padding:0 16px;line-height:1.45}"
           ".actlens-report h1{font-size:1.6em;margin-bottom:.3em}"
           ".actlens-report h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}"
           ".actlens-figure{margin:12px 0;overflow-x:auto}"
           ".actlens-figure figcaption{color:#555;font-size:.9em;margin-top:4px}"
           ".actlens-table{border-collapse:collapse;font-size:.9em;margin:8px 0}"
           ".actlens-table th,.actlens-table td{border:1px solid #ccc;padding:3px 8px;text-align:left;"
           "font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;white-space:pre}"
           ".actlens-table th{background:#f2f2f2}"
           ".actlens-tokens{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;line-height:2;margin:6px 0}"
           ".actlens-token{white-space:pre;padding:2px 1px;border-radius:3px;border:1px solid #e4e4e4}"
           ".actlens-token.focus{outline:2px solid #000;font-weight:bold}"
           ".actlens-token.added{background:#c6f0c2;border-color:#3a9a35}"
           ".actlens-token.removed{background:#f6c9c9;border-color:#b03030;text-decoration:line-through}"
           ".actlens-token.prompt{color:#666;background:#f4f4f4}"
           ".actlens-note{color:#555;font-size:.9em}";
}

inline std::string token_strip_html(const std::vector<std::string>& tokens, const std::vector<double>& values,
                                    const token_strip_options& options) {
    if (!values.empty() && values.size() != tokens.size())
        fail(errc::shape_mismatch, "token strip: argument 'values' has {} entries for {} tokens", values.size(),
             tokens.size());
    if (options.focus && *options.focus >= tokens.size())
        fail(errc::out_of_range, "token strip: argument 'focus' is {}, past the {} tokens", *options.focus,
             tokens.size());
    const color_scale scale = options.scale.limit > 0 || values.empty()
                                  ? options.scale
                                  : color_scale::fit(options.scale.kind, values.data(), values.size());
    std::string out = "<div class=\"actlens-tokens\">";
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        const bool focus = options.focus && *options.focus == i;
        const std::string label = display_text(tokens[i]);
        std::string hover = fmt::format("t{} '{}'", i, label);
        std::string style;
        if (!values.empty()) {
            const rgb bg = scale(values[i]);
            hover += fmt::format(": {} = {}", options.value_name, format_value(values[i]));
            style = fmt::format(" style=\"background:{};color:{}\"", bg.hex(), text_color_on(bg).hex());
        }
        out += fmt::format("<span class=\"actlens-token{}\" data-index=\"{}\"{}{} title=\"{}\">{}</span>",
                           focus ? " focus" : "", i, values.empty() ? "" : " data-value=\"" + exact_value(values[i]) + "\"",
                           style, escape_markup(hover), escape_markup(label));
    }
    return out + "</div>";
}

inline std::string table_html(const std::vector<std::string>& header,
                              const std::vector<std::vector<std::string>>& rows) {
    std::string out = "<table class=\"actlens-table\"><thead><tr>";
    for (const auto& h : header) out += "<th>" + safe_text(h) + "</th>";
    out += "</tr></thead><tbody>";
    for (const auto& row : rows) {
        out += "<tr>";
        for (const auto& cell : row) out += "<td>" + safe_text(cell) + "</td>";
        out += "</tr>";
    }
    return out + "</tbody></table>";
}

inline html_report& html_report::heading(std::string_view text, int level) {
    if (level < 2 || level > 4) fail(errc::invalid_argument, "html_report: heading level {} is not 2..4", level);
    m_body += fmt::format("<h{0}>{1}</h{0}>\n", level, safe_text(text));
    return *this;
}

inline html_report& html_report::paragraph(std::string_view text) {
    m_body += "<p>" + safe_text(text) + "</p>\n";
    return *this;
}

inline html_report& html_report::figure(std::string markup, std::string_view caption) {
    m_body += "<figure class=\"actlens-figure\">" + markup;
    if (!caption.empty()) m_body += "<figcaption>" + safe_text(caption) + "</figcaption>";
    m_body += "</figure>\n";
    return *this;
}

inline html_report& html_report::table(const std::vector<std::string>& header,
                                       const std::vector<std::vector<std::string>>& rows) {
    m_body += table_html(header, rows) + "\n";
    return *this;
}

inline html_report& html_report::token_strip(const std::vector<std::string>& tokens, const std::vector<double>& values,
                                             const token_strip_options& options) {
    m_body += token_strip_html(tokens, values, options) + "\n";
    return *this;
}

inline html_report& html_report::trusted_html(std::string markup) {
    m_body += markup + "\n";
    return *this;
}

inline std::string html_report::str() const {
    return fmt::format("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"generator\" content=\"actlens\">\n<title>{0}</title>\n<style>{1}</style>\n"
                       "</head>\n<body class=\"actlens-report\">\n<h1>{0}</h1>\n{2}</body>\n</html>\n",
                       safe_text(m_title), report_css(), m_body);
}

inline void html_report::save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) fail(errc::file_open, "html_report: cannot open '{}' for writing: {}", path, std::strerror(errno));
    const std::string s = str();
    out.write(s.data(), std::streamsize(s.size()));
    out.close();
    if (!out) fail(errc::file_open, "html_report: writing '{}' failed: {}", path, std::strerror(errno));
}

} // namespace actlens::report
