// examples/name_task.hpp: stories260K's name-completion task and its null-model study, shared by
// examples/name_mover.cpp (parts 3-5) and examples/null_models.cpp (part 6).
//
// The task: a three-token name mentioned earlier in a story is completed from its first token
// ("Sue had a big red ball. One day, S" -> "u"), copying from context on in-distribution text, which
// stories260K does. Clean and corrupted rows differ in the earlier mention's last two tokens.
#pragma once

#include <actlens/analysis/correlation.hpp>
#include <actlens/analysis/null_models.hpp>
#include <actlens/analysis/significance.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/tokenizer/llama2c.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace name_task {

using actlens::printable_piece;
using tokens_t = std::vector<std::int32_t>;

// Rows of equal length whose clean and corrupted versions differ in a few positions; per row, the
// token the clean prompt should produce (`correct`) and the one the corrupted prompt should
// produce (`wrong`). Activation patching patches one index in every row at once, as in
// TransformerLens, so positions must mean the same thing in every row.
struct patching_task {
    std::size_t batch = 0, length = 0;
    tokens_t clean, corrupted; // [batch, length], row-major
    tokens_t correct, wrong;
    std::size_t first_changed = 0;          // first position where a clean and a corrupted row differ
    std::vector<std::string> column_labels; // what each position holds (from row 0)

    actlens::tensor_view<const std::int32_t> clean_view() const { return {clean.data(), {batch, length}}; }
    actlens::tensor_view<const std::int32_t> corrupted_view() const { return {corrupted.data(), {batch, length}}; }

    void add_row(const tokens_t& clean_row, const tokens_t& corrupted_row, std::int32_t right, std::int32_t other) {
        if (clean_row.size() != corrupted_row.size() || (batch > 0 && clean_row.size() != length))
            actlens::fail(actlens::errc::shape_mismatch,
                          "patching task: row {} has {} clean and {} corrupted tokens, the batch has {}", batch,
                          clean_row.size(), corrupted_row.size(), length);
        length = clean_row.size();
        clean.insert(clean.end(), clean_row.begin(), clean_row.end());
        corrupted.insert(corrupted.end(), corrupted_row.begin(), corrupted_row.end());
        correct.push_back(right);
        wrong.push_back(other);
        ++batch;
    }

    void finish(const actlens::llama2c_tokenizer& tok) {
        first_changed = length;
        for (std::size_t i = 0; i < clean.size(); ++i)
            if (clean[i] != corrupted[i]) first_changed = std::min(first_changed, i % length);
        column_labels.clear();
        for (std::size_t t = 0; t < length; ++t) column_labels.push_back(t == 0 ? "BOS" : printable_piece(tok.piece(clean[t])));
    }
};

// Three-token names that share their first token in pairs (" S"+"u"+"e" and " S"+"ar"+"a"). The
// prompt mentions the name, then ends with its first token; the next token can only come from the
// earlier mention, which is induction on in-distribution text. Corrupted: the other name of the
// pair, which changes only the two tokens after the first mention's first token.
struct name_pair {
    const char* name;
    const char* other;
};
inline const std::vector<name_pair> name_pairs = {{"Sue", "Sara"},  {"Spot", "Sally"}, {"Bob", "Bill"}, {"Bea", "Bob"},
                                           {"Tina", "Tess"}, {"Tara", "Tina"},  {"Lisa", "Luke"}, {"Lena", "Leo"},
                                           {"Mia", "Max"},   {"Mark", "Mimi"},  {"Mila", "Mia"},  {"Sky", "Sue"}};
inline constexpr const char* name_story = "{} had a big red ball. One day, {}";

// The story with `name` cut after its first token at the end, and the name's second token.
inline std::pair<tokens_t, std::int32_t> name_prompt(const actlens::llama2c_tokenizer& tok, const char* name) {
    tokens_t name_ids = tok.encode(std::string(" ") + name, false);
    name_ids.erase(name_ids.begin()); // the dummy-prefix space
    tokens_t ids = tok.encode(fmt::format(name_story, name, name), true);
    if (name_ids.size() != 3 || ids.size() < 4 || !std::equal(name_ids.begin(), name_ids.end(), ids.end() - 3))
        actlens::fail(actlens::errc::invalid_argument,
                      "name completion: name '{}' must be three tokens and end the story's tokens", name);
    ids.resize(ids.size() - 2);
    return {ids, name_ids[1]};
}

inline patching_task make_name_task(const actlens::llama2c_tokenizer& tok) {
    patching_task task;
    for (const name_pair& p : name_pairs)
        for (int flip = 0; flip < 2; ++flip) { // both names of a pair serve as the clean one
            const char* clean_name = flip ? p.other : p.name;
            const char* corrupt_name = flip ? p.name : p.other;
            const auto [clean, right] = name_prompt(tok, clean_name);
            const auto [corrupted, other] = name_prompt(tok, corrupt_name);
            if (clean.back() != corrupted.back() || right == other)
                actlens::fail(actlens::errc::invalid_argument,
                              "name completion: names '{}' and '{}' must share the first token and differ in the second",
                              clean_name, corrupt_name);
            task.add_row(clean, corrupted, right, other);
        }
    task.finish(tok);
    return task;
}

// The entries of an [L, X] map, columns first_col.. only.
inline std::vector<double> values(const actlens::tensor<double>& t, std::size_t first_col = 0) {
    std::vector<double> out;
    for (std::size_t r = 0; r < t.extent(0); ++r)
        for (std::size_t c = first_col; c < t.extent(1); ++c) out.push_back(t(r, c));
    return out;
}

// Head effects in raw logit difference: patching's change of the metric from the corrupted run, and
// AtP's and RelP's estimates of that change. Each is rerun on K null models of the same shapes
// (analysis/null_models.hpp); a head is a finding when its effect is larger than the nulls give
// (permutation p-value) after Benjamini-Hochberg across the heads.
inline void null_model_study(const actlens::transformer& model, const patching_task& task, const char* title) {
    using namespace actlens;
    const auto cv = task.clean_view(), xv = task.corrupted_view();
    const logit_difference ld{task.correct, task.wrong};
    attribution_options relp;
    relp.backward.rule = rule::relp;
    struct method {
        const char* name;
        std::function<std::vector<double>(const transformer&)> run;
    };
    const std::vector<method> methods = {
        {"patching",
         [&](const transformer& m) {
             const double base = ld.value(m.forward(xv));
             std::vector<double> out = values(activation_patch(m, cv, xv, ld, patch_target::head).scores);
             for (double& x : out) x -= base;
             return out;
         }},
        {"AtP", [&](const transformer& m) { return values(attribution_patch(m, cv, xv, ld, patch_target::head).scores); }},
        {"RelP",
         [&](const transformer& m) { return values(attribution_patch(m, cv, xv, ld, patch_target::head, relp).scores); }}};
    const std::size_t runs = 19, H = model.config().n_heads;
    fmt::print("\n== {}: the head effects against null models ({} per kind, so p >= 1/{}); heads declared at FDR "
               "0.1 (Benjamini-Hochberg across the {}) by permutation p-values and by the Gaussian tail of z ==\n",
               title, runs, runs + 1, model.config().n_layers * H);
    for (const null_kind kind : {null_kind::matched_random, null_kind::scrambled_heads}) {
        fmt::print("\nnull: {}\n", kind == null_kind::matched_random
                                       ? "every weight tensor redrawn with its own mean and spread"
                                       : "each layer's W_O head blocks permuted (heads write through others' outputs)");
        fmt::print("{:<9} {:>8} {:>8}  {}\n", "method", "perm", "gauss", "top 3 by |effect|: effect (null mean +- sd, z, p, q)");
        for (const method& m : methods) {
            const null_test_result r = test_against_null(model, m.run, kind, runs, 1);
            std::string top;
            for (std::size_t i : top_k_indices(r.observed, 3))
                top += fmt::format("L{}.H{} {:+.3f} ({:+.3f} +- {:.3f}, z {:.1f}, p {:.2f}, q {:.2f})  ", i / H, i % H,
                                   r.observed[i], r.null_mean[i], r.null_sd[i], r.effect[i], r.p_value[i], r.q_value[i]);
            fmt::print("{:<9} {:>8} {:>8}  {}\n", m.name, fdr_discoveries(r.q_value, 0.1).size(),
                       fdr_discoveries(r.q_gaussian, 0.1).size(), top);
        }
    }
}

} // namespace name_task
