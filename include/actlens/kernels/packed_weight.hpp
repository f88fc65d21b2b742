// actlens/kernels/packed_weight.hpp: a linear layer's weights repacked once for the fast float
// product (kernels/gemm.hpp): panels of 48 output columns stored K-major, so that the kernel reads
// them with aligned, contiguous loads. model/weights.hpp packs a whole model into one buffer.
//
// Panels keep the element type of the weights they were packed from: f32, or the bits of f16 or
// bf16 (half the memory and half the bytes a decode step streams), which the kernels widen to f32
// in registers (exactly) and multiply in f32. So a product with 16-bit panels has the same bits as
// the product with f32 panels of the same rounded weights, on every instruction set and thread count.
//
// A packed_weight can also refer to weights left where they are, in their stored rows (mapped():
// f32, f16, bf16 or ggml's quantised blocks, e.g. in a mapped GGUF file): nothing is packed, and
// kernels::linear multiplies with the rows in place (kernels/gemm_rows.hpp). mapped_transpose()
// describes W^T with W's rows, for the backward's input gradients (model/backward_weights.hpp).
#pragma once

#include <actlens/core/dtype.hpp>
#include <actlens/core/memory.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/detail/sgemm.hpp>
#include <actlens/kernels/precision.hpp>
#include <actlens/kernels/weight_format.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace actlens::kernels {

/// A linear layer's weights [out, in] (row-major) in the layout of the fast float kernel: panels of
/// `panel_width` output columns, each stored K-major ([in][panel_width], zero-padded past `out`), with
/// the elements of the weights' own type (f32, f16 or bf16 bits; see the top of this header).
/// Built once (O(out * in), one copy of the weights, spread over the caller's OpenMP team when
/// large), then immutable: const use from several threads is safe, and copies share the packed
/// buffer. The layout is the same for every instruction set the float kernels are compiled for
/// (kernels/detail/sgemm.hpp). For double it packs nothing and refers to the original weights, which
/// must then outlive it. Packing reads the weights once: later writes to them are not seen.
template <class T>
class packed_weight {
public:
    /// Output columns per panel (the width of the register tile).
    static constexpr std::size_t panel_width = 48;
    static_assert(panel_width == detail::sgemm::nr, "the kernels read panels of this width");

    /// Whether weights with elements of type `e` can be packed for T: f32, f16 and bf16 for float.
    static constexpr bool packs(dtype e) noexcept;
    /// Elements the packed layout of w[out, in] takes (f32 panels); 0 where nothing is packed.
    static std::size_t packed_size(std::size_t out, std::size_t in) noexcept;
    /// Bytes the packed layout of w[out, in] with elements of type `e` takes; 0 where nothing is packed.
    static std::size_t packed_bytes(std::size_t out, std::size_t in, dtype e) noexcept;

    packed_weight() = default;
    /// Packs w[out, in] into a buffer of its own.
    packed_weight(const T* w, std::size_t out, std::size_t in);
    /// Packs w[out, in] into `storage` (packed_size(out, in) elements, 64-byte aligned) and keeps
    /// `owner` alive with it: lets a model pack all its weights into one buffer.
    packed_weight(const T* w, std::size_t out, std::size_t in, T* storage,
                  std::shared_ptr<const void> owner);
    /// Packs w[out, in], whose elements have type `e` (packs(e); any alignment, e.g. a tensor of a
    /// mapped file), into panels of that type in `storage` (packed_bytes(out, in, e) bytes, 64-byte
    /// aligned), keeping `owner` alive with it. source() is then null unless e is f32.
    packed_weight(const void* w, dtype e, std::size_t out, std::size_t in, void* storage,
                  std::shared_ptr<const void> owner);

    /// W[out, in] stored as `out` rows of `format` at `rows` (any alignment; a quantised format
    /// needs `in` to be a multiple of its block), used in place; `owner` keeps them alive (e.g. the
    /// mapped file). O(1): nothing is read.
    static packed_weight mapped(const void* rows, weight_format format, std::size_t out, std::size_t in,
                                std::shared_ptr<const void> owner);
    /// W^T [in, out] where W[out, in] is stored as mapped() stores it: kernels::linear with it
    /// computes y = x W (the input gradient of a product with W), reading W's rows in place.
    static packed_weight mapped_transpose(const void* rows, weight_format format, std::size_t out, std::size_t in,
                                          std::shared_ptr<const void> owner);

    std::size_t out() const noexcept { return m_out; }
    std::size_t in() const noexcept { return m_in; }
    bool empty() const noexcept { return m_out == 0; }
    /// True when the weights were repacked (float).
    bool is_packed() const noexcept { return m_packed != nullptr; }
    /// The panels' element type: f32, f16 or bf16.
    dtype element_type() const noexcept { return m_type; }
    /// True when the weights are used in place in their rows (mapped(), mapped_transpose()).
    bool is_mapped() const noexcept { return m_rows != nullptr; }
    /// True for mapped_transpose(): out() and in() are those of W^T, rows() holds W's rows.
    bool is_transposed() const noexcept { return m_transposed; }
    /// How kernels::linear rounds the activations multiplied with these weights (kernels/precision.hpp;
    /// precision::exact unless set). Not safe to change while a product with this weight runs.
    kernels::precision precision_mode() const noexcept { return m_precision; }
    void set_precision(kernels::precision mode) noexcept { m_precision = mode; }
    /// The stored rows of a mapped weight (else null), and their format.
    const void* rows() const noexcept { return m_rows; }
    weight_format format() const noexcept { return m_format; }
    /// The original f32 weights [out, in] (used by the fallback; not owned); null for 16-bit panels.
    const T* source() const noexcept { return m_source; }
    /// The first panel, 64-byte aligned; panel p is at element p * in * panel_width of it.
    const void* panels() const noexcept { return m_packed; }
    /// Panel p, [in][panel_width], 64-byte aligned; only when is_packed() with f32 elements.
    const T* panel(std::size_t p) const noexcept {
        return static_cast<const T*>(m_packed) + p * m_in * panel_width;
    }

private:
    void pack(const void* w, void* storage);

    std::shared_ptr<const void> m_owner;
    const void* m_packed = nullptr;
    const void* m_rows = nullptr;
    weight_format m_format = weight_format::f32;
    bool m_transposed = false;
    const T* m_source = nullptr;
    std::size_t m_out = 0, m_in = 0;
    dtype m_type = dtype::f32;
    kernels::precision m_precision = kernels::precision::exact;
};

/// A buffer of `elements` T for packed weights, from detail::allocate_aligned (huge pages from
/// 2 MiB up: 0.5 GB of weights would otherwise spend seconds faulting). Throws std::bad_alloc.
template <class T>
std::shared_ptr<T> allocate_packed_storage(std::size_t elements);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

template <class T>
std::shared_ptr<T> allocate_packed_storage(std::size_t elements) {
    if (elements > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
    return std::shared_ptr<T>(static_cast<T*>(actlens::detail::allocate_aligned(elements * sizeof(T))),
                              [](T* p) { std::free(p); });
}

namespace detail {

// Transposes a block of `cols` (<= 48) rows of 16-bit values (row stride ldw elements, any
// alignment) by `k` columns into the panel layout dst[k][48], zero-filling the columns past `cols`.
inline void pack_block_16(const unsigned char* w, std::size_t ldw, std::size_t cols, std::size_t k,
                          std::uint16_t* dst) noexcept {
    constexpr std::size_t nr = sgemm::nr;
    for (std::size_t j = 0; j < cols; ++j) {
        const unsigned char* row = w + j * ldw * 2;
        for (std::size_t p = 0; p < k; ++p) std::memcpy(dst + p * nr + j, row + 2 * p, 2);
    }
    for (std::size_t p = 0; p < k; ++p)
        for (std::size_t j = cols; j < nr; ++j) dst[p * nr + j] = 0;
}

} // namespace detail

template <class T>
constexpr bool packed_weight<T>::packs(dtype e) noexcept {
    return detail::has_fast_sgemm && std::is_same_v<T, float> &&
           (e == dtype::f32 || e == dtype::f16 || e == dtype::bf16);
}

template <class T>
std::size_t packed_weight<T>::packed_size(std::size_t out, std::size_t in) noexcept {
    return packed_bytes(out, in, dtype::f32) / sizeof(T);
}

template <class T>
std::size_t packed_weight<T>::packed_bytes(std::size_t out, std::size_t in, dtype e) noexcept {
    if (!packs(e)) return 0;
    return (out + panel_width - 1) / panel_width * panel_width * in * dtype_size(e);
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
packed_weight<T>::packed_weight(const void* w, dtype e, std::size_t out, std::size_t in, void* storage,
                                std::shared_ptr<const void> owner)
    : m_out(out), m_in(in), m_type(e) {
    if (e == dtype::f32) m_source = static_cast<const T*>(w);
    if (packed_bytes(out, in, e) == 0) return;
    m_owner = std::move(owner);
    pack(w, storage);
}

template <class T>
packed_weight<T> packed_weight<T>::mapped(const void* rows, weight_format format, std::size_t out, std::size_t in,
                                          std::shared_ptr<const void> owner) {
    static_assert(std::is_same_v<T, float>, "weights in their rows are multiplied by the float kernels");
    packed_weight p;
    p.m_rows = rows;
    p.m_format = format;
    p.m_out = out;
    p.m_in = in;
    p.m_owner = std::move(owner);
    if (format == weight_format::f32) p.m_source = static_cast<const T*>(rows);
    return p;
}

template <class T>
packed_weight<T> packed_weight<T>::mapped_transpose(const void* rows, weight_format format, std::size_t out,
                                                    std::size_t in, std::shared_ptr<const void> owner) {
    packed_weight p = mapped(rows, format, in, out, std::move(owner));
    p.m_transposed = true;
    p.m_source = nullptr;
    return p;
}

template <class T>
void packed_weight<T>::pack(const void* w, void* dst) {
    if constexpr (std::is_same_v<T, float>) {
        using detail::sgemm::kc;
        const std::size_t panels = (m_out + panel_width - 1) / panel_width, in = m_in, out = m_out;
        const dtype type = m_type;
        // Panels are independent: large weights are packed by the caller's team (a model's load).
        const bool parallel = detail::gemm_threads() > 1 && out * in >= (std::size_t(1) << 18);
        detail::for_items(long(panels), parallel, [=](long item) {
            const std::size_t p = std::size_t(item), col0 = p * panel_width;
            const std::size_t cols = std::min(panel_width, out - col0);
            for (std::size_t k0 = 0; k0 < in; k0 += kc) {
                const std::size_t k = std::min(kc, in - k0), at = p * in * panel_width + k0 * panel_width;
                if (type == dtype::f32)
                    detail::sgemm::pack_block(static_cast<const float*>(w) + col0 * in + k0, in, cols, k,
                                              static_cast<float*>(dst) + at);
                else
                    detail::pack_block_16(static_cast<const unsigned char*>(w) + (col0 * in + k0) * 2, in, cols,
                                          k, static_cast<std::uint16_t*>(dst) + at);
            }
        });
        m_packed = dst;
    } else {
        (void)w;
        (void)dst;
    }
}

} // namespace actlens::kernels
