// actlens patch / attribute: activation patching and its gradient estimates on one prompt pair,
// with the logit difference of two tokens at the last position as the metric.
#include "cli.hpp"

#include <actlens/io/npy.hpp>
#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/methods.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace actlens::cli {

namespace {

struct sweep_input {
    session s;
    std::vector<std::int32_t> clean, corrupted;
    logit_difference metric;
    patch_target target = patch_target::resid_pre;
    patch_direction direction = patch_direction::denoising;

    tensor_view<const std::int32_t> clean_view() const { return {clean.data(), {1, clean.size()}}; }
    tensor_view<const std::int32_t> corrupted_view() const { return {corrupted.data(), {1, corrupted.size()}}; }
};

patch_target target_of(const std::string& name) {
    const std::pair<const char*, patch_target> names[] = {
        {"resid_pre", patch_target::resid_pre}, {"resid_mid", patch_target::resid_mid},
        {"resid_post", patch_target::resid_post}, {"attn_out", patch_target::attn_out},
        {"mlp_out", patch_target::mlp_out}, {"head", patch_target::head},
        {"head_by_position", patch_target::head_by_position}, {"neuron", patch_target::neuron}};
    for (const auto& [n, t] : names)
        if (name == n) return t;
    fail(errc::invalid_argument, "actlens: --site '{}' is not one of resid_pre, resid_mid, resid_post, attn_out, "
         "mlp_out, head, head_by_position, neuron", name);
}

sweep_input read_sweep(const arguments& args) {
    sweep_input in{open_session(args.required("model"), args), {}, {}, {}, {}, {}};
    in.clean = in.s.tok.encode(args.required("clean"), true);
    in.corrupted = in.s.tok.encode(args.required("corrupted"), true);
    if (in.clean.size() != in.corrupted.size())
        fail(errc::shape_mismatch, "actlens {}: --clean is {} tokens and --corrupted {}; they must be as long",
             args.command, in.clean.size(), in.corrupted.size());
    in.metric.correct = {token_argument(in.s, "correct", args.required("correct"))};
    in.metric.wrong = {token_argument(in.s, "wrong", args.required("wrong"))};
    in.target = target_of(args.text("site", "resid_pre"));
    const std::string direction = args.text("direction", "denoising");
    if (direction != "denoising" && direction != "noising")
        fail(errc::invalid_argument, "actlens {}: --direction '{}' is neither denoising nor noising", args.command,
             direction);
    in.direction = direction == "noising" ? patch_direction::noising : patch_direction::denoising;
    return in;
}

// The scores as .npy, JSON and an HTML report, as the options ask.
void write_outputs(const arguments& args, const sweep_input& in, const tensor<double>& scores,
                   const std::vector<std::string>& axes, const std::string& title) {
    const double clean_value = in.metric.value(in.s.model.forward(in.clean_view()).view());
    const double corrupted_value = in.metric.value(in.s.model.forward(in.corrupted_view()).view());
    fmt::print("{}: {} scores [{}], metric clean {:.6g}, corrupted {:.6g}\n", title, scores.size(),
               fmt::join(axes, ", "), clean_value, corrupted_value);
    if (args.has("out")) io::save_npy(args.required("out"), scores);
    if (args.has("json")) {
        nlohmann::json j = {{"title", title},
                            {"axes", axes},
                            {"shape", scores.shape().to_string()},
                            {"clean_metric", clean_value},
                            {"corrupted_metric", corrupted_value},
                            {"scores", std::vector<double>(scores.data(), scores.data() + scores.size())}};
        write_text(args.required("json"), j.dump(1) + "\n");
    }
    if (args.has("report")) {
        const std::vector<std::string> tokens =
            scores.rank() >= 2 && axes.size() > 1 && axes[1] == "position" ? pieces(in.s, in.clean)
                                                                            : std::vector<std::string>{};
        report::html_report page(title);
        page.paragraph(fmt::format("Clean prompt: {} tokens; metric: logit difference of token {} over token {} at "
                                   "the last position (clean {:.4f}, corrupted {:.4f}).",
                                   in.clean.size(), in.metric.correct[0], in.metric.wrong[0], clean_value,
                                   corrupted_value));
        page.figure(report::render_html(report::patching_map(scores, axes, tokens, title)),
                    "Hover a cell for its value.");
        page.save(args.required("report"));
    }
}

} // namespace

int run_patch(const arguments& args) {
    const sweep_input in = read_sweep(args);
    progress_bar bar("patching");
    patching_options options;
    options.direction = in.direction;
    options.progress = [&](std::size_t done, std::size_t total) { bar.update(done, total); };
    const patching_result r =
        activation_patch(in.s.model, in.clean_view(), in.corrupted_view(), in.metric, in.target, options);
    bar.finish();
    write_outputs(args, in, r.scores, r.axes, "activation patching (" + args.text("site", "resid_pre") + ")");
    return 0;
}

int run_attribute(const arguments& args) {
    const sweep_input in = read_sweep(args);
    const std::string method = args.text("method", "atp");
    if (method == "atp*") {
        atp_star_options options;
        options.direction = in.direction;
        const atp_star_result r = atp_star(in.s.model, in.clean_view(), in.corrupted_view(), in.metric, options);
        write_outputs(args, in, r.scores, r.axes, "AtP* (heads)");
        return 0;
    }
    attribution_options options;
    options.direction = in.direction;
    options.ig_steps = args.count("ig-steps", 10);
    patching_result r;
    if (method == "atp" || method == "relp") {
        if (method == "relp") options.backward.rule = rule::relp;
        r = attribution_patch(in.s.model, in.clean_view(), in.corrupted_view(), in.metric, in.target, options);
    } else if (method == "ig") {
        r = integrated_gradients(in.s.model, in.clean_view(), in.corrupted_view(), in.metric, in.target, options);
    } else {
        fail(errc::invalid_argument, "actlens attribute: --method '{}' is not one of atp, atp*, relp, ig", method);
    }
    write_outputs(args, in, r.scores, r.axes, fmt::format("{} ({})", method, args.text("site", "resid_pre")));
    return 0;
}

} // namespace actlens::cli
