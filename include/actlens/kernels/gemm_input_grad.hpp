// actlens/kernels/gemm_input_grad.hpp: the input gradient of a linear layer, dx = dy * w, fast.
//
// The backward pass's largest products: dx[rows, in] (=|+=) dy[rows, out] * w[out, in], with w in
// nn.Linear's [out, in] layout, which for this product is already K-major (row k of w holds the k-th
// term of every output column). So, unlike the forward (kernels/gemm.hpp), no transposed or
// pre-packed copy of the weights is needed:
//
//  - float on an AVX-512 build: register tiles of 8 rows x 48 columns of dx (24 zmm accumulators)
//    read w in place, one 48-float slice of a row per step of K (= out), with software prefetch of
//    the next K block. A work item owns up to 8 panels of 48 columns and 128 rows; threads (the
//    caller's OpenMP team) split items, never K, so every element is summed in the same order
//    whatever the thread count. Small products run on the calling thread. Nothing is allocated.
//    Up to 4 rows (a matrix-vector product in effect) go to Eigen's GEMV path. Measured on one
//    core at 64 rows (GPT-2-small shapes, weights streamed from memory): ~120-135 GFLOP/s against
//    Eigen's ~85-110 (the forward's pre-packed kernel reaches ~180-200).
//  - double, and builds without AVX-512: kernels::linear_backward_input (Eigen).
#pragma once

#include <actlens/kernels/gemm.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace actlens::kernels {

/// dx[rows, in] (=|+=) dy[rows, out] * w[out, in]; lddy / lddx are the row strides of dy and dx
/// (0 means dense). Same meaning as linear_backward_input; dx must not overlap dy or w.
template <class T>
void linear_input_grad(const T* dy, std::size_t rows, std::size_t out, const T* w, std::size_t in, T* dx,
                       bool accumulate = false, std::size_t lddy = 0, std::size_t lddx = 0);

namespace detail::input_grad {

#if defined(__AVX512F__)
// The register tile (8 rows x 48 columns, 3 zmm a row) and its column masks are the forward
// kernel's (kernels/detail/sgemm_avx512.hpp); only the way B is read differs (w in place, strided
// and masked, instead of a packed aligned panel), hence a tile of its own below.
using detail::sgemm::column_mask;
using detail::sgemm::mr;               // rows of dx per tile
using detail::sgemm::nr;               // columns of dx per tile
constexpr std::size_t kc = 64;        // K block (rows of w)
constexpr std::size_t mc = 128;       // row block
constexpr std::size_t max_panels = 8; // panels per work item: runs of up to 384 columns of w
constexpr std::size_t few_rows = 4;   // up to this many rows go to Eigen's matrix-vector path

// c[MR, cols] (=|+=) a[MR, k] b[k, cols] with b's rows `ldb` apart; columns past `cols` are neither
// read nor written (masked loads: no access past the end of w).
template <int MR>
inline void tile(std::size_t k, const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
                 std::size_t ldc, std::size_t cols, bool overwrite) noexcept {
    const __mmask16 m0 = column_mask(cols, 0), m1 = column_mask(cols, 1), m2 = column_mask(cols, 2);
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    for (std::size_t p = 0; p < k; ++p, b += ldb) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16),
                     b2 = _mm512_maskz_loadu_ps(m2, b + 32);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(a[std::size_t(i) * lda + p]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
        }
    }
    const __mmask16 m[3] = {m0, m1, m2};
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        float* ci = c + std::size_t(i) * ldc;
#pragma GCC unroll 3
        for (int j = 0; j < 3; ++j) {
            if (!m[j]) continue;
            __m512 v = acc[i][j];
            if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[j], ci + 16 * j));
            _mm512_mask_storeu_ps(ci + 16 * j, m[j], v);
        }
    }
}

inline void tile_dispatch(std::size_t rows, std::size_t k, const float* a, std::size_t lda, const float* b,
                          std::size_t ldb, float* c, std::size_t ldc, std::size_t cols, bool overwrite) noexcept {
    switch (rows) {
    case 8: tile<8>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 7: tile<7>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 6: tile<6>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 5: tile<5>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 4: tile<4>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 3: tile<3>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    case 2: tile<2>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    default: tile<1>(k, a, lda, b, ldb, c, ldc, cols, overwrite); break;
    }
}

struct problem {
    const float* dy;
    std::size_t lddy, rows, out;
    const float* w;
    std::size_t in;
    float* dx;
    std::size_t lddx;
    bool accumulate;
};

// Rows [row0, row0 + row_count) and column panels [panel0, panel1) of dx. The tiles read w in
// place, 48 columns of a row at a time; the rows of the next K block are requested (into L2) while
// the tiles of this one run, a few per tile: a row's run of 48 to 384 columns is too short for the
// hardware prefetchers to stream it, and a burst of requests would overflow the queue of misses.
inline void compute_block(const problem& g, std::size_t row0, std::size_t row_count, std::size_t panel0,
                          std::size_t panel1) noexcept {
    const std::size_t col_begin = panel0 * nr;
    const std::size_t width = std::min(g.in, panel1 * nr) - col_begin; // columns of w this item reads
    const std::size_t calls = (panel1 - panel0) * ((row_count + mr - 1) / mr);
    for (std::size_t k0 = 0; k0 < g.out; k0 += kc) {
        const std::size_t kl = std::min(kc, g.out - k0);
        const bool overwrite = k0 == 0 && !g.accumulate;
        const std::size_t next_rows = k0 + kc < g.out ? std::min(kc, g.out - k0 - kc) : 0;
        const std::size_t rows_per_call = (next_rows + calls - 1) / calls;
        std::size_t next_row = 0;
        for (std::size_t p = panel0; p < panel1; ++p) {
            const std::size_t col0 = p * nr, cols = std::min(nr, g.in - col0);
            const float* b = g.w + k0 * g.in + col0;
            for (std::size_t r = 0; r < row_count; r += mr) {
                for (std::size_t e = 0; e < rows_per_call && next_row < next_rows; ++e, ++next_row) {
                    const char* row = reinterpret_cast<const char*>(g.w + (k0 + kc + next_row) * g.in + col_begin);
                    for (std::size_t byte = 0; byte < width * sizeof(float); byte += 64)
                        _mm_prefetch(row + byte, _MM_HINT_T1);
                }
                tile_dispatch(std::min(mr, row_count - r), kl, g.dy + (row0 + r) * g.lddy + k0, g.lddy, b, g.in,
                              g.dx + (row0 + r) * g.lddx + col0, g.lddx, cols, overwrite);
            }
        }
    }
}

// A template of nothing, so that the Eigen product it falls back to is compiled only in files that
// run a backward pass, not in every file that includes this header (README "Compile time").
template <int = 0>
void run(const problem& g) noexcept {
    if (g.rows <= few_rows) { // matrix-vector-like: Eigen's path reads w once, without a copy
        linear_backward_input(g.dy, g.rows, g.out, g.w, g.in, g.dx, g.accumulate, g.lddy, g.lddx);
        return;
    }
    const std::size_t panels = (g.in + nr - 1) / nr, row_blocks = (g.rows + mc - 1) / mc;
    const double flops = 2.0 * double(g.rows) * double(g.out) * double(g.in);
    const int threads = kernels::detail::gemm_threads();
    // As in kernels/gemm.hpp: thread only products of >= 32 MFLOP, or few-row products that stream
    // >= 1 M weights (two cores read memory faster than one).
    const bool parallel = threads > 1 && (flops >= 32e6 || double(g.out) * double(g.in) >= double(1 << 20));
    // Wide items (long contiguous reads of w), but at least one per thread.
    const std::size_t per_item =
        parallel ? std::clamp<std::size_t>((panels + std::size_t(threads) - 1) / std::size_t(threads), 1, max_panels)
                 : max_panels;
    const std::size_t panel_items = (panels + per_item - 1) / per_item;
    kernels::detail::for_items(long(panel_items * row_blocks), parallel, [&](long item) {
        const std::size_t rb = std::size_t(item) / panel_items, pi = std::size_t(item) % panel_items;
        const std::size_t p0 = pi * per_item, p1 = std::min(panels, p0 + per_item);
        const std::size_t r0 = rb * mc;
        compute_block(g, r0, std::min(mc, g.rows - r0), p0, p1);
    });
}

#endif

} // namespace detail::input_grad

template <class T>
void linear_input_grad(const T* dy, std::size_t rows, std::size_t out, const T* w, std::size_t in, T* dx,
                       bool accumulate, std::size_t lddy, std::size_t lddx) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        lddy = lddy ? lddy : out;
        lddx = lddx ? lddx : in;
        if (rows == 0 || in == 0) return;
        if (out == 0) {
            if (!accumulate)
                for (std::size_t r = 0; r < rows; ++r) std::fill(dx + r * lddx, dx + r * lddx + in, 0.0f);
            return;
        }
        detail::input_grad::run(detail::input_grad::problem{dy, lddy, rows, out, w, in, dx, lddx, accumulate});
        return;
    }
#endif
    linear_backward_input(dy, rows, out, w, in, dx, accumulate, lddy, lddx);
}

} // namespace actlens::kernels
