#include "test_helpers.hpp"
#include "tiny_models.hpp"

#include <actlens/analysis/null_models.hpp>
#include <actlens/analysis/significance.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/model/random_weights.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace actlens;

namespace {

double max_abs_difference(const tensor<double>& a, const tensor<double>& b) {
    double m = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a.data()[i] - b.data()[i]));
    return m;
}

/// The BH q-values by their definition, q_i = min over j with p_j >= p_i of p_j m / rank(j), where
/// rank counts the p-values <= p_j (ties share the largest rank).
std::vector<double> bh_by_definition(const std::vector<double>& p) {
    const std::size_t m = p.size();
    std::vector<double> q(m);
    for (std::size_t i = 0; i < m; ++i) {
        double best = 1.0;
        for (std::size_t j = 0; j < m; ++j) {
            if (p[j] < p[i]) continue;
            std::size_t rank = 0;
            for (std::size_t k = 0; k < m; ++k) rank += p[k] <= p[j];
            best = std::min(best, p[j] * double(m) / double(rank));
        }
        q[i] = best;
    }
    return q;
}

} // namespace

TEST_CASE("benjamini_hochberg: q-values equal the definition, and discoveries are the q <= alpha", "[analysis][null]") {
    const std::vector<double> p{0.01, 0.04, 0.03, 0.2, 0.005, 0.04, 0.9, 0.5};
    const std::vector<double> q = benjamini_hochberg(p);
    const std::vector<double> expected = bh_by_definition(p);
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(q[i] == Approx(expected[i]).epsilon(1e-12));
    // By hand: sorted 0.005 0.01 0.03 0.04 0.04 0.2 0.5 0.9 -> 0.04, 0.04, 0.064, 0.064, 0.064, 0.2667, 0.5714, 0.9.
    CHECK(q[4] == Approx(0.04));
    CHECK(q[2] == Approx(0.064));
    CHECK(fdr_discoveries(q, 0.05) == std::vector<std::size_t>{0, 4});
    require_error([] { benjamini_hochberg({0.1, 1.5}); }, errc::invalid_argument, "p[1]");
    require_error([] { fdr_discoveries({0.1}, 0.0); }, errc::invalid_argument);
}

TEST_CASE("null_test: permutation p-values, effect sizes and the alternatives", "[analysis][null]") {
    const std::vector<double> observed{5.0, -0.5, 0.0};
    const std::vector<std::vector<double>> nulls{{1.0, 0.5, 0.0}, {-1.0, -1.0, 0.0}, {2.0, 0.2, 0.0}, {0.0, 0.9, 0.0}};
    const null_test_result r = null_test(observed, nulls);
    // Component 0: no null reaches |5| -> (1 + 0) / 5. Component 1: |0.5|, |-1|, |0.9| >= 0.5 -> 4/5.
    CHECK(r.p_value[0] == Approx(0.2));
    CHECK(r.p_value[1] == Approx(0.8));
    CHECK(r.p_value[2] == Approx(1.0));
    CHECK(r.null_mean[0] == Approx(0.5));
    CHECK(r.null_sd[0] == Approx(std::sqrt((0.25 + 2.25 + 2.25 + 0.25) / 3.0)));
    CHECK(r.effect[0] == Approx((5.0 - 0.5) / r.null_sd[0]));
    CHECK(r.effect[2] == 0.0);
    CHECK(r.null_runs == 4);
    // Gaussian tails of the effect: two-sided for magnitude (component 2: z = 0 -> p = 1).
    CHECK(r.p_gaussian[0] == Approx(std::erfc(r.effect[0] / std::sqrt(2.0))));
    CHECK(r.p_gaussian[2] == Approx(1.0));
    CHECK(r.q_gaussian == benjamini_hochberg(r.p_gaussian));
    const null_test_result less = null_test(observed, nulls, null_alternative::less);
    CHECK(less.p_value[1] == Approx(2.0 / 5.0)); // only -1.0 <= -0.5
    require_error([&] { null_test(observed, {{1.0, 2.0}}); }, errc::shape_mismatch, "null run 0");
    require_error([&] { null_test({std::nan("")}, {{1.0}}); }, errc::non_finite, "observed[0]");
    require_error([&] { null_test(observed, {}); }, errc::invalid_argument);
}

TEST_CASE("null_test: under a true null the permutation p-values are uniform (Kolmogorov-Smirnov)", "[analysis][null]") {
    // Observed and null scores drawn from one distribution: p = (1 + #{null >= observed}) / (K + 1) is
    // then uniform on {1/(K+1), ..., 1}. Its empirical CDF over 3000 seeds must stay within the KS band
    // (1.63 / sqrt(n): 1% level) of that discrete uniform at every support point.
    const std::size_t K = 19, seeds = 3000;
    std::vector<double> ps;
    for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
        rng gen(seed * 7919);
        const std::vector<double> observed{gen.normal()};
        std::vector<std::vector<double>> nulls;
        for (std::size_t k = 0; k < K; ++k) nulls.push_back({gen.normal()});
        ps.push_back(null_test(observed, nulls, null_alternative::greater).p_value[0]);
    }
    std::sort(ps.begin(), ps.end());
    double worst = 0.0;
    for (std::size_t j = 1; j <= K + 1; ++j) {
        const double level = double(j) / double(K + 1);
        const double below = double(std::upper_bound(ps.begin(), ps.end(), level + 1e-12) - ps.begin()) / double(seeds);
        worst = std::max(worst, std::fabs(below - level));
    }
    CHECK(worst < 1.63 / std::sqrt(double(seeds)));
    // And a real effect is not uniform: the same draws with the observed score shifted by 3.
    std::size_t smallest = 0;
    for (std::uint64_t seed = 1; seed <= 200; ++seed) {
        rng gen(seed * 7919);
        const std::vector<double> observed{gen.normal() + 3.0};
        std::vector<std::vector<double>> nulls;
        for (std::size_t k = 0; k < K; ++k) nulls.push_back({gen.normal()});
        smallest += null_test(observed, nulls, null_alternative::greater).p_value[0] <= 0.05 + 1e-12;
    }
    CHECK(smallest > 150);
}

TEST_CASE("bootstrap_mean_interval: brackets the mean, shrinks with agreement, and is seeded", "[analysis][null]") {
    std::vector<std::vector<double>> scores;
    for (int p = 0; p < 40; ++p) scores.push_back({p % 2 ? 1.0 : -1.0, 3.0});
    const mean_interval a = bootstrap_mean_interval(scores, 4000, 0.95, 7);
    CHECK(a.mean[0] == Approx(0.0).margin(1e-12));
    CHECK(a.low[0] < 0.0);
    CHECK(a.high[0] > 0.0);
    // The mean of 40 ±1 coin values has sd 1/sqrt(40): the 95% interval is about ±1.96 of that.
    CHECK(a.high[0] == Approx(1.96 / std::sqrt(40.0)).epsilon(0.2));
    CHECK(a.low[1] == 3.0); // no spread, no interval
    CHECK(a.high[1] == 3.0);
    const mean_interval b = bootstrap_mean_interval(scores, 4000, 0.95, 7);
    CHECK(b.low == a.low);
    require_error([&] { bootstrap_mean_interval({{1.0}}, 10); }, errc::invalid_argument, "2 are needed");
    require_error([&] { bootstrap_mean_interval({{1.0}, {1.0, 2.0}}, 10); }, errc::shape_mismatch, "prompt 1");
}

TEST_CASE("null models: preserving permutations keep the function, scrambling ones break it", "[analysis][null]") {
    for (const auto& [name, config] : tiny::all()) {
        CAPTURE(name);
        const auto m = make_random_transformer<double>(config, 3);
        const auto toks = tiny::tokens(7, config.vocab_size);
        const tensor<double> base = m.forward(toks);
        const auto neurons = random_permutation(config.d_mlp, 11);
        const tensor<double> kept = permute_neurons(m, 1, neurons, permutation_kind::preserving).forward(toks);
        const tensor<double> broken = permute_neurons(m, 1, neurons, permutation_kind::scrambling).forward(toks);
        CHECK(max_abs_difference(kept, base) < 1e-10);
        CHECK(max_abs_difference(broken, base) > 1e-3);

        // Whole key/value groups move with their query heads (4 heads over 2 groups for llama).
        const std::size_t group = config.group_size();
        std::vector<std::size_t> heads;
        for (std::size_t g = config.n_kv_heads; g-- > 0;)
            for (std::size_t h = group; h-- > 0;) heads.push_back(g * group + h);
        const tensor<double> heads_kept = permute_heads(m, 0, heads, permutation_kind::preserving).forward(toks);
        const tensor<double> heads_broken = permute_heads(m, 0, heads, permutation_kind::scrambling).forward(toks);
        CHECK(max_abs_difference(heads_kept, base) < 1e-10);
        CHECK(max_abs_difference(heads_broken, base) > 1e-3);
    }
    const auto llama = make_random_transformer<double>(tiny::llama(), 3);
    // Heads 0 and 1 share a group; sending them to heads of different groups is not function-preserving.
    require_error([&] { permute_heads(llama, 0, {0, 2, 1, 3}, permutation_kind::preserving); }, errc::invalid_argument,
                  "share a key/value group");
    CHECK_NOTHROW(permute_heads(llama, 0, {0, 2, 1, 3}, permutation_kind::scrambling));
    require_error([&] { permute_heads(llama, 0, {0, 0, 1, 3}, permutation_kind::scrambling); }, errc::invalid_argument,
                  "not a permutation");
    require_error([&] { permute_neurons(llama, 3, random_permutation(40, 1), permutation_kind::preserving); },
                  errc::bad_layer_range, "0..2");
    require_error([&] { permute_neurons(llama, 0, {1, 0}, permutation_kind::preserving); }, errc::shape_mismatch);
}

TEST_CASE("null models: matched random weights keep each tensor's mean and spread, not its values", "[analysis][null]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 3);
    const auto null = matched_random_model(m, 99);
    auto stats = [](const tensor_view<const double>& v) {
        double s = 0.0, q = 0.0;
        for (std::size_t i = 0; i < v.size(); ++i) s += v.data()[i];
        const double mean = s / double(v.size());
        for (std::size_t i = 0; i < v.size(); ++i) q += (v.data()[i] - mean) * (v.data()[i] - mean);
        return std::pair{mean, std::sqrt(q / double(v.size() - 1))};
    };
    // The largest tensors: sampling error of the mean ~ sd / sqrt(n).
    for (const auto& [a, b] : {std::pair{m.weights().token_embedding, null.weights().token_embedding},
                               {m.weights().layers[1].w_in, null.weights().layers[1].w_in},
                               {m.weights().position_embedding, null.weights().position_embedding}}) {
        const auto [ma, sa] = stats(a);
        const auto [mb, sb] = stats(b);
        CHECK(std::fabs(ma - mb) < 5.0 * sa / std::sqrt(double(a.size())));
        CHECK(sb == Approx(sa).epsilon(0.1));
        CHECK(a.data()[0] != b.data()[0]);
    }
    CHECK(null.weights().unembedding.data() == null.weights().token_embedding.data()); // still tied
    const auto toks = tiny::tokens(6, config.vocab_size);
    CHECK(max_abs_difference(null.forward(toks), m.forward(toks)) > 1e-2);
}

TEST_CASE("test_against_null: AtP of a model against matched random nulls, and a planted finding", "[analysis][null]") {
    const auto config = tiny::gpt2();
    const auto m = make_random_transformer<double>(config, 3);
    const tiny::run_pair runs{tiny::tokens(10, config.vocab_size, 1), tiny::tokens(10, config.vocab_size, 2)};
    const logit_difference metric{{1, 2}, {3, 4}};
    auto atp = [&](const basic_transformer<double>& model) {
        const patching_result r = attribution_patch(model, runs.cv(), runs.xv(), metric, patch_target::resid_pre);
        return std::vector<double>(r.scores.data(), r.scores.data() + r.scores.size());
    };
    const null_test_result r = test_against_null(m, atp, null_kind::matched_random, 9, 1);
    CHECK(r.null_runs == 9);
    CHECK(r.observed == atp(m));
    for (std::size_t c = 0; c < r.p_value.size(); ++c) {
        CHECK(r.p_value[c] >= 0.1 - 1e-12);
        CHECK(r.p_value[c] <= 1.0);
        CHECK(r.q_value[c] >= r.p_value[c] - 1e-12);
    }
    // The same seed gives the same nulls.
    CHECK(test_against_null(m, atp, null_kind::matched_random, 9, 1).p_value == r.p_value);

    // A "method" that finds component 0 only in the real model: the smallest possible p-value there.
    auto planted = [&](const basic_transformer<double>& model) {
        return std::vector<double>{&model == &m ? 10.0 : 0.1, 1.0};
    };
    for (const null_kind kind : {null_kind::scrambled_neurons, null_kind::scrambled_heads}) {
        const null_test_result p = test_against_null(m, planted, kind, 19, 5);
        CHECK(p.p_value[0] == Approx(1.0 / 20.0));
        CHECK(p.p_value[1] == Approx(1.0));
    }
}

TEST_CASE("random_permutation and random_derangement: permutations, seeded, the latter without fixed points",
          "[analysis][null]") {
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
        const auto p = random_permutation(7, seed), q = random_derangement(7, seed);
        std::vector<std::size_t> sp(p), sq(q);
        std::sort(sp.begin(), sp.end());
        std::sort(sq.begin(), sq.end());
        CHECK(sp == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
        CHECK(sq == sp);
        for (std::size_t i = 0; i < 7; ++i) CHECK(q[i] != i);
        CHECK(random_derangement(7, seed) == q);
    }
    CHECK(random_derangement(2, 3) == std::vector<std::size_t>{1, 0});
}

TEST_CASE("shuffle_labels: the pooled sets re-split at random, sizes and members kept", "[analysis][null]") {
    const std::vector<int> a{1, 2, 3}, b{4, 5, 6, 7, 8};
    const auto [x, y] = shuffle_labels(a, b, 4);
    CHECK(x.size() == 3);
    CHECK(y.size() == 5);
    std::vector<int> all(x);
    all.insert(all.end(), y.begin(), y.end());
    std::sort(all.begin(), all.end());
    CHECK(all == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(shuffle_labels(a, b, 4) == std::pair{x, y});
    bool moved = false; // some seed moves a member across (20 seeds: all-stay has probability 1/56 each)
    for (std::uint64_t s = 0; s < 20 && !moved; ++s) moved = shuffle_labels(a, b, s).first != a;
    CHECK(moved);
}
