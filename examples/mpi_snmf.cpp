// SNMF features of stories260K's MLP over MPI ranks: each rank generates its share of a story corpus,
// the ranks capture blocks.L.mlp.hook_post into one shard directory (mpi/capture.hpp), fit SNMF with
// each rank reading only its blocks (mpi/snmf.hpp), and rank 0 prints the features' top tokens. It
// prints what one iteration communicates and how long it takes, and checks that the fit equals the
// one-process fit on the same directory (--check).
//
//   mpirun -np 4 mpi_snmf [--stories N] [--features K] [--layer L] [--iterations N] [--dir DIR] [--check]
//
// --dir must be a folder every rank can write (a shared file system on a cluster).
#include <actlens/methods/capture.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/mpi/capture.hpp>
#include <actlens/mpi/snmf.hpp>
#include <actlens/tokenizer/llama2c.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <fmt/core.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct arguments {
    std::string model = ACTLENS_MODEL_DIR "/stories260K.bin";
    std::string tokenizer = ACTLENS_MODEL_DIR "/tok512.bin";
    std::size_t stories = 256;
    std::size_t features = 16;
    int layer = 2;
    std::size_t iterations = 300;
    std::string dir = "mpi_snmf_capture";
    bool check = false;
};

int run(int argc, char** argv) {
    const actlens::mpi::communicator comm;
    const bool root = comm.rank() == 0;
    arguments args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--check") {
            args.check = true;
            continue;
        }
        if (i + 1 >= argc) actlens::fail(actlens::errc::invalid_argument, "mpi_snmf: {} needs a value", flag);
        const std::string value = argv[++i];
        if (flag == "--stories") args.stories = std::stoul(value);
        else if (flag == "--features") args.features = std::stoul(value);
        else if (flag == "--layer") args.layer = std::stoi(value);
        else if (flag == "--iterations") args.iterations = std::stoul(value);
        else if (flag == "--dir") args.dir = value;
        else actlens::fail(actlens::errc::invalid_argument, "mpi_snmf: unknown flag {}", flag);
    }
    const actlens::transformer model = actlens::load_model(args.model);
    const actlens::model_config& c = model.config();
    const auto tok = actlens::llama2c_tokenizer::load(args.tokenizer, c.vocab_size);
    const std::string hook = fmt::format("blocks.{}.mlp.hook_post", args.layer);

    // 1. The corpus: story i is sampled with seed i, so every rank can make any story; each rank
    // makes its share and the ranks exchange token ids (small), so all hold the same corpus.
    const auto prompt = tok.encode("Once upon a time", true);
    const auto [first, end] = comm.share(args.stories);
    std::string mine;
    for (std::size_t s = first; s < end; ++s) {
        actlens::generate_options<float> gen;
        gen.max_new_tokens = 48;
        gen.sampling.temperature = 1.0;
        gen.sampling.top_p = 0.9;
        gen.sampling.seed = s;
        gen.stop_tokens = {tok.eos_id()};
        std::vector<std::int32_t> story = actlens::generate(model, prompt, gen);
        if (story.back() == tok.eos_id()) story.pop_back();
        const auto n = static_cast<std::int32_t>(story.size());
        mine.append(reinterpret_cast<const char*>(&n), sizeof n);
        mine.append(reinterpret_cast<const char*>(story.data()), story.size() * sizeof(std::int32_t));
    }
    std::vector<std::vector<std::int32_t>> corpus;
    for (const std::string& part : comm.all_gather(mine))
        for (std::size_t at = 0; at < part.size();) {
            std::int32_t n = 0;
            std::memcpy(&n, part.data() + at, sizeof n);
            at += sizeof n;
            std::vector<std::int32_t> story(static_cast<std::size_t>(n));
            std::memcpy(story.data(), part.data() + at, story.size() * sizeof(std::int32_t));
            at += story.size() * sizeof(std::int32_t);
            corpus.push_back(std::move(story));
        }

    // 2. Distributed capture into one directory.
    actlens::capture_options co;
    co.skip_tokens = {1};
    co.shard_rows = 2048;
    const std::size_t rows = actlens::mpi::capture_to_shards(comm, model, corpus, hook, args.dir, co);
    actlens::capture_reader reader(args.dir);

    // 3. Distributed SNMF, timed per iteration.
    actlens::snmf_options so;
    so.rank = args.features;
    so.sparsity = 0.05;
    so.max_iter = args.iterations;
    so.patience = 100;
    so.block_rows = 1024;
    using clock = std::chrono::steady_clock;
    comm.barrier();
    const auto t0 = clock::now();
    const actlens::snmf_result fit = actlens::mpi::fit_snmf(comm, reader, so);
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const std::size_t d = reader.width(), K = so.rank;
    if (root) {
        fmt::print("{} ranks: {} stories, {} rows of width {} ({}) in {}\n", comm.size(), corpus.size(), rows, d, hook,
                   args.dir);
        fmt::print("SNMF K = {}: {} iterations, best loss {:.5g} at iteration {}\n", K, fit.loss.size(), fit.best_loss,
                   fit.best_iteration);
        fmt::print("per iteration: {:.2f} ms; communicated per rank: one all-reduce of {} bytes "
                   "(32 x (d K + K^2 + 2), d = {}, K = {})\n",
                   1e3 * seconds / double(fit.loss.size()), 32 * (d * K + K * K + 2), d, K);
        const actlens::capture_rows info = reader.row_info();
        for (std::size_t j = 0; j < std::min<std::size_t>(K, 6); ++j) {
            // Top tokens need every row's coefficient: rank 0 holds only its rows, so it ranks those.
            std::string tokens;
            std::vector<std::pair<float, std::size_t>> best;
            for (std::size_t t = 0; t < fit.coefficients.extent(0); ++t)
                best.push_back({fit.coefficients(t, j), fit.first_row + t});
            std::partial_sort(best.begin(), best.begin() + std::min<std::size_t>(5, best.size()), best.end(),
                              [](const auto& a, const auto& b) { return a.first > b.first; });
            for (std::size_t k = 0; k < std::min<std::size_t>(5, best.size()); ++k)
                tokens += fmt::format(" '{}'", actlens::printable_piece(tok.piece(info.token[best[k].second])));
            fmt::print("  feature {:2}: top tokens of rank 0's rows:{}\n", j, tokens);
        }
    }
    if (args.check) {
        // The one-process fit on the same directory (every rank computes it: nothing to exchange).
        const actlens::snmf_result one = actlens::fit_snmf(reader, so);
        const bool same = one.loss == fit.loss &&
                          std::memcmp(one.features.data(), fit.features.data(), one.features.size() * sizeof(float)) == 0;
        if (comm.any(!same)) {
            if (root) fmt::print("check: the distributed fit differs from the one-process fit\n");
            return 1;
        }
        if (root) fmt::print("check: the fit equals the one-process fit bit for bit\n");
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rc = 0;
    try {
        rc = run(argc, argv);
    } catch (const std::exception& e) {
        fmt::print(stderr, "mpi_snmf: {}\n", e.what());
        rc = 2;
    }
    MPI_Finalize();
    return rc;
}
