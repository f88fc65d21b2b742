#include "tiny_models.hpp"

#include "test_helpers.hpp"

#include <actlens/methods/steering.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>

using namespace actlens;

namespace {
bool same_values(const tensor<float>& a, const tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
} // namespace

TEST_CASE("hook_point: every name of both families parses and prints back the same", "[hooks]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const model_config& config = named.config;
        const auto m = make_random_transformer<float>(config, 1);
        const auto points = m.hook_points();
        for (const hook_point& p : points) {
            const std::string name = p.name();
            CHECK(hook_point::parse(name) == p);
            CHECK(hook_point::parse(name).name() == name);
        }
        // Outside the blocks: embed (+ pos_embed) and ln_final. Per block: 15 sites, plus rot_q and
        // rot_k with rotary positions, plus pre_linear with a gated MLP, less resid_mid with a parallel
        // residual, plus ln1_post and ln2_post with post norms.
        const std::size_t per_block = 15 + (config.position == position_kind::rotary ? 2 : 0) +
                                      (config.gated_mlp() ? 1 : 0) - (config.parallel_residual ? 1 : 0) +
                                      (config.post_norms ? 2 : 0);
        CHECK(points.size() == (config.position == position_kind::learned ? 2 : 1) + 1 + config.n_layers * per_block);
    }
    CHECK(hook_point::parse("blocks.11.attn.hook_pattern") == hook_point{site::attn_pattern, 11});
    CHECK(hook_point::parse("hook_embed") == hook_point{site::embed, -1});
    CHECK(hook_point::parse("ln_final.hook_normalized") == hook_point{site::ln_final_normalized, -1});
    CHECK(hook_point{site::mlp_post, 3}.name() == "blocks.3.mlp.hook_post");
    CHECK(hook_point{site::resid_mid, 0}.name() == "blocks.0.hook_resid_mid");
}

TEST_CASE("hook_point: names that are not hook points are rejected with their text", "[hooks][errors]") {
    for (const char* bad : {"", "blocks.01.hook_resid_pre", "blocks..hook_q", "blocks.3.hook_nope", "hook_embed2",
                            "blocks.-1.hook_resid_pre", "blocks.3", "blocks.3.", "blocks.2.hook_embed",
                            "blocks.99999999999.hook_resid_pre", "Blocks.0.hook_resid_pre"}) {
        INFO(bad);
        try {
            hook_point::parse(bad);
            FAIL("no error");
        } catch (const error& e) {
            CHECK(e.code() == errc::bad_hook_name);
            CHECK_THAT(e.what(), Catch::Contains("[actlens.model.402]") && Catch::Contains(std::string("'") + bad + "'"));
        }
    }
}

TEST_CASE("glob_match: * spans any characters, ? one", "[hooks]") {
    CHECK(glob_match("blocks.*.mlp.hook_post", "blocks.3.mlp.hook_post"));
    CHECK(glob_match("blocks.*.mlp.hook_post", "blocks.12.mlp.hook_post"));
    CHECK_FALSE(glob_match("blocks.*.mlp.hook_post", "blocks.3.mlp.hook_pre"));
    CHECK(glob_match("*", "hook_embed"));
    CHECK(glob_match("*resid*", "blocks.0.hook_resid_mid"));
    CHECK(glob_match("blocks.?.hook_z", "blocks.4.hook_z"));
    CHECK_FALSE(glob_match("blocks.?.hook_z", "blocks.14.hook_z"));
    CHECK_FALSE(glob_match("blocks.1", "blocks.10"));
    CHECK(glob_match("**a", "a"));
}

TEST_CASE("hooks: read-only hooks at every point leave the logits bit-identical", "[hooks]") {
    for (const auto& named : tiny::all()) {
        const std::string& family = named.name;
        const model_config& config = named.config;
        SECTION(family) {
            const auto m = make_random_transformer<float>(config, 11);
            const auto toks = tiny::tokens(2 * 7, config.vocab_size, 4);
            const tensor_view<const std::int32_t> batch(toks.data(), {2, 7});
            const tensor<float> plain = m.forward(batch);
            hook_set<float> hooks;
            std::map<std::string, int> calls;
            std::map<std::string, shape_t> shapes;
            double checksum = 0;
            hooks.add_matching("*", m.hook_points(), [&](tensor_view<float> a, const hook_context& c) {
                calls[c.point.name()]++;
                shapes[c.point.name()] = a.shape();
                CHECK(c.batch == 2);
                CHECK(c.positions == 7);
                for (std::size_t i = 0; i < a.size(); ++i) checksum += std::isfinite(a.data()[i]) ? a.data()[i] : 0;
            });
            run_options<float> o;
            o.hooks = &hooks;
            const tensor<float> hooked = m.forward(batch, o);
            REQUIRE(hooked.shape() == plain.shape());
            CHECK(std::memcmp(hooked.data(), plain.data(), plain.size() * sizeof(float)) == 0);
            CHECK(calls.size() == m.hook_points().size());
            for (const auto& [name, n] : calls) CHECK(n == 1);
            const std::size_t H = config.n_heads, Hkv = config.n_kv_heads, dh = config.d_head;
            CHECK(shapes["blocks.1.attn.hook_q"] == shape_t{2, 7, H, dh});
            CHECK(shapes["blocks.1.attn.hook_k"] == shape_t{2, 7, Hkv, dh});
            CHECK(shapes["blocks.1.attn.hook_pattern"] == shape_t{2, H, 7, 7});
            CHECK(shapes["blocks.1.attn.hook_z"] == shape_t{2, 7, H, dh});
            CHECK(shapes["blocks.1.mlp.hook_post"] == shape_t{2, 7, config.d_mlp});
            CHECK(shapes["ln_final.hook_normalized"] == shape_t{2, 7, config.d_model});
            CHECK(std::isfinite(checksum));
        }
    }
}

TEST_CASE("hooks: attention scores are masked with -inf and the pattern rows sum to one", "[hooks]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<double>(config, 2);
    auto [logits, cache] = m.run_with_cache(tiny::tokens(6, config.vocab_size), "blocks.0.attn.hook_*");
    const auto& scores = cache.at("blocks.0.attn.hook_attn_scores");
    const auto& pattern = cache.at("blocks.0.attn.hook_pattern");
    const auto& q = cache.at("blocks.0.attn.hook_rot_q");
    const auto& k = cache.at("blocks.0.attn.hook_rot_k");
    for (std::size_t h = 0; h < config.n_heads; ++h)
        for (std::size_t i = 0; i < 6; ++i) {
            double sum = 0;
            for (std::size_t j = 0; j < 6; ++j) {
                if (j > i) {
                    CHECK(std::isinf(scores(0, h, i, j)));
                    CHECK(pattern(0, h, i, j) == 0.0);
                    continue;
                }
                // The score recomputed from the cached rotated q and k of the head's kv group.
                double s = 0;
                for (std::size_t e = 0; e < config.d_head; ++e) s += q(0, i, h, e) * k(0, j, h / 2, e);
                CHECK(scores(0, h, i, j) == Approx(s / std::sqrt(double(config.d_head))).margin(1e-12));
                sum += pattern(0, h, i, j);
            }
            CHECK(sum == Approx(1.0).margin(1e-12));
        }
}

TEST_CASE("hooks: a hook that writes the last MLP output changes exactly the logits it feeds", "[hooks]") {
    for (const auto& named : tiny::all()) {
        const std::string& family = named.name;
        const model_config& config = named.config;
        SECTION(family) {
            const auto m = make_random_transformer<double>(config, 17);
            const std::size_t T = 6, p = 3;
            const auto toks = tiny::tokens(T, config.vocab_size, 2);
            const int last = int(config.n_layers) - 1;
            auto [clean, clean_cache] = m.run_with_cache(toks, "*");
            // Overwrite the MLP output of the last block at position p with a known vector.
            std::vector<double> patch(config.d_model);
            for (std::size_t i = 0; i < patch.size(); ++i) patch[i] = std::sin(double(i) + 0.5);
            hook_set<double> hooks;
            hooks.add(hook_point{site::mlp_out, last}, [&](tensor_view<double> a, const hook_context&) {
                for (std::size_t i = 0; i < config.d_model; ++i) a(0, p, i) = patch[i];
            });
            run_options<double> o;
            o.hooks = &hooks;
            auto [patched, patched_cache] = m.run_with_cache(toks, "*", o);
            // Upstream of the hook nothing moves, to the bit.
            // The residual the last MLP output joins: resid_mid, or resid_pre + attn_out with a parallel
            // residual (which has no resid_mid).
            const bool parallel = config.parallel_residual;
            const site before_mlp = parallel ? site::resid_pre : site::resid_mid;
            const auto& mid0 = clean_cache.at(hook_point{before_mlp, last});
            const auto& mid1 = patched_cache.at(hook_point{before_mlp, last});
            const auto& attn0 = clean_cache.at(hook_point{site::attn_out, last});
            CHECK(std::memcmp(mid0.data(), mid1.data(), mid0.size() * sizeof(double)) == 0);
            // The cache keeps what the hook left.
            CHECK(patched_cache.at(hook_point{site::mlp_out, last})(0, p, 1) == patch[1]);
            // Other positions' logits are untouched (the last block's MLP acts per position).
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t v = 0; v < config.vocab_size; ++v)
                    if (t != p) REQUIRE(patched(0, t, v) == clean(0, t, v));
            // Position p by hand: final norm of (resid_mid + patch), then the unembedding (and cap).
            const auto& W = m.weights();
            std::vector<double> x(config.d_model);
            double mean = 0, sq = 0;
            for (std::size_t i = 0; i < x.size(); ++i) {
                x[i] = mid0(0, p, i) + (parallel ? attn0(0, p, i) : 0.0) + patch[i];
                mean += x[i] / double(x.size());
            }
            if (config.norm == norm_kind::rms_norm) mean = 0;
            for (double v : x) sq += (v - mean) * (v - mean);
            const double inv = 1 / std::sqrt(sq / double(x.size()) + config.norm_eps);
            for (std::size_t i = 0; i < x.size(); ++i)
                x[i] = (x[i] - mean) * inv * W.final_norm_weight(i) +
                       (W.final_norm_bias.data() ? W.final_norm_bias(i) : 0.0);
            for (std::size_t v = 0; v < config.vocab_size; ++v) {
                double logit = 0;
                for (std::size_t i = 0; i < x.size(); ++i) logit += x[i] * W.unembedding(v, i);
                const double cap = config.final_logit_softcap; // Gemma 2 caps the logits
                if (cap > 0) logit = cap * std::tanh(logit / cap);
                CHECK(patched(0, p, v) == Approx(logit).margin(1e-11));
            }
            CHECK(patched(0, p, 0) != clean(0, p, 0));
        }
    }
}

TEST_CASE("hooks: a patched residual changes only later positions and equals a resumed forward", "[hooks]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 23);
    const std::size_t T = 7, p = 4;
    const auto toks = tiny::tokens(T, config.vocab_size);
    const tensor<float> clean = m.forward(toks);
    tensor<float> edited;
    hook_set<float> hooks;
    hooks.add("blocks.0.hook_resid_post", [&](tensor_view<float> a, const hook_context&) {
        for (std::size_t i = 0; i < config.d_model; ++i) a(0, p, i) *= -2.0f;
        edited = tensor<float>::copy_of(a);
    });
    run_options<float> o;
    o.hooks = &hooks;
    const tensor<float> patched = m.forward(toks, o);
    workspace<float> ws;
    const auto resumed = m.forward_from(ws, edited.view(), 1);
    CHECK(std::memcmp(resumed.data(), patched.data(), patched.size() * sizeof(float)) == 0);
    for (std::size_t t = 0; t < T; ++t) {
        bool same = true;
        for (std::size_t v = 0; v < config.vocab_size; ++v) same = same && patched(0, t, v) == clean(0, t, v);
        CHECK(same == (t < p)); // causal: earlier positions cannot see the edit
    }
}

TEST_CASE("activation_cache: holds exactly the points the filter selects", "[hooks]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 5);
    const auto toks = tiny::tokens(5, config.vocab_size);
    auto [logits, cache] = m.run_with_cache(toks, "blocks.*.mlp.hook_post");
    CHECK(cache.names() == std::vector<std::string>{"blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post",
                                                    "blocks.2.mlp.hook_post"});
    CHECK(cache.at("blocks.2.mlp.hook_post").shape() == shape_t{1, 5, config.d_mlp});
    CHECK_THROWS_AS(cache.at("blocks.0.hook_resid_pre"), error);

    auto everything = m.run_with_cache(toks, "*").second;
    std::vector<std::string> all;
    for (const auto& p : m.hook_points()) all.push_back(p.name());
    CHECK(everything.names() == all);

    auto two = m.run_with_cache(toks, "blocks.1.hook_resid_*").second;
    CHECK(two.names() == std::vector<std::string>{"blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid",
                                                  "blocks.1.hook_resid_post"});
    // A filter that selects nothing is an error naming it (and the nearest name, for a typo).
    CHECK_THAT(error_of([&] { m.run_with_cache(toks, "no_such_hook"); }),
               Catch::Contains("[actlens.model.402]") && Catch::Contains("'no_such_hook'"));
    CHECK_THAT(error_of([&] { m.run_with_cache(toks, "blocks.*.mlp.hook_pots"); }),
               Catch::Contains("[actlens.model.402]") && Catch::Contains("matches 'blocks.*.mlp.hook_pots'"));
    CHECK_THAT(error_of([&] { m.run_with_cache(toks, "blocks.1.hook_resid_pr"); }),
               Catch::Contains("did you mean 'blocks.1.hook_resid_pre'?"));
    CHECK_THAT(error_of([&] { m.run_with_cache(toks, "blocks.3.*"); }), Catch::Contains("'blocks.3.*'"));
}

TEST_CASE("activation_cache: moved or copied between capture_into and the run, it stays safe", "[hooks]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 5);
    const auto toks = tiny::tokens(5, config.vocab_size);
    const hook_point point = hook_point::parse("blocks.1.hook_resid_post");
    const tensor<float> expected = m.run_with_cache(toks, point.name()).second.at(point);

    // Moved after its hooks were made (into a vector that then reallocates, moving it again): the
    // hooks write into the storage the final owner holds; the moved-from cache stays empty and usable.
    hook_set<float> hooks;
    activation_cache<float> original;
    original.capture_into(hooks, {point});
    std::vector<activation_cache<float>> owners;
    owners.push_back(std::move(original));
    for (int i = 0; i < 8; ++i) owners.emplace_back();
    run_options<float> run;
    run.hooks = &hooks;
    m.forward(toks, run);
    REQUIRE(owners.front().contains(point));
    CHECK(same_values(owners.front().at(point), expected));
    CHECK(original.size() == 0);
    CHECK_FALSE(original.contains(point));
    original.store(point, expected.view()); // usable again, with storage of its own
    CHECK(original.size() == 1);
    CHECK(owners.front().size() == 1);

    // A copy is deep: later runs write only into the cache whose hooks ran.
    activation_cache<float> copy = owners.front();
    owners.front().clear();
    m.forward(toks, run);
    CHECK(copy.size() == 1);
    CHECK(same_values(owners.front().at(point), copy.at(point)));
    copy.clear();
    CHECK(owners.front().size() == 1);
}

TEST_CASE("hook_set: callbacks at one point run in the order added", "[hooks]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 5);
    hook_set<float> hooks;
    std::string order;
    hooks.add("blocks.0.hook_resid_pre", [&](tensor_view<float>, const hook_context&) { order += "a"; });
    hooks.add("blocks.0.hook_resid_pre", [&](tensor_view<float>, const hook_context&) { order += "b"; });
    hooks.add("blocks.1.hook_resid_pre", [&](tensor_view<float>, const hook_context&) { order += "c"; });
    CHECK(hooks.size() == 3);
    CHECK(hooks.has(hook_point{site::resid_pre, 1}));
    CHECK_FALSE(hooks.has(hook_point{site::resid_pre, 2}));
    run_options<float> o;
    o.hooks = &hooks;
    m.forward(std::vector<std::int32_t>{1, 2}, o);
    CHECK(order == "abc");
}

TEST_CASE("hook_point: a near-miss name is answered with the closest hook point name", "[hooks][errors]") {
    const std::pair<const char*, const char*> near[] = {
        {"blocks.3.hook_resid_pr", "blocks.3.hook_resid_pre"},
        {"blocks.12.attn.hook_patern", "blocks.12.attn.hook_pattern"},
        {"blocks.0.attn.hook_attn_score", "blocks.0.attn.hook_attn_scores"},
        {"blocks.2.mlp.hook_pre_lin", "blocks.2.mlp.hook_pre_linear"},
        {"hook_resid_pre", "blocks.0.hook_resid_pre"}, // the block site alone
        {"blocks.x.attn.hook_z", "blocks.0.attn.hook_z"},
        {"ln_final.hook_normalised", "ln_final.hook_normalized"},
        {"hook_embeds", "hook_embed"},
    };
    for (const auto& case_ : near) {
        const auto& typo = case_.first; // a named reference: lambdas may not capture structured bindings in C++17
        const auto& meant = case_.second;
        INFO(typo);
        require_error([&] { hook_point::parse(typo); }, errc::bad_hook_name,
                      std::string("'") + typo + "' is not a hook point name; did you mean '" + meant + "'?");
    }
    // Far from every name: no guess.
    for (const char* far : {"", "x", "logits", "blocks.0.residual_stream_after_block"}) {
        INFO(far);
        CHECK_THAT(error_of([&] { hook_point::parse(far); }), !Catch::Contains("did you mean"));
    }
    CHECK(detail::edit_distance("kitten", "sitting") == 3);
    CHECK(detail::edit_distance("", "abc") == 3);
    CHECK(detail::edit_distance("abc", "abc") == 0);
}

TEST_CASE("hook_layout: the points a config implies are the model's hook points", "[hooks]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const auto m = make_random_transformer<float>(named.config, 1);
        const hook_layout layout = hook_layout::of(named.config);
        CHECK(layout.points() == m.hook_points());
        for (const hook_point& p : m.hook_points()) CHECK(layout.contains(p));
        CHECK_FALSE(layout.contains({site::resid_pre, int(named.config.n_layers)}));
        CHECK_FALSE(layout.contains({site::resid_pre, -1}));
        CHECK_FALSE(layout.contains({site::embed, 0}));
        CHECK(layout.layer_range() == "0.." + std::to_string(named.config.n_layers - 1));
    }
}

TEST_CASE("hooks: a hook at a layer or site the model lacks is an error naming it and the range", "[hooks][errors]") {
    const auto gpt2 = make_random_transformer<float>(model_config::gpt2(5, 24, 4, 50, 32), 2);
    const auto llama = make_random_transformer<float>(tiny::llama(), 2);
    const std::vector<std::int32_t> toks{1, 2, 3};
    auto run_with = [&](const transformer& m, const char* name) {
        hook_set<float> hooks;
        hooks.add(name, [](tensor_view<float>, const hook_context&) {});
        run_options<float> o;
        o.hooks = &hooks;
        m.forward(toks, o);
    };
    // Before this check the hook was accepted and silently never fired.
    require_error([&] { run_with(gpt2, "blocks.9.hook_resid_pre"); }, errc::bad_layer_range,
                  "hook point 'blocks.9.hook_resid_pre' is at layer 9, but the model's layers are 0..4");
    require_error([&] { run_with(gpt2, "blocks.5.mlp.hook_post"); }, errc::bad_layer_range, "0..4");
    require_error([&] { run_with(llama, "blocks.3.attn.hook_rot_k"); }, errc::bad_layer_range, "0..2");
    // Sites the family does not call.
    require_error([&] { run_with(gpt2, "blocks.0.attn.hook_rot_q"); }, errc::bad_hook_name,
                  "no hook point 'blocks.0.attn.hook_rot_q' (only models with rotary positions have it");
    require_error([&] { run_with(gpt2, "blocks.4.mlp.hook_pre_linear"); }, errc::bad_hook_name, "only gated MLPs");
    require_error([&] { run_with(llama, "hook_pos_embed"); }, errc::bad_hook_name, "learned positions");
    // The first bad hook in forward order is named, among valid ones; run_with_cache checks the user's hooks.
    hook_set<float> mixed;
    auto nothing = [](tensor_view<float>, const hook_context&) {};
    mixed.add("blocks.7.hook_resid_post", nothing).add("blocks.6.hook_resid_pre", nothing).add("hook_embed", nothing);
    run_options<float> o;
    o.hooks = &mixed;
    require_error([&] { gpt2.forward(toks, o); }, errc::bad_layer_range, "'blocks.6.hook_resid_pre'");
    require_error([&] { gpt2.run_with_cache(toks, "hook_embed", o); }, errc::bad_layer_range, "'blocks.6.hook_resid_pre'");
    workspace<float> ws;
    tensor<float> resid({1, 3, 24});
    require_error([&] { gpt2.forward_from(ws, resid.view(), 2, o); }, errc::bad_layer_range, "0..4");
    // Points that no model has are refused when added.
    hook_set<float> direct;
    require_error([&] { direct.add(hook_point{site::resid_pre, -1}, nothing); }, errc::bad_layer_range);
    require_error([&] { direct.add(hook_point{site::embed, 2}, nothing); }, errc::bad_hook_name, "layer 2");
    CHECK(direct.empty());
}

TEST_CASE("hooks: valid hooks at the edges of the model still fire", "[hooks]") {
    const model_config config = model_config::gpt2(5, 24, 4, 50, 32);
    const auto m = make_random_transformer<float>(config, 3);
    hook_set<float> hooks;
    std::map<std::string, int> calls;
    auto count = [&](tensor_view<float>, const hook_context& c) { ++calls[c.point.name()]; };
    for (const char* name : {"hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.4.hook_resid_post",
                             "blocks.4.mlp.hook_post", "ln_final.hook_normalized"})
        hooks.add(name, count);
    run_options<float> o;
    o.hooks = &hooks;
    m.forward(std::vector<std::int32_t>{1, 2, 3}, o);
    CHECK(calls.size() == 6);
    for (const auto& [name, n] : calls) CHECK(n == 1);
    // The whole layout: one call per point.
    hook_set<float> every;
    calls.clear();
    every.add_matching("*", m.hook_points(), count);
    o.hooks = &every;
    m.forward(std::vector<std::int32_t>{4, 5}, o);
    CHECK(calls.size() == m.hook_points().size());
}

TEST_CASE("steering: layers the model lacks are an error at the first run, naming the layer and range",
          "[hooks][steering][errors]") {
    const auto m = make_random_transformer<float>(model_config::gpt2(5, 24, 4, 50, 32), 4);
    steering_vector<float> v;
    v.point = hook_point{site::resid_pre, 1};
    v.direction = tensor<float>({24});
    v.direction(0) = 1.0f;
    hook_set<float> hooks;
    steering_options so;
    so.layers = {2, 9};
    add_steering(hooks, v, so);
    run_options<float> o;
    o.hooks = &hooks;
    require_error([&] { m.forward(std::vector<std::int32_t>{1, 2}, o); }, errc::bad_layer_range,
                  "'blocks.9.hook_resid_pre' is at layer 9, but the model's layers are 0..4");
    // Within the range, the steered run differs from the plain one.
    hook_set<float> ok;
    so.layers = {4};
    add_steering(ok, v, so);
    o.hooks = &ok;
    const tensor<float> steered = m.forward(std::vector<std::int32_t>{1, 2}, o);
    const tensor<float> plain = m.forward(std::vector<std::int32_t>{1, 2});
    bool differs = false;
    for (std::size_t i = 0; i < plain.size(); ++i) differs = differs || plain.data()[i] != steered.data()[i];
    CHECK(differs);
}
