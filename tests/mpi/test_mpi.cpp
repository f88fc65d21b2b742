// Distributed capture, SNMF and sweeps equal, bit for bit, what one process computes. Every rank
// computes the one-process reference itself (on all the data) and compares its distributed result
// with it. Collectives follow most checks, so checks are CHECKs (a REQUIRE failing on one rank would
// leave the others waiting).
#include "tiny_models.hpp"

#include <actlens/core/exact_sums.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/mpi/capture.hpp>
#include <actlens/mpi/communicator.hpp>
#include <actlens/mpi/snmf.hpp>
#include <actlens/mpi/sweep.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <string>
#include <vector>

using namespace actlens;

namespace {

template <class T>
bool same_bits(const tensor<T>& a, const tensor<T>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// A [n, d] matrix of planted sparse non-negative mixtures plus noise, the same on every rank.
tensor<float> planted_data(std::size_t n, std::size_t d, std::uint64_t seed) {
    rng gen(seed);
    tensor<float> a({n, d});
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t i = 0; i < d; ++i)
            a(t, i) = float((i % 3 == t % 3 ? 2.0 : 0.0) * gen.uniform() + 0.1 * gen.normal());
    return a;
}

/// A directory every rank names the same (rank 0 picks it).
std::string shared_directory(const mpi::communicator& comm, const char* what) {
    std::string name;
    if (comm.rank() == 0)
        name = (std::filesystem::temp_directory_path() /
                ("actlens_mpi_" + std::string(what) + "_" + std::to_string(::getpid())))
                   .string();
    return comm.all_gather(name).front();
}

} // namespace

TEST_CASE("mpi: exact sums over ranks equal the sums of one process", "[mpi]") {
    const mpi::communicator comm;
    // Terms of very different sizes, where float order matters: each rank adds its share.
    std::vector<double> terms;
    rng gen(7);
    for (int i = 0; i < 1000; ++i) terms.push_back(std::ldexp(gen.normal(), int(gen.uniform() * 80) - 40));
    exact_sums one(2), spread(2);
    for (std::size_t i = 0; i < terms.size(); ++i) {
        one.add(0, terms[i]);
        one.add(1, -2.0 * terms[i]);
    }
    const auto [first, end] = comm.share(terms.size());
    for (std::size_t i = first; i < end; ++i) {
        spread.add(0, terms[i]);
        spread.add(1, -2.0 * terms[i]);
    }
    comm.sum(spread);
    for (std::size_t k = 0; k < 2; ++k) {
        const double a = one.value(k), b = spread.value(k);
        CHECK(std::memcmp(&a, &b, sizeof a) == 0);
    }
}

TEST_CASE("mpi: fit_snmf over ranks gives the one-process fit, bit for bit", "[mpi][snmf]") {
    const mpi::communicator comm;
    const tensor<float> a = planted_data(300, 24, 11);
    for (const snmf_init init : {snmf_init::random, snmf_init::svd, snmf_init::kmeans}) {
        snmf_options o;
        o.rank = 3;
        o.sparsity = 0.3;
        o.max_iter = 40;
        o.patience = 10;
        o.block_rows = 32; // 10 blocks: ranks get 10/P of them, unevenly for P = 4
        o.init = init;
        CAPTURE(int(init), comm.size());
        const snmf_result one = fit_snmf(a.view(), o);

        // Every rank sees all the data but reads only its blocks ...
        memory_rows all(a.view());
        const snmf_result spread = mpi::fit_snmf(comm, all, o);
        // ... or holds only its own rows.
        const auto [first, end] = mpi::snmf_rows_of(comm, a.extent(0), o.block_rows);
        mpi::local_rows mine(tensor_view<const float>(a.view()).rows(first, end), first, a.extent(0));
        const snmf_result local = mpi::fit_snmf(comm, mine, o);

        for (const snmf_result* r : {&spread, &local}) {
            CHECK(same_bits(r->features, one.features));
            CHECK(r->loss == one.loss);
            CHECK(r->best_iteration == one.best_iteration);
            CHECK(r->stop == one.stop);
            CHECK(r->first_row == first);
            tensor<float> rows({end - first, o.rank});
            std::memcpy(rows.data(), one.coefficients.data() + first * o.rank, rows.size() * sizeof(float));
            CHECK(same_bits(r->coefficients, rows));
        }
    }
}

TEST_CASE("mpi: a NaN in one rank's rows fails every rank, that one with its rows", "[mpi][snmf]") {
    const mpi::communicator comm;
    tensor<float> a = planted_data(128, 8, 3);
    a(127, 5) = std::nanf(""); // in the last block: the last rank's
    snmf_options o;
    o.rank = 2;
    o.block_rows = 16;
    memory_rows all(a.view());
    std::string message;
    try {
        mpi::fit_snmf(comm, all, o);
    } catch (const error& e) {
        message = e.what();
    }
    if (comm.rank() == comm.size() - 1)
        CHECK_THAT(message, Catch::Contains("[actlens.arg.104]") && Catch::Contains("rows [112, 128)"));
    else
        CHECK_THAT(message, Catch::Contains("[actlens.mpi.601]") &&
                                Catch::Contains("rank " + std::to_string(comm.size() - 1)));
}

TEST_CASE("mpi: capture shards written by every rank read back as the one-process capture", "[mpi][capture]") {
    const mpi::communicator comm;
    const transformer model = make_random_transformer<float>(tiny::llama(), 17);
    std::vector<std::vector<std::int32_t>> corpus;
    for (std::uint32_t s = 0; s < 7; ++s) corpus.push_back(tiny::tokens(5 + s % 3, model.config().vocab_size, s));
    capture_options options;
    options.skip_tokens = {3};
    options.shard_rows = 6; // several shards per rank
    const std::string dir = shared_directory(comm, "capture");
    const std::size_t rows = mpi::capture_to_shards(comm, model, corpus, "blocks.1.mlp.hook_post", dir, options);

    const captured_activations one = capture_activations(model, corpus, "blocks.1.mlp.hook_post", options);
    capture_reader reader(dir);
    const captured_activations spread = reader.read_all();
    CHECK(rows == one.values.extent(0));
    CHECK(spread.hook == one.hook);
    CHECK(same_bits(spread.values, one.values));
    CHECK(spread.rows.token == one.rows.token);
    CHECK(spread.rows.sequence == one.rows.sequence);
    CHECK(spread.rows.position == one.rows.position);

    // SNMF straight from the shards, spread over the ranks, equals one process on the same rows.
    snmf_options o;
    o.rank = 2;
    o.max_iter = 15;
    o.block_rows = 8;
    const snmf_result a = fit_snmf(one.values.view(), o);
    const snmf_result b = mpi::fit_snmf(comm, reader, o);
    CHECK(same_bits(a.features, b.features));
    CHECK(a.loss == b.loss);

    // A bad token id in the last sequence (the last rank's) fails every rank.
    corpus.back().back() = 1000;
    std::string message;
    try {
        mpi::capture_to_shards(comm, model, corpus, "blocks.1.mlp.hook_post", dir + "_bad", options);
    } catch (const error& e) {
        message = e.what();
    }
    CHECK_THAT(message, Catch::Contains(comm.rank() == comm.size() - 1 ? "[actlens.tokenizer.302]" : "[actlens.mpi.601]"));
    comm.barrier();
    if (comm.rank() == 0) {
        std::filesystem::remove_all(dir);
        std::filesystem::remove_all(dir + "_bad");
    }
}

TEST_CASE("mpi: patching, AtP and RelP sweeps over ranks equal one process's loop", "[mpi][sweep]") {
    const mpi::communicator comm;
    const auto m = make_random_transformer<float>(tiny::gpt2(), 5);
    const std::size_t pairs = 5, T = 6, V = m.config().vocab_size;
    std::vector<std::vector<std::int32_t>> clean, corrupted;
    for (std::uint32_t p = 0; p < pairs; ++p) {
        clean.push_back(tiny::tokens(T, V, p));
        corrupted.push_back(tiny::tokens(T, V, p + 100));
    }
    const logit_difference metric{{1}, {3}}; // one row: correct token 1, wrong token 3
    attribution_options relp;
    relp.backward.rule = rule::relp;
    auto item = [&](std::size_t i) {
        const tensor_view<const std::int32_t> c(clean[i / 3].data(), {1, T}), x(corrupted[i / 3].data(), {1, T});
        switch (i % 3) {
        case 0: return activation_patch(m, c, x, metric, patch_target::resid_pre);
        case 1: return attribution_patch(m, c, x, metric, patch_target::resid_pre);
        default: return attribution_patch(m, c, x, metric, patch_target::resid_pre, relp);
        }
    };
    const std::vector<patching_result> spread = mpi::sweep(comm, 3 * pairs, item);
    CHECK(spread.size() == 3 * pairs);
    for (std::size_t i = 0; i < spread.size() && i < 3 * pairs; ++i) {
        const patching_result one = item(i);
        CHECK(spread[i].axes == one.axes);
        CHECK(same_bits(spread[i].scores, one.scores));
    }
}
