// actlens/report/methods.hpp: the methods' results as display types (report/display.hpp).
//
// A patching or attribution result holds scores and the names of their axes ("layer", "position",
// "head", "neuron"); patching_map() turns them into a labelled score_map, using the prompt's tokens
// for the positions when given, and mime_bundle_repr() shows a result in a notebook directly.
// neuron_readout() and feature_readout() pair decoded neurons and SNMF features with token text.
// This header includes the method headers (and so the model and Eigen); display.hpp does not.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/report/display.hpp>

#include <fmt/core.h>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace actlens::report {

/// The label of entry `i` of a result axis: "L3" (layer), "t5 ' cat'" (position, with `tokens`),
/// "t5" (position without), "H2" (head), "N17" (neuron), else "<axis> i".
inline std::string axis_entry_label(const std::string& axis, std::size_t i, const std::vector<std::string>& tokens);

/// A score map of scores [L, X] or [L, T, H] with axis names `axes` (a patching_result's or
/// atp_star_result's); [L, T, H] becomes rows "L3 t5 ' cat'" by columns "H2". `tokens` label the
/// positions (one per position, or empty). Maps wider than 48 columns are drawn without values in
/// narrow cells. Throws actlens::error arg.102 when `axes` does not name every axis or `tokens`
/// has the wrong length, arg.101 for empty scores.
inline score_map patching_map(const tensor<double>& scores, const std::vector<std::string>& axes,
                              const std::vector<std::string>& tokens = {}, std::string title = {});

inline score_map patching_map(const patching_result& r, const std::vector<std::string>& tokens = {},
                              std::string title = "activation patching") {
    return patching_map(r.scores, r.axes, tokens, std::move(title));
}

/// The top tokens of neuron `i` of `d.layers[l]`, with their logits; `piece_of(id)` gives a token's
/// text (e.g. a tokenizer's piece()). Throws actlens::error arg.103 for l or i out of range.
template <class PieceOf>
token_readout neuron_readout(const neuron_decoding& d, std::size_t l, std::size_t i, PieceOf&& piece_of);

/// Feature `j` of an SNMF fit: its neurons (as "N<index>" with their weights) and its
/// top-activating contexts with the active token framed.
template <class PieceOf>
token_readout feature_readout(std::size_t j, const std::vector<feature_neuron>& neurons,
                              const std::vector<feature_example>& examples, PieceOf&& piece_of);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline std::string axis_entry_label(const std::string& axis, std::size_t i, const std::vector<std::string>& tokens) {
    if (axis == "layer") return fmt::format("L{}", i);
    if (axis == "head") return fmt::format("H{}", i);
    if (axis == "neuron") return fmt::format("N{}", i);
    if (axis == "position") return tokens.empty() ? fmt::format("t{}", i) : fmt::format("t{} '{}'", i, tokens[i]);
    return fmt::format("{} {}", axis, i);
}

inline score_map patching_map(const tensor<double>& scores, const std::vector<std::string>& axes,
                              const std::vector<std::string>& tokens, std::string title) {
    if (scores.empty()) fail(errc::invalid_argument, "patching_map: argument 'scores' is empty");
    if (axes.size() != std::size_t(scores.rank()) || (scores.rank() != 2 && scores.rank() != 3))
        fail(errc::shape_mismatch, "patching_map: 'scores' {} needs 2 or 3 axes, and 'axes' names {}",
             scores.shape().to_string(), axes.size());
    for (std::size_t a = 0; a < axes.size(); ++a)
        if (axes[a] == "position" && !tokens.empty() && tokens.size() != scores.extent(int(a)))
            fail(errc::shape_mismatch, "patching_map: {} 'tokens' for {} positions", tokens.size(),
                 scores.extent(int(a)));
    score_map m;
    m.options.title = std::move(title);
    m.options.value_name = "score";
    const std::size_t cols = scores.extent(scores.rank() - 1);
    const std::string& col_axis = axes.back();
    for (std::size_t c = 0; c < cols; ++c) m.col_labels.push_back(axis_entry_label(col_axis, c, tokens));
    m.options.col_axis = col_axis;
    if (scores.rank() == 2) {
        m.values = scores;
        for (std::size_t r = 0; r < scores.extent(0); ++r) m.row_labels.push_back(axis_entry_label(axes[0], r, tokens));
        m.options.row_axis = axes[0];
    } else {
        const std::size_t outer = scores.extent(0), inner = scores.extent(1);
        m.values = tensor<double>::copy_of(scores.view().reshaped({outer * inner, cols}));
        for (std::size_t r = 0; r < outer; ++r)
            for (std::size_t s = 0; s < inner; ++s)
                m.row_labels.push_back(axis_entry_label(axes[0], r, tokens) + " " + axis_entry_label(axes[1], s, tokens));
        m.options.row_axis = axes[0] + " \u00b7 " + axes[1];
    }
    if (cols > 48) {
        m.options.show_values = false;
        m.options.cell_width = 10;
    }
    return m;
}

template <class PieceOf>
token_readout neuron_readout(const neuron_decoding& d, std::size_t l, std::size_t i, PieceOf&& piece_of) {
    if (l >= d.layers.size() || d.tokens.rank() != 3 || i >= d.tokens.extent(1))
        fail(errc::out_of_range, "neuron_readout: layer index {} / neuron {} outside the decoding ({} layers, {} neurons)",
             l, i, d.layers.size(), d.tokens.rank() == 3 ? d.tokens.extent(1) : 0);
    token_readout r;
    r.title = fmt::format("L{} N{}", d.layers[l], i);
    for (const token_score& t : d.neuron(l, i)) r.top_tokens.push_back({std::string(piece_of(t.token)), t.logit});
    return r;
}

template <class PieceOf>
token_readout feature_readout(std::size_t j, const std::vector<feature_neuron>& neurons,
                              const std::vector<feature_example>& examples, PieceOf&& piece_of) {
    token_readout r;
    r.title = fmt::format("feature {}", j);
    r.item_name = "neuron";
    r.value_name = "weight";
    r.score_name = "coefficient";
    for (const feature_neuron& n : neurons) r.top_tokens.push_back({fmt::format("N{}", n.neuron), n.weight});
    for (const feature_example& e : examples) {
        context_example c;
        for (const std::int32_t id : e.context) c.tokens.push_back(std::string(piece_of(id)));
        c.focus = e.token_in_context;
        c.score = e.coefficient;
        r.examples.push_back(std::move(c));
    }
    return r;
}

} // namespace actlens::report

namespace actlens {

/// Notebook display of a patching or attribution sweep (positions labelled by index).
/// (`Json` as in report/display.hpp: nlohmann::json, included by the caller.)
template <class Json = nlohmann::json>
Json mime_bundle_repr(const patching_result& r) { return report::mime_bundle<Json>(report::patching_map(r)); }

/// Notebook display of AtP*: the per-head scores [L, H].
template <class Json = nlohmann::json>
Json mime_bundle_repr(const atp_star_result& r) {
    return report::mime_bundle<Json>(report::patching_map(r.scores, r.axes, {}, "AtP* estimates"));
}

} // namespace actlens
