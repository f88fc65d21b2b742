// actlens/core/memory.hpp: the one place actlens takes large blocks of memory from the system.
//
// On these machines touching a fresh 4 KiB page costs ~15 µs (measured in a
// 2-vCPU VM; bare metal is ~100x cheaper), so the first use
// of a 100 MB workspace would spend ~0.4 s in page faults. Blocks of 2 MiB and more are therefore
// 2 MiB-aligned and marked MADV_HUGEPAGE: with transparent huge pages in "madvise" mode (the
// default here) the kernel then backs them with 2 MiB pages, one fault each. And the one place
// that gives pages of a mapped file back (drop_file_pages).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

/// Hands the whole pages inside [p, p + bytes) of a read-only file mapping back to the system: they
/// leave the process's resident memory and are read again from the file on the next access. Only
/// for memory mapped read-only from a file (on anonymous memory it would zero the pages). Used once
/// weights have been packed from a mapped file, so that resident memory does not hold both.
inline void drop_file_pages(const void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_DONTNEED)
    const std::size_t page = 4096;
    const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
    (void)p;
    (void)bytes;
#endif
}

} // namespace actlens::detail
