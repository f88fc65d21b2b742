#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/core/rng.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>

using namespace actlens;

namespace {

/// A = Z0 Y0 + noise, stored as rows [n, d] (tokens × neurons). Z0 [d, K] has `support` non-zero
/// entries of either sign per column (disjoint supports); Y0 [K, n] >= 0 with each feature active
/// on ~35% of the tokens.
struct planted {
    std::size_t d, K, n;
    std::vector<std::vector<double>> z; // K columns of length d
    tensor<float> a;                    // [n, d]
};

planted make_planted(std::size_t d, std::size_t K, std::size_t n, std::size_t support, double noise,
                     std::uint64_t seed) {
    planted p{d, K, n, {}, tensor<float>({n, d})};
    rng gen(seed);
    std::vector<std::size_t> perm(d);
    std::iota(perm.begin(), perm.end(), std::size_t(0));
    for (std::size_t i = d - 1; i > 0; --i) std::swap(perm[i], perm[std::size_t(gen.uniform() * double(i + 1))]);
    for (std::size_t j = 0; j < K; ++j) {
        std::vector<double> col(d, 0.0);
        for (std::size_t s = 0; s < support; ++s)
            col[perm[j * support + s]] = (gen.uniform() < 0.5 ? -1.0 : 1.0) * (1.0 + gen.uniform());
        p.z.push_back(col);
    }
    for (std::size_t t = 0; t < n; ++t) {
        std::vector<double> y(K);
        for (std::size_t j = 0; j < K; ++j) y[j] = gen.uniform() < 0.35 ? 0.5 + gen.uniform() : 0.0;
        for (std::size_t i = 0; i < d; ++i) {
            double v = noise * gen.normal();
            for (std::size_t j = 0; j < K; ++j) v += p.z[j][i] * y[j];
            p.a(t, i) = float(v);
        }
    }
    return p;
}

/// For each planted feature, the cosine with its greedily matched fitted feature (pairs taken by
/// decreasing cosine, each fitted feature used once).
std::vector<double> matched_cosines(const planted& p, const snmf_result& fit) {
    const std::size_t K = fit.features.extent(0), d = p.d;
    std::vector<std::tuple<double, std::size_t, std::size_t>> pairs;
    for (std::size_t a = 0; a < p.K; ++a)
        for (std::size_t b = 0; b < K; ++b) {
            double dot = 0, na = 0, nb = 0;
            for (std::size_t i = 0; i < d; ++i) {
                dot += p.z[a][i] * fit.features(b, i);
                na += p.z[a][i] * p.z[a][i];
                nb += double(fit.features(b, i)) * fit.features(b, i);
            }
            pairs.emplace_back(nb > 0 ? dot / std::sqrt(na * nb) : 0.0, a, b);
        }
    std::sort(pairs.rbegin(), pairs.rend());
    std::vector<double> best(p.K, -2.0);
    std::vector<bool> used_a(p.K), used_b(K);
    for (const auto& [c, a, b] : pairs)
        if (!used_a[a] && !used_b[b]) {
            used_a[a] = used_b[b] = true;
            best[a] = c;
        }
    return best;
}

/// ‖A − Z Gᵀ‖²_F computed directly in double.
double direct_loss(const tensor<float>& a, const snmf_result& fit) {
    const std::size_t n = a.extent(0), d = a.extent(1), K = fit.features.extent(0);
    double loss = 0;
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t i = 0; i < d; ++i) {
            double r = a(t, i);
            for (std::size_t j = 0; j < K; ++j) r -= double(fit.features(j, i)) * fit.coefficients(t, j);
            loss += r * r;
        }
    return loss;
}

} // namespace

TEST_CASE("fit_snmf: recovers planted sparse features (matched cosine >= 0.95)", "[snmf]") {
    const planted p = make_planted(/*d*/ 60, /*K*/ 5, /*n*/ 1500, /*support*/ 3, /*noise*/ 0.01, 7);
    // Random starts with exactly K = 5 features sometimes leave one planted feature unclaimed (a
    // local minimum: seeds 42, 2 and 3 of 4 tried); with two spare features every seed tried
    // recovers all five. k-means and SVD starts recover them with K = 5.
    struct run {
        snmf_init init;
        std::size_t rank;
        std::uint64_t seed;
    };
    for (const run r : {run{snmf_init::random, 7, 42}, run{snmf_init::random, 7, 3}, run{snmf_init::kmeans, 5, 42},
                        run{snmf_init::svd, 5, 42}}) {
        const snmf_init init = r.init;
        snmf_options o;
        o.rank = r.rank;
        o.seed = r.seed;
        o.sparsity = 0.045; // ceil(0.045 * 60) = 3 neurons per feature
        o.max_iter = 3000;
        o.patience = 200;
        o.init = init;
        o.block_rows = 256;
        const snmf_result fit = fit_snmf(p.a.view(), o);
        const std::vector<double> cos = matched_cosines(p, fit);
        INFO("init " << int(init) << " iterations " << fit.loss.size() << " best loss " << fit.best_loss);
        for (double c : cos) {
            INFO("cosines " << cos[0] << " " << cos[1] << " " << cos[2] << " " << cos[3] << " " << cos[4]);
            CHECK(c >= 0.95);
        }
        // The noise floor: n·d·σ² = 9 (the fit may go a little below it by fitting noise).
        CHECK(fit.best_loss < 2 * 1500 * 60 * 0.01 * 0.01);
        for (std::size_t j = 0; j < r.rank; ++j) {
            std::size_t nonzero = 0;
            for (std::size_t i = 0; i < 60; ++i) nonzero += fit.features(j, i) != 0.0f;
            CHECK(nonzero <= 3);
        }
        CHECK(*std::min_element(fit.coefficients.begin(), fit.coefficients.end()) >= 0.0f);
    }
}

TEST_CASE("fit_snmf: without sparsity the loss never increases", "[snmf]") {
    const planted p = make_planted(40, 4, 600, 5, 0.3, 11);
    snmf_options o;
    o.rank = 6;
    o.sparse = false;
    o.max_iter = 300;
    o.tol = 0.0;
    o.patience = 1000;
    o.block_rows = 100;
    const snmf_result fit = fit_snmf(p.a.view(), o);
    REQUIRE(fit.loss.size() == 300);
    CHECK(fit.stop == snmf_stop::max_iter);
    for (std::size_t i = 1; i < fit.loss.size(); ++i) {
        INFO("iteration " << i << ": " << fit.loss[i - 1] << " -> " << fit.loss[i]);
        // Exact arithmetic is monotone (least squares, then Ding-Li-Jordan); float rounding of the
        // expanded loss is ~1e-6 relative.
        REQUIRE(fit.loss[i] <= fit.loss[i - 1] * (1 + 2e-6));
    }
    CHECK(fit.loss.back() < 0.5 * fit.loss.front());
    // The expanded loss (never forming Z Gᵀ) equals the direct one for the returned factors.
    CHECK(direct_loss(p.a, fit) == Approx(fit.best_loss).epsilon(1e-4));
}

TEST_CASE("fit_snmf: with sparsity the loss curve is reported and the best iterate kept", "[snmf]") {
    const planted p = make_planted(50, 4, 500, 4, 0.2, 3);
    snmf_options o;
    o.rank = 8;
    o.sparsity = 0.1;
    o.max_iter = 2000;
    o.patience = 25;
    o.block_rows = 64;
    const snmf_result fit = fit_snmf(p.a.view(), o);
    REQUIRE(fit.stop == snmf_stop::patience);
    // Stopped exactly `patience` iterations after the last improvement.
    CHECK(fit.loss.size() == fit.best_iteration + 1 + o.patience);
    CHECK(fit.best_loss == fit.loss[fit.best_iteration]);
    for (std::size_t i = 0; i < fit.loss.size(); ++i) CHECK(fit.loss[i] > fit.best_loss - o.tol);
    // What is returned is the best iterate, not the last one.
    CHECK(direct_loss(p.a, fit) == Approx(fit.best_loss).epsilon(1e-4));
    for (std::size_t j = 0; j < 8; ++j) {
        std::size_t nonzero = 0;
        for (std::size_t i = 0; i < 50; ++i) nonzero += fit.features(j, i) != 0.0f;
        CHECK(nonzero <= 5); // ceil(0.1 * 50)
    }

    // on_iteration sees every loss and can stop the fit.
    std::vector<double> seen;
    o.on_iteration = [&](std::size_t it, double loss) {
        CHECK(it == seen.size());
        seen.push_back(loss);
        return it < 9;
    };
    const snmf_result stopped = fit_snmf(p.a.view(), o);
    CHECK(stopped.stop == snmf_stop::callback);
    CHECK(seen == stopped.loss);
    CHECK(seen.size() == 10);
    // Deterministic: the same loss curve as the first run, up to where it stopped.
    CHECK(std::equal(seen.begin(), seen.end(), fit.loss.begin()));
}

TEST_CASE("fit_snmf: capture shards on disk give the same bits as the capture in memory", "[snmf]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 12);
    std::vector<std::vector<std::int32_t>> corpus;
    for (std::uint32_t s = 0; s < 12; ++s) corpus.push_back(tiny::tokens(20, config.vocab_size, s + 3));
    capture_options co;
    co.shard_rows = 37; // shard boundaries do not align with the blocks below
    const std::string dir = (std::filesystem::temp_directory_path() / "actlens_test_snmf_shards").string();
    std::filesystem::remove_all(dir);
    capture_to_shards(m, corpus, "blocks.1.mlp.hook_post", dir, co);
    const captured_activations mem = capture_activations(m, corpus, "blocks.1.mlp.hook_post");

    for (snmf_init init : {snmf_init::random, snmf_init::kmeans, snmf_init::svd}) {
        snmf_options o;
        o.rank = 6;
        o.sparsity = 0.2;
        o.max_iter = 40;
        o.block_rows = 50;
        o.init = init;
        capture_reader reader(dir);
        const snmf_result disk = fit_snmf(reader, o);
        const snmf_result ram = fit_snmf(mem.values.view(), o);
        INFO("init " << int(init));
        CHECK(disk.loss == ram.loss);
        CHECK(disk.best_iteration == ram.best_iteration);
        REQUIRE(disk.features.shape() == ram.features.shape());
        CHECK(std::equal(disk.features.begin(), disk.features.end(), ram.features.begin()));
        CHECK(std::equal(disk.coefficients.begin(), disk.coefficients.end(), ram.coefficients.begin()));
        // Another blocking changes only rounding in the first iterations.
        o.block_rows = 1000;
        o.max_iter = 3;
        o.sparse = false;
        const snmf_result one_block = fit_snmf(mem.values.view(), o);
        o.block_rows = 50;
        const snmf_result blocks = fit_snmf(mem.values.view(), o);
        for (std::size_t i = 0; i < 3; ++i) CHECK(one_block.loss[i] == Approx(blocks.loss[i]).epsilon(1e-5));
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("fit_snmf: seeds make runs reproducible and different", "[snmf]") {
    const planted p = make_planted(30, 3, 200, 3, 0.1, 5);
    snmf_options o;
    o.rank = 4;
    o.sparsity = 0.1;
    o.max_iter = 50;
    const snmf_result a = fit_snmf(p.a.view(), o), b = fit_snmf(p.a.view(), o);
    CHECK(std::equal(a.features.begin(), a.features.end(), b.features.begin()));
    CHECK(a.loss == b.loss);
    o.seed = 43;
    const snmf_result c = fit_snmf(p.a.view(), o);
    CHECK(c.loss != a.loss);
}

TEST_CASE("fit_snmf: bad options and data give clear errors", "[snmf]") {
    const planted p = make_planted(10, 2, 20, 2, 0.1, 1);
    auto with = [&](auto edit, errc code) {
        snmf_options o;
        o.rank = 2;
        o.max_iter = 3;
        edit(o);
        require_error([&] { fit_snmf(p.a.view(), o); }, code);
    };
    with([](snmf_options& o) { o.rank = 0; }, errc::invalid_argument);
    with([](snmf_options& o) { o.sparsity = 0.0; }, errc::invalid_argument);
    with([](snmf_options& o) { o.sparsity = 1.5; }, errc::invalid_argument);
    with([](snmf_options& o) { o.tol = -1; }, errc::invalid_argument);
    with([](snmf_options& o) { o.ridge = std::numeric_limits<double>::quiet_NaN(); }, errc::invalid_argument);
    with([](snmf_options& o) { o.patience = 0; }, errc::invalid_argument);
    with([](snmf_options& o) { o.max_iter = 0; }, errc::invalid_argument);
    with([](snmf_options& o) { o.block_rows = 0; }, errc::invalid_argument);
    with([](snmf_options& o) { o.init = snmf_init::kmeans, o.rank = 21; }, errc::invalid_argument);

    tensor<float> bad = p.a;
    bad(7, 3) = std::numeric_limits<float>::quiet_NaN();
    require_error([&] { fit_snmf(bad.view(), snmf_options{}); }, errc::non_finite);
    tensor<float> empty({0, 10});
    require_error([&] { fit_snmf(empty.view(), snmf_options{}); }, errc::shape_mismatch);
    const float one = 1.0f;
    require_error([&] { fit_snmf(tensor_view<const float>(&one, {1}), snmf_options{}); }, errc::shape_mismatch);
}

TEST_CASE("snmf features: neurons, top tokens, vocabulary projection and steering", "[snmf]") {
    const auto config = tiny::llama();
    const auto m = make_random_transformer<float>(config, 31);
    std::vector<std::vector<std::int32_t>> corpus;
    for (std::uint32_t s = 0; s < 6; ++s) corpus.push_back(tiny::tokens(16, config.vocab_size, s + 1));
    const captured_activations cap = capture_activations(m, corpus, "blocks.1.mlp.hook_post");
    snmf_options o;
    o.rank = 5;
    o.sparsity = 0.1;
    o.max_iter = 30;
    const snmf_result fit = fit_snmf(cap.values.view(), o);
    const std::size_t d = config.d_mlp;

    for (std::size_t j = 0; j < 5; ++j) {
        // Neurons: exactly the non-zero entries, by decreasing magnitude.
        const auto neurons = feature_neurons(fit, j, 100);
        std::size_t nonzero = 0;
        for (std::size_t i = 0; i < d; ++i) nonzero += fit.features(j, i) != 0.0f;
        CHECK(neurons.size() == nonzero);
        for (std::size_t r = 0; r < neurons.size(); ++r) {
            CHECK(neurons[r].weight == fit.features(j, neurons[r].neuron));
            if (r) CHECK(std::fabs(neurons[r - 1].weight) >= std::fabs(neurons[r].weight));
        }
        CHECK(feature_neurons(fit, j, 2).size() == std::min<std::size_t>(2, nonzero));

        // Top tokens: the largest coefficients, with their context.
        const auto top = top_activating(fit, j, 4, cap.rows, corpus, 3, 2);
        REQUIRE(top.size() == 4);
        std::vector<float> column;
        for (std::size_t t = 0; t < cap.rows.size(); ++t) column.push_back(fit.coefficients(t, j));
        std::sort(column.rbegin(), column.rend());
        for (std::size_t r = 0; r < 4; ++r) {
            CHECK(top[r].coefficient == column[r]);
            const auto& seq = corpus[top[r].sequence];
            CHECK(top[r].token == seq[top[r].position]);
            CHECK(top[r].context[top[r].token_in_context] == top[r].token);
            CHECK(top[r].context.size() <= 6);
        }

        // Vocabulary projection: brute force W_U rms_norm(W_out z_j).
        const auto vocab = feature_vocab(m, 1, fit, j, 3);
        const auto& w = m.weights();
        std::vector<double> f(config.d_model), logits(config.vocab_size);
        double ms = 0;
        for (std::size_t e = 0; e < config.d_model; ++e) {
            for (std::size_t i = 0; i < d; ++i) f[e] += double(w.layers[1].w_out(e, i)) * fit.features(j, i);
            ms += f[e] * f[e] / double(config.d_model);
        }
        for (std::size_t e = 0; e < config.d_model; ++e)
            f[e] = f[e] / std::sqrt(ms + config.norm_eps) * w.final_norm_weight(e);
        for (std::size_t v = 0; v < config.vocab_size; ++v)
            for (std::size_t e = 0; e < config.d_model; ++e) logits[v] += double(w.unembedding(v, e)) * f[e];
        std::vector<std::size_t> order(config.vocab_size);
        std::iota(order.begin(), order.end(), std::size_t(0));
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
        for (std::size_t r = 0; r < 3; ++r) {
            CHECK(vocab[r].token == std::int32_t(order[r]));
            CHECK(vocab[r].logit == Approx(logits[order[r]]).margin(1e-4));
        }
    }

    // Steering adds alpha * z_j / ‖z_j‖ at every position of hook_post (the cache sees it after).
    hook_set<float> steer;
    add_feature_steering(steer, m, 1, fit, 2, 3.0f);
    run_options<float> run;
    run.hooks = &steer;
    const auto [clean_logits, clean] = m.run_with_cache(corpus[0], "blocks.1.mlp.hook_post");
    const auto [steered_logits, steered] = m.run_with_cache(corpus[0], "blocks.1.mlp.hook_post", run);
    double norm = 0;
    for (std::size_t i = 0; i < d; ++i) norm += double(fit.features(2, i)) * fit.features(2, i);
    for (std::size_t t = 0; t < 16; ++t)
        for (std::size_t i = 0; i < d; ++i)
            REQUIRE(steered["blocks.1.mlp.hook_post"](0, t, i) - clean["blocks.1.mlp.hook_post"](0, t, i) ==
                    Approx(3.0 * fit.features(2, i) / std::sqrt(norm)).margin(1e-5));
    double change = 0;
    for (std::size_t i = 0; i < clean_logits.size(); ++i)
        change = std::max(change, double(std::fabs(clean_logits.data()[i] - steered_logits.data()[i])));
    CHECK(change > 1e-3);

    require_error([&] { feature_neurons(fit, 5, 3); }, errc::out_of_range);
    require_error([&] { feature_vocab(m, 3, fit, 0, 3); }, errc::bad_layer_range);
    require_error([&] { feature_vocab(m, 1, fit, 0, 0); }, errc::invalid_argument);
    require_error([&] { add_feature_steering(steer, m, 1, fit, 0, std::numeric_limits<float>::infinity()); },
                  errc::invalid_argument);
    capture_rows short_rows = cap.rows;
    short_rows.token.pop_back();
    require_error([&] { top_activating(fit, 0, 3, short_rows, corpus); }, errc::shape_mismatch);
    const captured_activations resid = capture_activations(m, corpus, "blocks.1.hook_resid_pre");
    o.max_iter = 2;
    const snmf_result wrong_width = fit_snmf(resid.values.view(), o);
    require_error([&] { add_feature_steering(steer, m, 1, wrong_width, 0, 1.0f); }, errc::shape_mismatch);
}
