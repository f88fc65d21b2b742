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

inline bool detail::cpu_has_f16c() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    static const bool has = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        // F16C works on ymm registers: the OS must save them, which __builtin_cpu_supports("avx") checks.
        __builtin_cpu_init();
        return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0 && __builtin_cpu_supports("avx");
    }();
    return has;
#else
    return false;
#endif
}

inline bool cpu_supports(isa set) noexcept {
#if defined(__x86_64__) || defined(__i386__)
    // GCC's and Clang's __builtin_cpu_supports check the OS's register saving (XCR0) as well.
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_has_f16c();
    switch (set) {
    case isa::avx512:
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    case isa::avx2: return avx2;
    default: return true;
    }
#else
    return set == isa::baseline;
#endif
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

} // namespace actlens
