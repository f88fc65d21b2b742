// The serving engine on its own thread, with requests submitted and awaited from several threads
// (this file runs under ThreadSanitizer in CI: keep it small).
#include "tiny_models.hpp"

#include <actlens/methods/steering.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/serve/engine.hpp>
#include <actlens/serve/request.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <thread>
#include <vector>

using namespace actlens;

TEST_CASE("serve: requests from several threads to the engine's thread get their results alone", "[serve]") {
    const model_config c = tiny::llama();
    const auto m = make_random_transformer<float>(c, 41);
    steering_vector<float> v;
    v.point = hook_point{site::resid_post, 0};
    v.direction = tensor<float>({c.d_model});
    for (std::size_t k = 0; k < c.d_model; ++k) v.direction(k) = float(k % 5) - 2.0f;
    auto steer = std::make_shared<hook_set<float>>();
    add_steering(*steer, v);

    constexpr std::size_t clients = 4, per_client = 3;
    std::vector<serve::completion_request<float>> requests;
    for (std::size_t i = 0; i < clients * per_client; ++i) {
        serve::completion_request<float> r;
        r.prompt = tiny::tokens(2 + i % 4, c.vocab_size, std::uint32_t(i));
        r.max_new_tokens = 3 + i % 5;
        r.sampling.temperature = i % 2 ? 0.8 : 0.0;
        r.sampling.seed = i;
        if (i % 3 == 0) r.hooks = steer;
        if (i % 4 == 1) r.capture = {"blocks.1.hook_resid_mid"};
        requests.push_back(r);
    }
    std::vector<serve::completion<float>> expect;
    for (const auto& r : requests) expect.push_back(serve::run_alone(m, r));

    serve::engine_options options;
    options.max_batch = 3;
    serve::engine<float> engine(m, options);
    engine.start();
    std::vector<serve::completion<float>> got(requests.size());
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < clients; ++t)
        threads.emplace_back([&, t] {
            for (std::size_t j = 0; j < per_client; ++j) {
                const std::size_t i = t * per_client + j;
                got[i] = engine.submit(requests[i]).get();
            }
        });
    for (auto& th : threads) th.join();
    engine.stop();
    for (std::size_t i = 0; i < requests.size(); ++i) {
        INFO("request " << i);
        CHECK(got[i].tokens == expect[i].tokens);
        REQUIRE(got[i].captures.size() == expect[i].captures.size());
        for (std::size_t k = 0; k < got[i].captures.size(); ++k) {
            const auto& a = got[i].captures[k].values;
            const auto& b = expect[i].captures[k].values;
            REQUIRE(a.shape() == b.shape());
            CHECK(std::equal(a.begin(), a.end(), b.begin()));
        }
    }
    CHECK(engine.load() == 0);
}
