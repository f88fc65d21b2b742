// actlens/kernels/packed_weight.hpp: a linear layer's weights repacked once for the fast float
// product (kernels/gemm.hpp): panels of 48 output columns stored K-major, so that the kernel reads
// them with aligned, contiguous loads. model/weights.hpp packs a whole model into one buffer.
#pragma once

#include <actlens/core/memory.hpp>
#include <actlens/kernels/detail/sgemm.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace actlens::kernels {

/// A linear layer's weights [out, in] (row-major) in the layout of the fast float kernel: panels of
/// `panel_width` output columns, each stored K-major ([in][panel_width], zero-padded past `out`).
/// Built once (O(out * in), one extra copy of the weights), then immutable: const use from several
/// threads is safe, and copies share the packed buffer. The layout is the same for every instruction
/// set the float kernels are compiled for (kernels/detail/sgemm.hpp). For double it packs nothing
/// and refers to the original weights, which must then outlive it. Packing reads the weights once: later writes to them are not seen.
template <class T>
class packed_weight {
public:
    /// Output columns per panel (the width of the register tile).
    static constexpr std::size_t panel_width = 48;
    static_assert(panel_width == detail::sgemm::nr, "the kernels read panels of this width");

    /// Elements the packed layout of w[out, in] takes; 0 where nothing is packed.
    static std::size_t packed_size(std::size_t out, std::size_t in) noexcept;

    packed_weight() = default;
    /// Packs w[out, in] into a buffer of its own.
    packed_weight(const T* w, std::size_t out, std::size_t in);
    /// Packs w[out, in] into `storage` (packed_size(out, in) elements, 64-byte aligned) and keeps
    /// `owner` alive with it: lets a model pack all its weights into one buffer.
    packed_weight(const T* w, std::size_t out, std::size_t in, T* storage,
                  std::shared_ptr<const void> owner);

    std::size_t out() const noexcept { return m_out; }
    std::size_t in() const noexcept { return m_in; }
    bool empty() const noexcept { return m_out == 0; }
    /// True when the weights were repacked (float).
    bool is_packed() const noexcept { return m_packed != nullptr; }
    /// The original weights [out, in] (used by the fallback; not owned).
    const T* source() const noexcept { return m_source; }
    /// Panel p, [in][panel_width], 64-byte aligned; only when is_packed().
    const T* panel(std::size_t p) const noexcept { return m_packed + p * m_in * panel_width; }

private:
    void pack(const T* w, T* storage);

    std::shared_ptr<const void> m_owner;
    const T* m_packed = nullptr;
    const T* m_source = nullptr;
    std::size_t m_out = 0, m_in = 0;
};

/// A buffer of `elements` T for packed weights, from detail::allocate_aligned (huge pages from
/// 2 MiB up: 0.5 GB of weights would otherwise spend seconds faulting). Throws std::bad_alloc.
template <class T>
std::shared_ptr<T> allocate_packed_storage(std::size_t elements);


template <class T>
std::shared_ptr<T> allocate_packed_storage(std::size_t elements) {
    if (elements > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
    return std::shared_ptr<T>(static_cast<T*>(actlens::detail::allocate_aligned(elements * sizeof(T))),
                              [](T* p) { std::free(p); });
}

template <class T>
std::size_t packed_weight<T>::packed_size(std::size_t out, std::size_t in) noexcept {
    if constexpr (detail::has_fast_sgemm && std::is_same_v<T, float>)
        return (out + panel_width - 1) / panel_width * panel_width * in;
    else
        return 0;
}

template <class T>
packed_weight<T>::packed_weight(const T* w, std::size_t out, std::size_t in)
    : m_source(w), m_out(out), m_in(in) {
    const std::size_t n = packed_size(out, in);
    if (n == 0) return;
    std::shared_ptr<T> storage = allocate_packed_storage<T>(n);
    T* dst = storage.get();
    m_owner = std::move(storage);
    pack(w, dst);
}

template <class T>
packed_weight<T>::packed_weight(const T* w, std::size_t out, std::size_t in, T* storage,
                                std::shared_ptr<const void> owner)
    : m_source(w), m_out(out), m_in(in) {
    if (packed_size(out, in) == 0) return;
    m_owner = std::move(owner);
    pack(w, storage);
}

template <class T>
void packed_weight<T>::pack(const T* w, T* dst) {
    if constexpr (std::is_same_v<T, float>) {
        const std::size_t panels = (m_out + panel_width - 1) / panel_width;
        for (std::size_t p = 0; p < panels; ++p) {
            const std::size_t col0 = p * panel_width, cols = std::min(panel_width, m_out - col0);
            for (std::size_t k0 = 0; k0 < m_in; k0 += detail::sgemm::kc)
                detail::sgemm::pack_block(w + col0 * m_in + k0, m_in, cols,
                                          std::min(detail::sgemm::kc, m_in - k0),
                                          dst + p * m_in * panel_width + k0 * panel_width);
        }
        m_packed = dst;
    } else {
        (void)w;
        (void)dst;
    }
}

} // namespace actlens::kernels
