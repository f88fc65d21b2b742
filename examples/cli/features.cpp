// actlens steer / capture / snmf / neurons: steering vectors and control vectors, activation
// capture, SNMF features and neuron decoding.
#include "cli.hpp"

#include <actlens/io/npy.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/control_vector.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/methods.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

namespace actlens::cli {

namespace {

std::vector<std::vector<std::int32_t>> encode_lines(const session& s, const std::vector<std::string>& lines) {
    std::vector<std::vector<std::int32_t>> out;
    for (const std::string& line : lines) out.push_back(s.tok.encode(line, true));
    return out;
}

std::vector<std::int32_t> bos_tokens(const session& s) {
    const std::vector<std::int32_t> with = s.tok.encode("", true), without = s.tok.encode("", false);
    return with.size() > without.size() ? std::vector<std::int32_t>{with.front()} : std::vector<std::int32_t>{};
}

std::vector<std::int32_t> generate_text(const session& s, const std::vector<std::int32_t>& prompt, std::size_t steps,
                                        const hook_set<float>* hooks) {
    generate_options<float> options;
    options.max_new_tokens = steps;
    options.hooks = hooks;
    if (const auto eos = s.tok.eos_id()) options.stop_tokens = {*eos};
    return generate(s.model, prompt, options);
}

int layer_argument(const arguments& args, const session& s) {
    const int layer = args.integer("layer", int(s.model.config().n_layers) - 1);
    if (layer < 0 || layer >= int(s.model.config().n_layers))
        fail(errc::bad_layer_range, "actlens {}: --layer {} is outside the model's layers 0..{}", args.command, layer,
             s.model.config().n_layers - 1);
    return layer;
}

} // namespace

int run_steer(const arguments& args) {
    const session s = open_session(args.required("model"), args);
    std::vector<std::string> positive, negative;
    const std::string pairs = args.required("pairs");
    for (const std::string& line : read_lines(pairs)) {
        const std::size_t tab = line.find('\t');
        if (tab == std::string::npos)
            fail(errc::invalid_argument, "actlens steer: line '{}' of '{}' has no TAB between the two prompts", line,
                 pairs);
        positive.push_back(line.substr(0, tab));
        negative.push_back(line.substr(tab + 1));
    }
    const int layer = layer_argument(args, s);
    steering_build_options build;
    build.policy = position_policy::mean_over_tokens;
    build.normalize = true;
    const steering_vector<float> v = mean_diff_vector(s.model, encode_lines(s, positive), encode_lines(s, negative),
                                                      hook_point{site::resid_post, layer}, build);
    const double alpha = args.number("strength", 1.0) * v.scale;
    fmt::print("{}: difference in means of {} pairs, |d| = {:.6g}; steering adds {:.6g} x the unit direction\n",
               v.point.name(), v.samples, v.scale, alpha);
    if (args.has("out")) io::save_npy(args.required("out"), v.direction);
    if (args.has("control-vector")) {
        const std::string family = fmt::format("{}", s.model.config().family);
        save_control_vector(args.required("control-vector"),
                            to_control_vector(v, alpha, family == "gpt2" ? "gpt2" : "llama"));
        fmt::print("control vector: {} (llama.cpp: --control-vector {})\n", args.required("control-vector"),
                   args.required("control-vector"));
    }
    if (args.has("prompt")) {
        const std::vector<std::int32_t> prompt = s.tok.encode(args.required("prompt"), true);
        hook_set<float> hooks;
        steering_options o;
        o.alpha = alpha;
        add_steering(hooks, v, o);
        const std::size_t steps = args.count("steps", 40);
        fmt::print("unsteered: {}\nsteered:   {}\n", s.tok.decode(generate_text(s, prompt, steps, nullptr)),
                   s.tok.decode(generate_text(s, prompt, steps, &hooks)));
    }
    return 0;
}

int run_capture(const arguments& args) {
    const session s = open_session(args.required("model"), args);
    const auto corpus = encode_lines(s, read_lines(args.required("corpus")));
    progress_bar bar("capture");
    capture_options options;
    options.skip_tokens = bos_tokens(s);
    options.on_progress = [&](std::size_t done, std::size_t total) { bar.update(done, total); };
    const captured_activations cap = capture_activations(s.model, corpus, args.required("hook"), options);
    bar.finish();
    io::save_npy(args.required("out"), cap.values);
    if (args.has("json"))
        write_text(args.required("json"), nlohmann::json{{"hook", args.required("hook")},
                                                         {"sequence", cap.rows.sequence},
                                                         {"position", cap.rows.position},
                                                         {"token", cap.rows.token}}
                                                  .dump() +
                                              "\n");
    fmt::print("{}: {} rows of width {} -> {}\n", args.required("hook"), cap.values.extent(0), cap.width(),
               args.required("out"));
    return 0;
}

int run_snmf(const arguments& args) {
    const session s = open_session(args.required("model"), args);
    const auto corpus = encode_lines(s, read_lines(args.required("corpus")));
    const int layer = layer_argument(args, s);
    progress_bar capture_bar("capture");
    capture_options co;
    co.skip_tokens = bos_tokens(s);
    co.on_progress = [&](std::size_t done, std::size_t total) { capture_bar.update(done, total); };
    const captured_activations cap =
        capture_activations(s.model, corpus, fmt::format("blocks.{}.mlp.hook_post", layer), co);
    capture_bar.finish();

    snmf_options so;
    so.rank = args.count("rank", 16);
    so.sparsity = args.number("sparsity", 0.05);
    so.max_iter = args.count("iterations", 1000);
    so.patience = args.count("patience", 100);
    so.seed = args.count("seed", 42);
    progress_bar fit_bar("snmf");
    so.on_iteration = [&](std::size_t iteration, double) {
        fit_bar.update(iteration + 1, so.max_iter);
        return true;
    };
    const snmf_result fit = fit_snmf(cap.values.view(), so);
    fit_bar.finish();
    fmt::print("SNMF of blocks.{}.mlp.hook_post: {} rows, K = {}, {} iterations, best loss {:.6g} at {}\n", layer,
               cap.values.extent(0), so.rank, fit.loss.size(), fit.best_loss, fit.best_iteration);
    if (args.has("out")) io::save_npy(args.required("out"), fit.features);
    if (args.has("coefficients")) io::save_npy(args.required("coefficients"), fit.coefficients);

    const auto piece_of = [&](std::int32_t id) { return piece(s, id); };
    nlohmann::json features = nlohmann::json::array();
    report::html_report page(fmt::format("SNMF features of blocks.{}.mlp.hook_post", layer));
    for (std::size_t j = 0; j < so.rank; ++j) {
        const auto neurons = feature_neurons(fit, j, 5);
        const auto examples = top_activating(fit, j, 3, cap.rows, corpus, 8, 3);
        const auto vocab = feature_vocab(s.model, layer, fit, j, 8);
        nlohmann::json f = {{"feature", j}};
        for (const auto& n : neurons) f["neurons"].push_back({{"neuron", n.neuron}, {"weight", n.weight}});
        for (const auto& e : examples)
            f["examples"].push_back({{"coefficient", e.coefficient}, {"sequence", e.sequence},
                                     {"position", e.position}, {"token", piece_of(e.token)}});
        for (const auto& t : vocab) f["vocabulary"].push_back(piece_of(t.token));
        features.push_back(f);
        page.figure(report::render_html(report::feature_readout(j, neurons, examples, piece_of)),
                    fmt::format("vocabulary: {}", fmt::join(f["vocabulary"].get<std::vector<std::string>>(), " ")));
        fmt::print("feature {:>3}: {}\n", j, fmt::join(f["vocabulary"].get<std::vector<std::string>>(), " "));
    }
    if (args.has("json")) write_text(args.required("json"), features.dump(1) + "\n");
    if (args.has("report")) page.save(args.required("report"));
    return 0;
}

int run_neurons(const arguments& args) {
    const session s = open_session(args.required("model"), args);
    const int layer = layer_argument(args, s);
    neuron_decode_options options;
    options.top_k = args.count("top-k", 10);
    progress_bar bar("decode");
    options.on_progress = [&](std::size_t done, std::size_t total) { bar.update(done, total); };
    const neuron_decoding d = decode_neurons(s.model, options);
    bar.finish();
    if (args.has("out")) io::save_npy(args.required("out"), d.probabilities);

    // The listed layer's neurons, the most confident (top-token probability) first.
    const std::size_t l = std::size_t(layer), d_mlp = d.probabilities.extent(1);
    std::vector<std::size_t> order(d_mlp);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return d.probabilities(l, a, 0) > d.probabilities(l, b, 0);
    });
    order.resize(std::min(order.size(), args.count("show", 10)));
    const auto piece_of = [&](std::int32_t id) { return piece(s, id); };
    nlohmann::json listed = nlohmann::json::array();
    report::html_report page(fmt::format("Neurons of layer {} decoded through the unembedding", layer));
    for (std::size_t i : order) {
        std::vector<std::string> tokens;
        for (const token_score& t : d.neuron(l, i)) tokens.push_back(piece_of(t.token));
        fmt::print("L{} N{:<5} p = {:.3f}  {}\n", layer, i, d.probabilities(l, i, 0), fmt::join(tokens, " "));
        listed.push_back({{"layer", layer}, {"neuron", i}, {"tokens", tokens},
                          {"probabilities", std::vector<float>(&d.probabilities(l, i, 0),
                                                               &d.probabilities(l, i, 0) + options.top_k)}});
        page.figure(report::render_html(report::neuron_readout(d, l, i, piece_of)));
    }
    if (args.has("json")) write_text(args.required("json"), listed.dump(1) + "\n");
    if (args.has("report")) page.save(args.required("report"));
    return 0;
}

} // namespace actlens::cli
