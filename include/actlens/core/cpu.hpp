// actlens/core/cpu.hpp: which instruction set the float kernels run with, chosen once at run time.
//
// Every build carries the float GEMM and input-gradient kernels for each instruction set below,
// whatever the translation unit's -m flags (core/isa_regions.hpp), and the first product
// picks the best one this CPU has. The environment variable ACTLENS_ISA (read once, at that first
// use) can force a lower one: `avx2` or `baseline` (README "CPU instruction sets"); tests use
// set_isa. The AVX-512 and AVX2 kernels give bitwise the same results (the same FMAs in the same
// order); the baseline has no FMA and rounds each product before adding it.
#pragma once

#include <actlens/error.hpp>

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace actlens {

/// Instruction sets of the float kernels, lowest first.
enum class isa {
    baseline, ///< no SIMD beyond the target's default (SSE2 on x86-64), no FMA
    avx2,     ///< AVX2 + FMA + F16C
    avx512,   ///< AVX-512 F, BW, VL and DQ, with AVX2 + FMA + F16C
};

/// "baseline", "avx2" or "avx512": the spelling ACTLENS_ISA accepts.
const char* isa_name(isa set) noexcept;

/// Whether this CPU (and its operating system, which must save the wider registers) can run `set`.
bool cpu_supports(isa set) noexcept;

/// The highest instruction set this CPU supports.
isa best_isa() noexcept;

/// The instruction set the kernels use: ACTLENS_ISA if set, else best_isa(). Decided on the first
/// call (thread-safe) and cached; throws actlens::error when ACTLENS_ISA names an unknown set or one
/// this CPU lacks (and again on the next call: nothing is cached then).
isa active_isa();

/// Makes the kernels use `set` from now on (for tests and benchmarks; not meant to race with running
/// products). Throws actlens::error when the CPU lacks it.
void set_isa(isa set);

namespace detail {

/// The set an ACTLENS_ISA value asks for (null: not set, the best one). Throws actlens::error naming
/// the variable and the value when it is unknown or this CPU lacks it.
isa isa_from_environment(const char* value);

/// F16C (the f16 <-> f32 conversion instructions); core/dtype.hpp's bulk converters use them when
/// present. Not part of `isa`: they give the same bits as the plain loops.
bool cpu_has_f16c() noexcept;

/// AVX-512 BF16 (vdpbf16ps) and AVX-512 VNNI (vpdpbusd), which the fast-precision kernels use
/// (kernels/gemm_rows.hpp) when the AVX-512 kernels are in use; elsewhere they compute the same
/// operands with plain code.
bool cpu_has_dot_products() noexcept;

/// `avx512`, `avx2` or `baseline` as active_isa() says: what ACTLENS_ISA_SELECT returns.
template <class F>
F select_for_isa(F avx512, F avx2, F baseline);

/// `dot` when active_isa() is avx512 and cpu_has_dot_products(), else `plain`: ACTLENS_ISA_SELECT_DOT.
template <class F>
F select_dot(F dot, F plain);

inline std::atomic<isa>& isa_slot() {
    // A function-local static: initialised on first use, thread-safe, no global constructor.
    static std::atomic<isa> slot{isa_from_environment(std::getenv("ACTLENS_ISA"))};
    return slot;
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline const char* isa_name(isa set) noexcept {
    switch (set) {
    case isa::avx512: return "avx512";
    case isa::avx2: return "avx2";
    default: return "baseline";
    }
}

namespace detail {

/// What cpuid and the OS's register saving (XCR0, read with xgetbv) say, read once. Plain cpuid
/// rather than __builtin_cpu_supports, whose data (__cpu_model) lives in the static libgcc: a JIT
/// such as clang-repl (the notebooks) cannot resolve it.
struct cpu_features {
    bool avx = false, avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
    bool avx512bf16 = false, avx512vnni = false;
};

inline cpu_features read_cpu_features() noexcept {
    cpu_features f;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c & bit_OSXSAVE) != 0;
    const unsigned leaf1_ecx = c;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    }
    const bool ymm_saved = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
    const bool zmm_saved = ymm_saved && (xcr0 & 0xe0) == 0xe0; // opmask, upper ZMM halves, ZMM16-31
    f.avx = ymm_saved && (leaf1_ecx & bit_AVX) != 0;
    f.fma = f.avx && (leaf1_ecx & bit_FMA) != 0;
    f.f16c = f.avx && (leaf1_ecx & bit_F16C) != 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = f.avx && (b & bit_AVX2) != 0;
        f.avx512f = zmm_saved && (b & bit_AVX512F) != 0;
        f.avx512bw = zmm_saved && (b & bit_AVX512BW) != 0;
        f.avx512vl = zmm_saved && (b & bit_AVX512VL) != 0;
        f.avx512dq = zmm_saved && (b & bit_AVX512DQ) != 0;
        f.avx512vnni = zmm_saved && (c & (1u << 11)) != 0; // leaf 7.0 ECX bit 11
        if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
            f.avx512bf16 = zmm_saved && (a & (1u << 5)) != 0; // leaf 7.1 EAX bit 5
    }
#endif
    return f;
}

inline const cpu_features& cpu() noexcept {
    static const cpu_features features = read_cpu_features(); // thread-safe, no global constructor
    return features;
}

} // namespace detail

inline bool detail::cpu_has_f16c() noexcept { return cpu().f16c; }

inline bool detail::cpu_has_dot_products() noexcept { return cpu().avx512bf16 && cpu().avx512vnni; }

inline bool cpu_supports(isa set) noexcept {
    const detail::cpu_features& f = detail::cpu();
    const bool avx2 = f.avx2 && f.fma && f.f16c;
    switch (set) {
    case isa::avx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    case isa::avx2: return avx2;
    default: return true;
    }
}

inline isa best_isa() noexcept {
    for (isa set : {isa::avx512, isa::avx2})
        if (cpu_supports(set)) return set;
    return isa::baseline;
}

inline isa detail::isa_from_environment(const char* value) {
    if (!value) return best_isa();
    const std::string v = value;
    for (isa set : {isa::avx512, isa::avx2, isa::baseline}) {
        if (v != isa_name(set)) continue;
        if (!cpu_supports(set))
            fail(errc::invalid_argument, "ACTLENS_ISA={}: this CPU does not support it (the best it has is {})", v,
                 isa_name(best_isa()));
        return set;
    }
    fail(errc::invalid_argument, "ACTLENS_ISA={}: unknown instruction set (expected avx512, avx2 or baseline)", v);
}

inline isa active_isa() { return detail::isa_slot().load(std::memory_order_relaxed); }

inline void set_isa(isa set) {
    if (!cpu_supports(set))
        fail(errc::invalid_argument, "set_isa({}): this CPU does not support it (the best it has is {})",
             isa_name(set), isa_name(best_isa()));
    detail::isa_slot().store(set, std::memory_order_relaxed);
}

template <class F>
F detail::select_for_isa(F avx512, F avx2, F baseline) {
    switch (active_isa()) {
    case isa::avx512: return avx512;
    case isa::avx2: return avx2;
    default: return baseline;
    }
}

template <class F>
F detail::select_dot(F dot, F plain) {
    return active_isa() == isa::avx512 && cpu_has_dot_products() ? dot : plain;
}

} // namespace actlens
