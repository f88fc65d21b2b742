// actlens/core/memory.hpp: the one place actlens takes large blocks of memory from the system.
//
// On these machines touching a fresh 4 KiB page costs ~15 µs (measured in a
// 2-vCPU VM; bare metal is ~100x cheaper), so the first use
// of a 100 MB workspace would spend ~0.4 s in page faults. Blocks of 2 MiB and more are therefore
// 2 MiB-aligned and marked MADV_HUGEPAGE: with transparent huge pages in "madvise" mode (the
// default here) the kernel then backs them with 2 MiB pages, one fault each.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace actlens::detail {

/// Allocates at least `bytes` bytes aligned to 64 (2 MiB for blocks of 2 MiB and more); free
/// with std::free. Throws std::bad_alloc.
inline void* allocate_aligned(std::size_t bytes) {
    constexpr std::size_t huge = std::size_t(1) << 21, line = 64;
    if (bytes > std::size_t(-1) - huge) throw std::bad_alloc();
    const std::size_t align = bytes >= huge ? huge : line;
    bytes = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align; // aligned_alloc wants a multiple
    void* p = std::aligned_alloc(align, bytes);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == huge) ::madvise(p, bytes, MADV_HUGEPAGE); // a hint: failure is harmless
#endif
    return p;
}

} // namespace actlens::detail
