// Tests of ragged_forward, the stacked partial reruns behind activation patching: every run must
// reproduce the rows a full forward computes for the same positions (reference: forward() with
// hooks), whatever its start, length, first block and neighbours in the stack; and bad runs or
// base activations are refused with a clear error.
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/model/ragged_forward.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace actlens;

namespace {

struct ragged_base_case {
    activation_cache<double> cache;
    ragged_base<double> base;
    tensor<double> logits; // [B, S, V] of the full forward
};

// The full forward of `tokens` [B, S], with what ragged_forward reads from it.
ragged_base_case run_base(const basic_transformer<double>& m, const std::vector<std::int32_t>& tokens, std::size_t B) {
    const model_config& c = m.config();
    const bool rotary = c.position == position_kind::rotary;
    ragged_base_case r;
    hook_set<double> hooks;
    std::vector<hook_point> points;
    for (int l = 0; l < int(c.n_layers); ++l) {
        points.push_back({site::resid_pre, l});
        points.push_back({rotary ? site::attn_rot_q : site::attn_q, l});
        points.push_back({rotary ? site::attn_rot_k : site::attn_k, l});
        points.push_back({site::attn_v, l});
        points.push_back({site::resid_post, l});
    }
    r.cache.capture_into(hooks, points);
    run_options<double> o;
    o.hooks = &hooks;
    r.logits = m.forward(tensor_view<const std::int32_t>(tokens.data(), {B, tokens.size() / B}), o);
    for (int l = 0; l < int(c.n_layers); ++l) {
        r.base.resid_pre.push_back(r.cache.at(hook_point{site::resid_pre, l}).view());
        r.base.keys.push_back(r.cache.at(hook_point{rotary ? site::attn_rot_k : site::attn_k, l}).view());
        r.base.values.push_back(r.cache.at(hook_point{site::attn_v, l}).view());
        r.base.queries.push_back(r.cache.at(hook_point{rotary ? site::attn_rot_q : site::attn_q, l}).view());
    }
    return r;
}

double max_abs_diff_span(const double* a, const double* b, std::size_t n) {
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst;
}

} // namespace

TEST_CASE("ragged_forward: unpatched runs reproduce the full forward's rows", "[model][patching]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const model_config& c = named.config;
        const auto m = make_random_transformer<double>(c, 5);
        const std::size_t B = 2, S = 9, d = c.d_model, L = c.n_layers;
        const auto tokens = tiny::tokens(B * S, c.vocab_size, 6);
        const ragged_base_case base = run_base(m, tokens, B);
        const tensor<double>& final_resid = base.cache.at(hook_point{site::resid_post, int(L) - 1});
        // Mixed starts, lengths (some stop before the end), rows and first blocks; ordered by layer.
        const std::vector<ragged_run> runs = {{0, 0, S, 0}, {1, 3, 6, 0},          {0, 8, 1, 0},
                                              {1, 2, 4, 1}, {0, 5, 4, int(L) - 1}, {1, 0, 9, int(L) - 1}};
        ragged_workspace<double> ws;
        auto nothing = [](site, int, const ragged_activation<double>&) {};
        const auto all_rows = tensor<double>::copy_of(ragged_forward(m, ws, runs, base.base, false, nothing));
        std::size_t row = 0;
        for (const ragged_run& r : runs)
            for (std::size_t p = r.start; p < r.start + r.length; ++p, ++row)
                CHECK(max_abs_diff_span(&all_rows(row, 0), &final_resid(r.base_row, p, 0), d) < 1e-12);
        CHECK(row == all_rows.extent(0));

        const auto last_rows = tensor<double>::copy_of(ragged_forward(m, ws, runs, base.base, true, nothing));
        REQUIRE(last_rows.shape() == shape_t{runs.size(), d});
        const tensor_view<const double> logits = ragged_logits(m, ws, last_rows.view());
        for (std::size_t i = 0; i < runs.size(); ++i) {
            const std::size_t p = runs[i].start + runs[i].length - 1;
            CHECK(max_abs_diff_span(&last_rows(i, 0), &final_resid(runs[i].base_row, p, 0), d) < 1e-12);
            CHECK(max_abs_diff_span(&logits(i, 0), &base.logits(runs[i].base_row, p, 0), c.vocab_size) < 1e-11);
        }
    }
}

TEST_CASE("ragged_forward: an edit at a site equals the same edit by a hook in a full forward", "[model][patching]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const model_config& c = named.config;
        const auto m = make_random_transformer<double>(c, 7);
        const std::size_t S = 7, L = c.n_layers;
        const auto tokens = tiny::tokens(S, c.vocab_size, 8);
        const ragged_base_case base = run_base(m, tokens, 1);
        // Run 1 is edited at block `layer`, position 4: 0.5 is added to element 1 of the site.
        for (site at : {site::resid_pre, site::attn_z, site::attn_out, site::resid_mid, site::mlp_post, site::mlp_out,
                        site::resid_post})
            for (int layer : {0, int(L) - 1}) {
                if (at == site::resid_mid && c.parallel_residual) continue; // no such site
                INFO("site " << (hook_point{at, layer}.name()));
                // At resid_pre the edited row is run 1's first: its other rows may reuse the base run's
                // queries, keys and values.
                const bool reuse = at == site::resid_pre;
                const std::vector<ragged_run> runs = {{0, 2, S - 2, 0}, {0, 4, S - 4, layer, reuse}};
                auto edit = [&](site s, int l, const ragged_activation<double>& a) {
                    if (s != at || l != layer) return;
                    if (double* row = a.row(1, 4)) row[1] += 0.5;
                    CHECK(a.row(0, 1) == nullptr); // before run 0's start
                };
                ragged_workspace<double> ws;
                const auto rows = tensor<double>::copy_of(ragged_forward(m, ws, runs, base.base, true, edit));
                const tensor_view<const double> logits = ragged_logits(m, ws, rows.view());

                hook_set<double> hooks;
                hooks.add(hook_point{at, layer}, [](tensor_view<double> a, const hook_context& ctx) {
                    double* row = a.data() + (4 - ctx.position_offset) * (a.size() / a.extent(1));
                    row[1] += 0.5;
                });
                run_options<double> o;
                o.hooks = &hooks;
                const tensor<double> truth = m.forward(tensor_view<const std::int32_t>(tokens.data(), {1, S}), o);
                const double moved = max_abs_diff_span(&truth(0, S - 1, 0), &base.logits(0, S - 1, 0), c.vocab_size);
                CHECK(max_abs_diff_span(&logits(1, 0), &truth(0, S - 1, 0), c.vocab_size) < 1e-11);
                CHECK(max_abs_diff_span(&logits(0, 0), &base.logits(0, S - 1, 0), c.vocab_size) < 1e-11);
                // The edit reaches the last position unless it is after attention in the last block.
                const bool reaches = layer + 1 < int(L) || at == site::resid_pre;
                if (reaches)
                    CHECK(moved > 1e-6);
                else
                    CHECK(moved == 0);
            }
    }
}

TEST_CASE("ragged_forward: bad runs and base activations are refused", "[model][patching][errors]") {
    const model_config c = tiny::gpt2();
    const auto m = make_random_transformer<double>(c, 3);
    const std::size_t S = 5;
    const auto tokens = tiny::tokens(S, c.vocab_size, 1);
    const ragged_base_case base = run_base(m, tokens, 1);
    ragged_workspace<double> ws;
    auto nothing = [](site, int, const ragged_activation<double>&) {};
    auto run = [&](std::vector<ragged_run> runs, const ragged_base<double>& b) {
        ragged_forward(m, ws, runs, b, true, nothing);
    };
    require_error([&] { run({}, base.base); }, errc::empty_prompt);
    require_error([&] { run({{1, 0, S, 0}}, base.base); }, errc::invalid_argument, "run 0");   // no row 1
    require_error([&] { run({{0, 2, S, 0}}, base.base); }, errc::invalid_argument, "run 0");   // past the end
    require_error([&] { run({{0, 0, 0, 0}}, base.base); }, errc::invalid_argument, "run 0");   // empty
    require_error([&] { run({{0, std::size_t(-1), 2, 0}}, base.base); }, errc::invalid_argument, "run 0"); // wraps
    require_error([&] { run({{0, 0, S, 3}}, base.base); }, errc::invalid_argument, "first layer 3"); // no block 3
    require_error([&] { run({{0, 0, S, 1}, {0, 0, S, 0}}, base.base); }, errc::invalid_argument, "ordered");
    ragged_base<double> no_queries = base.base;
    no_queries.queries.clear();
    run({{0, 0, S, 0}}, no_queries); // queries are read only by runs that reuse them
    require_error([&] { run({{0, 0, S, 0, true}}, no_queries); }, errc::shape_mismatch, "queries");
    ragged_base<double> short_base = base.base;
    short_base.keys.pop_back();
    require_error([&] { run({{0, 0, S, 0}}, short_base); }, errc::shape_mismatch, "layers");
    ragged_base<double> wrong_width = base.base;
    wrong_width.values[1] = tensor_view<const double>(wrong_width.values[1].data(), {S - 1, c.d_model});
    require_error([&] { run({{0, 0, S, 0}}, wrong_width); }, errc::shape_mismatch, "layer 1");
    tensor<double> rows({2, c.d_model + 1});
    require_error([&] { ragged_logits(m, ws, static_cast<const tensor<double>&>(rows).view()); }, errc::shape_mismatch,
                  "ragged_logits");
}
