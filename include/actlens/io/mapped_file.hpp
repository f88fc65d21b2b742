// actlens/io/mapped_file.hpp: a read-only memory-mapped file, and a bounds-checked cursor over bytes.
//
// Every parser in actlens reads through byte_reader, which checks each read against the end of the
// buffer and throws actlens::error naming the file and the field; no parser indexes raw memory
// before its size has been validated.
#pragma once

#include <actlens/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace actlens::io {

/// A whole file mapped read-only. Move-only; unmaps on destruction. An empty file maps to size 0.
class mapped_file {
public:
    mapped_file() = default;

    /// Maps `path`; throws actlens::error (io.201) naming the path and the OS reason on failure.
    explicit mapped_file(const std::string& path) : m_path(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(errc::file_open, "cannot open '{}': {}", path, std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            fail(errc::file_open, "'{}' is not a regular file", path);
        }
        m_size = static_cast<std::size_t>(st.st_size);
        if (m_size > 0) {
            void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                fail(errc::file_open, "cannot map '{}': {}", path, std::strerror(e));
            }
            m_data = static_cast<const std::byte*>(p);
#if defined(MADV_HUGEPAGE)
            // Weights are multiplied where they are in this mapping, so every forward walks the page
            // tables of the whole file: from 2 MiB folios of the page cache (one page-table entry
            // each) the 1B benchmark's F16 decode ran 1.4x as fast as from 4 KiB pages, its prompts
            // 1.3x (README "Mapped rows against llama.cpp"). The hint asks the kernel's readahead for
            // such folios when it reads the file in; a hint only (pages already cached keep their
            // size, and a failure changes nothing).
            if (m_size >= huge_page) ::madvise(p, m_size, MADV_HUGEPAGE);
#endif
        }
        ::close(fd);
    }

    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    mapped_file(mapped_file&& other) noexcept { swap(other); }
    mapped_file& operator=(mapped_file&& other) noexcept {
        if (this != &other) {
            unmap();
            swap(other);
        }
        return *this;
    }
    ~mapped_file() { unmap(); }

    const std::byte* data() const noexcept { return m_data; }
    std::size_t size() const noexcept { return m_size; }
    const std::string& path() const noexcept { return m_path; }

    /// Asks the kernel to read the pages ahead (weights are read in full on the first forward).
    void prefetch() const noexcept {
        if (m_data) ::madvise(const_cast<std::byte*>(m_data), m_size, MADV_WILLNEED);
    }

    /// Enters every page of the file into the process's page tables now (reading what the page
    /// cache lacks); io::gguf_file::populate says why.
    void populate() const noexcept {
        if (!m_data) return;
#if defined(MADV_POPULATE_READ)
        if (::madvise(const_cast<std::byte*>(m_data), m_size, MADV_POPULATE_READ) == 0) return;
#endif
        // Kernels before Linux 5.14: one read per page faults it in (the same mapping, one trap each).
        volatile unsigned char sink = 0;
        for (std::size_t at = 0; at < m_size; at += 4096) sink = sink + static_cast<unsigned char>(m_data[at]);
    }

private:
    void unmap() noexcept {
        if (m_data) ::munmap(const_cast<std::byte*>(m_data), m_size);
        m_data = nullptr;
        m_size = 0;
    }
    void swap(mapped_file& other) noexcept {
        std::swap(m_data, other.m_data);
        std::swap(m_size, other.m_size);
        std::swap(m_path, other.m_path);
    }

    static constexpr std::size_t huge_page = std::size_t(2) << 20;

    const std::byte* m_data = nullptr;
    std::size_t m_size = 0;
    std::string m_path;
};

/// A cursor over a byte buffer with checked little-endian reads. `source` names the buffer in errors.
class byte_reader {
public:
    byte_reader(const std::byte* data, std::size_t size, std::string source)
        : m_data(data), m_size(size), m_source(std::move(source)) {}

    std::size_t offset() const noexcept { return m_offset; }
    std::size_t remaining() const noexcept { return m_size - m_offset; }
    bool at_end() const noexcept { return m_offset == m_size; }
    const std::string& source() const noexcept { return m_source; }

    /// Reads a trivially copyable value (host order: every supported host is little-endian).
    template <class V>
    V read(const char* field) {
        static_assert(std::is_trivially_copyable_v<V>, "read() takes plain values");
        V value;
        std::memcpy(&value, take(sizeof(V), field), sizeof(V));
        return value;
    }

    /// Returns a pointer to the next `n` bytes and advances past them.
    const std::byte* take(std::size_t n, const char* field) {
        if (n > remaining())
            fail(errc::file_truncated, "'{}' is truncated: field '{}' needs {} bytes at offset {}, {} remain",
                 m_source, field, n, m_offset, remaining());
        const std::byte* p = m_data + m_offset;
        m_offset += n;
        return p;
    }

    /// Moves to an absolute offset within the buffer.
    void seek(std::size_t offset, const char* field) {
        if (offset > m_size)
            fail(errc::file_truncated, "'{}' is truncated: field '{}' at offset {} is past the end ({} bytes)",
                 m_source, field, offset, m_size);
        m_offset = offset;
    }

private:
    const std::byte* m_data;
    std::size_t m_size;
    std::size_t m_offset = 0;
    std::string m_source;
};

/// a * b, or actlens::error (io.205) naming `what` when the product overflows.
inline std::size_t checked_mul(std::size_t a, std::size_t b, const char* what) {
    if (a != 0 && b > SIZE_MAX / a) fail(errc::size_overflow, "size of '{}' overflows ({} x {})", what, a, b);
    return a * b;
}

/// a + b, or actlens::error (io.205) naming `what` when the sum overflows.
inline std::size_t checked_add(std::size_t a, std::size_t b, const char* what) {
    if (b > SIZE_MAX - a) fail(errc::size_overflow, "size of '{}' overflows ({} + {})", what, a, b);
    return a + b;
}

} // namespace actlens::io
