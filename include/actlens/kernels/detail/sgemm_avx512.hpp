// actlens/kernels/detail/sgemm_avx512.hpp: the float matrix product on AVX-512 (see kernels/gemm.hpp
// for the design: 8 x 48 register tiles, K blocks of 256, row blocks of 128, weights read as
// K-major panels of 48 output columns, work items taken dynamically by the caller's OpenMP team).
// Included by kernels/gemm.hpp; has_fast_sgemm says whether this build has it.
#pragma once

#include <actlens/kernels/detail/parallel.hpp>

#include <algorithm>
#include <cstddef>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace actlens::kernels::detail {

#if defined(__AVX512F__)
inline constexpr bool has_fast_sgemm = true;

namespace sgemm {

constexpr std::size_t nr = 48;  // columns of C per tile (3 registers): the packed panel width
constexpr std::size_t mr = 8;                                 // rows of C per tile
constexpr std::size_t kc = 256;                               // K block: a 256 x 48 panel is 48 KiB
constexpr std::size_t mc = 128; // M block: A block 128 x 256 = 128 KiB (L2)

inline __mmask16 column_mask(std::size_t cols, std::size_t j) noexcept {
    const std::size_t lo = 16 * j;
    if (cols >= lo + 16) return __mmask16(0xFFFF);
    if (cols <= lo) return __mmask16(0);
    return __mmask16((1u << (cols - lo)) - 1u);
}

// C[MR, cols] (=|+=) A[MR, k] B[k, 48] (+ bias) with B a K-major panel slice (64-byte aligned rows
// of 48) and A read in place, one broadcast per element. The caller passes overwrite = true and the
// bias on the first K block only (unless accumulating into C). `prefetch` is where to pull the next
// block from, one cache line per step (prefetches never fault, whatever the address).
template <int MR>
inline void micro_kernel(std::size_t k, const float* a, std::size_t lda, const float* b, float* c,
                         std::size_t ldc, std::size_t cols, bool overwrite, const float* bias,
                         const char* prefetch) noexcept {
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
        acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    const float* ap[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
        ap[i] = a + std::size_t(i) * lda;
    for (std::size_t p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16),
                     b2 = _mm512_load_ps(b + 32);
        b += nr;
        // One line of the next B block per step (its first 16 KiB per tile): DRAM streams are
        // otherwise only half as fast as the first tile of a block consumes them.
        _mm_prefetch(prefetch + 64 * p, _MM_HINT_T1);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(ap[i][p]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
        }
    }
    const __mmask16 m[3] = {column_mask(cols, 0), column_mask(cols, 1), column_mask(cols, 2)};
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        float* ci = c + std::size_t(i) * ldc;
#pragma GCC unroll 3
        for (int j = 0; j < 3; ++j) {
            __m512 v = acc[i][j];
            if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[j], ci + 16 * j));
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[j], bias + 16 * j));
            _mm512_mask_storeu_ps(ci + 16 * j, m[j], v);
        }
    }
}

inline void micro_dispatch(std::size_t rows, std::size_t k, const float* a, std::size_t lda,
                           const float* b, float* c, std::size_t ldc, std::size_t cols,
                           bool overwrite, const float* bias, const char* prefetch) noexcept {
    switch (rows) {
    case 8:
        micro_kernel<8>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 7:
        micro_kernel<7>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 6:
        micro_kernel<6>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 5:
        micro_kernel<5>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 4:
        micro_kernel<4>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 3:
        micro_kernel<3>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    case 2:
        micro_kernel<2>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    default:
        micro_kernel<1>(k, a, lda, b, c, ldc, cols, overwrite, bias, prefetch);
        break;
    }
}

// In-register 16 x 16 transpose: stage i swaps bit i of the row index with bit i of the column
// index (rows r and r + 2^i exchange the lanes whose column has that bit set or clear). Two-source
// permutes only: GCC 12's unpack/shuffle intrinsics warn (-Wmaybe-uninitialized, GCC bug 105593).
inline void transpose_16x16(__m512* r) noexcept {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i other = _mm512_set1_epi32(16);
#pragma GCC unroll 4
    for (int bit = 1; bit < 16; bit <<= 1) {
        const __m512i m = _mm512_set1_epi32(bit), flipped = _mm512_xor_si512(lane, m);
        const __mmask16 high = _mm512_test_epi32_mask(lane, m);
        // low row: its own lanes where the column bit is 0, else the partner's lane c ^ bit;
        // high row: the low row's lane c ^ bit where the column bit is 0, else its own lanes.
        const __m512i lo_idx = _mm512_mask_mov_epi32(lane, high, _mm512_or_si512(flipped, other));
        const __m512i hi_idx = _mm512_mask_mov_epi32(flipped, high, _mm512_or_si512(lane, other));
#pragma GCC unroll 16
        for (int row = 0; row < 16; ++row) {
            if (row & bit) continue;
            const __m512 a = r[row], b = r[row + bit];
            r[row] = _mm512_permutex2var_ps(a, lo_idx, b);
            r[row + bit] = _mm512_permutex2var_ps(a, hi_idx, b);
        }
    }
}

// Transposes a block of `cols` (<= 48) rows of w (row stride ldw) by `k` (<= kc) columns into the
// panel layout dst[k][48], zero-filling the columns past `cols`. 16 x 16 tiles go through
// registers.
inline void pack_block(const float* w, std::size_t ldw, std::size_t cols, std::size_t k,
                       float* dst) noexcept {
    for (std::size_t j0 = 0; j0 < nr; j0 += 16) {
        const std::size_t jn = cols > j0 ? std::min<std::size_t>(16, cols - j0) : 0;
        std::size_t p0 = 0;
        if (jn == 16) {
            for (; p0 + 16 <= k; p0 += 16) {
                __m512 r[16];
                for (int j = 0; j < 16; ++j)
                    r[j] = _mm512_loadu_ps(w + (j0 + std::size_t(j)) * ldw + p0);
                transpose_16x16(r);
                for (int q = 0; q < 16; ++q)
                    _mm512_store_ps(dst + (p0 + std::size_t(q)) * nr + j0, r[q]);
            }
        }
        for (std::size_t p = p0; p < k; ++p) {
            float* d = dst + p * nr + j0;
            std::size_t j = 0;
            for (; j < jn; ++j)
                d[j] = w[(j0 + j) * ldw + p];
            for (; j < 16; ++j)
                d[j] = 0.0f;
        }
    }
}

// Sum of the 16 lanes (halving with two-source permutes, for the reason given at transpose_16x16).
inline float horizontal_sum(__m512 v) noexcept {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 4
    for (int half = 8; half >= 1; half >>= 1)
        v = _mm512_add_ps(
            v, _mm512_permutex2var_ps(v, _mm512_xor_si512(lane, _mm512_set1_epi32(half)), v));
    return _mm512_cvtss_f32(v);
}

// Few rows with unpacked weights (decode): packing would cost as much as the product, so each
// output is a dot product of contiguous rows, R rows of x against 4 rows of w at a time.
constexpr std::size_t dot_max_rows = 4;

template <int R>
inline void dot_rows(const float* x, std::size_t ldx, std::size_t k, const float* w, std::size_t n0,
                     std::size_t n1, float* y, std::size_t ldy, bool overwrite,
                     const float* bias) noexcept {
    const std::size_t k16 = k / 16 * 16;
    const __mmask16 tail = __mmask16((1u << (k - k16)) - 1u);
    std::size_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        __m512 acc[R][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
            acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
        const float* w0 = w + n * k;
        for (std::size_t p = 0; p < k16; p += 16) {
            const __m512 v0 = _mm512_loadu_ps(w0 + p), v1 = _mm512_loadu_ps(w0 + k + p),
                         v2 = _mm512_loadu_ps(w0 + 2 * k + p), v3 = _mm512_loadu_ps(w0 + 3 * k + p);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) {
                const __m512 xv = _mm512_loadu_ps(x + std::size_t(r) * ldx + p);
                acc[r][0] = _mm512_fmadd_ps(xv, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(xv, v1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(xv, v2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(xv, v3, acc[r][3]);
            }
        }
        if (tail) {
            const __m512 v0 = _mm512_maskz_loadu_ps(tail, w0 + k16),
                         v1 = _mm512_maskz_loadu_ps(tail, w0 + k + k16),
                         v2 = _mm512_maskz_loadu_ps(tail, w0 + 2 * k + k16),
                         v3 = _mm512_maskz_loadu_ps(tail, w0 + 3 * k + k16);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) {
                const __m512 xv = _mm512_maskz_loadu_ps(tail, x + std::size_t(r) * ldx + k16);
                acc[r][0] = _mm512_fmadd_ps(xv, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(xv, v1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(xv, v2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(xv, v3, acc[r][3]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < 4; ++j) {
                float v = horizontal_sum(acc[r][j]);
                float& out = y[std::size_t(r) * ldy + n + std::size_t(j)];
                if (bias) v += bias[n + std::size_t(j)];
                out = overwrite ? v : out + v;
            }
    }
    for (; n < n1; ++n) {
        const float* wn = w + n * k;
        for (int r = 0; r < R; ++r) {
            __m512 acc = _mm512_setzero_ps();
            const float* xr = x + std::size_t(r) * ldx;
            for (std::size_t p = 0; p < k16; p += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(xr + p), _mm512_loadu_ps(wn + p), acc);
            if (tail)
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, xr + k16),
                                      _mm512_maskz_loadu_ps(tail, wn + k16), acc);
            float v = horizontal_sum(acc);
            if (bias) v += bias[n];
            float& out = y[std::size_t(r) * ldy + n];
            out = overwrite ? v : out + v;
        }
    }
}

struct problem {
    const float* x;
    std::size_t ldx, rows, in;
    const float* w; // unpacked weights [out, in] (when `packed` is null)
    const float* packed; // packed panels [out / 48][in][48] (see packed_weight), or null
    std::size_t out;
    const float* bias;
    float* y;
    std::size_t ldy;
    bool accumulate;
};

// Panel p (48 output columns, [in][48]) of a packed problem.
inline const float* panel(const problem& g, std::size_t p) noexcept { return g.packed + p * g.in * nr; }

// One row over NP panels from panel p0: y (=|+=) x B (+ bias), summed in exactly micro_kernel's
// order for a row (one FMA chain per column over each K block of kc, the blocks then added in
// turn), so that a row's result does not depend on how many rows share the product: a serving
// batch of decode rows must match each row's run alone (README "Serving"). NP panels at a time
// keep 3 NP independent chains in flight to hide the FMA latency.
template <int NP>
inline void gemv_panels(const problem& g, std::size_t p0) noexcept {
    for (std::size_t k0 = 0; k0 < g.in; k0 += kc) {
        const std::size_t kl = std::min(kc, g.in - k0);
        const bool first = k0 == 0, overwrite = first && !g.accumulate;
        __m512 acc[NP][3];
        const float* b[NP];
#pragma GCC unroll 4
        for (int u = 0; u < NP; ++u) {
            acc[u][0] = acc[u][1] = acc[u][2] = _mm512_setzero_ps();
            b[u] = panel(g, p0 + std::size_t(u)) + k0 * nr;
        }
        for (std::size_t p = 0; p < kl; ++p) {
            const __m512 xv = _mm512_set1_ps(g.x[k0 + p]);
#pragma GCC unroll 4
            for (int u = 0; u < NP; ++u) {
                const float* bu = b[u] + p * nr;
                acc[u][0] = _mm512_fmadd_ps(xv, _mm512_load_ps(bu), acc[u][0]);
                acc[u][1] = _mm512_fmadd_ps(xv, _mm512_load_ps(bu + 16), acc[u][1]);
                acc[u][2] = _mm512_fmadd_ps(xv, _mm512_load_ps(bu + 32), acc[u][2]);
            }
        }
        for (int u = 0; u < NP; ++u) {
            const std::size_t col0 = (p0 + std::size_t(u)) * nr, cols = std::min(nr, g.out - col0);
            float* y = g.y + col0;
            const float* bias = first && g.bias ? g.bias + col0 : nullptr;
            for (int j = 0; j < 3; ++j) {
                const __mmask16 m = column_mask(cols, std::size_t(j));
                __m512 v = acc[u][j];
                if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, y + 16 * j));
                if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + 16 * j));
                _mm512_mask_storeu_ps(y + 16 * j, m, v);
            }
        }
    }
}

// One row, panels [p0, p1): four at a time, then the rest.
inline void gemv(const problem& g, std::size_t p0, std::size_t p1) noexcept {
    std::size_t p = p0;
    for (; p + 4 <= p1; p += 4)
        gemv_panels<4>(g, p);
    for (; p < p1; ++p)
        gemv_panels<1>(g, p);
}

// Columns [panel0 * 48, panel1 * 48) and rows [row0, row0 + row_count) of the product.
inline void compute_block(const problem& g, std::size_t row0, std::size_t row_count,
                          std::size_t panel0, std::size_t panel1) noexcept {
    alignas(64) float buffer[kc * nr]; // 48 KiB of stack, touched only when packing on the fly
    for (std::size_t k0 = 0; k0 < g.in; k0 += kc) {
        const std::size_t kl = std::min(kc, g.in - k0);
        const bool first = k0 == 0;
        for (std::size_t p = panel0; p < panel1; ++p) {
            const std::size_t col0 = p * nr, cols = std::min(nr, g.out - col0);
            const float* b;
            if (g.packed) {
                b = panel(g, p) + k0 * nr;
            } else {
                pack_block(g.w + col0 * g.in + k0, g.in, cols, kl, buffer);
                b = buffer;
            }
            const float* bias = first && g.bias ? g.bias + col0 : nullptr;
            const bool overwrite = first && !g.accumulate;
            // The block the next panel (or the next K block) will read, for the tiles to prefetch.
            const float* next = nullptr;
            if (g.packed) {
                if (p + 1 < panel1)
                    next = panel(g, p + 1) + k0 * nr;
                else if (k0 + kc < g.in)
                    next = panel(g, panel0) + (k0 + kc) * nr;
            }
            const char* pf = reinterpret_cast<const char*>(next ? next : b);
            for (std::size_t r = 0, t = 0; r < row_count; r += mr, ++t)
                micro_dispatch(std::min(mr, row_count - r), kl, g.x + (row0 + r) * g.ldx + k0,
                               g.ldx, b, g.y + (row0 + r) * g.ldy + col0, g.ldy, cols, overwrite,
                               bias, next && t < 3 ? pf + t * 64 * kl : pf);
        }
    }
}

// How one product is cut into work items: runs of `per_item` panels (48 columns) times row blocks
// of `mc` rows, or, on the dot-product path, runs of `dot_chunk` outputs.
struct plan {
    bool dot = false;
    std::size_t panels = 0, per_item = 1, panel_items = 0, items = 0;
};

constexpr std::size_t dot_chunk = 64; // outputs per work item on the dot-product path
constexpr std::size_t max_group = 8;  // products per parallel job (see run)

inline void run_item(const problem& g, const plan& p, std::size_t item) noexcept {
    if (p.dot) {
        const std::size_t n0 = item * dot_chunk, n1 = std::min(g.out, n0 + dot_chunk);
        const bool overwrite = !g.accumulate;
        switch (g.rows) {
        case 4:
            dot_rows<4>(g.x, g.ldx, g.in, g.w, n0, n1, g.y, g.ldy, overwrite, g.bias);
            break;
        case 3:
            dot_rows<3>(g.x, g.ldx, g.in, g.w, n0, n1, g.y, g.ldy, overwrite, g.bias);
            break;
        case 2:
            dot_rows<2>(g.x, g.ldx, g.in, g.w, n0, n1, g.y, g.ldy, overwrite, g.bias);
            break;
        default:
            dot_rows<1>(g.x, g.ldx, g.in, g.w, n0, n1, g.y, g.ldy, overwrite, g.bias);
            break;
        }
        return;
    }
    const std::size_t rb = item / p.panel_items, pi = item % p.panel_items;
    const std::size_t p0 = pi * p.per_item, p1 = std::min(p.panels, p0 + p.per_item);
    if (g.rows == 1 && g.packed) {
        gemv(g, p0, p1);
    } else {
        const std::size_t r0 = rb * mc;
        compute_block(g, r0, std::min(mc, g.rows - r0), p0, p1);
    }
}

// Runs `count` (<= max_group) products as one job: a single parallel region whose work items
// are those of every product, so that e.g. the q, k and v projections cost one fork/join.
inline void run(const problem* gs, std::size_t count) noexcept {
    double flops = 0, weights = 0, units = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const problem& g = gs[i];
        flops += 2.0 * double(g.rows) * double(g.in) * double(g.out);
        weights += double(g.in) * double(g.out);
        units += double((g.out + nr - 1) / nr) * double((g.rows + mc - 1) / mc);
    }
    const int threads = gemm_threads();
    // A parallel region costs a few microseconds on an idle machine, and up to a scheduler time
    // slice when other processes hold the cores (the other thread must be scheduled before the
    // join): thread only jobs of >= 32 MFLOP (~0.15 ms on one core), or few-row products that
    // stream >= 1 M weights (4 MiB: two cores read memory faster than one).
    const bool parallel = threads > 1 && (flops >= 32e6 || weights >= double(1 << 20));
    // About 8 items per thread (dynamic schedule): the last item bounds the imbalance, and a
    // thread the OS delays holds the others up for less. Small items cost little (x is re-read
    // from L2 per panel anyway); at most 8 panels (384 columns) per item keeps an item's block of
    // y in L2 across the K blocks.
    const std::size_t per_item =
        parallel ? std::clamp<std::size_t>(std::size_t(units) / (8 * std::size_t(threads)), 1, 8)
                 : 8;
    plan plans[max_group];
    std::size_t first[max_group + 1] = {0};
    for (std::size_t i = 0; i < count; ++i) {
        const problem& g = gs[i];
        plan& p = plans[i];
        p.dot = !g.packed && g.rows <= dot_max_rows;
        if (p.dot) {
            p.items = (g.out + dot_chunk - 1) / dot_chunk;
        } else {
            p.panels = (g.out + nr - 1) / nr;
            p.per_item = per_item;
            p.panel_items = (p.panels + per_item - 1) / per_item;
            p.items = p.panel_items * ((g.rows + mc - 1) / mc);
        }
        first[i + 1] = first[i] + p.items;
    }
    for_items(long(first[count]), parallel, [&](long item) {
        std::size_t i = 0;
        while (std::size_t(item) >= first[i + 1])
            ++i;
        run_item(gs[i], plans[i], std::size_t(item) - first[i]);
    });
}

} // namespace sgemm
#else
inline constexpr bool has_fast_sgemm = false;
#endif

} // namespace actlens::kernels::detail
