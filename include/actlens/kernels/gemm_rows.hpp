// actlens/kernels/gemm_rows.hpp: linear products with the weights read where they are stored, in
// their own rows: f32, f16 or bf16 elements, or ggml's Q8_0, Q4_0, Q4_K and Q6_K blocks
// (kernels/weight_format.hpp), e.g. straight from a mapped GGUF file. Nothing is packed, so a model
// whose weights are multiplied this way loads in the time it takes to map its file, and processes
// sharing the file share its pages.
//
// Exact: activations stay f32, weights are decoded to the f32 values ggml's dequantisation gives
// (16-bit ones widened, exactly), multiplied with f32 FMAs. The forward is a register-blocked dot
// product (8 weight rows x 3 tokens on AVX-512) over K chunks of 512 whose weights are decoded once
// for all the tokens of a work item (ggml's blocks decoded in vectors, to decode_block's bits); a
// one-token product (decode) streams each row once. The input gradient reads the same rows (axpy
// form: a chunk of 512 columns of 4 rows at a time). Both are compiled for AVX-512, AVX2 and the
// baseline and run with core/cpu.hpp's choice; AVX-512 and AVX2 give the same bits
// (kernels/detail/rows_body.inc: 32 virtual lanes per forward element, one chain per gradient
// element), the baseline rounds products separately (no FMA). Threads (the caller's OpenMP team)
// split outputs and tokens (forward) or columns and tokens (gradient), never a sum: the results do
// not depend on the thread count. Nothing is allocated.
#pragma once

#include <actlens/core/cpu.hpp>
#include <actlens/core/memory.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/detail/sgemm.hpp>
#include <actlens/kernels/precision.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace actlens::kernels {

/// y[rows, in -> out] (=|+=) x[rows, in] * W^T + bias[out] (bias may be null), W [out, in] stored as
/// `out` rows of `format` at w (row o at w + o * weight_row_bytes(format, in); any alignment).
/// For a quantised format `in` must be a multiple of its block. ldx / ldy: row strides (0: dense).
/// `mode`: kernels/precision.hpp; precision::fast rounds the activations where fast_path(format),
/// and is exact elsewhere.
inline void linear_rows(const float* x, std::size_t rows, std::size_t in, const void* w, weight_format format,
                 std::size_t out, const float* bias, float* y, bool accumulate = false, std::size_t ldx = 0,
                 std::size_t ldy = 0, precision mode = precision::exact);

/// Whether precision::fast changes the product with rows of `format`: F16, BF16 and Q8_0 rows.
/// Fast mode with other rows is exact.
constexpr bool fast_path(weight_format format) noexcept {
    return format == weight_format::f16 || format == weight_format::bf16 || format == weight_format::q8_0;
}

/// dx[rows, in] (=|+=) dy[rows, out] * W, W as for linear_rows: the input gradient of linear_rows.
/// dx must not overlap dy.
inline void linear_rows_input_grad(const float* dy, std::size_t rows, std::size_t out, const void* w,
                            weight_format format, std::size_t in, float* dx, bool accumulate = false,
                            std::size_t lddy = 0, std::size_t lddx = 0);

namespace detail::rows {

constexpr std::size_t kc = 512;          // K chunk: two K-quant super-blocks, 16 Q8_0 / Q4_0 blocks
constexpr std::size_t group = 8;         // weight rows decoded and multiplied together
constexpr std::size_t token_block = 64;  // tokens per work item (the item's lanes: 64 KiB of stack)
constexpr std::size_t lanes = 32;        // exact forward: virtual lanes per element (rows_body.inc)
constexpr std::size_t max_group = 8;     // products per parallel job

struct problem {
    const float* x;
    std::size_t ldx, tokens, in;
    const unsigned char* w;
    weight_format format;
    std::size_t row_bytes, out;
    const float* bias;
    float* y;
    std::size_t ldy;
    bool accumulate;
    precision mode = precision::exact;
    // Fast precision: the activations rounded once for all the work items (run fills it), token t's
    // K chunk c at (t * ceil(in / kc) + c) * fast_x_row_bytes.
    unsigned char* prepared = nullptr;
};

// Fast precision (kernels/detail/rows_fast.inc): outputs per work item (its lanes: 128 KiB of stack
// for 64 tokens), and the bytes of one token's rounded K chunk (bf16 bits; Q8_0: bytes, then scales).
constexpr std::size_t fast_outputs = 32;
constexpr std::size_t fast_x_row_bytes = 2 * kc;

// Whether `tokens` tokens of a fast product are one token whose rows are read in place (its
// activations prepared for that: rows_fast.inc's prepare_token_q8; F16 / BF16 rows of whole 32-value
// steps only: rows_fast_body.inc).
constexpr bool fast_token_in_place(weight_format format, std::size_t in, std::size_t tokens) noexcept {
    return tokens == 1 && (format == weight_format::q8_0 || in % 32 == 0);
}

struct grad_problem {
    const float* dy;
    std::size_t lddy, tokens, out;
    const unsigned char* w;
    weight_format format;
    std::size_t row_bytes, in;
    float* dx;
    std::size_t lddx;
    bool accumulate;
};

} // namespace detail::rows

#define ACTLENS_ISA_BODY <actlens/kernels/detail/rows_body.inc>
#include <actlens/kernels/detail/each_isa.inc>
#include <actlens/kernels/detail/rows_fast.inc>

namespace detail::rows {

// As in kernels/gemm.hpp: thread only jobs of >= 32 MFLOP, or few-token products that stream
// >= 1 M weights (two cores read memory faster than one).
inline bool worth_threads(double flops, double weights) noexcept {
    return gemm_threads() > 1 && (flops >= 32e6 || weights >= double(1 << 20));
}

/// Fast precision: the activations of the products in gs[0, count) that take the fast kernels,
/// rounded for their weight format once into `buffer` and pointed at by their `prepared` (each work
/// item used to round its tokens again: 37% of a Q8_0 prompt's time; a token alone, with q8_chunk's
/// kernel, went from 17.6 to 22.6 tokens/s of Q8_0 decode on one thread); products that read the
/// same activations the same way (q, k and v) share them.
template <class Fast>
inline void prepare_shared(problem* gs, std::size_t count, const Fast& is_fast, bool parallel,
                           std::unique_ptr<unsigned char, void (*)(void*)>& buffer) {
    const auto prepare = ACTLENS_ISA_SELECT_DOT(rowfast::prepare_item);
    const auto same_activations = [](const problem& a, const problem& b) {
        return a.x == b.x && a.ldx == b.ldx && a.tokens == b.tokens && a.in == b.in &&
               (a.format == weight_format::q8_0) == (b.format == weight_format::q8_0);
    };
    std::size_t owner[max_group], offset[max_group], first[max_group + 1] = {0}, bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const problem& g = gs[i];
        std::size_t units = 0; // the token x K chunk pieces problem i prepares
        owner[i] = count;      // none: nothing to prepare
        if (is_fast(i)) {
            owner[i] = i;
            for (std::size_t j = 0; j < i && owner[i] == i; ++j)
                if (owner[j] == j && same_activations(g, gs[j])) owner[i] = j;
            if (owner[i] == i) {
                units = g.tokens * ((g.in + kc - 1) / kc);
                offset[i] = bytes;
                bytes += units * fast_x_row_bytes;
            }
        }
        first[i + 1] = first[i] + units;
    }
    if (bytes == 0) return;
    buffer.reset(static_cast<unsigned char*>(::actlens::detail::allocate_aligned(bytes)));
    for (std::size_t i = 0; i < count; ++i)
        if (owner[i] < count) gs[i].prepared = buffer.get() + offset[owner[i]];
    // A few chunks (a token's: 4-16) are rounded faster than threads are woken for them.
    for_items(long(first[count]), parallel && first[count] >= 64, [&](long index) {
        std::size_t i = 0;
        while (std::size_t(index) >= first[i + 1]) ++i;
        prepare(gs[i], std::size_t(index) - first[i]);
    });
}

/// Runs `count` (<= max_group) forward products as one parallel job (e.g. q, k and v).
inline void run(const problem* given, std::size_t count) {
    using item_fn = void (*)(const problem&, std::size_t, std::size_t, std::size_t, std::size_t) noexcept;
    const item_fn exact = ACTLENS_ISA_SELECT(rowdot::forward_item), fast = ACTLENS_ISA_SELECT_DOT(rowfast::forward_item);
    item_fn item[max_group];
    problem gs[max_group];
    for (std::size_t i = 0; i < count; ++i) {
        gs[i] = given[i];
        item[i] = gs[i].mode == precision::fast && fast_path(gs[i].format) ? fast : exact;
    }
    double flops = 0, weights = 0;
    for (std::size_t i = 0; i < count; ++i) {
        flops += 2.0 * double(gs[i].tokens) * double(gs[i].in) * double(gs[i].out);
        weights += double(gs[i].in) * double(gs[i].out);
    }
    const bool parallel = worth_threads(flops, weights);
    std::unique_ptr<unsigned char, void (*)(void*)> prepared(nullptr, std::free);
    prepare_shared(gs, count, [&](std::size_t i) { return item[i] == fast; }, parallel, prepared);
    const std::size_t threads = std::size_t(gemm_threads());
    // Outputs per item: about 8 items per thread and product (dynamic schedule), whole groups of 4.
    std::size_t per[max_group], out_items[max_group], first[max_group + 1] = {0};
    for (std::size_t i = 0; i < count; ++i) {
        const problem& g = gs[i];
        const std::size_t want = parallel ? (g.out + 8 * threads - 1) / (8 * threads) : g.out;
        per[i] = std::max<std::size_t>(group, (want + group - 1) / group * group);
        // Fast tiles keep their lanes in memory for at most fast_outputs; a token alone does not (items
        // of 32 rows made Q8_0 decode on 2 threads 25.6 tokens/s in fast precision, 31.5 in exact;
        // 28.7 with exact's items, interleaved).
        if (item[i] == fast && !fast_token_in_place(g.format, g.in, g.tokens)) per[i] = std::min(per[i], fast_outputs);
        out_items[i] = (g.out + per[i] - 1) / per[i];
        first[i + 1] = first[i] + out_items[i] * ((g.tokens + token_block - 1) / token_block);
    }
    for_items(long(first[count]), parallel, [&](long index) {
        std::size_t i = 0;
        while (std::size_t(index) >= first[i + 1]) ++i;
        const problem& g = gs[i];
        const std::size_t local = std::size_t(index) - first[i];
        const std::size_t tb = local / out_items[i], oi = local % out_items[i];
        const std::size_t o0 = oi * per[i], t0 = tb * token_block;
        item[i](g, o0, std::min(g.out, o0 + per[i]), t0, std::min(g.tokens, t0 + token_block));
    });
}

inline void run_input_grad(const grad_problem& g) {
    const auto item = ACTLENS_ISA_SELECT(rowdot::input_grad_item);
    const bool parallel =
        worth_threads(2.0 * double(g.tokens) * double(g.in) * double(g.out), double(g.in) * double(g.out));
    const std::size_t chunks = (g.in + kc - 1) / kc, blocks = (g.tokens + token_block - 1) / token_block;
    for_items(long(chunks * blocks), parallel, [&](long index) {
        const std::size_t c = std::size_t(index) % chunks, b = std::size_t(index) / chunks;
        item(g, c * kc, b * token_block, std::min(g.tokens, (b + 1) * token_block));
    });
}

} // namespace detail::rows

inline void linear_rows(const float* x, std::size_t rows, std::size_t in, const void* w, weight_format format,
                        std::size_t out, const float* bias, float* y, bool accumulate, std::size_t ldx,
                        std::size_t ldy, precision mode) {
    ldy = ldy ? ldy : out;
    if (rows == 0 || out == 0) return;
    if (in == 0) {
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < out; ++o) {
                float& v = y[r * ldy + o];
                v = (accumulate ? v : 0.0f) + (bias ? bias[o] : 0.0f);
            }
        return;
    }
    const detail::rows::problem g{x,   ldx ? ldx : in, rows, in,  static_cast<const unsigned char*>(w),
                                  format, weight_row_bytes(format, in), out, bias, y, ldy, accumulate, mode};
    detail::rows::run(&g, 1);
}

inline void linear_rows_input_grad(const float* dy, std::size_t rows, std::size_t out, const void* w,
                                   weight_format format, std::size_t in, float* dx, bool accumulate,
                                   std::size_t lddy, std::size_t lddx) {
    lddx = lddx ? lddx : in;
    if (rows == 0 || in == 0) return;
    if (out == 0) {
        if (!accumulate)
            for (std::size_t r = 0; r < rows; ++r) std::fill(dx + r * lddx, dx + r * lddx + in, 0.0f);
        return;
    }
    detail::rows::run_input_grad(detail::rows::grad_problem{dy, lddy ? lddy : out, rows, out,
                                                            static_cast<const unsigned char*>(w), format,
                                                            weight_row_bytes(format, in), in, dx, lddx, accumulate});
}

} // namespace actlens::kernels
