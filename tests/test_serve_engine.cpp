// The serving engine: batched decoding equals each request run alone, bit for bit; a request's errors
// are its own. Driven by step() on this thread (tests/test_serve_threads.cpp starts threads).
#include "test_files.hpp"
#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/packed_weight.hpp>
#include <actlens/methods/control_vector.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/serve/decode_batch.hpp>
#include <actlens/serve/engine.hpp>
#include <actlens/serve/request.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace actlens;
using serve::completion;
using serve::completion_request;

namespace {

void check_same(const completion<float>& batched, const completion<float>& alone) {
    CHECK(batched.tokens == alone.tokens);
    CHECK(batched.prompt_length == alone.prompt_length);
    CHECK(batched.finish == alone.finish);
    REQUIRE(batched.captures.size() == alone.captures.size());
    for (std::size_t i = 0; i < alone.captures.size(); ++i) {
        INFO(alone.captures[i].name);
        CHECK(batched.captures[i].name == alone.captures[i].name);
        CHECK(same_bits(batched.captures[i].values, alone.captures[i].values));
    }
}

std::shared_ptr<hook_set<float>> steered(const model_config& c, std::uint32_t salt, double alpha) {
    steering_vector<float> v;
    v.point = hook_point{site::resid_pre, 1};
    v.direction = tensor<float>({c.d_model});
    std::mt19937 gen(salt);
    std::normal_distribution<float> normal;
    for (float& x : v.direction) x = normal(gen);
    auto hooks = std::make_shared<hook_set<float>>();
    steering_options o;
    o.alpha = alpha;
    o.layers = {0, 1};
    add_steering(*hooks, v, o);
    return hooks;
}

std::shared_ptr<hook_set<float>> control(const model_config& c, float strength) {
    control_vector cv;
    for (std::size_t l = 1; l < c.n_layers; ++l) {
        std::vector<float> d(c.d_model);
        for (std::size_t k = 0; k < d.size(); ++k) d[k] = 0.05f * float((k * 7 + l) % 11) - 0.25f;
        cv.directions[l] = d;
    }
    auto hooks = std::make_shared<hook_set<float>>();
    add_control_vector_hooks(*hooks, cv, strength);
    return hooks;
}

// A mix of requests: greedy and sampled, steered and not, with a control vector, with capture, with
// hooks on the attention pattern, with a stop token, of different lengths.
std::vector<completion_request<float>> request_mix(const model_config& c) {
    std::vector<completion_request<float>> out;
    for (std::uint32_t i = 0; i < 9; ++i) {
        completion_request<float> r;
        r.prompt = tiny::tokens(2 + (i * 3) % 7, c.vocab_size, i + 1);
        r.max_new_tokens = 4 + (i * 5) % 9;
        if (i % 3 == 1) {
            r.sampling.temperature = 0.9;
            r.sampling.top_k = 12;
            r.sampling.seed = 40 + i;
        }
        if (i % 4 == 2) {
            r.sampling.temperature = 1.3;
            r.sampling.top_p = 0.8;
            r.sampling.seed = 7;
        }
        if (i == 1 || i == 5) r.hooks = steered(c, i, 3.0);
        if (i == 3) r.hooks = control(c, 2.0f);
        if (i == 2 || i == 5 || i == 7)
            r.capture = {"hook_embed", "blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp.hook_post",
                         "ln_final.hook_normalized"};
        if (i == 6) {
            auto hooks = std::make_shared<hook_set<float>>();
            // Sharpens the pattern of one head: any read or write of the wrong row would show.
            hooks->add(hook_point{site::attn_pattern, 0}, [](tensor_view<float> p, const hook_context&) {
                for (std::size_t k = 0; k < p.extent(3); ++k) p(0, 1, 0, k) *= 0.5f;
            });
            hooks->add(hook_point{site::attn_scores, 1}, [](tensor_view<float> s, const hook_context&) {
                s(0, 0, 0, 0) += 1.0f;
            });
            r.hooks = hooks;
        }
        if (i == 8) r.stop_tokens = {r.prompt[0], 3, 5};
        if (i == 4) r.max_new_tokens = c.max_seq_len; // runs into the context
        out.push_back(r);
    }
    return out;
}

} // namespace

TEST_CASE("serve: the fast GEMM computes a row the same whatever the rows beside it", "[serve]") {
    const std::size_t in = 300, out = 100; // more than one K block, a partial panel
    std::vector<float> w(in * out), bias(out), x(9 * in);
    std::mt19937 gen(3);
    std::normal_distribution<float> normal;
    for (float& v : w) v = normal(gen);
    for (float& v : bias) v = normal(gen);
    for (float& v : x) v = normal(gen);
    const kernels::packed_weight<float> pw(w.data(), out, in);
    for (std::size_t rows = 1; rows <= 9; ++rows) {
        std::vector<float> together(rows * out), alone(out);
        kernels::linear(x.data(), rows, pw, bias.data(), together.data());
        for (std::size_t r = 0; r < rows; ++r) {
            kernels::linear(x.data() + r * in, 1, pw, bias.data(), alone.data());
            INFO("rows " << rows << ", row " << r);
            CHECK(std::memcmp(alone.data(), together.data() + r * out, out * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("serve: a decode step of many rows equals each row's forward alone", "[serve]") {
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            const model_config& c = named.config;
            const auto m = make_random_transformer<float>(c, 17);
            const std::size_t n = 5;
            std::vector<kv_cache<float>> solo, batched;
            std::vector<std::int32_t> next(n);
            workspace<float> ws;
            run_options<float> run;
            run.last_position_only = true;
            for (std::size_t r = 0; r < n; ++r) {
                const auto prompt = tiny::tokens(1 + r * 2, c.vocab_size, std::uint32_t(r));
                solo.push_back(m.make_kv_cache(1, 16));
                batched.push_back(m.make_kv_cache(1, 16));
                run.cache = &batched[r];
                m.forward_into(ws, tensor_view<const std::int32_t>(prompt.data(), {1, prompt.size()}), run);
                run.cache = &solo[r];
                m.forward_into(ws, tensor_view<const std::int32_t>(prompt.data(), {1, prompt.size()}), run);
                next[r] = std::int32_t((r * 11 + 4) % c.vocab_size);
            }
            serve::decode_batch<float> step;
            for (int s = 0; s < 3; ++s) {
                std::vector<serve::decode_row<float>> rows;
                for (std::size_t r = 0; r < n; ++r) rows.push_back({next[r], &batched[r], nullptr, nullptr});
                const tensor<float> logits = tensor<float>::copy_of(step.step(m, rows));
                for (std::size_t r = 0; r < n; ++r) {
                    run.cache = &solo[r];
                    const auto alone = m.forward_into(ws, tensor_view<const std::int32_t>(&next[r], {1, 1}), run);
                    INFO("step " << s << ", row " << r);
                    CHECK(std::memcmp(alone.data(), &logits(r, 0), c.vocab_size * sizeof(float)) == 0);
                    CHECK(batched[r].length() == solo[r].length());
                    next[r] = std::int32_t((next[r] + 3) % std::int32_t(c.vocab_size));
                }
            }
            std::vector<serve::decode_row<float>> bad{{std::int32_t(c.vocab_size), &batched[0], nullptr, nullptr}};
            require_error([&] { step.step(m, bad); }, errc::token_out_of_range, "row 0");
            kv_cache<float> full = m.make_kv_cache(1, 1);
            full.advance(1);
            bad = {{0, &batched[0], nullptr, nullptr}, {0, &full, nullptr, nullptr}};
            require_error([&] { step.step(m, bad); }, errc::context_overflow, "row 1");
        }
    }
}

TEST_CASE("serve: a step of prompts and decode rows equals each sequence's forward alone", "[serve]") {
    // Rows 0 and 3 decode one position; rows 1 and 2 bring prompts, row 1 one longer than a block of
    // 64 queries. Rows 2 and 3 hook the scores and the pattern (the unfused attention) and a
    // residual; every hooked view and every logit must have the bits of the sequence run alone.
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            model_config c = named.config;
            c.max_seq_len = 96;
            const auto m = make_random_transformer<float>(c, 19);
            const std::vector<std::int32_t> prefix = tiny::tokens(3, c.vocab_size, 4);
            const std::vector<std::vector<std::int32_t>> tokens = {
                {7}, tiny::tokens(70, c.vocab_size, 5), tiny::tokens(5, c.vocab_size, 6), {11}};
            const hook_point scores{site::attn_scores, 1}, pattern{site::attn_pattern, 0};
            const hook_point resid{site::resid_post, int(c.n_layers) - 1};
            // What a sequence's hooks saw, by point name.
            using seen = std::map<std::string, tensor<float>>;
            auto recorder = [&](seen& out) {
                hook_set<float> h;
                for (const hook_point& p : {scores, pattern, resid})
                    h.add(p, [&out, p](tensor_view<float> x, const hook_context&) {
                        out[p.name()] = tensor<float>::copy_of(x);
                    });
                return h;
            };
            std::vector<seen> batched_seen(4), solo_seen(4);
            std::vector<hook_set<float>> batched_hooks, solo_hooks;
            for (std::size_t r = 0; r < 4; ++r) {
                batched_hooks.push_back(r >= 2 ? recorder(batched_seen[r]) : hook_set<float>());
                solo_hooks.push_back(r >= 2 ? recorder(solo_seen[r]) : hook_set<float>());
            }
            std::vector<kv_cache<float>> solo, batched;
            workspace<float> ws;
            run_options<float> run;
            run.last_position_only = true;
            for (std::size_t r = 0; r < 4; ++r) {
                solo.push_back(m.make_kv_cache(1, 80));
                batched.push_back(m.make_kv_cache(1, 80));
                if (tokens[r].size() > 1) continue;
                for (kv_cache<float>* cache : {&solo[r], &batched[r]}) { // decode rows have a past
                    run.cache = cache;
                    m.forward_into(ws, tensor_view<const std::int32_t>(prefix.data(), {1, prefix.size()}), run);
                }
            }
            std::vector<serve::decode_row<float>> rows;
            for (std::size_t r = 0; r < 4; ++r)
                rows.push_back({tokens[r][0], &batched[r], &batched_hooks[r], nullptr,
                                tokens[r].size() > 1 ? &tokens[r] : nullptr});
            serve::decode_batch<float> step;
            const tensor<float> logits = tensor<float>::copy_of(step.step(m, rows));
            for (std::size_t r = 0; r < 4; ++r) {
                INFO("row " << r);
                run.cache = &solo[r];
                run.hooks = &solo_hooks[r];
                const auto alone =
                    m.forward_into(ws, tensor_view<const std::int32_t>(tokens[r].data(), {1, tokens[r].size()}), run);
                CHECK(!rows[r].error);
                CHECK(std::memcmp(alone.data(), &logits(r, 0), c.vocab_size * sizeof(float)) == 0);
                CHECK(batched[r].length() == solo[r].length());
                REQUIRE(batched_seen[r].size() == solo_seen[r].size());
                for (const auto& [name, values] : solo_seen[r]) {
                    INFO(name);
                    REQUIRE(batched_seen[r].count(name) == 1);
                    CHECK(batched_seen[r].at(name).shape() == values.shape());
                    CHECK(same_bits(batched_seen[r].at(name), values));
                }
            }
            CHECK(solo_seen[2].at(pattern.name()).shape() == shape_t{1, c.n_heads, 5, 5});
            CHECK(solo_seen[3].at(scores.name()).shape() == shape_t{1, c.n_heads, 1, 4});
            const std::vector<std::int32_t> empty;
            std::vector<serve::decode_row<float>> bad{{0, &batched[0], nullptr, nullptr, &empty}};
            require_error([&] { step.step(m, bad); }, errc::empty_prompt, "row 0");
            const std::vector<std::int32_t> outside = {1, std::int32_t(c.vocab_size) + 2};
            bad = {{0, &batched[0], nullptr, nullptr}, {0, &batched[1], nullptr, nullptr, &outside}};
            require_error([&] { step.step(m, bad); }, errc::token_out_of_range, "row 1: token id");
            const std::vector<std::int32_t> too_long(80, 1);
            bad = {{0, &batched[2], nullptr, nullptr, &too_long}};
            require_error([&] { step.step(m, bad); }, errc::context_overflow, "row 0 holds 5 positions and adds 80");
            hook_set<float> missing;
            missing.add(hook_point{site::resid_pre, int(c.n_layers) + 2}, [](tensor_view<float>, const hook_context&) {});
            bad = {{0, &batched[0], &missing, nullptr}};
            require_error([&] { step.step(m, bad); }, errc::bad_layer_range);
        }
    }
}

TEST_CASE("serve: a model multiplying its weights in place in its GGUF file batches rows like a packed one",
          "[serve]") {
    // load_gguf's default reads F16 projections in the file's rows (kernels/gemm_rows.hpp), whose
    // row sums do not depend on the rows beside them either: the rows of a step run together and
    // equal each sequence's forward alone.
    const scratch_folder dir("serve_gguf");
    const std::string path = (dir.path / "tiny.gguf").string();
    io::save_gguf(make_random_transformer<float>(tiny::llama(), 31), path, io::ggml_type::f16);
    const transformer m = io::load_gguf(path);
    REQUIRE(m.packed().unembedding.is_mapped());
    const model_config& c = m.config();
    const std::vector<std::vector<std::int32_t>> tokens = {
        tiny::tokens(6, c.vocab_size, 1), {5}, tiny::tokens(3, c.vocab_size, 2)};
    const std::vector<std::int32_t> prefix = tiny::tokens(4, c.vocab_size, 3);
    std::vector<kv_cache<float>> solo, batched;
    workspace<float> ws;
    run_options<float> run;
    run.last_position_only = true;
    for (std::size_t r = 0; r < tokens.size(); ++r) {
        solo.push_back(m.make_kv_cache(1, 16));
        batched.push_back(m.make_kv_cache(1, 16));
        if (tokens[r].size() > 1) continue;
        for (kv_cache<float>* cache : {&solo[r], &batched[r]}) {
            run.cache = cache;
            m.forward_into(ws, tensor_view<const std::int32_t>(prefix.data(), {1, prefix.size()}), run);
        }
    }
    std::vector<serve::decode_row<float>> rows;
    for (std::size_t r = 0; r < tokens.size(); ++r)
        rows.push_back({tokens[r][0], &batched[r], nullptr, nullptr, tokens[r].size() > 1 ? &tokens[r] : nullptr});
    serve::decode_batch<float> step;
    const tensor<float> logits = tensor<float>::copy_of(step.step(m, rows));
    for (std::size_t r = 0; r < tokens.size(); ++r) {
        INFO("row " << r);
        run.cache = &solo[r];
        const auto alone =
            m.forward_into(ws, tensor_view<const std::int32_t>(tokens[r].data(), {1, tokens[r].size()}), run);
        CHECK(std::memcmp(alone.data(), &logits(r, 0), c.vocab_size * sizeof(float)) == 0);
    }
}

TEST_CASE("serve: requests joining a running batch at different times get their results alone", "[serve]") {
    for (const auto& named : tiny::all()) {
        SECTION(named.name) {
            const model_config& c = named.config;
            const auto m = make_random_transformer<float>(c, 23);
            const auto requests = request_mix(c);
            serve::engine_options options;
            options.max_batch = 4; // some requests wait for a place
            serve::engine<float> engine(m, options);
            std::vector<std::future<completion<float>>> futures;
            std::size_t submitted = 0;
            // Two requests, then one more every other iteration.
            for (int iteration = 0; submitted < requests.size() || engine.load() > 0; ++iteration) {
                if (submitted < 2 || (iteration % 2 == 0 && submitted < requests.size()))
                    futures.push_back(engine.submit(requests[submitted++]));
                engine.step();
                REQUIRE(iteration < 200);
            }
            for (std::size_t i = 0; i < requests.size(); ++i) {
                INFO("request " << i);
                REQUIRE(futures[i].wait_for(std::chrono::seconds(0)) == std::future_status::ready);
                check_same(futures[i].get(), serve::run_alone(m, requests[i]));
            }
        }
    }
}

TEST_CASE("serve: results equal runs alone through the checks themselves", "[serve]") {
    // run_alone is generate(): a steered request differs from the unsteered one, a capture has the
    // expected shape, and a request's finish reason is what it did.
    const model_config c = tiny::llama();
    const auto m = make_random_transformer<float>(c, 23);
    completion_request<float> r;
    r.prompt = tiny::tokens(4, c.vocab_size, 2);
    r.max_new_tokens = 6;
    r.capture = {"blocks.1.attn.hook_z", "blocks.2.mlp.hook_post"};
    const completion<float> plain = serve::run_alone(m, r);
    CHECK(plain.finish == serve::finish_reason::length);
    REQUIRE(plain.tokens.size() == 10);
    REQUIRE(plain.captures.size() == 2);
    CHECK(plain.captures[0].values.shape() == shape_t{9, c.n_heads, c.d_head});
    CHECK(plain.captures[1].values.shape() == shape_t{9, c.d_mlp});
    r.hooks = steered(c, 1, 8.0);
    CHECK(!same_bits(serve::run_alone(m, r).captures[1].values, plain.captures[1].values));
    r.hooks = nullptr;
    r.stop_tokens = {plain.tokens[6]};
    const completion<float> stopped = serve::run_alone(m, r);
    CHECK(stopped.finish == serve::finish_reason::stop_token);
    CHECK(stopped.tokens.size() == 7);
}

TEST_CASE("serve: a request's errors fail that request only", "[serve]") {
    const model_config c = tiny::gpt2();
    const auto m = make_random_transformer<float>(c, 29);
    serve::engine<float> engine(m);
    completion_request<float> good;
    good.prompt = {1, 2, 3};
    good.max_new_tokens = 6;
    std::vector<std::future<completion<float>>> ok;
    ok.push_back(engine.submit(good));

    completion_request<float> empty = good;
    empty.prompt.clear();
    completion_request<float> out_of_range = good;
    out_of_range.prompt = {1, std::int32_t(c.vocab_size) + 4};
    completion_request<float> too_long = good;
    too_long.prompt = tiny::tokens(c.max_seq_len + 1, c.vocab_size);
    completion_request<float> bad_name = good;
    bad_name.capture = {"blocks.0.hook_resid_pst"};
    completion_request<float> bad_layer = good;
    bad_layer.capture = {"blocks.9.hook_resid_post"};
    completion_request<float> bad_sampling = good;
    bad_sampling.sampling.top_p = 0.0;
    completion_request<float> throws_later = good; // a hook that throws at the third generated position
    auto hooks = std::make_shared<hook_set<float>>();
    hooks->add(hook_point{site::resid_post, 1}, [](tensor_view<float>, const hook_context& ctx) {
        if (ctx.position_offset == 5) fail(errc::invalid_argument, "test hook: position 5");
    });
    throws_later.hooks = hooks;
    completion_request<float> callback_throws = good;
    callback_throws.on_token = [](std::int32_t) -> bool { throw std::runtime_error("callback"); };

    auto f_empty = engine.submit(empty);
    auto f_range = engine.submit(out_of_range);
    auto f_long = engine.submit(too_long);
    auto f_name = engine.submit(bad_name);
    auto f_layer = engine.submit(bad_layer);
    auto f_sampling = engine.submit(bad_sampling);
    auto f_later = engine.submit(throws_later);
    auto f_callback = engine.submit(callback_throws);
    ok.push_back(engine.submit(good));
    while (engine.step()) {
    }
    require_error([&] { f_empty.get(); }, errc::empty_prompt);
    require_error([&] { f_range.get(); }, errc::token_out_of_range, std::to_string(c.vocab_size + 4));
    require_error([&] { f_long.get(); }, errc::context_overflow);
    require_error([&] { f_name.get(); }, errc::bad_hook_name, "blocks.0.hook_resid_post");
    require_error([&] { f_layer.get(); }, errc::bad_layer_range, "blocks.9.hook_resid_post");
    require_error([&] { f_sampling.get(); }, errc::bad_sampling, "top_p");
    require_error([&] { f_later.get(); }, errc::invalid_argument, "position 5");
    CHECK_THROWS_AS(f_callback.get(), std::runtime_error);
    const completion<float> alone = serve::run_alone(m, good);
    for (auto& f : ok) check_same(f.get(), alone);
    CHECK(engine.load() == 0);
    require_error([&] { serve::engine<float>(m, serve::engine_options{0, 0}); }, errc::invalid_argument,
                  "max_batch");
}

TEST_CASE("serve: on_token returning false cancels a request, as in generate()", "[serve]") {
    const model_config c = tiny::llama();
    const auto m = make_random_transformer<float>(c, 31);
    serve::engine<float> engine(m);
    completion_request<float> r;
    r.prompt = {4, 5, 6};
    r.max_new_tokens = 10;
    std::vector<std::int32_t> streamed;
    r.on_token = [&streamed](std::int32_t t) {
        streamed.push_back(t);
        return streamed.size() < 4;
    };
    auto cancelled = engine.submit(r);
    completion_request<float> other = r;
    other.on_token = nullptr;
    auto full = engine.submit(other);
    while (engine.step()) {
    }
    const completion<float> got = cancelled.get();
    CHECK(got.finish == serve::finish_reason::cancelled);
    CHECK(got.tokens.size() == 7);
    CHECK(std::vector<std::int32_t>(got.tokens.begin() + 3, got.tokens.end()) == streamed);
    const completion<float> rest = full.get();
    CHECK(rest.tokens.size() == 13);
    CHECK(std::equal(got.tokens.begin(), got.tokens.end(), rest.tokens.begin()));
    streamed.clear();
    check_same(got, serve::run_alone(m, r));
}
