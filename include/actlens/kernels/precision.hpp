// actlens/kernels/precision.hpp: how the products with a model's weights round their activations.
//
// exact (the default): activations stay f32 and the weights' stored values are widened to f32;
// interpretability needs it (a patching delta can be smaller than bf16's rounding of an activation).
// fast: the activations are rounded first, to what the CPU's dot-product instructions multiply. For
// F16 and BF16 weights in their rows, activations and weights are rounded to bf16 (round to nearest
// even: relative error <= 2^-8, 8 significant bits; F16 weights lose their 3 lowest bits, rounded in
// the K chunk a work item decodes once for all its tokens) and multiplied with AVX512-BF16's
// vdpbf16ps (exact products, f32 accumulation). For Q8_0 rows each block of 32 activations is
// quantised to int8 with one f32 scale, as ggml's q8_0 activations (d = max |x| / 127, q = x / d
// rounded to nearest even where ggml rounds halves away from zero), and multiplied with AVX512-VNNI's
// vpdpbusd (each block's exact integer sum, scaled by d_w d_x in f32). Without those instructions
// (or with ACTLENS_ISA=avx2 / baseline) plain code multiplies the same rounded operands, within the
// same error bound (tests/test_kernels_fast.cpp derives it). Weights with no fast path (F32, Q4_0,
// Q4_K, Q6_K rows, panels packed at load) are multiplied exactly in
// fast mode too, and so are the backward's products.
// Speed (benchmarks/bench_panels.cpp and run_vs_llamacpp.sh, on the Zen 5 machines this was written
// on): prompts in fast precision run 1.2-1.4x (F16) and 1.8-2.3x (Q8_0) as fast as exact ones;
// decode streams the same bytes in both precisions, at about the same speed (README "Fast
// precision").
#pragma once

namespace actlens::kernels {

/// The precision of the products with a model's weights (see the top of this header).
enum class precision { exact, fast };

/// "exact" or "fast".
constexpr const char* precision_name(precision p) noexcept { return p == precision::fast ? "fast" : "exact"; }

} // namespace actlens::kernels
