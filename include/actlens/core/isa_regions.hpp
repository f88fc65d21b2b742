// actlens/core/isa_regions.hpp: compiling a region of code for one instruction set,
// whatever flags the translation unit has.
//
// ACTLENS_ISA_BEGIN_<SET> ... ACTLENS_ISA_END put a `target` attribute on every function declared
// between them (GCC: `#pragma GCC target`; Clang: `#pragma clang attribute`), lambdas and template
// instantiations included. Each region holds the code of one namespace, detail::avx512,
// detail::avx2 or detail::baseline (core/cpu.hpp picks one at run time), so that no two bodies
// compiled for different instruction sets share a mangled name (the one-definition rule holds
// when translation units built with and without -march=native are linked together).
//
// The baseline region removes the AVX family (FMA included) rather than adding anything: without
// FMA a compiler cannot contract a * b + c, so the baseline rounds the same way in every
// translation unit. A region's body may still be scheduled differently in two translation units
// (e.g. -march=native adds features the region does not mention); its arithmetic, written as explicit
// operations, is the same.
//
// A region's entry points are called from code compiled with the translation unit's flags and are
// marked ACTLENS_ISA_ENTRY (noinline): inlined into a caller with more features, the baseline
// could be contracted into FMAs after all.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#define ACTLENS_ISA_X86 1
#else
#define ACTLENS_ISA_X86 0
#endif

#define ACTLENS_ISA_STRINGIFY(x) #x

#if defined(__clang__)
#define ACTLENS_ISA_BEGIN(features)                                                                             \
    _Pragma(ACTLENS_ISA_STRINGIFY(clang attribute push(__attribute__((target(features))), apply_to = function)))
#define ACTLENS_ISA_END _Pragma("clang attribute pop")
#else
#define ACTLENS_ISA_BEGIN(features) _Pragma("GCC push_options") _Pragma(ACTLENS_ISA_STRINGIFY(GCC target(features)))
#define ACTLENS_ISA_END _Pragma("GCC pop_options")
#endif

#if ACTLENS_ISA_X86
#define ACTLENS_ISA_BEGIN_AVX512 ACTLENS_ISA_BEGIN("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#define ACTLENS_ISA_BEGIN_AVX2 ACTLENS_ISA_BEGIN("avx2,fma,f16c")
// AVX-512 with the bf16 and int8 dot products (vdpbf16ps, vpdpbusd): only the fast-precision
// kernels (kernels/detail/rows_fast.hpp), in detail::avx512_dot.
#define ACTLENS_ISA_BEGIN_AVX512_DOT                                                                            \
    ACTLENS_ISA_BEGIN("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,avx2,fma,f16c")
#define ACTLENS_ISA_BEGIN_BASELINE ACTLENS_ISA_BEGIN("no-avx,no-avx2,no-fma,no-fma4,no-avx512f")
#define ACTLENS_ISA_END_BASELINE ACTLENS_ISA_END
#else
// Elsewhere the baseline is the only set, compiled with the translation unit's flags.
#define ACTLENS_ISA_BEGIN_BASELINE
#define ACTLENS_ISA_END_BASELINE
#endif

#define ACTLENS_ISA_ENTRY __attribute__((noinline))

// ACTLENS_ISA_SELECT(path): the address of the function `path` (e.g. rowdot::forward_item) in the
// namespace of the instruction set the kernels use now (core/cpu.hpp's active_isa()): avx512::path,
// avx2::path or baseline::path, namespaces of the scope where it is written (each_isa.inc makes
// them). Off x86 only baseline::path exists, and is named alone. Needs core/cpu.hpp.
// ACTLENS_ISA_SELECT_DOT(path): avx512_dot::path where the CPU has AVX-512 with its bf16 and int8
// dot products and AVX-512 is in use, else baseline::path (the fast-precision kernels).
#if ACTLENS_ISA_X86
#define ACTLENS_ISA_SELECT(path) ::actlens::detail::select_for_isa(&avx512::path, &avx2::path, &baseline::path)
#define ACTLENS_ISA_SELECT_DOT(path) ::actlens::detail::select_dot(&avx512_dot::path, &baseline::path)
#else
#define ACTLENS_ISA_SELECT(path) (&baseline::path)
#define ACTLENS_ISA_SELECT_DOT(path) (&baseline::path)
#endif
