// actlens/report/display.hpp: rich display of tensors and results in xeus-cling / xeus-cpp notebooks.
//
// xeus-cling shows the last expression of a cell through an ADL function
// `nlohmann::json mime_bundle_repr(const T&)` returning {"text/html": ..., "text/plain": ...}. This
// header provides it for actlens::tensor / tensor_view, and for small display types that pair
// numbers with the labels a raw tensor lacks:
//   score_map              a [rows, cols] map of scores with labels (patching, attribution),
//   attention_pattern      a pattern [T, T] or [H, T, T] with the tokens it attends over,
//   token_readout          a neuron's or feature's top tokens and its contexts, the token highlighted,
//   generation_comparison  two continuations of one prompt, tokens that differ marked.
// Each type also has render_html() / render_text(), which html_report uses for files. The header
// is light on purpose (tensor, fmt, nlohmann's json_fwd.hpp; no Eigen, xtensor or nlohmann/json.hpp)
// since a notebook's interpreter parses it; report/methods.hpp turns the methods' results into these
// types. Each mime_bundle_repr is a template whose return type `Json` is a defaulted template
// parameter (nlohmann::json) used only dependently: nlohmann::json is complete, and its code compiled,
// only where a display is called, after the caller (xeus, a test) has included <nlohmann/json.hpp>.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/report/color.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/svg.hpp>
#include <actlens/report/text.hpp>

#include <fmt/core.h>
#include <nlohmann/json_fwd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <type_traits>
#include <vector>

namespace actlens::report {

/// Scores [rows, cols] with labels, drawn as a heatmap (empty labels: indices).
struct score_map {
    tensor<double> values;
    std::vector<std::string> row_labels, col_labels;
    heatmap_options options;
};

/// An attention pattern: [T_q, T_k] or [H, T_q, T_k] (rows sum to 1 over the keys), with the
/// sequence's tokens; drawn as one heatmap per head on a 0..1 sequential scale.
struct attention_pattern {
    tensor<float> pattern;
    std::vector<std::string> tokens; ///< T token pieces (queries and keys are the same sequence)
    int layer = -1;                  ///< for the titles; -1: not shown
    std::vector<std::size_t> heads;  ///< the heads to draw; empty: all
};

/// A token and a value (a logit, a probability, a weight).
struct scored_token {
    std::string token;
    double value = 0;
};

/// A context in which a unit is active: its tokens, optionally a value per token, and the token of
/// interest.
struct context_example {
    std::vector<std::string> tokens;
    std::vector<double> values; ///< empty, or one per token
    std::size_t focus = 0;
    double score = 0;           ///< the unit's activation at `focus`
};

/// What a neuron or feature reads or writes: its top tokens and its top-activating contexts.
struct token_readout {
    std::string title;
    std::string item_name = "token";     ///< what top_tokens lists (tokens are shown quoted)
    std::string value_name = "logit";    ///< what top_tokens' values are
    std::vector<scored_token> top_tokens;
    std::string score_name = "activation"; ///< what the examples' scores are
    std::vector<context_example> examples;
};

/// Two continuations of one prompt, e.g. unsteered and steered generation.
struct generation_comparison {
    std::vector<std::string> prompt, baseline, changed; ///< token pieces; continuations exclude the prompt
    std::string baseline_label = "unsteered", changed_label = "steered";
};

inline std::string render_html(const score_map& m);
inline std::string render_text(const score_map& m);
/// Throws actlens::error arg.101 for an empty pattern, arg.102 for a bad shape or token count,
/// arg.103 for a head out of range.
inline std::string render_html(const attention_pattern& p);
inline std::string render_text(const attention_pattern& p);
/// Throws actlens::error (via token_strip_html) for an example whose values or focus do not fit.
inline std::string render_html(const token_readout& r);
inline std::string render_text(const token_readout& r);
inline std::string render_html(const generation_comparison& g);
inline std::string render_text(const generation_comparison& g);

/// Which tokens of `a` and of `b` are outside a longest common subsequence of the two (the
/// tokens a diff marks as removed and added). O(|a|·|b|) time and memory.
inline void mark_differences(const std::vector<std::string>& a, const std::vector<std::string>& b,
                             std::vector<bool>& a_differs, std::vector<bool>& b_differs);

/// {"text/html", "text/plain"} for a notebook, as a `Json` (nlohmann::json; the caller includes it).
template <class Json>
Json mime_bundle_of(const std::string& html, std::string text) {
    Json bundle = Json::object();
    bundle["text/html"] = "<div class=\"actlens-output\"><style>" + std::string(report_css()) + "</style>" + html + "</div>";
    bundle["text/plain"] = std::move(text);
    return bundle;
}

/// The bundle of a display type.
template <class Json, class Shown>
Json mime_bundle(const Shown& shown) {
    return mime_bundle_of<Json>(render_html(shown), render_text(shown));
}

// The displays are found by ADL. Their `Json` parameter keeps nlohmann::json (declared by json_fwd.hpp,
// defined by json.hpp) out of every file that does not show something (README "Compile time").
template <class Json = nlohmann::json>
Json mime_bundle_repr(const score_map& m) { return mime_bundle<Json>(m); }
template <class Json = nlohmann::json>
Json mime_bundle_repr(const attention_pattern& p) { return mime_bundle<Json>(p); }
template <class Json = nlohmann::json>
Json mime_bundle_repr(const token_readout& r) { return mime_bundle<Json>(r); }
template <class Json = nlohmann::json>
Json mime_bundle_repr(const generation_comparison& g) { return mime_bundle<Json>(g); }

/// A name for an element type: "float32", "float64", "int32", ...
template <class T>
constexpr const char* element_type_name() {
    using U = std::remove_const_t<T>;
    if constexpr (std::is_same_v<U, float>) return "float32";
    else if constexpr (std::is_same_v<U, double>) return "float64";
    else if constexpr (std::is_same_v<U, std::int8_t>) return "int8";
    else if constexpr (std::is_same_v<U, std::uint8_t>) return "uint8";
    else if constexpr (std::is_same_v<U, std::int16_t>) return "int16";
    else if constexpr (std::is_same_v<U, std::uint16_t>) return "uint16";
    else if constexpr (std::is_same_v<U, std::int32_t>) return "int32";
    else if constexpr (std::is_same_v<U, std::uint32_t>) return "uint32";
    else if constexpr (std::is_same_v<U, std::int64_t>) return "int64";
    else if constexpr (std::is_same_v<U, std::uint64_t>) return "uint64";
    else if constexpr (std::is_same_v<U, bool>) return "bool";
    else return "element";
}

/// How much of a tensor the display shows.
struct tensor_display_options {
    std::size_t max_rows = 8, max_cols = 10;
};

/// A tensor's type, shape and statistics, and a table of its leading [rows, cols] block (of the
/// first matrix for rank 3 and 4), cells coloured on a diverging scale.
template <class T>
std::string render_html(tensor_view<T> t, const tensor_display_options& options = {});
template <class T>
std::string render_text(tensor_view<T> t, const tensor_display_options& options = {});

} // namespace actlens::report

namespace actlens {

/// Notebook display of a tensor or view (found by ADL for actlens::tensor<T>).
template <class T, class Json = nlohmann::json>
Json mime_bundle_repr(const tensor_view<T>& t) {
    return report::mime_bundle_of<Json>(report::render_html(t), report::render_text(t));
}

template <class T, class Json = nlohmann::json>
Json mime_bundle_repr(const tensor<T>& t) {
    const auto view = t.view();
    return report::mime_bundle_of<Json>(report::render_html(view), report::render_text(view));
}

} // namespace actlens

namespace actlens::report {

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

// The statistics line of a tensor: count, min, max, mean over finite values, and the non-finite count.
struct tensor_summary {
    std::size_t elements = 0, non_finite = 0;
    double min = 0, max = 0, mean = 0;
};

template <class T>
tensor_summary summarize(tensor_view<T> t) {
    tensor_summary s;
    if (t.empty()) return s; // a rank-0 shape still has extents 1: the loops below would read null
    s.elements = t.size();
    std::size_t finite = 0;
    double sum = 0;
    s.min = std::numeric_limits<double>::infinity();
    s.max = -s.min;
    const shape_t& e = t.shape();
    for (std::size_t i = 0; i < e[0]; ++i)
        for (std::size_t j = 0; j < e[1]; ++j)
            for (std::size_t k = 0; k < e[2]; ++k)
                for (std::size_t l = 0; l < e[3]; ++l) {
                    const double v = double(t(i, j, k, l));
                    if (!std::isfinite(v)) {
                        ++s.non_finite;
                        continue;
                    }
                    ++finite;
                    sum += v;
                    s.min = std::min(s.min, v);
                    s.max = std::max(s.max, v);
                }
    if (finite == 0) s.min = s.max = std::nan("");
    s.mean = finite ? sum / double(finite) : std::nan("");
    return s;
}

template <class T>
std::string tensor_heading(tensor_view<T> t, const tensor_summary& s) {
    std::string out = fmt::format("tensor<{}> {}, {} elements", element_type_name<T>(), t.shape().to_string(),
                                  s.elements);
    if (s.elements) out += fmt::format("; min {}, max {}, mean {}", format_value(s.min), format_value(s.max),
                                       format_value(s.mean));
    if (s.non_finite) out += fmt::format("; {} non-finite", s.non_finite);
    return out;
}

// The matrix a tensor display shows: the view itself up to rank 2, else its first [rows, cols]
// matrix, and the text saying which part that is.
template <class T>
tensor_view<T> displayed_matrix(tensor_view<T> t, std::string& which) {
    while (t.rank() > 2) {
        which += "0, ";
        t = t.slice(0);
    }
    if (!which.empty()) which = "[" + which + ":, :]";
    return t;
}

} // namespace detail

template <class T>
std::string render_html(tensor_view<T> t, const tensor_display_options& options) {
    const detail::tensor_summary s = detail::summarize(t);
    std::string out = "<div class=\"actlens-note\">" + safe_text(detail::tensor_heading(t, s)) + "</div>";
    if (t.empty()) return out;
    std::string which;
    const tensor_view<T> m = detail::displayed_matrix(t, which);
    const std::size_t rows = m.rank() == 1 ? 1 : m.extent(0), cols = m.rank() == 1 ? m.extent(0) : m.extent(1);
    const auto at = [&](std::size_t r, std::size_t c) { return double(m.rank() == 1 ? m(c) : m(r, c)); };
    const color_scale scale{scale_kind::diverging, std::max(std::abs(s.min), std::abs(s.max))};
    const std::size_t shown_rows = std::min(rows, options.max_rows), shown_cols = std::min(cols, options.max_cols);
    out += "<table class=\"actlens-table\"><tbody>";
    for (std::size_t r = 0; r < shown_rows; ++r) {
        out += "<tr>";
        for (std::size_t c = 0; c < shown_cols; ++c) {
            const rgb bg = scale(at(r, c));
            out += fmt::format("<td style=\"background:{};color:{}\">{}</td>", bg.hex(), text_color_on(bg).hex(),
                               format_value(at(r, c)));
        }
        if (shown_cols < cols) out += "<td>\u2026</td>";
        out += "</tr>";
    }
    if (shown_rows < rows) out += "<tr><td>\u22ee</td></tr>";
    out += "</tbody></table>";
    if (!which.empty() || shown_rows < rows || shown_cols < cols)
        out += "<div class=\"actlens-note\">" +
               safe_text(fmt::format("showing {}{} rows x {} columns of {} x {}", which.empty() ? "" : which + ", ",
                                     shown_rows, shown_cols, rows, cols)) +
               "</div>";
    return out;
}

template <class T>
std::string render_text(tensor_view<T> t, const tensor_display_options& options) {
    std::string out = detail::tensor_heading(t, detail::summarize(t));
    if (t.empty()) return out;
    std::string which;
    const tensor_view<T> m = detail::displayed_matrix(t, which);
    if (!which.empty()) out += "\n" + which;
    const std::size_t rows = m.rank() == 1 ? 1 : m.extent(0), cols = m.rank() == 1 ? m.extent(0) : m.extent(1);
    for (std::size_t r = 0; r < std::min(rows, options.max_rows); ++r) {
        out += "\n";
        for (std::size_t c = 0; c < std::min(cols, options.max_cols); ++c)
            out += fmt::format("{:>11}", format_value(double(m.rank() == 1 ? m(c) : m(r, c))));
        if (cols > options.max_cols) out += "  \u2026";
    }
    if (rows > options.max_rows) out += "\n  \u22ee";
    return out;
}

inline std::string render_html(const score_map& m) {
    return heatmap_svg(m.values, m.row_labels, m.col_labels, m.options);
}

inline std::string render_text(const score_map& m) {
    const std::string title = m.options.title.empty() ? "score map" : m.options.title;
    if (m.values.rank() != 2 || m.values.empty()) return title + ": " + render_text(m.values.view());
    // The largest |score| is what a reader looks for first.
    std::size_t best = 0;
    for (std::size_t i = 1; i < m.values.size(); ++i)
        if (std::abs(m.values.data()[i]) > std::abs(m.values.data()[best]) || std::isnan(m.values.data()[best]))
            best = i;
    const std::size_t cols = m.values.extent(1), r = best / cols, c = best % cols;
    const auto label = [](const std::vector<std::string>& l, std::size_t i) {
        return i < l.size() ? display_text(l[i]) : std::to_string(i);
    };
    return fmt::format("{} [{} x {}]; largest |score| at {} \u00b7 {}: {}", title, m.values.extent(0), cols,
                       label(m.row_labels, r), label(m.col_labels, c), format_value(m.values.data()[best]));
}

namespace detail {

inline std::vector<std::size_t> pattern_heads(const attention_pattern& p) {
    if (p.pattern.empty()) fail(errc::invalid_argument, "attention_pattern: argument 'pattern' is empty");
    const int rank = p.pattern.rank();
    if (rank != 2 && rank != 3)
        fail(errc::shape_mismatch, "attention_pattern: 'pattern' must be [T, T] or [H, T, T], got {}",
             p.pattern.shape().to_string());
    const std::size_t q = p.pattern.extent(rank - 2), k = p.pattern.extent(rank - 1);
    if (q != k || (!p.tokens.empty() && p.tokens.size() != k))
        fail(errc::shape_mismatch, "attention_pattern: 'pattern' {} does not match {} 'tokens'",
             p.pattern.shape().to_string(), p.tokens.size());
    const std::size_t heads = rank == 3 ? p.pattern.extent(0) : 1;
    std::vector<std::size_t> out = p.heads;
    if (out.empty())
        for (std::size_t h = 0; h < heads; ++h) out.push_back(h);
    for (const std::size_t h : out)
        if (h >= heads) fail(errc::out_of_range, "attention_pattern: head {} in 'heads' is past the {} heads", h, heads);
    return out;
}

inline tensor_view<const float> head_pattern(const attention_pattern& p, std::size_t h) {
    return p.pattern.rank() == 3 ? p.pattern.view().slice(h) : p.pattern.view();
}

inline std::string head_title(const attention_pattern& p, std::size_t h) {
    const std::string layer = p.layer >= 0 ? fmt::format("L{} ", p.layer) : "";
    return p.pattern.rank() == 3 ? fmt::format("{}H{}", layer, h) : (layer.empty() ? "attention" : layer + "attention");
}

} // namespace detail

inline std::string render_html(const attention_pattern& p) {
    std::vector<std::string> labels;
    for (std::size_t i = 0; i < p.tokens.size(); ++i) labels.push_back(fmt::format("{} '{}'", i, p.tokens[i]));
    std::string out;
    for (const std::size_t h : detail::pattern_heads(p)) {
        heatmap_options o;
        o.title = detail::head_title(p, h);
        o.row_axis = "query";
        o.col_axis = "key";
        o.value_name = "attention";
        o.kind = scale_kind::sequential;
        o.limit = 1.0;
        o.show_values = false;
        o.cell_width = o.cell_height = 16;
        out += "<div style=\"display:inline-block;vertical-align:top;margin:0 12px 12px 0\">" +
               heatmap_svg(detail::head_pattern(p, h), labels, labels, o) + "</div>";
    }
    return out;
}

inline std::string render_text(const attention_pattern& p) {
    std::string out;
    for (const std::size_t h : detail::pattern_heads(p)) {
        const tensor_view<const float> v = detail::head_pattern(p, h);
        out += (out.empty() ? "" : "\n") + detail::head_title(p, h) + ": strongest key per query:";
        for (std::size_t q = 0; q < v.extent(0); ++q) {
            std::size_t best = 0;
            for (std::size_t k = 1; k < v.extent(1); ++k)
                if (v(q, k) > v(q, best)) best = k;
            out += fmt::format(" {}->{} ({:.2f})", q, best, v(q, best));
        }
    }
    return out;
}

namespace detail {

inline std::string quoted_item(const token_readout& r, const std::string& item) {
    return r.item_name == "token" ? "'" + item + "'" : item;
}

} // namespace detail

inline std::string render_html(const token_readout& r) {
    std::string out;
    if (!r.title.empty()) out += "<h3>" + safe_text(r.title) + "</h3>";
    if (!r.top_tokens.empty()) {
        std::vector<std::vector<std::string>> rows;
        for (std::size_t i = 0; i < r.top_tokens.size(); ++i)
            rows.push_back({std::to_string(i + 1), detail::quoted_item(r, r.top_tokens[i].token),
                            format_value(r.top_tokens[i].value)});
        out += table_html({"#", r.item_name, r.value_name}, rows);
    }
    for (const context_example& e : r.examples) {
        token_strip_options o;
        o.focus = e.focus;
        o.value_name = r.score_name;
        out += "<div class=\"actlens-note\">" + safe_text(fmt::format("{} {}", r.score_name, format_value(e.score))) +
               "</div>" + token_strip_html(e.tokens, e.values, o);
    }
    return out;
}

inline std::string render_text(const token_readout& r) {
    std::string out = r.title.empty() ? "readout" : display_text(r.title);
    if (!r.top_tokens.empty()) {
        out += "\ntop " + r.item_name + "s (" + r.value_name + "):";
        for (const scored_token& t : r.top_tokens)
            out += fmt::format(" {} {}", display_text(detail::quoted_item(r, t.token)), format_value(t.value));
    }
    for (const context_example& e : r.examples) {
        out += fmt::format("\n{} {}: ", r.score_name, format_value(e.score));
        for (std::size_t i = 0; i < e.tokens.size(); ++i)
            out += i == e.focus ? "[[" + display_text(e.tokens[i]) + "]]" : display_text(e.tokens[i]);
    }
    return out;
}

inline void mark_differences(const std::vector<std::string>& a, const std::vector<std::string>& b,
                             std::vector<bool>& a_differs, std::vector<bool>& b_differs) {
    const std::size_t n = a.size(), m = b.size();
    // lcs[i][j]: length of a longest common subsequence of a[i..] and b[j..].
    std::vector<std::size_t> lcs((n + 1) * (m + 1), 0);
    const auto at = [&](std::size_t i, std::size_t j) -> std::size_t& { return lcs[i * (m + 1) + j]; };
    for (std::size_t i = n; i-- > 0;)
        for (std::size_t j = m; j-- > 0;)
            at(i, j) = a[i] == b[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    a_differs.assign(n, true);
    b_differs.assign(m, true);
    for (std::size_t i = 0, j = 0; i < n && j < m;) {
        if (a[i] == b[j]) {
            a_differs[i++] = false;
            b_differs[j++] = false;
        } else if (at(i + 1, j) >= at(i, j + 1)) {
            ++i;
        } else {
            ++j;
        }
    }
}

namespace detail {

inline std::string diff_strip(const std::vector<std::string>& prompt, const std::vector<std::string>& tokens,
                              const std::vector<bool>& differs, const char* mark) {
    std::string out = "<div class=\"actlens-tokens\">";
    for (const std::string& t : prompt)
        out += "<span class=\"actlens-token prompt\">" + safe_text(t) + "</span>";
    for (std::size_t i = 0; i < tokens.size(); ++i)
        out += fmt::format("<span class=\"actlens-token{}\"{}>{}</span>", differs[i] ? std::string(" ") + mark : "",
                           differs[i] ? fmt::format(" title=\"{}\"", mark) : "", safe_text(tokens[i]));
    return out + "</div>";
}

} // namespace detail

inline std::string render_html(const generation_comparison& g) {
    std::vector<bool> removed, added;
    mark_differences(g.baseline, g.changed, removed, added);
    const auto removed_count = std::count(removed.begin(), removed.end(), true);
    const auto added_count = std::count(added.begin(), added.end(), true);
    return "<div class=\"actlens-note\">" + safe_text(g.baseline_label) + "</div>" +
           detail::diff_strip(g.prompt, g.baseline, removed, "removed") + "<div class=\"actlens-note\">" +
           safe_text(g.changed_label) + "</div>" + detail::diff_strip(g.prompt, g.changed, added, "added") +
           "<div class=\"actlens-note\">" +
           safe_text(fmt::format("{} of {} tokens only in {} (struck out), {} of {} only in {} (green); grey: prompt",
                                 removed_count, g.baseline.size(), g.baseline_label, added_count, g.changed.size(),
                                 g.changed_label)) +
           "</div>";
}

inline std::string render_text(const generation_comparison& g) {
    std::vector<bool> removed, added;
    mark_differences(g.baseline, g.changed, removed, added);
    std::string prompt;
    for (const std::string& t : g.prompt) prompt += display_text(t);
    const auto line = [&](const std::vector<std::string>& tokens, const std::vector<bool>& differs, const char* open,
                          const char* close) {
        std::string out = prompt + "|";
        for (std::size_t i = 0; i < tokens.size(); ++i)
            out += differs[i] ? open + display_text(tokens[i]) + close : display_text(tokens[i]);
        return out;
    };
    return display_text(g.baseline_label) + ": " + line(g.baseline, removed, "[-", "-]") + "\n" +
           display_text(g.changed_label) + ": " + line(g.changed, added, "{+", "+}");
}

} // namespace actlens::report
