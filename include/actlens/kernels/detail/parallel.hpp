// actlens/kernels/detail/parallel.hpp: how the dense kernels use the caller's OpenMP team.
//
// The kernels never start threads of their own and never change process-wide settings: they run
// on the team of the calling thread (omp_get_max_threads()), and on one thread when called from
// inside a parallel region or built without OpenMP.
#pragma once

#include <algorithm>
#include <cstddef>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace actlens::kernels::detail {

/// Threads the calling code may use (its OpenMP team size), 1 without OpenMP.
inline int gemm_threads() noexcept {
#if defined(_OPENMP)
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/// Sets the calling thread's OpenMP team size for a scope and restores it on exit; 0 leaves it as
/// it is. omp_set_num_threads changes the nthreads ICV of the calling thread only (OpenMP 5.0,
/// section 2.6.1), so request threads each running a generation with threads = 1 do not
/// oversubscribe the cores, and neither affects the others. Without OpenMP it does nothing.
class scoped_threads {
public:
    explicit scoped_threads(int threads) noexcept {
#if defined(_OPENMP)
        if (threads > 0) {
            m_previous = omp_get_max_threads();
            omp_set_num_threads(threads);
        }
#else
        (void)threads;
#endif
    }
    ~scoped_threads() {
#if defined(_OPENMP)
        if (m_previous > 0) omp_set_num_threads(m_previous);
#endif
    }
    scoped_threads(const scoped_threads&) = delete;
    scoped_threads& operator=(const scoped_threads&) = delete;

private:
    [[maybe_unused]] int m_previous = 0; // unused without OpenMP
};

/// Runs body(i) for i < items, spread over the OpenMP team (dynamic schedule) when `parallel`,
/// else in a plain loop on the calling thread (no OpenMP call at all: small products stay cheap).
template <class Body>
void for_items(long items, bool parallel, Body&& body) {
#if defined(_OPENMP)
    if (parallel && items > 1) {
#pragma omp parallel for schedule(dynamic, 1)
        for (long i = 0; i < items; ++i)
            body(i);
        return;
    }
#else
    (void)parallel;
#endif
    for (long i = 0; i < items; ++i)
        body(i);
}

/// The calling thread's index in its OpenMP team (0 outside a parallel region or without OpenMP):
/// lets a parallel body pick its own slice of a scratch buffer.
inline int thread_index() noexcept {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/// fn(offset, length) over [0, count) in chunks of 16 Ki elements, on the OpenMP team when the
/// sweep is long enough (>= 256 Ki elements, ~0.1 ms of vectorised GELU) to pay for the fork.
template <class Fn>
void for_chunks(std::size_t count, Fn&& fn) {
    constexpr std::size_t chunk = std::size_t(1) << 14;
    const long chunks = static_cast<long>((count + chunk - 1) / chunk);
    for_items(chunks, count >= (std::size_t(1) << 18), [&](long i) {
        const std::size_t begin = static_cast<std::size_t>(i) * chunk;
        fn(begin, std::min(chunk, count - begin));
    });
}

} // namespace actlens::kernels::detail
