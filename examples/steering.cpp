// actlens steering example: build steering vectors on stories260K and measure what they do.
//
//   steering [MODEL_DIR]      (default: the bundled examples/models/stories260K)
//
// The contrast is the main character: stories about Tim ("he", "his") against the same stories
// about Lily ("she", "her"). From 12 such pairs it builds, at every layer's hook_resid_post,
//   - a difference-in-means vector (CAA), and
//   - the first principal axis of the pair differences (repeng's PCA),
// picks the layer where the diff-in-means vector moves the next-token distribution most, and fits
// G-ACT (3 clustered directions chosen per token by softmax probes). On 8 held-out Lily stories it
// measures how much next-token probability moves from the Lily words to the Tim words, and prints
// unsteered and steered stories.
#include <actlens/actlens.hpp>
#include <actlens/methods/gact.hpp>
#include <actlens/methods/steering.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using prompts_t = std::vector<std::vector<std::int32_t>>;

// Story openings with {n} for the name, {p}/{P} for the pronoun and {s} for the possessive.
const std::vector<std::string> training_templates = {
    "Once upon a time, there was a little {k} named {n}. {P} liked to",
    "{n} went to the park with {s} mom. {P} saw a big",
    "One day, {n} found a red ball in the garden. {P} was very",
    "{n} had a small dog. Every day {p} played with",
    "{n} wanted to help {s} friend. {P} said",
    "It was a sunny day and {n} was happy. {P} ran to",
    "{n} liked to eat cake. One day {p} asked {s} mom",
    "There was a {k} named {n} who loved trees. {P} climbed",
    "{n} and {s} friend went to the beach. {P} built",
    "{n} was sad because {s} toy was broken. {P} cried and",
    "Once upon a time, {n} saw a bird in the sky. {P} wanted to",
    "{n} lived in a big house with {s} family. {P} liked",
};
const std::vector<std::string> held_out_templates = {
    "One day, {n} went to the store with {s} mom. Then",
    "{n} found a shiny stone. It was very pretty, so",
    "Once upon a time, there was a {k} named {n}. Every morning,",
    "{n} had a big red car. One day,",
    "{n} saw a cat under the tree. The cat was scared, and",
    "{n} was playing in the garden when",
    "{n} wanted to bake a cake. First,",
    "After lunch, {n} went outside to play. Soon",
};

struct character {
    const char *name, *kind, *pronoun, *capital, *possessive;
};
const character tim{"Tim", "boy", "he", "He", "his"};
const character lily{"Lily", "girl", "she", "She", "her"};

std::string fill(const std::string& t, const character& c) {
    std::string out;
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '{' && i + 2 < t.size() && t[i + 2] == '}') {
            const char key = t[i + 1];
            out += key == 'n' ? c.name : key == 'k' ? c.kind : key == 'p' ? c.pronoun : key == 'P' ? c.capital : c.possessive;
            i += 2;
        } else {
            out += t[i];
        }
    }
    return out;
}

prompts_t encode_all(const actlens::llama2c_tokenizer& tok, const std::vector<std::string>& templates,
                     const character& c) {
    prompts_t out;
    for (const auto& t : templates) out.push_back(tok.encode(fill(t, c), /*bos=*/true));
    return out;
}

// Probability mass of the Tim words and of the Lily words at the last position.
struct mass {
    double tim = 0, lily = 0;
};

struct word_sets {
    std::vector<std::int32_t> tim, lily;
};

mass next_token_mass(const actlens::transformer& model, const std::vector<std::int32_t>& prompt, const word_sets& w,
                     const actlens::hook_set<float>* hooks) {
    actlens::run_options<float> run;
    run.hooks = hooks;
    run.last_position_only = true;
    const auto logits = model.forward(prompt, run);
    const std::size_t V = model.config().vocab_size;
    double top = -1e300, total = 0;
    for (std::size_t v = 0; v < V; ++v) top = std::max(top, double(logits(0, 0, v)));
    for (std::size_t v = 0; v < V; ++v) total += std::exp(double(logits(0, 0, v)) - top);
    mass m;
    for (auto id : w.tim) m.tim += std::exp(double(logits(0, 0, std::size_t(id))) - top) / total;
    for (auto id : w.lily) m.lily += std::exp(double(logits(0, 0, std::size_t(id))) - top) / total;
    return m;
}

mass mean_mass(const actlens::transformer& model, const prompts_t& prompts, const word_sets& w,
               const actlens::hook_set<float>* hooks) {
    mass total;
    for (const auto& p : prompts) {
        const mass m = next_token_mass(model, p, w, hooks);
        total.tim += m.tim / double(prompts.size());
        total.lily += m.lily / double(prompts.size());
    }
    return total;
}

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n') c = ' ';
    return s;
}

int run(const std::string& dir) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const actlens::transformer model = actlens::load_model(dir + "/stories260K.bin");
    const auto tok = actlens::llama2c_tokenizer::load(dir + "/tok512.bin", model.config().vocab_size);
    const int n_layers = static_cast<int>(model.config().n_layers);

    const prompts_t train_tim = encode_all(tok, training_templates, tim);
    const prompts_t train_lily = encode_all(tok, training_templates, lily);
    const prompts_t test_tim = encode_all(tok, held_out_templates, tim);
    const prompts_t test_lily = encode_all(tok, held_out_templates, lily);
    word_sets words;
    for (const char* s : {" Tim", " Timmy", " he", " He", " his"}) words.tim.push_back(*tok.find_piece(s));
    for (const char* s : {" Lily", " she", " She", " her"}) words.lily.push_back(*tok.find_piece(s));

    fmt::print("stories260K: {} layers, d_model {}. {} training pairs (Tim vs Lily), {} held-out Lily stories.\n",
               n_layers, model.config().d_model, train_tim.size(), test_lily.size());
    fmt::print("Tim words: ' Tim' ' Timmy' ' he' ' He' ' his';  Lily words: ' Lily' ' she' ' She' ' her'.\n");
    fmt::print("Metric: mean over held-out Lily prompts of next-token P(Tim words) and P(Lily words).\n");
    fmt::print("Strength c: each vector is added as c * |mean difference| * unit direction at every position.\n\n");

    const mass base = mean_mass(model, test_lily, words, nullptr);
    const double c = 1.0;
    fmt::print("unsteered: P(Tim words) = {:.4f}, P(Lily words) = {:.4f}\n\n", base.tim, base.lily);

    // 1. Per layer: diff-in-means and PCA vectors, steering of the held-out Lily prompts.
    actlens::steering_build_options build;
    build.policy = actlens::position_policy::mean_over_tokens;
    build.normalize = true;
    fmt::print("c = {}   {:<26} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}\n", c, "layer (resid_post)", "|mean d|",
               "DiM P(T)", "DiM P(L)", "DiM gain", "PCA var", "PCA P(T)", "PCA P(L)", "cos");
    int best_layer = 0;
    double best_gain = -1e300;
    std::vector<actlens::steering_vector<float>> mean_vectors;
    for (int l = 0; l < n_layers; ++l) {
        const actlens::hook_point p{actlens::site::resid_post, l};
        auto dim = actlens::mean_diff_vector(model, train_tim, train_lily, p, build);
        const auto pca = actlens::pca_diff_vector(model, train_tim, train_lily, p, build);
        actlens::hook_set<float> h_dim, h_pca;
        actlens::steering_options o;
        o.alpha = c * dim.scale;
        actlens::add_steering(h_dim, dim, o);
        actlens::add_steering(h_pca, pca, o);
        const mass md = mean_mass(model, test_lily, words, &h_dim);
        const mass mp = mean_mass(model, test_lily, words, &h_pca);
        double cos = 0;
        for (std::size_t k = 0; k < dim.size(); ++k) cos += double(dim.direction(k)) * pca.direction(k);
        const double gain = md.tim - base.tim;
        fmt::print("        {:<26} {:>8.3f} {:>9.4f} {:>9.4f} {:>+9.4f} {:>8.3f} {:>9.4f} {:>9.4f} {:>9.3f}\n", p.name(),
                   dim.scale, md.tim, md.lily, gain, pca.explained_variance, mp.tim, mp.lily, cos);
        if (gain > best_gain) best_gain = gain, best_layer = l;
        mean_vectors.push_back(std::move(dim));
    }
    fmt::print("chosen layer: {} (largest gain of P(Tim words) with diff-in-means)\n\n", best_layer);

    // 2. Strength sweep at the chosen layer.
    const auto& v = mean_vectors[std::size_t(best_layer)];
    fmt::print("strength sweep at blocks.{}.hook_resid_post (diff-in-means):\n", best_layer);
    fmt::print("  {:>6} {:>10} {:>10}\n", "c", "P(Tim)", "P(Lily)");
    for (double cc : {-1.0, 0.0, 0.5, 1.0, 2.0, 4.0}) {
        actlens::hook_set<float> h;
        actlens::steering_options o;
        o.alpha = cc * v.scale;
        actlens::add_steering(h, v, o);
        const mass m = mean_mass(model, test_lily, words, &h);
        fmt::print("  {:>6.1f} {:>10.4f} {:>10.4f}\n", cc, m.tim, m.lily);
    }

    // 3. G-ACT: 3 clustered directions per layer, probes choose per token.
    actlens::gact_options go;
    go.clusters = 3;
    go.seed = 1;
    std::vector<int> all_layers;
    for (int l = 0; l < n_layers; ++l) all_layers.push_back(l);
    actlens::gact_steerer<float> gact = actlens::gact_fit(model, train_tim, train_lily, all_layers, go);
    const auto held_acc = actlens::gact_accuracy(model, gact, test_tim, test_lily);
    fmt::print("\nG-ACT (K = 3, k-means++ seed 1, softmax probes by Adam):\n");
    fmt::print("  {:<26} {:>10} {:>13} {:>14} {:>10} {:>10}\n", "layer", "train acc", "held-out acc", "cluster sizes",
               "P(Tim)", "P(Lily)");
    for (std::size_t i = 0; i < gact.layers.size(); ++i) {
        const auto& layer = gact.layers[i];
        std::vector<int> sizes(3, 0);
        for (auto lab : layer.labels) ++sizes[lab];
        actlens::hook_set<float> h;
        actlens::gact_apply_options a;
        a.alpha = c * mean_vectors[i].scale;
        a.layers = {layer.point.layer};
        actlens::add_gact_steering(h, gact, a);
        const mass m = mean_mass(model, test_lily, words, &h);
        fmt::print("  {:<26} {:>10.3f} {:>13.3f} {:>14} {:>10.4f} {:>10.4f}\n", layer.point.name(), layer.train_accuracy,
                   held_acc[i], fmt::format("{}/{}/{}", sizes[0], sizes[1], sizes[2]), m.tim, m.lily);
    }
    // Refinement toward the Tim words on the training Lily prompts, then the chosen layer again.
    actlens::gact_refine_options ro;
    ro.alpha = c * v.scale;
    ro.steps = 5;
    actlens::gact_steerer<float> refined = gact;
    const auto report = actlens::gact_refine(model, refined, train_lily, words.tim, ro);
    auto gact_mass = [&](const actlens::gact_steerer<float>& g) {
        actlens::hook_set<float> h;
        actlens::gact_apply_options a;
        a.alpha = c * v.scale;
        a.layers = {best_layer};
        actlens::add_gact_steering(h, g, a);
        return mean_mass(model, test_lily, words, &h);
    };
    const mass g0 = gact_mass(gact), g1 = gact_mass(refined);
    fmt::print("  refinement on the 12 training Lily prompts (5 steps each): {} of 12 relabelled at layer {}, "
               "best-cluster gain {:+.3f} nats\n",
               report.relabelled[std::size_t(best_layer)], best_layer, report.mean_gain[std::size_t(best_layer)]);
    fmt::print("\nat layer {}, c = {}: P(Tim words) / P(Lily words) on held-out Lily prompts\n", best_layer, c);
    const mass dm = [&] {
        actlens::hook_set<float> h;
        actlens::steering_options o;
        o.alpha = c * v.scale;
        actlens::add_steering(h, v, o);
        return mean_mass(model, test_lily, words, &h);
    }();
    fmt::print("  {:<34} {:.4f} / {:.4f}\n", "unsteered", base.tim, base.lily);
    fmt::print("  {:<34} {:.4f} / {:.4f}\n", "single diff-in-means vector", dm.tim, dm.lily);
    fmt::print("  {:<34} {:.4f} / {:.4f}\n", "G-ACT probe-weighted directions", g0.tim, g0.lily);
    fmt::print("  {:<34} {:.4f} / {:.4f}\n", "G-ACT after online refinement", g1.tim, g1.lily);

    // 4. Generations.
    actlens::hook_set<float> steer;
    actlens::steering_options o;
    o.alpha = 2.0 * v.scale;
    actlens::add_steering(steer, v, o);
    fmt::print("\ngenerations (diff-in-means at layer {}, c = 2):\n", best_layer);
    for (std::size_t i : {std::size_t(0), std::size_t(3)}) {
        for (double temperature : {0.0, 0.8}) {
            actlens::generate_options<float> gen;
            gen.max_new_tokens = 40;
            gen.sampling.temperature = temperature;
            gen.sampling.seed = 7;
            gen.stop_tokens = {tok.eos_id()};
            const auto plain = actlens::generate(model, test_lily[i], gen);
            gen.hooks = &steer;
            const auto steered = actlens::generate(model, test_lily[i], gen);
            const std::string mode = temperature == 0 ? "greedy" : "T=0.8 seed 7";
            fmt::print("  [{}] unsteered: {}\n", mode, one_line(tok.decode(plain)));
            fmt::print("  [{}] steered:   {}\n", mode, one_line(tok.decode(steered)));
        }
    }
    fmt::print("\ntotal time {:.2f} s\n", std::chrono::duration<double>(clock::now() - start).count());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc > 1 ? argv[1] : ACTLENS_MODEL_DIR);
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "steering: %s\n", e.what());
        return 1;
    }
}
