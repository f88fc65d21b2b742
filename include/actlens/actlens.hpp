// actlens/actlens.hpp: the umbrella header. Everything public except the adapters to other libraries'
// types (interop/eigen.hpp, interop/xtensor.hpp): they are opt-in, so that a file that does not use
// xtensor does not parse it (+0.7 s).
// Functions that would instantiate model code or a solver in every file that includes them are
// templates, compiled only where they are called (README "Compile time"; benchmarks/compile_time.sh
// measures it). A header that only names actlens types can include actlens/fwd.hpp instead.
#pragma once

#include <actlens/config.hpp>
#include <actlens/error.hpp>
#include <actlens/fwd.hpp>

#include <actlens/core/dtype.hpp>
#include <actlens/core/exact_sums.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>

#include <actlens/io/gguf.hpp>
#include <actlens/io/gguf_model.hpp>
#include <actlens/io/gguf_save.hpp>
#include <actlens/io/huggingface.hpp>
#include <actlens/io/llama2c.hpp>
#include <actlens/io/mapped_file.hpp>
#include <actlens/io/npy.hpp>
#include <actlens/io/safetensors.hpp>

#include <actlens/tokenizer/bpe.hpp>
#include <actlens/tokenizer/gguf_vocab.hpp>
#include <actlens/tokenizer/hf_tokenizer.hpp>
#include <actlens/tokenizer/llama2c.hpp>
#include <actlens/tokenizer/load.hpp>
#include <actlens/tokenizer/printable.hpp>

#include <actlens/model/backward.hpp>
#include <actlens/model/backward_weights.hpp>
#include <actlens/model/block.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/generate.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/kv_cache.hpp>
#include <actlens/model/load.hpp>
#include <actlens/model/ragged_forward.hpp>
#include <actlens/model/random_weights.hpp>
#include <actlens/model/sampling.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/weights.hpp>
#include <actlens/model/workspace.hpp>

#include <actlens/analysis/correlation.hpp>
#include <actlens/analysis/null_models.hpp>
#include <actlens/analysis/planted.hpp>
#include <actlens/analysis/planted_concepts.hpp>
#include <actlens/analysis/sobol.hpp>
#include <actlens/analysis/significance.hpp>

#include <actlens/methods/atp_star.hpp>
#include <actlens/methods/attribution.hpp>
#include <actlens/methods/capture.hpp>
#include <actlens/methods/concept_importance.hpp>
#include <actlens/methods/concept_recursion.hpp>
#include <actlens/methods/control_vector.hpp>
#include <actlens/methods/feature_calibration.hpp>
#include <actlens/methods/gact.hpp>
#include <actlens/methods/metrics.hpp>
#include <actlens/methods/neuron_pathways.hpp>
#include <actlens/methods/neurons.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/methods/snmf_features.hpp>
#include <actlens/methods/snmf_hierarchy.hpp>
#include <actlens/methods/steering.hpp>

#include <actlens/report/color.hpp>
#include <actlens/report/display.hpp>
#include <actlens/report/html.hpp>
#include <actlens/report/methods.hpp>
#include <actlens/report/svg.hpp>
#include <actlens/report/text.hpp>
