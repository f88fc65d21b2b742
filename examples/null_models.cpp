// actlens example: attribution methods where the answer is known, and findings tested against nulls.
//
//   null_models [MODEL_DIR]      (default: the bundled stories260K, for part 6)
//
// 1. A planted induction circuit (analysis/planted.hpp): two heads built by hand among random
//    distractors. For three attention sharpnesses, each method's head scores are scored against the
//    truth (precision at 2, AUROC) and against activation patching (Spearman), with the estimate of
//    the previous-token head next to its true effect: linear estimates fall short when attention
//    saturates (AtP's known failure, which AtP* and IG address).
// 2. The same heads tested against null models (scrambled heads): permutation p-values, effect sizes
//    and Benjamini-Hochberg across heads.
// 3. Sanity check: a function-preserving permutation of heads gives the same model, so AtP's scores
//    of the permuted model are the original's, permuted.
// 4. CRAFT-style concept importance: Sobol indices of three directions before layer 1.
// 5. CRAFT's recursion: a planted parent neuron decomposed into its two sub-concepts one layer down,
//    with their importance for the parent and for the output; with and without SNMF's sparsity.
// 6. On stories260K's name-completion task (examples/name_task.hpp, also part 5 of name_mover): the
//    heads' patching, AtP and RelP effects against 19 null models of two kinds, with permutation
//    p-values, the Gaussian tail of z, and the heads declared at FDR 0.1.
#include <actlens/analysis/null_models.hpp>
#include <actlens/analysis/planted.hpp>
#include <actlens/analysis/planted_concepts.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/concept_importance.hpp>
#include <actlens/methods/concept_recursion.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/model/load.hpp>
#include <actlens/tokenizer/llama2c.hpp>

#include "name_task.hpp"

#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace actlens;

std::vector<double> flat(const tensor<double>& t) { return std::vector<double>(t.data(), t.data() + t.size()); }

/// Activation patching's change of the metric per head [layers, heads], from the corrupted run.
tensor<double> head_effects(const basic_transformer<double>& m, const planted_prompts& p, const logit_difference& metric) {
    const double base = metric.value(m.forward(p.corrupted_view()));
    tensor<double> s = activation_patch(m, p.clean_view(), p.corrupted_view(), metric, patch_target::head).scores;
    for (double& x : s) x -= base;
    return s;
}

void recovery_table() {
    fmt::print("== 1. Recovering a planted induction circuit (heads L0.H0 and L1.H0 of 2 x 4) ==\n");
    fmt::print("{:>6} {:<9} {:>5} {:>6} {:>9} {:>15} {:>15} {:>16}\n", "beta", "method", "P@2", "AUROC",
               "Spearman", "L0.H0 est/true", "L1.H0 est/true", "max |distractor|");
    for (double beta : {8.0, 20.0, 60.0}) {
        planted_options o;
        o.heads = 4;
        o.sharpness = beta;
        const planted_circuit<double> planted = planted_induction<double>(o);
        const planted_prompts prompts = make_planted_prompts(o, 16, 5);
        const logit_difference metric{prompts.answer, prompts.distractor};
        const auto cv = prompts.clean_view(), xv = prompts.corrupted_view();
        const tensor<double> truth = head_effects(planted.model, prompts, metric);
        attribution_options relp, ig;
        relp.backward.rule = rule::relp;
        ig.ig_steps = 16;
        const struct {
            const char* name;
            tensor<double> scores;
        } methods[] = {{"patching", tensor<double>::copy_of(truth.view())},
                       {"AtP", attribution_patch(planted.model, cv, xv, metric, patch_target::head).scores},
                       {"RelP", attribution_patch(planted.model, cv, xv, metric, patch_target::head, relp).scores},
                       {"IG (16)", integrated_gradients(planted.model, cv, xv, metric, patch_target::head, ig).scores}};
        for (const auto& m : methods) {
            const recovery r = evaluate_recovery(tensor_view<const double>(m.scores.view()), planted.truth, &truth);
            double distractor = 0.0;
            for (std::size_t l = 0; l < 2; ++l)
                for (std::size_t h = 1; h < o.heads; ++h) distractor = std::max(distractor, std::fabs(m.scores(l, h)));
            fmt::print("{:>6.0f} {:<9} {:>5.2f} {:>6.2f} {:>9.2f} {:>15.2f} {:>15.2f} {:>16.4f}\n", beta, m.name,
                       r.precision_at_k, r.auroc, r.spearman, m.scores(0, 0) / truth(0, 0), m.scores(1, 0) / truth(1, 0),
                       distractor);
        }
    }
}

void null_tests_on_planted() {
    fmt::print("\n== 2. The planted heads against 99 scrambled-head nulls ==\n");
    planted_options o;
    o.heads = 4;
    const planted_circuit<double> planted = planted_induction<double>(o);
    const planted_prompts prompts = make_planted_prompts(o, 16, 5);
    const logit_difference metric{prompts.answer, prompts.distractor};
    auto patching = [&](const basic_transformer<double>& m) { return flat(head_effects(m, prompts, metric)); };
    const null_test_result r = test_against_null(planted.model, patching, null_kind::scrambled_heads, 99, 1);
    fmt::print("{:<7} {:>9} {:>17} {:>7} {:>7} {:>7}\n", "head", "effect", "null mean +- sd", "z", "p", "q");
    for (std::size_t i = 0; i < r.observed.size(); ++i)
        fmt::print("L{}.H{}   {:>9.4f} {:>8.4f} +- {:<6.4f} {:>7.1f} {:>7.2f} {:>7.2f}{}\n", i / o.heads, i % o.heads,
                   r.observed[i], r.null_mean[i], r.null_sd[i], r.effect[i], r.p_value[i], r.q_value[i],
                   r.q_value[i] <= 0.1 ? "  <- discovery at FDR 0.1" : "");
}

void permutation_sanity() {
    fmt::print("\n== 3. A function-preserving head permutation relabels AtP's scores, nothing more ==\n");
    planted_options o;
    o.heads = 4;
    const planted_circuit<double> planted = planted_induction<double>(o);
    const planted_prompts prompts = make_planted_prompts(o, 8, 2);
    const logit_difference metric{prompts.answer, prompts.distractor};
    const std::vector<std::size_t> perm{2, 0, 3, 1};
    const auto permuted = permute_heads(planted.model, 1, perm, permutation_kind::preserving);
    const tensor<double> a =
        attribution_patch(planted.model, prompts.clean_view(), prompts.corrupted_view(), metric, patch_target::head).scores;
    const tensor<double> b =
        attribution_patch(permuted, prompts.clean_view(), prompts.corrupted_view(), metric, patch_target::head).scores;
    double worst = 0.0;
    for (std::size_t h = 0; h < o.heads; ++h) worst = std::max(worst, std::fabs(b(1, h) - a(1, perm[h])));
    fmt::print("layer 1 heads permuted by (2 0 3 1): max |AtP(permuted)[h] - AtP[perm[h]]| = {:.2e}\n", worst);
}

void concept_importance_on_planted() {
    fmt::print("\n== 4. Concept importance (total Sobol indices) before layer 1 ==\n");
    const planted_options o;
    const planted_circuit<double> planted = planted_induction<double>(o);
    const planted_prompts prompts = make_planted_prompts(o, 1, 9);
    const logit_difference metric{prompts.answer, prompts.distractor};
    const std::size_t d = planted.model.config().d_model, V = o.vocab, T = o.positions;
    tensor<double> z({3, d});
    z(0, V + std::size_t(prompts.clean[T - 1])) = 1.0; // the previous-token code the induction key matches
    z(1, 3 * V + T) = 1.0;                             // a noise direction
    z(2, std::size_t(prompts.clean[T - 1])) = 1.0;     // the token code of "a" (read by the induction query)
    sobol_options so;
    so.samples = 256;
    const sobol_result r =
        concept_importance(planted.model, prompts.clean_view(), "blocks.1.hook_resid_pre", tensor_view<const double>(z.view()), metric, so);
    const char* names[] = {"previous-token code of a", "noise direction", "token code of a"};
    for (std::size_t k = 0; k < 3; ++k)
        fmt::print("{:<26} S_T {:.3f}  [{:.3f}, {:.3f}]\n", names[k], r.total[k], r.low[k], r.high[k]);
    fmt::print("({} forward passes)\n", r.evaluations);
}

void concept_recursion_on_planted() {
    fmt::print("\n== 5. Sub-concepts of a planted parent neuron (L1 neuron 0 = 3 x sub-concept 0 + 1 x sub-concept 1) ==\n");
    const planted_concepts_options o;
    const planted_concepts<double> planted = planted_concept_model<double>(o);
    const std::size_t rows = 4;
    const std::vector<std::int32_t> prompts = planted_concept_prompts(o, rows, 1);
    tensor<double> parent({1, planted.model.config().d_mlp});
    parent(0, planted.parent_neuron) = 1.0;
    // The parent token's logit at the last position, which holds a token of S_1 in every row.
    const logit_difference metric{std::vector<std::int32_t>(rows, planted.parent_token),
                                  std::vector<std::int32_t>(rows, std::int32_t(o.vocab - 1))};
    fmt::print("{:<13} {:>8} {:>9} {:>9} {:>24} {:>24}\n", "SNMF", "feature", "cos v_0", "cos v_1",
               "S_T for the parent", "S_T for the metric");
    for (const bool sparse : {true, false}) {
        concept_recursion_options ro;
        ro.threshold = 0.5;
        ro.snmf.sparse = sparse;
        ro.snmf.sparsity = 0.5;
        ro.snmf.max_iter = 5000;
        ro.snmf.patience = 500;
        ro.sobol.samples = 1024;
        const concept_recursion_result r = concept_recursion(
            planted.model, tensor_view<const std::int32_t>(prompts.data(), {rows, o.positions}),
            parent_concept<double>{"blocks.1.mlp.hook_post", tensor_view<const double>(parent.view()), 0},
            "blocks.0.mlp.hook_post", metric, ro);
        const auto cos = sub_concept_cosines(planted, tensor_view<const float>(r.fit.features.view()));
        for (std::size_t k = 0; k < ro.rank; ++k)
            fmt::print("{:<13} {:>8} {:>9.3f} {:>9.3f} {:>7.3f} [{:.3f}, {:.3f}] {:>7.3f} [{:.3f}, {:.3f}]\n",
                       sparse ? "sparsity 0.5" : "not sparse", k, cos[k][0], cos[k][1], r.for_parent.total[k],
                       r.for_parent.low[k], r.for_parent.high[k], r.for_metric.total[k], r.for_metric.low[k],
                       r.for_metric.high[k]);
        if (sparse) fmt::print("({} of {} tokens selected; {} forward passes for both indices)\n", r.selected.size(),
                               r.parent_activation.size(), r.for_parent.evaluations + 1);
    }
}

void name_task_against_nulls(const std::string& model_dir) {
    const transformer model = load_model(model_dir + "/stories260K.bin");
    const llama2c_tokenizer tok = llama2c_tokenizer::load(model_dir + "/tok512.bin", model.config().vocab_size);
    name_task::null_model_study(model, name_task::make_name_task(tok), "Part 6, stories260K's name task");
}

} // namespace

int main(int argc, char** argv) {
    try {
        recovery_table();
        null_tests_on_planted();
        permutation_sanity();
        concept_importance_on_planted();
        concept_recursion_on_planted();
        name_task_against_nulls(argc > 1 ? argv[1] : ACTLENS_MODEL_DIR);
    } catch (const actlens::error& e) {
        std::fprintf(stderr, "null_models: %s\n", e.what());
        return 1;
    }
    return 0;
}
