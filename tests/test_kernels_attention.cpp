// Tests of actlens/kernels/attention.hpp: the two head products on strided blocks against naive
// loops, their backward passes against central finite differences in double, and one whole causal
// head (scores -> softmax -> mix, with two query heads sharing a key/value head) end to end.
#include "test_helpers.hpp"
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

// Gradient checks: the losses below are linear in each operand of a product (exact central
// differences up to rounding eps |L| / h ~ 1e-16 * 1e2 / 1e-6 = 1e-8), or, for the whole head,
// smooth with O(1) third derivatives (truncation h^2 / 6 ~ 1e-13). 1e-6 relative to the largest
// gradient component is therefore far above the noise and far below any formula error.

} // namespace

TEMPLATE_TEST_CASE("attention_scores: matches naive loops on heads read in place", "[kernels]",
                   float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t dh : {1u, 7u, 17u, 64u}) {
        const std::size_t heads = 3, tq = 1 + rng() % 9, tk = tq + rng() % 5, ld = heads * dh;
        const std::size_t lds = tk + rng() % 3;
        const T scale = T(1) / std::sqrt(T(dh));
        INFO("dh " << dh << " tq " << tq << " tk " << tk);
        const auto q = uniform<T>(rng, tq * ld, -1, 1), kk = uniform<T>(rng, tk * ld, -1, 1);
        for (std::size_t h = 0; h < heads; ++h) {
            std::vector<T> s(tq * lds, T(-7));
            k::attention_scores(q.data() + h * dh, ld, kk.data() + h * dh, ld, tq, tk, dh, scale,
                                s.data(), lds);
            for (std::size_t i = 0; i < tq; ++i) {
                for (std::size_t j = 0; j < tk; ++j) {
                    long double e = 0;
                    for (std::size_t c = 0; c < dh; ++c)
                        e += (long double)q[i * ld + h * dh + c] * kk[j * ld + h * dh + c];
                    CHECK(std::abs(s[i * lds + j] - scale * e) <= product_tol<T>(dh));
                }
                for (std::size_t j = tk; j < lds; ++j)
                    CHECK(s[i * lds + j] == T(-7));
            }
        }
    }
}

TEMPLATE_TEST_CASE("attention_mix: matches naive loops on heads written in place", "[kernels]",
                   float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t dh : {1u, 7u, 17u, 64u}) {
        const std::size_t heads = 2, tq = 1 + rng() % 9, tk = tq + rng() % 5, ld = heads * dh;
        const std::size_t ldp = tk + rng() % 3;
        INFO("dh " << dh << " tq " << tq << " tk " << tk);
        const auto p = uniform<T>(rng, tq * ldp, 0, 1), v = uniform<T>(rng, tk * ld, -1, 1);
        std::vector<T> z(tq * ld, T(-7));
        k::attention_mix(p.data(), ldp, v.data() + dh, ld, tq, tk, dh, z.data() + dh, ld); // head 1
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t c = 0; c < dh; ++c) {
                long double e = 0;
                for (std::size_t j = 0; j < tk; ++j)
                    e += (long double)p[i * ldp + j] * v[j * ld + dh + c];
                CHECK(std::abs(z[i * ld + dh + c] - e) <= product_tol<T>(tk));
                CHECK(z[i * ld + c] == T(-7)); // head 0 untouched
            }
    }
}

TEST_CASE("attention_scores_backward: dq and dk match central finite differences", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t dh : {1u, 7u, 17u}) {
        const std::size_t tq = 1 + rng() % 6, tk = tq + rng() % 4, ldq = dh + 2, ldk = dh + 1,
                          lds = tk + 1;
        const double scale = 0.37;
        INFO("dh " << dh << " tq " << tq << " tk " << tk);
        const auto q = uniform<double>(rng, tq * ldq, -1, 1),
                   kk = uniform<double>(rng, tk * ldk, -1, 1);
        const auto g = uniform<double>(rng, tq * lds, -1, 1); // dL/ds
        auto loss = [&](const std::vector<double>& qq, const std::vector<double>& kv) {
            std::vector<double> s(tq * lds, 0.0);
            k::attention_scores(qq.data(), ldq, kv.data(), ldk, tq, tk, dh, scale, s.data(), lds);
            double total = 0;
            for (std::size_t i = 0; i < tq; ++i)
                for (std::size_t j = 0; j < tk; ++j)
                    total += g[i * lds + j] * s[i * lds + j];
            return total;
        };
        const auto fq =
            finite_difference([&](const std::vector<double>& v) { return loss(v, kk); }, q);
        const auto fk =
            finite_difference([&](const std::vector<double>& v) { return loss(q, v); }, kk);
        // accumulate (default): added to what is there, padding columns of dq/dk untouched.
        const auto dq0 = uniform<double>(rng, tq * ldq, -1, 1),
                   dk0 = uniform<double>(rng, tk * ldk, -1, 1);
        auto dq = dq0, dk = dk0;
        k::attention_scores_backward(g.data(), lds, q.data(), ldq, kk.data(), ldk, tq, tk, dh,
                                     scale, dq.data(), ldq, dk.data(), ldk);
        std::vector<double> eq = dq0, ek = dk0;
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t c = 0; c < dh; ++c)
                eq[i * ldq + c] += fq[i * ldq + c];
        for (std::size_t j = 0; j < tk; ++j)
            for (std::size_t c = 0; c < dh; ++c)
                ek[j * ldk + c] += fk[j * ldk + c];
        CHECK(rel_err(dq, eq) <= fd_tol);
        CHECK(rel_err(dk, ek) <= fd_tol);
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t c = dh; c < ldq; ++c)
                CHECK(dq[i * ldq + c] == dq0[i * ldq + c]);
        // accumulate = false overwrites; a null dk skips it.
        std::vector<double> dq2(tq * ldq, 5.0);
        k::attention_scores_backward<double>(g.data(), lds, q.data(), ldq, kk.data(), ldk, tq, tk,
                                             dh, scale, dq2.data(), ldq, nullptr, 0, false);
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t c = 0; c < dh; ++c)
                CHECK(std::abs(dq2[i * ldq + c] - fq[i * ldq + c]) <= 1e-6);
    }
}

TEST_CASE("attention_mix_backward: dp and dv match central finite differences", "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t dh : {1u, 7u, 17u}) {
        const std::size_t tq = 1 + rng() % 6, tk = tq + rng() % 4, ldp = tk + 2, ldv = dh + 1,
                          ldz = dh + 3;
        INFO("dh " << dh << " tq " << tq << " tk " << tk);
        const auto p = uniform<double>(rng, tq * ldp, 0, 1),
                   v = uniform<double>(rng, tk * ldv, -1, 1);
        const auto g = uniform<double>(rng, tq * ldz, -1, 1); // dL/dz
        auto loss = [&](const std::vector<double>& pp, const std::vector<double>& vv) {
            std::vector<double> z(tq * ldz, 0.0);
            k::attention_mix(pp.data(), ldp, vv.data(), ldv, tq, tk, dh, z.data(), ldz);
            double total = 0;
            for (std::size_t i = 0; i < tq; ++i)
                for (std::size_t c = 0; c < dh; ++c)
                    total += g[i * ldz + c] * z[i * ldz + c];
            return total;
        };
        const auto fp =
            finite_difference([&](const std::vector<double>& x) { return loss(x, v); }, p);
        const auto fv =
            finite_difference([&](const std::vector<double>& x) { return loss(p, x); }, v);
        std::vector<double> dp(tq * ldp, 9.0);           // overwritten in the block, padding kept
        auto dv = uniform<double>(rng, tk * ldv, -1, 1); // accumulated
        const auto dv0 = dv;
        k::attention_mix_backward(g.data(), ldz, p.data(), ldp, v.data(), ldv, tq, tk, dh,
                                  dp.data(), ldp, dv.data(), ldv);
        auto ep = fp, ev = dv0;
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t j = tk; j < ldp; ++j)
                ep[i * ldp + j] = 9.0;
        for (std::size_t j = 0; j < tk; ++j)
            for (std::size_t c = 0; c < dh; ++c)
                ev[j * ldv + c] += fv[j * ldv + c];
        CHECK(rel_err(dp, ep) <= fd_tol);
        CHECK(rel_err(dv, ev) <= fd_tol);
        // Null outputs are skipped.
        std::vector<double> dp2(tq * ldp, 0.0);
        k::attention_mix_backward<double>(g.data(), ldz, p.data(), ldp, v.data(), ldv, tq, tk, dh,
                                          dp2.data(), ldp, nullptr, 0);
        for (std::size_t i = 0; i < tq; ++i)
            for (std::size_t j = 0; j < tk; ++j)
                CHECK(dp2[i * ldp + j] == dp[i * ldp + j]);
    }
}

TEST_CASE(
    "attention backward: a causal head with shared key/value heads matches finite differences",
    "[kernels]") {
    // Two query heads share one key/value head (grouped-query attention), with `past` cached
    // positions: dk and dv must sum the contributions of both query heads, which the kernels do by
    // accumulating. The loss is smooth; see fd_tol for the error budget.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    const std::size_t dh = 5, q_heads = 2, tq = 4, past = 3, tk = past + tq;
    const std::size_t ldq = q_heads * dh, ldkv = dh, lds = tk;
    const double scale = 1 / std::sqrt(double(dh));
    const auto q = uniform<double>(rng, tq * ldq, -1, 1),
               kk = uniform<double>(rng, tk * ldkv, -1, 1);
    const auto v = uniform<double>(rng, tk * ldkv, -1, 1),
               g = uniform<double>(rng, tq * ldq, -1, 1);

    auto forward = [&](const std::vector<double>& qq, const std::vector<double>& kv,
                       const std::vector<double>& vv, std::vector<double>& p_all) {
        std::vector<double> z(tq * ldq, 0.0);
        p_all.assign(q_heads * tq * lds, 0.0);
        for (std::size_t h = 0; h < q_heads; ++h) {
            double* p = p_all.data() + h * tq * lds;
            k::attention_scores(qq.data() + h * dh, ldq, kv.data(), ldkv, tq, tk, dh, scale, p,
                                lds);
            k::softmax_causal(p, tq, tk, lds, past);
            k::attention_mix(p, lds, vv.data(), ldkv, tq, tk, dh, z.data() + h * dh, ldq);
        }
        return dot(g, z);
    };
    std::vector<double> p_all;
    forward(q, kk, v, p_all);

    std::vector<double> dq(tq * ldq, 0.0), dk(tk * ldkv, 0.0), dv(tk * ldkv, 0.0), dp(tq * lds);
    for (std::size_t h = 0; h < q_heads; ++h) {
        const double* p = p_all.data() + h * tq * lds;
        k::attention_mix_backward(g.data() + h * dh, ldq, p, lds, v.data(), ldkv, tq, tk, dh,
                                  dp.data(), lds, dv.data(), ldkv);
        k::softmax_causal_backward(p, dp.data(), dp.data(), tq, tk, lds, past);
        k::attention_scores_backward(dp.data(), lds, q.data() + h * dh, ldq, kk.data(), ldkv, tq,
                                     tk, dh, scale, dq.data() + h * dh, ldq, dk.data(), ldkv);
    }
    std::vector<double> scratch;
    CHECK(rel_err(dq, finite_difference(
                          [&](const std::vector<double>& x) { return forward(x, kk, v, scratch); },
                          q)) <= fd_tol);
    CHECK(rel_err(dk, finite_difference(
                          [&](const std::vector<double>& x) { return forward(q, x, v, scratch); },
                          kk)) <= fd_tol);
    CHECK(rel_err(dv, finite_difference(
                          [&](const std::vector<double>& x) { return forward(q, kk, x, scratch); },
                          v)) <= fd_tol);
}
