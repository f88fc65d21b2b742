#include "test_helpers.hpp"
#include "reference_forward.hpp"
#include "tiny_models.hpp"

#include <actlens/model/random_weights.hpp>
#include <actlens/model/transformer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

using namespace actlens;

namespace {

} // namespace

TEST_CASE("transformer: logits equal a plain long-double reference forward", "[model]") {
    for (const auto& named : tiny::all()) {
        const std::string& name = named.name;
        const model_config& config = named.config;
        SECTION(name) {
            // In double the kernels must agree with the scalar reference to rounding (1e-10 is ~1e5 ulps
            // of headroom for these sizes); in float to ~1e-5 of logits of order 1.
            const auto md = make_random_transformer<double>(config, 42);
            const auto mf = make_random_transformer<float>(config, 42);
            const auto toks = tiny::tokens(11, config.vocab_size);
            const auto expect = reference::forward(md, toks);
            const tensor<double> got_d = md.forward(toks);
            const tensor<float> got_f = mf.forward(toks);
            REQUIRE(got_d.shape() == shape_t{1, toks.size(), config.vocab_size});
            double err_d = 0, err_f = 0;
            for (std::size_t t = 0; t < toks.size(); ++t)
                for (std::size_t v = 0; v < config.vocab_size; ++v) {
                    err_d = std::max(err_d, double(std::abs(expect[t][v] - got_d(0, t, v))));
                    err_f = std::max(err_f, double(std::abs(expect[t][v] - got_f(0, t, v))));
                }
            CHECK(err_d < 1e-10);
            CHECK(err_f < 2e-5);
        }
    }
}

TEST_CASE("transformer: KV-cache decoding gives the logits of a full forward", "[model]") {
    for (const auto& named : tiny::all()) {
        const std::string& name = named.name;
        const model_config& config = named.config;
        SECTION(name) {
            const auto m = make_random_transformer<double>(config, 7);
            const auto toks = tiny::tokens(13, config.vocab_size, 1);
            const tensor<double> full = m.forward(toks);
            // A prompt of 5 in one call, then one token at a time, then a chunk of 3, then the rest.
            auto cache = m.make_kv_cache(1, toks.size());
            workspace<double> ws;
            run_options<double> o;
            o.cache = &cache;
            std::size_t pos = 0;
            for (std::size_t chunk : {5, 1, 1, 3, 1, 2}) {
                auto logits = m.forward_into(ws, tensor_view<const std::int32_t>(toks.data() + pos, {chunk}), o);
                for (std::size_t t = 0; t < chunk; ++t)
                    for (std::size_t v = 0; v < config.vocab_size; ++v)
                        REQUIRE(std::abs(logits(0, t, v) - full(0, pos + t, v)) < 1e-12);
                pos += chunk;
            }
            CHECK(pos == toks.size());
            CHECK(cache.length() == toks.size());
        }
    }
}

TEST_CASE("transformer: attention over several query blocks equals the reference, fused or hooked", "[model]") {
    // The attention kernel works on blocks of 64 query rows that see only their causal key prefix,
    // and fuses softmax and value mix when no hook reads the scores or the pattern. 150 positions
    // give blocks of 64, 64 and 22; KV chunks that start mid-block exercise a non-zero past.
    for (const auto& named : tiny::all()) {
        const std::string& name = named.name;
        model_config config = named.config;
        config.max_seq_len = 160;
        SECTION(name) {
            const std::size_t T = 150;
            const auto md = make_random_transformer<double>(config, 5);
            const auto toks = tiny::tokens(T, config.vocab_size, 4);
            const auto expect = reference::forward(md, toks);
            const tensor<double> full = md.forward(toks);
            double err = 0;
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t v = 0; v < config.vocab_size; ++v)
                    err = std::max(err, double(std::abs(expect[t][v] - full(0, t, v))));
            CHECK(err < 1e-10);

            // A read-only hook on the pattern takes the unfused path: same logits to the bit.
            hook_set<double> hooks;
            std::size_t pattern_calls = 0;
            hooks.add_matching("*.attn.hook_pattern", md.hook_points(),
                               [&](tensor_view<double>, const hook_context&) { ++pattern_calls; });
            workspace<double> ws;
            run_options<double> hooked;
            hooked.hooks = &hooks;
            const tensor_view<const double> with_hook =
                md.forward_into(ws, tensor_view<const std::int32_t>(toks.data(), {T}), hooked);
            CHECK(pattern_calls == config.n_layers);
            CHECK(std::memcmp(with_hook.data(), full.data(), full.size() * sizeof(double)) == 0);

            auto cache = md.make_kv_cache(1, T);
            run_options<double> cached;
            cached.cache = &cache;
            std::size_t pos = 0;
            for (std::size_t chunk : {70, 1, 60, 19}) {
                auto logits = md.forward_into(ws, tensor_view<const std::int32_t>(toks.data() + pos, {chunk}), cached);
                for (std::size_t t = 0; t < chunk; ++t)
                    for (std::size_t v = 0; v < config.vocab_size; ++v)
                        REQUIRE(std::abs(logits(0, t, v) - full(0, pos + t, v)) < 1e-12);
                pos += chunk;
            }
            CHECK(pos == T);
        }
    }
}

TEST_CASE("transformer: batch rows are independent", "[model]") {
    for (const auto& named : tiny::all()) {
        const std::string& name = named.name;
        const model_config& config = named.config;
        SECTION(name) {
            const auto m = make_random_transformer<float>(config, 3);
            const std::size_t T = 9;
            const auto a = tiny::tokens(T, config.vocab_size, 1), b = tiny::tokens(T, config.vocab_size, 2),
                       c = tiny::tokens(T, config.vocab_size, 3);
            std::vector<std::int32_t> ab(a), ac(a);
            ab.insert(ab.end(), b.begin(), b.end());
            ac.insert(ac.end(), c.begin(), c.end());
            const tensor<float> lab = m.forward(tensor_view<const std::int32_t>(ab.data(), {2, T}));
            const tensor<float> lac = m.forward(tensor_view<const std::int32_t>(ac.data(), {2, T}));
            const tensor<float> la = m.forward(a);
            // Changing the neighbour changes nothing in row 0, to the bit (same shapes, same code path).
            CHECK(std::memcmp(lab.data(), lac.data(), T * config.vocab_size * sizeof(float)) == 0);
            // Alone, the row goes through GEMMs of other shapes: equal to float rounding.
            CHECK(max_abs_diff(lab.view().slice(0), la.view().slice(0)) < 1e-5f);
            CHECK(max_abs_diff(lab.view().slice(1), m.forward(b).view().slice(0)) < 1e-5f);
        }
    }
}

TEST_CASE("transformer: stop_at_layer and forward_from split the forward exactly", "[model]") {
    for (const auto& named : tiny::all()) {
        const std::string& name = named.name;
        const model_config& config = named.config;
        SECTION(name) {
            const auto m = make_random_transformer<float>(config, 5);
            const auto toks = tiny::tokens(8, config.vocab_size);
            const tensor<float> full = m.forward(toks);
            auto [logits, cache] = m.run_with_cache(toks, "blocks.*.hook_resid_pre");
            CHECK(same_bits(full, logits));
            for (int l = 0; l < int(config.n_layers); ++l) {
                run_options<float> stop;
                stop.stop_at_layer = l;
                const tensor<float> resid = m.forward(toks, stop);
                CHECK(same_bits(resid, cache.at(hook_point{site::resid_pre, l})));
                workspace<float> ws;
                const auto resumed = m.forward_from(ws, resid.view(), l);
                CHECK(std::memcmp(resumed.data(), full.data(), full.size() * sizeof(float)) == 0);
            }
        }
    }
}

TEST_CASE("transformer: last_position_only returns the last row of the full logits", "[model]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<double>(config, 9);
    const auto toks = tiny::tokens(2 * 6, config.vocab_size);
    const tensor_view<const std::int32_t> batch(toks.data(), {2, 6});
    const tensor<double> full = m.forward(batch);
    run_options<double> o;
    o.last_position_only = true;
    const tensor<double> last = m.forward(batch, o);
    REQUIRE(last.shape() == shape_t{2, 1, config.vocab_size});
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t v = 0; v < config.vocab_size; ++v) CHECK(std::abs(last(b, 0, v) - full(b, 5, v)) < 1e-12);
}

TEST_CASE("transformer: bad input throws actlens::error naming the problem", "[model][errors]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 1);
    auto message = [](auto&& f) {
        try {
            f();
        } catch (const error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{1, 50, 2}); }),
               Catch::Contains("[actlens.tokenizer.302]") && Catch::Contains("token id 50 at [0, 1]"));
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{-3}); }), Catch::Contains("token id -3"));
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{}); }), Catch::Contains("[actlens.tokenizer.303]"));
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>(33, 1)); }),
               Catch::Contains("[actlens.model.404]") && Catch::Contains("context of 32"));
    run_options<float> o;
    o.stop_at_layer = 4;
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{1}, o); }), Catch::Contains("[actlens.model.403]"));
    workspace<float> ws;
    tensor<float> wrong({1, 2, 7});
    CHECK_THAT(message([&] { m.forward_from(ws, wrong.view(), 1); }), Catch::Contains("[actlens.arg.102]"));
    CHECK_THAT(message([&] { m.forward_from(ws, tensor<float>({1, 2, 24}).view(), 9); }),
               Catch::Contains("start_layer 9"));
    auto cache = m.make_kv_cache(2, 8);
    o = {};
    o.cache = &cache;
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{1, 2}, o); }), Catch::Contains("kv_cache"));
    auto small = m.make_kv_cache(1, 2);
    o.cache = &small;
    CHECK_THAT(message([&] { m.forward(std::vector<std::int32_t>{1, 2, 3}, o); }), Catch::Contains("kv_cache holds 2"));

    model_weights<float> missing = make_random_weights<float>(config, 1);
    missing.layers[1].w_k = {};
    CHECK_THAT(message([&] { basic_transformer<float>(config, missing); }),
               Catch::Contains("[actlens.model.401]") && Catch::Contains("layers.1.w_k"));
    auto bad = config;
    bad.n_kv_heads = 3;
    CHECK_THAT(message([&] { make_random_weights<float>(bad, 1); }), Catch::Contains("n_kv_heads"));
}

TEST_CASE("transformer: concurrent forwards on one model equal sequential ones", "[model][threads]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 19);
    const auto a = tiny::tokens(9, config.vocab_size, 1), b = tiny::tokens(9, config.vocab_size, 2);
    const tensor<float> expect_a = m.forward(a), expect_b = m.forward(b);
    bool same_a = true, same_b = true;
    auto worker = [&m](const std::vector<std::int32_t>& toks, const tensor<float>& expect, bool& same) {
        workspace<float> ws; // per thread: the model itself is shared and const
        for (int i = 0; i < 50; ++i) {
            const auto got = m.forward_into(ws, tensor_view<const std::int32_t>(toks.data(), {toks.size()}));
            same = same && std::memcmp(got.data(), expect.data(), expect.size() * sizeof(float)) == 0;
        }
    };
    std::thread t1(worker, std::cref(a), std::cref(expect_a), std::ref(same_a));
    std::thread t2(worker, std::cref(b), std::cref(expect_b), std::ref(same_b));
    t1.join();
    t2.join();
    CHECK(same_a);
    CHECK(same_b);
}

TEST_CASE("transformer: a workspace is reused without reallocating once grown", "[model]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 2);
    workspace<float> ws;
    const auto long_input = tiny::tokens(16, config.vocab_size);
    m.forward_into(ws, tensor_view<const std::int32_t>(long_input.data(), {16}));
    const float* resid = ws.resid.data();
    const float* scores = ws.scores.data();
    const float* logits = ws.logits.data();
    for (std::size_t n : {3, 16, 1, 9}) {
        const auto out = m.forward_into(ws, tensor_view<const std::int32_t>(long_input.data(), {n}));
        CHECK(out.data() == logits);
        CHECK(out.shape() == shape_t{1, n, config.vocab_size});
    }
    CHECK(ws.resid.data() == resid);
    CHECK(ws.scores.data() == scores);
}

TEST_CASE("transformer: a context of 2^24 positions costs nothing until positions are run (fuzz finding C)",
          "[model]") {
    // A tiny GGUF may declare any context_length. The rotary angles cover the positions a run uses
    // (the workspace's table), so the model itself holds no table, and the logits are those of the
    // same weights with a small context, bit for bit.
    model_config huge = tiny::llama();
    huge.max_seq_len = std::size_t(1) << 24;
    const auto small_model = make_random_transformer<float>(tiny::llama(), 5);
    const auto huge_model = basic_transformer<float>(huge, make_random_weights<float>(tiny::llama(), 5));
    const auto toks = tiny::tokens(11, huge.vocab_size);
    workspace<float> ws;
    const tensor_view<const std::int32_t> input(toks.data(), {toks.size()});
    const tensor<float> got = tensor<float>::copy_of(huge_model.forward_into(ws, input));
    CHECK(same_bits(got, small_model.forward(toks)));
    CHECK(ws.rope.max_positions() == toks.size());
    CHECK(ws.rope.half() * 2 == huge.d_head);

    // Decoding one token at a time grows the table by doubling, never to the declared context.
    auto cache = huge_model.make_kv_cache(1, 40);
    workspace<float> step_ws;
    run_options<float> o;
    o.cache = &cache;
    for (std::size_t t = 0; t < 40; ++t) {
        const tensor_view<const std::int32_t> token(toks.data() + t % toks.size(), {1});
        const auto logits = huge_model.forward_into(step_ws, token, o);
        REQUIRE(std::isfinite(logits(0, 0, 0)));
    }
    CHECK(step_ws.rope.max_positions() == 64);
}

TEST_CASE("forward(ws, tokens) is the deprecated name of forward_into: the same view into ws", "[transformer]") {
    const auto m = make_random_transformer<float>(tiny::llama(), 5);
    const std::vector<std::int32_t> toks = tiny::tokens(6, m.config().vocab_size);
    const tensor_view<const std::int32_t> tv(toks.data(), {toks.size()});
    workspace<float> ws;
    const tensor<float> into = tensor<float>::copy_of(m.forward_into(ws, tv));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    const tensor_view<const float> old = m.forward(ws, tv);
#pragma GCC diagnostic pop
    REQUIRE(old.size() == into.size());
    CHECK(std::equal(into.data(), into.data() + into.size(), old.data()));
    const tensor<float> owned = m.forward(tv); // the owning overload keeps its name
    CHECK(std::equal(into.data(), into.data() + into.size(), owned.data()));
}
