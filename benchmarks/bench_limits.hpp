// benchmarks/bench_limits.hpp: the most this machine can do, measured where the benchmark runs (never
// quoted): the FP32 multiply-add peak of K threads, and the rate at which K threads read bytes of
// a mapped file. bench_kernels puts kernels against the first; bench_vs_llamacpp's `limits` turns
// both into the tokens/s that no runtime can pass on a model file (README "Against llama.cpp").
//
// Both are measured with the widest vectors the CPU has (cpuid at run time, as the library's kernels
// are chosen), whatever flags this file was compiled with: a peak measured with SSE2 in a build
// without -march=native would put AVX-512 kernels above 100% of it.
#pragma once

#include "bench_timing.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ACTLENS_BENCH_X86 1
#else
#define ACTLENS_BENCH_X86 0
#endif

namespace bench {

namespace limits_detail {

// Twelve independent accumulators: more than the multiply-add's latency (4 cycles) times the FMA
// pipes (2), so the loop runs at the pipes' rate. Returns the FMAs' lanes * 2 FLOPs per second.
// The loops below unroll the twelve: left as a loop, GCC at -O2 kept them in memory (70 instead of
// 230 GFLOP/s on one core).
template <class Step>
double fma_rate(long iterations, int lanes, Step step) {
    double best = 0;
    for (int rep = 0; rep < 6; ++rep) { // the first is a warm-up (the clock rises under load)
        const auto t0 = clock_type::now();
        step(iterations);
        const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        if (rep > 0) best = std::max(best, 2.0 * lanes * 12 * double(iterations) / s / 1e9);
    }
    return best;
}

#if ACTLENS_BENCH_X86
__attribute__((target("avx512f"))) inline float fma_loop_avx512(long iterations) {
    __m512 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iterations; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
    alignas(64) float out[16];
    __m512 total = _mm512_setzero_ps();
    for (int i = 0; i < 12; ++i) total = _mm512_add_ps(total, a[i]);
    _mm512_store_ps(out, total);
    return out[0];
}
__attribute__((target("avx2,fma"))) inline float fma_loop_avx2(long iterations) {
    __m256 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i) * 1e-3f);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iterations; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], x, y);
    alignas(32) float out[8];
    __m256 total = _mm256_setzero_ps();
    for (int i = 0; i < 12; ++i) total = _mm256_add_ps(total, a[i]);
    _mm256_store_ps(out, total);
    return out[0];
}
// One thread's bytes [p, end) read in 64-byte vectors (xor-ed, so that no load is dead), the line
// 4 KiB ahead asked for non-temporally as the decode kernels do (kernels/detail/rows_body.inc).
__attribute__((target("avx512f"))) inline std::uint64_t read_avx512(const unsigned char* p, const unsigned char* end) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (; p + 256 <= end; p += 256) {
        _mm_prefetch(reinterpret_cast<const char*>(p) + 4096, _MM_HINT_NTA);
        _mm_prefetch(reinterpret_cast<const char*>(p) + 4096 + 128, _MM_HINT_NTA);
        a = _mm512_xor_si512(a, _mm512_loadu_si512(p));
        b = _mm512_xor_si512(b, _mm512_loadu_si512(p + 64));
        c = _mm512_xor_si512(c, _mm512_loadu_si512(p + 128));
        d = _mm512_xor_si512(d, _mm512_loadu_si512(p + 192));
    }
    alignas(64) std::uint64_t out[8];
    _mm512_store_si512(out, _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
    std::uint64_t s = 0;
    for (std::uint64_t v : out) s ^= v;
    for (; p < end; ++p) s += *p;
    return s;
}
#endif

inline std::uint64_t read_plain(const unsigned char* p, const unsigned char* end) {
    std::uint64_t s = 0;
    for (; p + 8 <= end; p += 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        s ^= v;
    }
    for (; p < end; ++p) s += *p;
    return s;
}

inline std::uint64_t read_range(const unsigned char* p, const unsigned char* end) {
#if ACTLENS_BENCH_X86
    if (__builtin_cpu_supports("avx512f")) return read_avx512(p, end);
#endif
    return read_plain(p, end);
}

} // namespace limits_detail

/// FP32 multiply-add peak in GFLOP/s of `threads` threads running at once (AVX-512 where the CPU
/// has it, else AVX2 + FMA, else 0: no figure), the best of five runs after a warm-up.
inline double fma_peak_gflops(int threads = 1) {
#if ACTLENS_BENCH_X86
    const bool avx512 = __builtin_cpu_supports("avx512f");
    if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    std::vector<double> rates(static_cast<std::size_t>(threads));
    const auto run = [&](std::size_t t) {
        volatile float sink = 0;
        rates[t] = avx512 ? limits_detail::fma_rate(20'000'000, 16, [&](long n) { sink = sink + limits_detail::fma_loop_avx512(n); })
                          : limits_detail::fma_rate(20'000'000, 8, [&](long n) { sink = sink + limits_detail::fma_loop_avx2(n); });
    };
    std::vector<std::thread> workers;
    for (std::size_t t = 1; t < rates.size(); ++t) workers.emplace_back(run, t);
    run(0);
    for (auto& w : workers) w.join();
    double total = 0;
    for (double r : rates) total += r;
    return total;
#else
    (void)threads;
    return 0;
#endif
}

/// GB/s at which `threads` threads read the byte ranges once (each thread a contiguous share of
/// their total), best of `reps` passes after one that is not counted: the most a forward that
/// reads these bytes once per token could stream them at.
inline double read_gb_per_s(const std::vector<std::pair<const unsigned char*, std::size_t>>& ranges, int threads,
                            int reps = 8) {
    std::size_t total = 0;
    for (const auto& r : ranges) total += r.second;
    // shares[t]: the pieces of the ranges thread t reads.
    std::vector<std::vector<std::pair<const unsigned char*, std::size_t>>> shares(static_cast<std::size_t>(threads));
    std::size_t range = 0, offset = 0;
    for (int t = 0; t < threads; ++t) {
        std::size_t want = total / std::size_t(threads) + (t + 1 == threads ? total % std::size_t(threads) : 0);
        while (want > 0 && range < ranges.size()) {
            const std::size_t take = std::min(want, ranges[range].second - offset);
            shares[std::size_t(t)].emplace_back(ranges[range].first + offset, take);
            want -= take;
            offset += take;
            if (offset == ranges[range].second) ++range, offset = 0;
        }
    }
    std::vector<std::uint64_t> sinks(static_cast<std::size_t>(threads));
    const auto read_share = [&](std::size_t t) {
        for (const auto& piece : shares[t])
            sinks[t] += limits_detail::read_range(piece.first, piece.first + piece.second);
    };
    double best = 0;
    for (int rep = 0; rep <= reps; ++rep) {
        const auto t0 = clock_type::now();
        std::vector<std::thread> workers;
        for (std::size_t t = 1; t < shares.size(); ++t) workers.emplace_back(read_share, t);
        read_share(0);
        for (auto& w : workers) w.join();
        const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        if (rep > 0) best = std::max(best, double(total) / s / 1e9);
    }
    std::uint64_t all = 0;
    for (std::uint64_t v : sinks) all ^= v;
    if (all == 0x5eed) fmt::print(" "); // keeps the reads
    return best;
}

} // namespace bench
