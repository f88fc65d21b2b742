// SNMF features of a real model's MLP, end to end: generate a corpus of stories with stories260K,
// capture a middle layer's blocks.L.mlp.hook_post, factor it with SNMF, and describe every feature
// by its neurons, its top activating tokens (with context) and its vocabulary projection; then steer
// a generation with one feature, and decode a few neurons through the LM head.
//
//   snmf_features [--model FILE] [--tokenizer FILE] [--stories N] [--features K] [--layer L]
//                 [--iterations N] [--shards DIR]
//
// --shards DIR captures to sharded .npy files in DIR and fits from disk (out of core) instead of
// from memory; the result is the same.
#include <actlens/methods/capture.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/llama2c.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

using actlens::printable_piece;

namespace {

struct arguments {
    std::string model = ACTLENS_MODEL_DIR "/stories260K.bin";
    std::string tokenizer = ACTLENS_MODEL_DIR "/tok512.bin";
    std::size_t stories = 320;
    std::size_t features = 24;
    int layer = 2;
    std::size_t iterations = 1500;
    std::string shards;
};

std::string text_of(const actlens::llama2c_tokenizer& tok, const std::vector<std::int32_t>& ids, std::size_t mark) {
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::string piece = printable_piece(tok.decode_piece(i ? ids[i - 1] : 1, ids[i]));
        out += i == mark ? "[[" + piece + "]]" : piece;
    }
    return out;
}

std::string tokens_list(const actlens::llama2c_tokenizer& tok, const std::vector<actlens::token_score>& ts) {
    std::string out;
    for (const auto& t : ts) out += fmt::format("{}'{}'", out.empty() ? "" : " ", printable_piece(tok.piece(t.token)));
    return out;
}

} // namespace

int main(int argc, char** argv) {
    arguments args;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--model") args.model = value;
        else if (flag == "--tokenizer") args.tokenizer = value;
        else if (flag == "--stories") args.stories = std::stoul(value);
        else if (flag == "--features") args.features = std::stoul(value);
        else if (flag == "--layer") args.layer = std::stoi(value);
        else if (flag == "--iterations") args.iterations = std::stoul(value);
        else if (flag == "--shards") args.shards = value;
        else {
            fmt::print(stderr, "unknown flag {}\n", flag);
            return 2;
        }
    }
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
    try {
        const actlens::transformer model = actlens::load_model(args.model);
        const actlens::model_config& c = model.config();
        const auto tok = actlens::llama2c_tokenizer::load(args.tokenizer, c.vocab_size);
        const std::string hook = fmt::format("blocks.{}.mlp.hook_post", args.layer);
        fmt::print("model {}: {} layers, d_model {}, d_mlp {}, vocab {}; capturing {}\n", args.model, c.n_layers,
                   c.d_model, c.d_mlp, c.vocab_size, hook);

        // 1. A corpus: stories sampled from a few openings (temperature 1, top-p 0.9, one seed per row).
        const std::vector<std::string> openings{"Once upon a time", "One day", "Lily wanted", "Tom and his dog",
                                                "The sun was"};
        std::vector<std::vector<std::int32_t>> corpus;
        for (std::size_t o = 0; corpus.size() < args.stories; ++o) {
            const auto prompt = tok.encode(openings[o % openings.size()], true);
            const std::size_t rows = std::min<std::size_t>(32, args.stories - corpus.size());
            std::vector<std::int32_t> batch;
            for (std::size_t r = 0; r < rows; ++r) batch.insert(batch.end(), prompt.begin(), prompt.end());
            actlens::generate_options<float> gen;
            gen.max_new_tokens = 64;
            gen.sampling.temperature = 1.0;
            gen.sampling.top_p = 0.9;
            gen.sampling.seed = 1000 * o;
            gen.stop_tokens = {tok.eos_id()};
            auto out = actlens::generate(model, actlens::tensor_view<const std::int32_t>(batch.data(), {rows, prompt.size()}), gen);
            for (auto& seq : out) {
                // A finished row keeps its EOS; what the batch appended after it is already dropped.
                if (!seq.empty() && seq.back() == tok.eos_id()) seq.pop_back();
                corpus.push_back(std::move(seq));
            }
        }
        std::size_t total_tokens = 0;
        for (const auto& s : corpus) total_tokens += s.size();
        fmt::print("corpus: {} stories, {} tokens ({:.1f} s)\n  e.g. \"{}\"\n", corpus.size(), total_tokens, seconds(),
                   printable_piece(tok.decode(corpus[0])));

        // 2. Capture (BOS left out) and fit.
        actlens::capture_options co;
        co.skip_tokens = {1};
        co.shard_rows = 4096;
        actlens::snmf_options so;
        so.rank = args.features;
        so.sparsity = 0.05; // d_mlp is small here: 5% is ceil(0.05 * d_mlp) neurons per feature
        so.max_iter = args.iterations;
        so.patience = 150;
        so.block_rows = 4096;
        actlens::snmf_result fit;
        actlens::capture_rows rows;
        if (args.shards.empty()) {
            const actlens::captured_activations cap = actlens::capture_activations(model, corpus, hook, co);
            fmt::print("captured {} rows of width {} in memory ({:.1f} s)\n", cap.values.extent(0), cap.width(), seconds());
            fit = actlens::fit_snmf(cap.values.view(), so);
            rows = cap.rows;
        } else {
            const std::size_t n = actlens::capture_to_shards(model, corpus, hook, args.shards, co);
            actlens::capture_reader reader(args.shards);
            fmt::print("captured {} rows of width {} into {} shards in {} ({:.1f} s)\n", n, reader.width(),
                       reader.shard_count(), args.shards, seconds());
            fit = actlens::fit_snmf(reader, so);
            rows = reader.row_info();
        }
        const char* stop = fit.stop == actlens::snmf_stop::patience ? "patience" : "max_iter";
        fmt::print("SNMF K = {}, s = {}: {} iterations (stopped by {}), loss {:.4g} -> best {:.4g} at iteration {} "
                   "({:.1f} s)\n\n",
                   so.rank, so.sparsity, fit.loss.size(), stop, fit.loss.front(), fit.best_loss, fit.best_iteration,
                   seconds());

        // 3. The table of features.
        for (std::size_t j = 0; j < so.rank; ++j) {
            const auto neurons = actlens::feature_neurons(fit, j, 5);
            std::string ns;
            for (const auto& nw : neurons) ns += fmt::format(" {}:{:+.2f}", nw.neuron, nw.weight);
            fmt::print("feature {:>2} | neurons{}\n", j, ns);
            fmt::print("           | vocab: {}\n", tokens_list(tok, actlens::feature_vocab(model, args.layer, fit, j, 8)));
            for (const auto& ex : actlens::top_activating(fit, j, 3, rows, corpus, 8, 3))
                fmt::print("           | {:6.3f} {}\n", ex.coefficient, text_of(tok, ex.context, ex.token_in_context));
        }

        // 4. Steering with one feature: the one whose top tokens are most concentrated on one word
        // (largest top-1 coefficient relative to its mean), added at every position.
        std::size_t chosen = 0;
        double chosen_peak = -1;
        for (std::size_t j = 0; j < so.rank; ++j) {
            double sum = 0, peak = 0;
            for (std::size_t t = 0; t < fit.coefficients.extent(0); ++t) {
                sum += fit.coefficients(t, j);
                peak = std::max(peak, double(fit.coefficients(t, j)));
            }
            const double ratio = peak / (sum / double(fit.coefficients.extent(0)) + 1e-12);
            if (ratio > chosen_peak) chosen_peak = ratio, chosen = j;
        }
        const auto prompt = tok.encode("Once upon a time", true);
        fmt::print("\nsteering with feature {} (vocab: {}) at {}:\n", chosen,
                   tokens_list(tok, actlens::feature_vocab(model, args.layer, fit, chosen, 5)), hook);
        for (float alpha : {0.0f, 2.0f, 4.0f, 8.0f}) {
            actlens::hook_set<float> hooks;
            if (alpha != 0.0f) actlens::add_feature_steering(hooks, model, args.layer, fit, chosen, alpha);
            actlens::generate_options<float> gen;
            gen.max_new_tokens = 40;
            gen.hooks = &hooks;
            gen.stop_tokens = {tok.eos_id()};
            const auto out = actlens::generate(model, prompt, gen);
            fmt::print("  alpha {:>4}: {}\n", alpha, printable_piece(tok.decode(out)));
        }

        // 5. Neuron decoding: the write side of every neuron of every layer, normed mode; show the
        // neurons of the last layer whose top token is most probable.
        actlens::neuron_decode_options no;
        no.top_k = 6;
        const actlens::neuron_decoding dec = actlens::decode_neurons(model, no);
        const std::size_t L = c.n_layers - 1;
        std::vector<std::size_t> order(c.d_mlp);
        for (std::size_t i = 0; i < c.d_mlp; ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return dec.probabilities(L, a, 0) > dec.probabilities(L, b, 0);
        });
        fmt::print("\nneuron decoding (write side, ln_final, all {} layers x {} neurons decoded); layer {}'s most "
                   "confident neurons:\n",
                   c.n_layers, c.d_mlp, L);
        for (std::size_t r = 0; r < 6; ++r) {
            const auto ts = dec.neuron(L, order[r]);
            fmt::print("  neuron {:>3}: p(top) = {:.3f}  {}\n", order[r], ts[0].probability, tokens_list(tok, ts));
        }
        fmt::print("\ntotal {:.1f} s\n", seconds());
    } catch (const actlens::error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
    }
    return 0;
}
