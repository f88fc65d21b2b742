#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/model/sampling.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

using namespace actlens;

namespace {
template <class T>
std::int32_t argmax_last(const tensor<T>& logits) {
    const std::size_t t = logits.extent(1) - 1;
    std::size_t best = 0;
    for (std::size_t v = 1; v < logits.extent(2); ++v)
        if (logits(0, t, v) > logits(0, t, best)) best = v;
    return std::int32_t(best);
}
} // namespace

TEST_CASE("generate: greedy decoding with the KV cache equals argmax over full forwards", "[generate]") {
    for (const auto& named : tiny::all()) {
        const std::string& family = named.name;
        const model_config& config = named.config;
        SECTION(family) {
            const auto m = make_random_transformer<double>(config, 31);
            const std::vector<std::int32_t> prompt = tiny::tokens(4, config.vocab_size, 5);
            generate_options<double> o;
            o.max_new_tokens = 12;
            const auto out = generate(m, prompt, o);
            REQUIRE(out.size() == prompt.size() + 12);
            std::vector<std::int32_t> expect = prompt;
            for (int i = 0; i < 12; ++i) expect.push_back(argmax_last(m.forward(expect)));
            CHECK(out == expect);
        }
    }
}

TEST_CASE("generate: rows of a batch generate what they generate alone", "[generate]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 8);
    std::vector<std::int32_t> prompts = tiny::tokens(3, config.vocab_size, 1);
    const auto second = tiny::tokens(3, config.vocab_size, 2);
    prompts.insert(prompts.end(), second.begin(), second.end());
    generate_options<float> o;
    o.max_new_tokens = 10;
    o.sampling.temperature = 0.8;
    o.sampling.top_k = 20;
    o.sampling.seed = 100;
    const auto both = generate(m, tensor_view<const std::int32_t>(prompts.data(), {2, 3}), o);
    const auto alone0 = generate(m, std::vector<std::int32_t>(prompts.begin(), prompts.begin() + 3), o);
    o.sampling.seed = 101; // row b samples with seed + b
    const auto alone1 = generate(m, second, o);
    CHECK(both[0] == alone0);
    CHECK(both[1] == alone1);
}

TEST_CASE("generate: a seed fixes the sample; stop tokens and the stream callback work", "[generate]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 12);
    const std::vector<std::int32_t> prompt{1, 2, 3};
    generate_options<float> o;
    o.max_new_tokens = 20;
    o.sampling.temperature = 1.5;
    o.sampling.seed = 7;
    const auto a = generate(m, prompt, o), b = generate(m, prompt, o);
    CHECK(a == b);
    o.sampling.seed = 8;
    CHECK(generate(m, prompt, o) != a);

    o.sampling.seed = 7;
    std::vector<std::int32_t> streamed;
    o.on_token = [&](std::size_t row, std::int32_t token) {
        CHECK(row == 0);
        streamed.push_back(token);
        return true;
    };
    generate(m, prompt, o);
    CHECK(streamed == std::vector<std::int32_t>(a.begin() + 3, a.end()));

    o.stop_tokens = {a[6]}; // the 4th generated token
    const auto stopped = generate(m, prompt, o);
    CHECK(stopped == std::vector<std::int32_t>(a.begin(), a.begin() + 7));

    o.stop_tokens.clear();
    std::size_t count = 0;
    o.on_token = [&](std::size_t, std::int32_t) { return ++count < 5; };
    CHECK(generate(m, prompt, o).size() == 3 + 5);

    o = {};
    o.max_new_tokens = 1000; // clipped at the end of the 32-position context
    CHECK(generate(m, prompt, o).size() == config.max_seq_len);
}

TEST_CASE("generate: hooks run on the prompt and on every generated position", "[generate]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 4);
    const std::vector<std::int32_t> prompt{5, 6, 7, 8};
    std::vector<std::pair<std::size_t, std::size_t>> seen; // (offset, positions)
    hook_set<float> hooks;
    hooks.add("blocks.1.hook_resid_pre", [&](tensor_view<float> a, const hook_context& c) {
        seen.emplace_back(c.position_offset, c.positions);
        CHECK(a.shape() == shape_t{1, c.positions, config.d_model});
    });
    generate_options<float> o;
    o.max_new_tokens = 4;
    o.hooks = &hooks;
    generate(m, prompt, o);
    // The last sampled token is never fed back, so 1 prompt call + 3 single steps.
    CHECK(seen == std::vector<std::pair<std::size_t, std::size_t>>{{0, 4}, {4, 1}, {5, 1}, {6, 1}});

    // A hook that writes NaN is caught by the sampler with a clear error.
    hook_set<float> poison;
    poison.add("ln_final.hook_normalized", [](tensor_view<float> a, const hook_context&) {
        a(0, 0, 0) = std::numeric_limits<float>::quiet_NaN();
    });
    o.hooks = &poison;
    CHECK_THROWS_WITH(generate(m, prompt, o), Catch::Contains("[actlens.arg.104]") && Catch::Contains("NaN"));
}

TEST_CASE("sampler: frequencies follow the tempered, truncated distribution", "[generate]") {
    const std::vector<float> logits{2.0f, 1.0f, 0.5f, -1.0f, 0.0f};
    auto expected = [&](double temperature, std::size_t top_k, double top_p) {
        // Independent computation: sort probabilities, cut, renormalise.
        std::vector<std::pair<double, int>> p;
        for (int i = 0; i < 5; ++i) p.push_back({std::exp(logits[std::size_t(i)] / temperature), i});
        std::sort(p.rbegin(), p.rend());
        std::size_t keep = top_k ? top_k : 5;
        double total = 0, cum = 0;
        for (std::size_t i = 0; i < keep; ++i) total += p[i].first;
        if (top_p < 1.0)
            for (std::size_t i = 0; i < keep; ++i)
                if ((cum += p[i].first / total) >= top_p) {
                    keep = i + 1;
                    break;
                }
        std::vector<double> out(5, 0.0);
        total = 0;
        for (std::size_t i = 0; i < keep; ++i) total += p[i].first;
        for (std::size_t i = 0; i < keep; ++i) out[std::size_t(p[i].second)] = p[i].first / total;
        return out;
    };
    struct setting {
        double temperature;
        std::size_t top_k;
        double top_p;
    };
    for (const setting s : {setting{1.0, 0, 1.0}, setting{0.5, 0, 1.0}, setting{1.0, 2, 1.0}, setting{2.0, 0, 0.6},
                            setting{1.0, 3, 0.9}}) {
        sampling_options so;
        so.temperature = s.temperature;
        so.top_k = s.top_k;
        so.top_p = s.top_p;
        so.seed = 99;
        sampler smp(so);
        const int draws = 40000;
        std::vector<int> counts(5, 0);
        for (int i = 0; i < draws; ++i) counts[std::size_t(smp.sample(logits.data(), 5))]++;
        const auto p = expected(s.temperature, s.top_k, s.top_p);
        for (std::size_t i = 0; i < 5; ++i) {
            INFO("T " << s.temperature << " k " << s.top_k << " p " << s.top_p << " token " << i);
            const double sigma = std::sqrt(p[i] * (1 - p[i]) / draws);
            CHECK(std::abs(double(counts[i]) / draws - p[i]) <= 5 * sigma + 1e-12);
        }
    }
    sampling_options greedy;
    sampler g(greedy);
    CHECK(g.sample(logits.data(), 5) == 0);
}

TEST_CASE("generate: bad arguments throw actlens::error", "[generate][errors]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 4);
    generate_options<float> o;
    CHECK_THROWS_WITH(generate(m, std::vector<std::int32_t>{}, o), Catch::Contains("[actlens.tokenizer.303]"));
    CHECK_THROWS_WITH(generate(m, std::vector<std::int32_t>{999}, o), Catch::Contains("token id 999"));
    CHECK_THROWS_WITH(generate(m, std::vector<std::int32_t>(40, 1), o), Catch::Contains("[actlens.model.404]"));
    o.sampling.temperature = -1;
    CHECK_THROWS_WITH(generate(m, std::vector<std::int32_t>{1}, o), Catch::Contains("temperature"));
    o.sampling.temperature = 1;
    o.sampling.top_p = 0;
    CHECK_THROWS_WITH(generate(m, std::vector<std::int32_t>{1}, o), Catch::Contains("top_p"));
}

TEST_CASE("generate: the caller's workspace and KV cache are reused, not reallocated", "[generate]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 21);
    const std::vector<std::int32_t> prompt = tiny::tokens(5, config.vocab_size, 3);
    generate_options<float> o;
    o.max_new_tokens = 8;
    o.sampling.temperature = 0.7;
    o.sampling.seed = 3;
    workspace<float> ws;
    kv_cache<float> cache;
    const auto expect = generate(m, prompt, o);
    CHECK(generate(m, ws, cache, prompt, o) == expect);
    const float* resid = ws.resid.data();
    const float* logits = ws.logits.data();
    const float* mlp = ws.mlp_pre.data();
    const float* keys = cache.keys(0).data();
    const float* values = cache.values(config.n_layers - 1).data();
    const std::size_t capacity = cache.capacity();
    for (int call = 0; call < 3; ++call) {
        CHECK(generate(m, ws, cache, prompt, o) == expect);
        // A shorter prompt and fewer tokens fit in the same buffers.
        generate_options<float> shorter = o;
        shorter.max_new_tokens = 3;
        const std::vector<std::int32_t> head(prompt.begin(), prompt.begin() + 2);
        CHECK(generate(m, ws, cache, head, shorter) == generate(m, head, shorter));
        CHECK(ws.resid.data() == resid);
        CHECK(ws.logits.data() == logits);
        CHECK(ws.mlp_pre.data() == mlp);
        CHECK(cache.keys(0).data() == keys);
        CHECK(cache.values(config.n_layers - 1).data() == values);
        CHECK(cache.capacity() == capacity);
    }
    // A cache too small for the call (or of another batch) is replaced, and the result is unchanged.
    kv_cache<float> small = m.make_kv_cache(1, 2);
    CHECK(generate(m, ws, small, prompt, o) == expect);
    CHECK(small.capacity() >= prompt.size() + 8);
}

TEST_CASE("generate: results do not depend on the per-call thread count, which is scoped to the call",
          "[generate]") {
    // Large enough that the GEMM, the attention and the activations take their parallel paths.
    auto config = model_config::gpt2(/*layers*/ 2, /*d*/ 256, /*heads*/ 4, /*vocab*/ 256, /*ctx*/ 96);
    const auto m = make_random_transformer<float>(config, 5);
    const std::vector<std::int32_t> prompt = tiny::tokens(64, config.vocab_size, 9);
    std::vector<float> seen;
    int threads_seen = -1;
    hook_set<float> hooks;
    hooks.add(hook_point{site::ln_final_normalized, -1}, [&](tensor_view<float> a, const hook_context&) {
        seen.insert(seen.end(), a.data(), a.data() + a.size());
        threads_seen = kernels::detail::gemm_threads();
    });
    generate_options<float> o;
    o.max_new_tokens = 6;
    o.sampling.temperature = 1.0;
    o.sampling.seed = 4;
    o.hooks = &hooks;
    const int before = kernels::detail::gemm_threads();
    std::vector<std::vector<float>> runs;
    std::vector<std::vector<std::int32_t>> tokens;
    for (int threads : {1, 2, 3}) {
        seen.clear();
        o.threads = threads;
        tokens.push_back(generate(m, prompt, o));
        runs.push_back(seen);
#if defined(_OPENMP)
        CHECK(threads_seen == threads);
#endif
        CHECK(kernels::detail::gemm_threads() == before);
    }
    REQUIRE(runs[0].size() == 64 * 256 + 5 * 256);
    CHECK(runs[1] == runs[0]); // bit for bit
    CHECK(runs[2] == runs[0]);
    CHECK(tokens[1] == tokens[0]);
    CHECK(tokens[2] == tokens[0]);
    o.threads = -1;
    require_error([&] { generate(m, prompt, o); }, errc::invalid_argument, "threads");
}

TEST_CASE("generate: on_token returning false cancels the generation after that token", "[generate]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<float>(config, 12);
    const std::vector<std::int32_t> prompt{1, 2, 3};
    generate_options<float> o;
    o.max_new_tokens = 20;
    const auto full = generate(m, prompt, o);
    std::size_t calls = 0;
    o.on_token = [&](std::size_t, std::int32_t) { return ++calls < 3; };
    const auto cut = generate(m, prompt, o);
    CHECK(calls == 3);
    REQUIRE(cut.size() == prompt.size() + 3);
    CHECK(std::equal(cut.begin(), cut.end(), full.begin()));
    // In a batch the step that cancels ends every row, after each row has its token of that step.
    std::vector<std::int32_t> two{1, 2, 3, 4, 5, 6};
    o.on_token = [](std::size_t, std::int32_t) { return false; };
    const auto rows = generate(m, tensor_view<const std::int32_t>(two.data(), {2, 3}), o);
    CHECK(rows[0].size() == 4);
    CHECK(rows[1].size() == 4);
}
