// actlens/model/hook_point.hpp: named places in the forward pass, with TransformerLens's names.
//
// A hook point is {site, layer}. Its printable name is the one TransformerLens uses
// ("blocks.3.hook_resid_pre", "blocks.0.attn.hook_pattern", "ln_final.hook_normalized"), so that
// users bring their habits and results compare with Python tools. Names parse both ways, and a glob
// ("blocks.*.mlp.hook_post") selects many.
#pragma once

#include <actlens/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace actlens {

/// Where in a block (or outside the blocks) a hook point sits, in forward order.
enum class site : std::uint8_t {
    embed,              ///< hook_embed             [B, T, d]   token embedding
    pos_embed,          ///< hook_pos_embed         [B, T, d]   learned positions only
    resid_pre,          ///< blocks.l.hook_resid_pre            [B, T, d]
    ln1_normalized,     ///< blocks.l.ln1.hook_normalized       [B, T, d]
    attn_q,             ///< blocks.l.attn.hook_q               [B, T, H, d_h]
    attn_k,             ///< blocks.l.attn.hook_k               [B, T, H_kv, d_h]
    attn_v,             ///< blocks.l.attn.hook_v               [B, T, H_kv, d_h]
    attn_rot_q,         ///< blocks.l.attn.hook_rot_q           [B, T, H, d_h]   rotary only
    attn_rot_k,         ///< blocks.l.attn.hook_rot_k           [B, T, H_kv, d_h] rotary only
    attn_scores,        ///< blocks.l.attn.hook_attn_scores     [B, H, T, T_k]  masked with -inf
    attn_pattern,       ///< blocks.l.attn.hook_pattern         [B, H, T, T_k]
    attn_z,             ///< blocks.l.attn.hook_z               [B, T, H, d_h]
    ln1_post_normalized,///< blocks.l.ln1_post.hook_normalized  [B, T, d]   post_norms only: before the gain
    attn_out,           ///< blocks.l.hook_attn_out             [B, T, d]
    resid_mid,          ///< blocks.l.hook_resid_mid            [B, T, d]
    ln2_normalized,     ///< blocks.l.ln2.hook_normalized       [B, T, d]
    mlp_pre,            ///< blocks.l.mlp.hook_pre              [B, T, d_mlp]  (gate input for SwiGLU)
    mlp_pre_linear,     ///< blocks.l.mlp.hook_pre_linear       [B, T, d_mlp]  SwiGLU only (up projection)
    mlp_post,           ///< blocks.l.mlp.hook_post             [B, T, d_mlp]  the vector multiplying W_out
    ln2_post_normalized,///< blocks.l.ln2_post.hook_normalized  [B, T, d]   post_norms only: before the gain
    mlp_out,            ///< blocks.l.hook_mlp_out              [B, T, d]
    resid_post,         ///< blocks.l.hook_resid_post           [B, T, d]
    ln_final_normalized ///< ln_final.hook_normalized           [B, T, d]
};

inline constexpr std::size_t site_count = static_cast<std::size_t>(site::ln_final_normalized) + 1;

namespace detail {
/// The name of each site after "blocks.l." (or the whole name for sites outside the blocks).
inline constexpr std::array<std::string_view, site_count> site_names{{
    "hook_embed", "hook_pos_embed", "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
    "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern",
    "attn.hook_z", "ln1_post.hook_normalized", "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized",
    "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "ln2_post.hook_normalized", "hook_mlp_out",
    "hook_resid_post", "ln_final.hook_normalized",
}};
} // namespace detail

/// True for the sites that belong to a block (and so carry a layer index).
constexpr bool is_block_site(site s) noexcept {
    return s != site::embed && s != site::pos_embed && s != site::ln_final_normalized;
}

namespace detail {

/// Levenshtein distance (insertions, deletions, substitutions), O(|a| |b|) time, O(|b|) memory.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

/// The hook point name closest to `name`, or "" when none is close (within a quarter of its length,
/// at least 2 edits). Block names are tried with the layer `name` gives ("blocks.7.") or else layer 0,
/// and a bare block site ("hook_resid_pre") is matched to its full name.
inline std::string closest_hook_name(std::string_view name) {
    if (name.size() > 256) return ""; // a name that long is not a typo
    constexpr std::string_view prefix = "blocks.";
    std::string layer = "0";
    if (name.substr(0, prefix.size()) == prefix) {
        std::size_t end = prefix.size();
        while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
        if (end > prefix.size() && end - prefix.size() < 7) layer = std::string(name.substr(prefix.size(), end - prefix.size()));
    }
    std::string best;
    std::size_t best_distance = static_cast<std::size_t>(-1);
    // `distance` is from `name` to a text of `length` characters that stands for `candidate`.
    auto consider = [&](const std::string& candidate, std::size_t distance, std::size_t length) {
        const std::size_t allowed = std::max<std::size_t>(2, length / 4);
        if (distance <= allowed && distance < best_distance) {
            best = candidate;
            best_distance = distance;
        }
    };
    for (std::size_t i = 0; i < site_count; ++i) {
        const std::string_view tail = site_names[i];
        if (!is_block_site(static_cast<site>(i))) {
            consider(std::string(tail), edit_distance(name, tail), tail.size());
            continue;
        }
        const std::string full = std::string(prefix) + layer + "." + std::string(tail);
        consider(full, edit_distance(name, full), full.size());
        consider(full, edit_distance(name, tail), tail.size());
    }
    return best;
}

} // namespace detail

/// A place in the forward pass. `layer` is -1 for sites outside the blocks.
struct hook_point {
    actlens::site site = site::resid_pre;
    int layer = 0;

    /// The TransformerLens name, e.g. "blocks.3.hook_resid_pre".
    std::string name() const {
        const std::string_view tail = detail::site_names[static_cast<std::size_t>(site)];
        if (!is_block_site(site)) return std::string(tail);
        return "blocks." + std::to_string(layer) + "." + std::string(tail);
    }

    /// Parses a TransformerLens name; throws actlens::error (model.402) quoting the name if it is not
    /// one, with the closest hook point name when one is near ("did you mean ...").
    static hook_point parse(std::string_view name) {
        auto bad = [&]() -> hook_point {
            const std::string near = detail::closest_hook_name(name);
            if (near.empty()) fail(errc::bad_hook_name, "'{}' is not a hook point name", name);
            fail(errc::bad_hook_name, "'{}' is not a hook point name; did you mean '{}'?", name, near);
        };
        for (std::size_t i = 0; i < site_count; ++i) {
            const auto s = static_cast<actlens::site>(i);
            if (!is_block_site(s) && name == detail::site_names[i]) return {s, -1};
        }
        constexpr std::string_view prefix = "blocks.";
        if (name.substr(0, prefix.size()) != prefix) return bad();
        std::size_t pos = prefix.size();
        int layer = 0;
        const std::size_t digits_begin = pos;
        while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9') {
            if (layer > 100000) return bad();
            layer = layer * 10 + (name[pos] - '0');
            ++pos;
        }
        // Exactly one canonical spelling per layer: no empty index, no leading zeros.
        const std::size_t digits = pos - digits_begin;
        if (digits == 0 || (digits > 1 && name[digits_begin] == '0')) return bad();
        if (pos >= name.size() || name[pos] != '.') return bad();
        const std::string_view tail = name.substr(pos + 1);
        for (std::size_t i = 0; i < site_count; ++i) {
            const auto s = static_cast<actlens::site>(i);
            if (is_block_site(s) && tail == detail::site_names[i]) return {s, layer};
        }
        return bad();
    }

    friend bool operator==(const hook_point& a, const hook_point& b) noexcept {
        return a.site == b.site && a.layer == b.layer;
    }
    friend bool operator!=(const hook_point& a, const hook_point& b) noexcept { return !(a == b); }
    /// Forward order: embeddings, then blocks by layer and site, then the final norm.
    friend bool operator<(const hook_point& a, const hook_point& b) noexcept {
        const long ka = a.site == site::ln_final_normalized ? (1L << 40) : a.layer;
        const long kb = b.site == site::ln_final_normalized ? (1L << 40) : b.layer;
        return ka != kb ? ka < kb : a.site < b.site;
    }
};

/// Glob match of a whole name: '*' matches any run of characters (including '.'), '?' one character.
inline bool glob_match(std::string_view pattern, std::string_view text) noexcept {
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

} // namespace actlens
