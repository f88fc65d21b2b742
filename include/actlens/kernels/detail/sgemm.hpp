// actlens/kernels/detail/sgemm.hpp: the float matrix product (see kernels/gemm.hpp for the design:
// register tiles, K blocks of 256, row blocks of 128, weights read as K-major panels of 48 output
// columns, work items taken dynamically by the caller's OpenMP team), compiled for each instruction
// set (kernels/detail/sgemm_body.inc in detail::avx512, detail::avx2 and detail::baseline) and run
// with the one core/cpu.hpp chose. The panel layout is the same for every instruction set, so weights
// packed once serve all of them.
#pragma once

#include <actlens/core/cpu.hpp>
#include <actlens/core/dtype.hpp>
#include <actlens/kernels/detail/isa_vectors.hpp>
#include <actlens/kernels/detail/parallel.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace actlens::kernels::detail {

/// Whether float products have kernels of their own (packed_weight packs): in every build, since
/// the kernels are compiled for each instruction set whatever the flags.
inline constexpr bool has_fast_sgemm = true;

namespace sgemm {

constexpr std::size_t nr = 48;  // columns of a packed panel
constexpr std::size_t kc = 256; // K block: a 256 x 48 panel is 48 KiB
constexpr std::size_t mc = 128; // M block: A block 128 x 256 = 128 KiB (L2)

struct problem {
    const float* x;
    std::size_t ldx, rows, in;
    const float* w;      // unpacked weights [out, in] (when `packed` is null)
    const void* packed;  // packed panels [out / 48][in][48] (see packed_weight), or null
    dtype packed_type;   // their elements: f32, or f16 / bf16 bits widened to f32 in registers
    std::size_t out;
    const float* bias;
    float* y;
    std::size_t ldy;
    bool accumulate;
};

/// The element type of panels of type P: float, or the bits of an f16 or bf16.
template <dtype P>
using panel_element = std::conditional_t<P == dtype::f32, float, std::uint16_t>;

// Panel p (48 output columns, [in][48]) of a packed problem whose panels have type P.
template <dtype P>
inline const panel_element<P>* panel(const problem& g, std::size_t p) noexcept {
    return static_cast<const panel_element<P>*>(g.packed) + p * g.in * nr;
}

// How one product is cut into work items: runs of `per_item` panels (48 columns) times row blocks
// of `mc` rows, or, on the dot-product path (few rows, unpacked weights), runs of `dot_chunk` outputs.
struct plan {
    bool dot = false;
    std::size_t panels = 0, per_item = 1, panel_items = 0, items = 0;
};

constexpr std::size_t dot_max_rows = 4; // rows of unpacked weights that take the dot-product path
constexpr std::size_t dot_chunk = 64;   // outputs per work item on the dot-product path
constexpr std::size_t max_group = 8;    // products per parallel job (see run)

// Runs `count` (<= max_group) products as one job: a single parallel region whose work items are
// those of every product, so that e.g. the q, k and v projections cost one fork/join.
// item(problem, plan, index) computes one work item. The cut depends on the shapes and the thread
// count only; each element's sum never depends on it.
template <class Item>
void run_plans(const problem* gs, std::size_t count, Item item) {
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
        parallel ? std::clamp<std::size_t>(std::size_t(units) / (8 * std::size_t(threads)), 1, 8) : 8;
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
    for_items(long(first[count]), parallel, [&](long index) {
        std::size_t i = 0;
        while (std::size_t(index) >= first[i + 1]) ++i;
        item(gs[i], plans[i], std::size_t(index) - first[i]);
    });
}

} // namespace sgemm

} // namespace actlens::kernels::detail

namespace actlens::kernels {
#define ACTLENS_ISA_BODY <actlens/kernels/detail/sgemm_body.inc>
#include <actlens/kernels/detail/each_isa.inc>
} // namespace actlens::kernels

namespace actlens::kernels::detail {

namespace sgemm {

/// y (=|+=) x w^T + bias for `count` (<= max_group) products, with the kernels of active_isa().
inline void run(const problem* gs, std::size_t count) { ACTLENS_ISA_SELECT(gemm::run)(gs, count); }

/// Transposes a block of `cols` (<= 48) rows of w (row stride ldw) by `k` (<= kc) columns into the
/// panel layout dst[k][48] (64-byte aligned), zero-filling the columns past `cols`.
inline void pack_block(const float* w, std::size_t ldw, std::size_t cols, std::size_t k, float* dst) {
    ACTLENS_ISA_SELECT(gemm::pack)(w, ldw, cols, k, dst);
}

} // namespace sgemm

} // namespace actlens::kernels::detail
