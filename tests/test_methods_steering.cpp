// Tests of methods/steering.hpp and methods/gact.hpp: builders against brute-force loops over
// run_with_cache, hooks checked by capturing the activation they leave, k-means and probes on
// planted data.
#include "test_helpers.hpp"
#include "tiny_models.hpp"
#include "paths.hpp"

#include <actlens/methods/gact.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

using namespace actlens;

namespace {

using prompts_t = std::vector<std::vector<std::int32_t>>;

// Prompts of different lengths (so that last-token and mean policies differ).
prompts_t make_prompts(std::size_t n, std::size_t vocab, std::uint32_t salt) {
    prompts_t out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(tiny::tokens(4 + (i * 3 + salt) % 5, vocab, salt * 31 + std::uint32_t(i)));
    return out;
}

// The activation at `name` of each prompt, reduced by `policy`, from run_with_cache (the oracle).
std::vector<std::vector<double>> brute_rows(const transformer& m, const prompts_t& prompts, const std::string& name,
                                            position_policy policy) {
    std::vector<std::vector<double>> rows;
    for (const auto& p : prompts) {
        auto [logits, cache] = m.run_with_cache(p, name);
        const tensor<float>& a = cache[name];
        const std::size_t T = a.extent(1), d = a.extent(2);
        std::vector<double> row(d, 0.0);
        for (std::size_t k = 0; k < d; ++k) {
            if (policy == position_policy::last_token) {
                row[k] = a(0, T - 1, k);
            } else {
                for (std::size_t t = 0; t < T; ++t) row[k] += a(0, t, k);
                row[k] /= double(T);
            }
        }
        rows.push_back(row);
    }
    return rows;
}

std::vector<double> column_mean(const std::vector<std::vector<double>>& rows) {
    std::vector<double> m(rows[0].size(), 0.0);
    for (const auto& r : rows)
        for (std::size_t k = 0; k < r.size(); ++k) m[k] += r[k];
    for (double& x : m) x /= double(rows.size());
    return m;
}

// Captures the activation at a point into `out` (a hook that copies).
void capture(hook_set<float>& hooks, const hook_point& p, tensor<float>& out) {
    hooks.add(p, [&out](tensor_view<float> a, const hook_context&) {
        out.reshape_uninitialized(a.shape());
        tensor<float>::copy_into(a, out.view());
    });
}

steering_vector<float> random_vector(const hook_point& p, std::size_t d, std::uint64_t seed) {
    steering_vector<float> v;
    v.point = p;
    v.direction.resize({d});
    rng gen(seed);
    for (float& x : v.direction) x = float(gen.normal());
    return v;
}

} // namespace

TEST_CASE("steering: diff-in-means equals the mean difference of run_with_cache activations", "[steering]") {
    for (const auto& named : tiny::all()) {
        const transformer m = make_random_transformer<float>(named.config, 3);
        const std::size_t vocab = named.config.vocab_size;
        const prompts_t pos = make_prompts(6, vocab, 1), neg = make_prompts(6, vocab, 2), neg4 = make_prompts(4, vocab, 3);
        for (const char* name : {"blocks.1.hook_resid_post", "blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out",
                                 "hook_embed", "ln_final.hook_normalized"}) {
            for (auto policy : {position_policy::last_token, position_policy::mean_over_tokens}) {
                INFO(named.name << " " << name << " policy " << int(policy));
                steering_build_options o;
                o.policy = policy;
                const auto v = mean_diff_vector(m, pos, neg, hook_point::parse(name), o);
                const auto pm = column_mean(brute_rows(m, pos, name, policy));
                const auto nm = column_mean(brute_rows(m, neg, name, policy));
                REQUIRE(v.size() == named.config.d_model);
                CHECK(v.method == steering_method::mean_difference);
                CHECK(v.samples == 6);
                for (std::size_t k = 0; k < pm.size(); ++k) CHECK(v.direction(k) == Approx(float(pm[k] - nm[k])).margin(1e-6));
                // Unpaired sets of different sizes, unit-normalised.
                o.paired = false;
                o.normalize = true;
                const auto u = mean_diff_vector(m, pos, neg4, hook_point::parse(name), o);
                const auto n4 = column_mean(brute_rows(m, neg4, name, policy));
                double norm = 0;
                for (std::size_t k = 0; k < pm.size(); ++k) norm += (pm[k] - n4[k]) * (pm[k] - n4[k]);
                norm = std::sqrt(norm);
                CHECK(u.scale == Approx(norm).epsilon(1e-9));
                for (std::size_t k = 0; k < pm.size(); ++k)
                    CHECK(u.direction(k) == Approx(float((pm[k] - n4[k]) / norm)).margin(1e-6));
            }
        }
    }
}

TEST_CASE("steering: PCA axis is deterministic and equals the covariance's top eigenvector", "[steering]") {
    const transformer m = make_random_transformer<float>(tiny::llama(), 5);
    const prompts_t pos = make_prompts(8, 60, 4), neg = make_prompts(8, 60, 5);
    const hook_point p = hook_point::parse("blocks.1.hook_resid_post");
    steering_build_options o;
    o.policy = position_policy::mean_over_tokens;
    const auto a = pca_diff_vector(m, pos, neg, p, o);
    const auto b = pca_diff_vector(m, pos, neg, p, o);
    REQUIRE(a.size() == 32);
    CHECK(std::memcmp(a.direction.data(), b.direction.data(), a.size() * sizeof(float)) == 0);

    // Brute force: covariance of the differences (d x d, double), power iteration from all-ones.
    const auto hp = brute_rows(m, pos, p.name(), o.policy), hn = brute_rows(m, neg, p.name(), o.policy);
    const std::size_t n = hp.size(), d = hp[0].size();
    std::vector<std::vector<double>> diff(n, std::vector<double>(d));
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = 0; k < d; ++k) diff[i][k] = hp[i][k] - hn[i][k];
    const auto mean = column_mean(diff);
    std::vector<double> cov(d * d, 0.0);
    for (const auto& r : diff)
        for (std::size_t x = 0; x < d; ++x)
            for (std::size_t y = 0; y < d; ++y) cov[x * d + y] += (r[x] - mean[x]) * (r[y] - mean[y]);
    std::vector<double> v(d, 1.0), w(d);
    for (int it = 0; it < 20000; ++it) {
        double norm = 0;
        for (std::size_t x = 0; x < d; ++x) {
            w[x] = 0;
            for (std::size_t y = 0; y < d; ++y) w[x] += cov[x * d + y] * v[y];
            norm += w[x] * w[x];
        }
        for (std::size_t x = 0; x < d; ++x) v[x] = w[x] / std::sqrt(norm);
    }
    if (dot(v, mean) < 0)
        for (double& x : v) x = -x;
    double trace = 0, top = 0;
    for (std::size_t x = 0; x < d; ++x) trace += cov[x * d + x];
    for (std::size_t x = 0; x < d; ++x)
        for (std::size_t y = 0; y < d; ++y) top += v[x] * cov[x * d + y] * v[y];
    for (std::size_t k = 0; k < d; ++k) CHECK(a.direction(k) == Approx(v[k]).margin(1e-5));
    CHECK(a.explained_variance == Approx(top / trace).epsilon(1e-6));
    CHECK(a.scale == Approx(dot(v, mean)).epsilon(1e-5));
    CHECK(a.method == steering_method::pca_difference);
}

TEST_CASE("steering: PCA vector is bitwise identical with 1 and 2 threads (stories260K)", "[steering][threads]") {
    const transformer m = load_model(actlens::test_paths::model("stories260K.bin"));
    prompts_t pos, neg;
    for (std::uint32_t i = 0; i < 8; ++i) {
        pos.push_back(tiny::tokens(6 + i % 3, 512, i + 1));
        neg.push_back(tiny::tokens(5 + i % 4, 512, i + 40));
    }
    const hook_point p{site::resid_post, 2};
#if defined(_OPENMP)
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    const auto one = pca_diff_vector(m, pos, neg, p);
    const auto mean_one = mean_diff_vector(m, pos, neg, p);
#if defined(_OPENMP)
    omp_set_num_threads(2);
#endif
    const auto two = pca_diff_vector(m, pos, neg, p);
    const auto mean_two = mean_diff_vector(m, pos, neg, p);
#if defined(_OPENMP)
    omp_set_num_threads(before);
#endif
    REQUIRE(one.size() == 64);
    CHECK(std::memcmp(one.direction.data(), two.direction.data(), one.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(mean_one.direction.data(), mean_two.direction.data(), one.size() * sizeof(float)) == 0);
    // The axis is aligned with the mean difference.
    double along = 0;
    for (std::size_t k = 0; k < 64; ++k) along += double(one.direction(k)) * mean_one.direction(k);
    CHECK(along > 0);
}

TEST_CASE("steering: alpha = 0 leaves generation bit-identical; alpha != 0 changes the logits", "[steering]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const transformer m = make_random_transformer<float>(named.config, 7);
        const auto prompt = tiny::tokens(5, named.config.vocab_size, 2);
        const auto v = random_vector({site::resid_post, 1}, named.config.d_model, 11);
        generate_options<float> plain;
        plain.max_new_tokens = 12;
        plain.sampling.temperature = 0.8;
        plain.sampling.seed = 3;
        const auto reference = generate(m, prompt, plain);

        hook_set<float> zero;
        steering_options o;
        o.alpha = 0.0;
        for (int l = 0; l < int(named.config.n_layers); ++l) o.layers.push_back(l);
        add_steering(zero, v, o);
        generate_options<float> steered = plain;
        steered.hooks = &zero;
        CHECK(generate(m, prompt, steered) == reference);

        const tensor<float> base = m.forward(prompt);
        run_options<float> r;
        r.hooks = &zero;
        const tensor<float> same = m.forward(prompt, r);
        CHECK(std::memcmp(base.data(), same.data(), base.size() * sizeof(float)) == 0);
        hook_set<float> strong;
        o.alpha = 3.0;
        add_steering(strong, v, o);
        r.hooks = &strong;
        const tensor<float> moved = m.forward(prompt, r);
        double change = 0;
        for (std::size_t i = 0; i < base.size(); ++i) change += std::abs(double(base.data()[i]) - moved.data()[i]);
        CHECK(change > 1e-2);
    }
}

TEST_CASE("steering: add_steering adds alpha * v per row, only at positions in range", "[steering]") {
    const transformer m = make_random_transformer<float>(tiny::llama(), 9);
    const std::size_t d = 32, B = 3, T = 5, extra = 3;
    const hook_point p{site::resid_mid, 1};
    const auto v = random_vector(p, d, 4);
    std::vector<std::int32_t> tokens;
    for (std::uint32_t b = 0; b < B; ++b) {
        const auto row = tiny::tokens(T + extra, 60, b);
        tokens.insert(tokens.end(), row.begin(), row.end());
    }
    // Prompt [B, T] then `extra` tokens through the KV cache: offsets 0 and T.
    auto run = [&](const hook_set<float>* steer, tensor<float>& first, tensor<float>& second) {
        hook_set<float> hooks;
        if (steer) hooks.merge(*steer);
        tensor<float>* target = &first;
        hooks.add(p, [&target](tensor_view<float> a, const hook_context&) {
            target->reshape_uninitialized(a.shape());
            tensor<float>::copy_into(a, target->view());
        });
        workspace<float> ws;
        kv_cache<float> cache = m.make_kv_cache(B, T + extra);
        run_options<float> r;
        r.hooks = &hooks;
        r.cache = &cache;
        std::vector<std::int32_t> head, tail;
        for (std::size_t b = 0; b < B; ++b) {
            head.insert(head.end(), tokens.begin() + std::ptrdiff_t(b * (T + extra)), tokens.begin() + std::ptrdiff_t(b * (T + extra) + T));
            tail.insert(tail.end(), tokens.begin() + std::ptrdiff_t(b * (T + extra) + T), tokens.begin() + std::ptrdiff_t((b + 1) * (T + extra)));
        }
        m.forward_into(ws, tensor_view<const std::int32_t>(head.data(), {B, T}), r);
        target = &second;
        m.forward_into(ws, tensor_view<const std::int32_t>(tail.data(), {B, extra}), r);
    };
    tensor<float> base1, base2;
    run(nullptr, base1, base2);
    const std::vector<double> row_alpha{0.5, 0.0, -2.0};
    for (const token_range range : {token_range::all(), token_range::prompt(T), token_range::generated(T),
                                    token_range{3, 6}}) {
        INFO("range [" << range.begin << ", " << range.end << ")");
        hook_set<float> steer;
        steering_options o;
        o.row_alpha = row_alpha;
        o.tokens = range;
        add_steering(steer, v, o);
        tensor<float> s1, s2;
        run(&steer, s1, s2);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < T + extra; ++t) {
                const bool in = range.contains(t);
                for (std::size_t k = 0; k < d; ++k) {
                    const float got = t < T ? s1(b, t, k) - base1(b, t, k) : s2(b, t - T, k) - base2(b, t - T, k);
                    // resid_mid of layer 1 depends only on layer-1 keys, computed before the hook
                    // adds, so any difference is the hook's own addition.
                    const float want = in ? float(row_alpha[b]) * v.direction(k) : 0.0f;
                    CHECK(got == Approx(want).margin(1e-5));
                }
            }
    }
    // Norm preservation: the steered position keeps its norm and turns toward v.
    hook_set<float> keep;
    steering_options o;
    o.alpha = 4.0;
    o.preserve_norm = true;
    add_steering(keep, v, o);
    tensor<float> k1, k2;
    run(&keep, k1, k2);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            double n0 = 0, n1 = 0, c0 = 0, c1 = 0;
            for (std::size_t k = 0; k < d; ++k) {
                n0 += double(base1(b, t, k)) * base1(b, t, k);
                n1 += double(k1(b, t, k)) * k1(b, t, k);
                c0 += double(base1(b, t, k)) * v.direction(k);
                c1 += double(k1(b, t, k)) * v.direction(k);
            }
            CHECK(std::sqrt(n1) == Approx(std::sqrt(n0)).epsilon(1e-5));
            CHECK(c1 / std::sqrt(n1) > c0 / std::sqrt(n0));
        }
}

TEST_CASE("steering: directional ablation removes the component along v, downstream too", "[steering]") {
    for (const auto& named : tiny::all()) {
        INFO(named.name);
        const transformer m = make_random_transformer<float>(named.config, 12);
        const std::size_t d = named.config.d_model;
        const auto prompt = tiny::tokens(7, named.config.vocab_size, 5);
        // A direction the residual certainly has a component along: its value at position 3.
        auto [logits, cache] = m.run_with_cache(prompt, "blocks.0.hook_resid_post");
        const tensor<float>& h = cache["blocks.0.hook_resid_post"];
        steering_vector<float> v;
        v.point = {site::resid_post, 0};
        v.direction.resize({d});
        for (std::size_t k = 0; k < d; ++k) v.direction(k) = h(0, 3, k);
        hook_set<float> hooks;
        add_ablation(hooks, v);
        tensor<float> at, below;
        capture(hooks, {site::resid_post, 0}, at);
        capture(hooks, {site::resid_pre, 1}, below);
        run_options<float> r;
        r.hooks = &hooks;
        m.forward(prompt, r);
        const double vn = detail::norm_of(v.direction.data(), d);
        for (std::size_t t = 0; t < 7; ++t) {
            double before = 0, after = 0, next = 0, norm = 0;
            for (std::size_t k = 0; k < d; ++k) {
                before += h(0, t, k) * v.direction(k) / vn;
                after += at(0, t, k) * v.direction(k) / vn;
                next += below(0, t, k) * v.direction(k) / vn;
                norm += double(h(0, t, k)) * h(0, t, k);
            }
            if (t == 3) CHECK(before == Approx(std::sqrt(norm)));
            CHECK(std::abs(after) < 1e-5 * std::sqrt(norm));
            CHECK(std::abs(next) < 1e-5 * std::sqrt(norm));
        }
    }
}

TEST_CASE("kmeans: planted clusters are recovered, deterministically", "[steering][gact]") {
    const std::size_t per = 15, k = 4, d = 6;
    tensor<double> x({per * k, d});
    rng gen(21);
    std::vector<std::size_t> truth;
    for (std::size_t c = 0; c < k; ++c)
        for (std::size_t i = 0; i < per; ++i) {
            const std::size_t row = c * per + i;
            for (std::size_t j = 0; j < d; ++j) x(row, j) = (j == c ? 10.0 : 0.0) + 0.3 * gen.normal();
            truth.push_back(c);
        }
    for (std::uint64_t seed : {0u, 1u, 2u, 99u}) {
        const kmeans_result r = kmeans(x.view(), k, seed);
        CHECK(r.converged);
        // Same partition as the truth: a bijection between found and planted labels.
        std::set<std::pair<std::size_t, std::size_t>> pairs;
        for (std::size_t i = 0; i < truth.size(); ++i) pairs.insert({truth[i], r.labels[i]});
        CHECK(pairs.size() == k);
        std::set<std::size_t> found;
        for (const auto& pr : pairs) found.insert(pr.second);
        CHECK(found.size() == k);
        const kmeans_result again = kmeans(x.view(), k, seed);
        CHECK(again.labels == r.labels);
        CHECK(std::memcmp(again.centroids.data(), r.centroids.data(), r.centroids.size() * sizeof(double)) == 0);
    }
    CHECK_THROWS_WITH(kmeans(x.view(), 0, 1), Catch::Contains("k = 0"));
    CHECK_THROWS_WITH(kmeans(x.view(), 61, 1), Catch::Contains("k = 61"));
}

TEST_CASE("softmax_probe: separable classes are learned exactly; refine moves toward the label", "[steering][gact]") {
    const std::size_t k = 3, d = 8, n = 30;
    rng gen(5);
    auto blob = [&](tensor<double>& x, std::vector<std::size_t>& y, std::size_t rows) {
        x.resize({rows, d});
        y.resize(rows);
        for (std::size_t i = 0; i < rows; ++i) {
            y[i] = i % k;
            for (std::size_t j = 0; j < d; ++j) x(i, j) = 50.0 + (j == y[i] ? 3.0 : 0.0) + 0.4 * gen.normal();
        }
    };
    tensor<double> train, test;
    std::vector<std::size_t> ytrain, ytest;
    blob(train, ytrain, n);
    blob(test, ytest, n);
    softmax_probe probe(k, d);
    const double untrained = probe.loss(train.view(), ytrain);
    CHECK(untrained == Approx(std::log(3.0)));
    const double final_loss = probe.train(train.view(), ytrain);
    CHECK(final_loss < 0.1);
    CHECK(probe.accuracy(train.view(), ytrain) == 1.0);
    CHECK(probe.accuracy(test.view(), ytest) == 1.0);
    // A refinement step toward another label raises that label's probability.
    std::array<double, gact_max_clusters> p0{}, p1{};
    probe.probabilities(&test(0, 0), p0.data());
    const std::size_t other = (ytest[0] + 1) % k;
    probe.refine(&test(0, 0), other, 0.5);
    probe.probabilities(&test(0, 0), p1.data());
    CHECK(p1[other] > p0[other]);
    CHECK_THROWS_WITH(probe.train(train.view(), std::vector<std::size_t>(n, 3)), Catch::Contains("labels[0] = 3"));
    CHECK_THROWS_WITH(softmax_probe(1, d), Catch::Contains("1 classes"));
}

TEST_CASE("gact: fit, held-out accuracy, and a hook that adds alpha * sum_k p(k|h) v_k", "[steering][gact]") {
    const transformer m = make_random_transformer<float>(tiny::llama(), 17);
    // Two planted "topics": the positive prompt ends with a topic-specific suffix, so the
    // differences fall into two clusters; the probe must tell the topic from the prompt.
    prompts_t pos, neg;
    for (std::uint32_t i = 0; i < 16; ++i) {
        auto base = tiny::tokens(5, 60, i + 1);
        const bool topic = i % 2;
        for (auto& t : base) t = std::int32_t(topic ? 30 + t % 30 : t % 30); // topic by token range
        neg.push_back(base);
        base.push_back(topic ? 7 : 50);
        base.push_back(topic ? 8 : 51);
        pos.push_back(base);
    }
    gact_options o;
    o.clusters = 2;
    o.policy = position_policy::last_token;
    const auto g = gact_fit(m, pos, neg, {0, 2}, o);
    REQUIRE(g.layers.size() == 2);
    for (const auto& l : g.layers) {
        CHECK(l.train_accuracy == 1.0);
        // The clusters are the topics.
        for (std::size_t i = 0; i < 16; ++i) CHECK((l.labels[i] == l.labels[i % 2]));
        CHECK(l.labels[0] != l.labels[1]);
        for (std::size_t c = 0; c < 2; ++c) {
            double n = 0;
            for (std::size_t j = 0; j < 32; ++j) n += double(l.directions(c, j)) * l.directions(c, j);
            CHECK(n == Approx(1.0).epsilon(1e-5));
        }
    }
    const auto acc = gact_accuracy(m, g, pos, neg, position_policy::last_token);
    CHECK(acc == std::vector<double>{1.0, 1.0});

    // The hook's addition, checked at the hook point itself against the probe on the clean activation.
    const auto prompt = tiny::tokens(6, 60, 3);
    auto [logits, cache] = m.run_with_cache(prompt, "blocks.2.hook_resid_post");
    const tensor<float>& h = cache["blocks.2.hook_resid_post"];
    hook_set<float> hooks;
    gact_apply_options a;
    a.alpha = 2.5;
    a.layers = {2};
    a.tokens = {1, 4};
    add_gact_steering(hooks, g, a);
    tensor<float> got;
    capture(hooks, {site::resid_post, 2}, got);
    run_options<float> r;
    r.hooks = &hooks;
    m.forward(prompt, r);
    const auto& layer = g.at_layer(2);
    for (std::size_t t = 0; t < 6; ++t) {
        std::array<double, gact_max_clusters> p{};
        layer.probe.probabilities(&h(0, t, 0), p.data());
        for (std::size_t j = 0; j < 32; ++j) {
            const double add = a.tokens.contains(t) ? 2.5 * (p[0] * layer.directions(0, j) + p[1] * layer.directions(1, j)) : 0.0;
            CHECK(got(0, t, j) - h(0, t, j) == Approx(add).margin(1e-5));
        }
    }

    // Refinement: the best cluster found by brute force (add_steering of each direction alone)
    // becomes the probe's prediction after enough steps.
    const std::vector<std::int32_t> targets{7, 8};
    for (std::size_t q = 0; q < 4; ++q) {
        const prompts_t one{neg[q]};
        std::size_t best = 0;
        double best_lp = -1e300, base_lp = 0;
        for (int c = -1; c < 2; ++c) {
            hook_set<float> inject;
            steering_vector<float> vc;
            vc.point = {site::resid_post, 2};
            vc.direction.resize({32});
            for (std::size_t j = 0; j < 32 && c >= 0; ++j) vc.direction(j) = layer.directions(std::size_t(c), j);
            steering_options so;
            so.alpha = c >= 0 ? 4.0 : 0.0;
            add_steering(inject, vc, so);
            run_options<float> ri;
            ri.hooks = &inject;
            const tensor<float> lg = m.forward(one[0], ri);
            std::vector<double> lsm;
            detail::log_softmax_row(&lg(0, one[0].size() - 1, 0), 60, lsm);
            const double lp = std::log(std::exp(lsm[7]) + std::exp(lsm[8]));
            if (c < 0) base_lp = lp;
            else if (lp > best_lp) best_lp = lp, best = std::size_t(c);
        }
        gact_steerer<float> refined = g;
        const tensor<double> feat = collect_activations(m, one, hook_point{site::resid_post, 2}, position_policy::last_token);
        const bool differs = refined.at_layer(2).probe.predict(&feat(0, 0)) != best;
        gact_refine_options ro;
        ro.steps = 300;
        ro.learning_rate = 0.5;
        const auto report = gact_refine(m, refined, one, targets, ro, position_policy::last_token);
        REQUIRE(report.relabelled.size() == 2);
        CHECK(report.relabelled[1] == std::size_t(differs));
        CHECK(report.mean_gain[1] == Approx(best_lp - base_lp).margin(1e-4));
        CHECK(refined.at_layer(2).probe.predict(&feat(0, 0)) == best);
    }
    gact_steerer<float> refined = g;
    CHECK_THROWS_WITH(gact_refine(m, refined, pos, {60}), Catch::Contains("target token 60"));
    CHECK_THROWS_WITH(g.at_layer(1), Catch::Contains("layer 1 was not fitted"));
}

TEST_CASE("steering: bad arguments throw actlens::error naming them", "[steering][errors]") {
    const transformer m = make_random_transformer<float>(tiny::gpt2(), 1);
    const prompts_t pos = make_prompts(3, 50, 1), neg = make_prompts(2, 50, 2);
    const hook_point p{site::resid_post, 1};
    CHECK_THROWS_WITH(mean_diff_vector(m, pos, neg, p), Catch::Contains("paired prompt sets differ"));
    CHECK_THROWS_WITH(mean_diff_vector(m, prompts_t{}, neg, p), Catch::Contains("a prompt set is empty"));
    CHECK_THROWS_WITH(mean_diff_vector(m, pos, pos, hook_point{site::attn_q, 1}), Catch::Contains("blocks.1.attn.hook_q"));
    CHECK_THROWS_WITH(mean_diff_vector(m, pos, pos, hook_point{site::resid_post, 3}), Catch::Contains("outside the model's 3 layers"));
    CHECK_THROWS_WITH(mean_diff_vector(m, pos, prompts_t{{1, 2}, {}, {3}}, p), Catch::Contains("prompt 1 is empty"));
    CHECK_THROWS_WITH(pca_diff_vector(m, prompts_t{{1, 2}}, prompts_t{{3, 4}}, p), Catch::Contains("at least 2 rows"));
    CHECK_THROWS_WITH(pca_diff_vector(m, pos, pos, p), Catch::Contains("no variance"));

    hook_set<float> hooks;
    auto v = random_vector(p, 24, 1);
    steering_options o;
    o.alpha = std::nan("");
    CHECK_THROWS_WITH(add_steering(hooks, v, o), Catch::Contains("alpha is nan"));
    o.alpha = 1;
    o.layers = {-1};
    CHECK_THROWS_WITH(add_steering(hooks, v, o), Catch::Contains("layer -1"));
    o.layers = {};
    o.tokens = {5, 2};
    CHECK_THROWS_WITH(add_steering(hooks, v, o), Catch::Contains("[5, 2) is reversed"));
    CHECK(hooks.empty());
    steering_vector<float> zero;
    zero.point = p;
    zero.direction.resize({24});
    CHECK_THROWS_WITH(add_ablation(hooks, zero), Catch::Contains("is zero"));
    // Errors found while running: wrong row_alpha size, wrong direction size.
    o = {};
    o.row_alpha = {1.0, 2.0};
    add_steering(hooks, v, o);
    run_options<float> r;
    r.hooks = &hooks;
    const auto prompt = tiny::tokens(4, 50, 1);
    CHECK_THROWS_WITH(m.forward(prompt, r), Catch::Contains("row_alpha has 2 entries for a batch of 1"));
    hook_set<float> wrong;
    add_steering(wrong, random_vector(p, 10, 1));
    r.hooks = &wrong;
    CHECK_THROWS_WITH(m.forward(prompt, r), Catch::Contains("direction of size 10"));

    gact_options go;
    go.clusters = 1;
    CHECK_THROWS_WITH(gact_fit(m, pos, pos, {1}, go), Catch::Contains("clusters = 1"));
    go.clusters = 4;
    CHECK_THROWS_WITH(gact_fit(m, pos, pos, {1}, go), Catch::Contains("3 pairs cannot fill 4 clusters"));
    go.clusters = 2;
    CHECK_THROWS_WITH(gact_fit(m, pos, pos, {}, go), Catch::Contains("`layers` is empty"));
    CHECK_THROWS_WITH(gact_fit(m, pos, pos, {7}, go), Catch::Contains("blocks.7.hook_resid_post"));
}
