// actlens/model/weight_tensor.hpp: a projection matrix of a model in the element type of its file.
//
// A model loaded from an F16 or BF16 file keeps its projections (and unembedding) as the file's
// 16-bit values: the forward multiplies with panels of that type (kernels/packed_weight.hpp), the
// backward's input gradients read the same panels (kernels/gemm_panel_grad.hpp) or backward_weights'
// 16-bit W^T panels, and no f32 copy of them exists unless a reader asks for one. The readers that
// want a whole tensor's f32 values (neuron and SNMF analyses reading weight columns, null models,
// save_gguf) call view() or convert to a tensor_view, which widens the tensor once, on first request,
// thread-safely, and keeps the copy with the weights (copies of a weight_tensor share it); element
// access and widen_row() (the patching plan's and the logit metrics' unembedding rows) convert only
// what they read. After packing, the model hands the file pages of mapped 16-bit weights back to the
// system (core/memory.hpp drop_file_pages): a later view() reads them from the file again. A
// weight_tensor made from a tensor_view (every f32 or double model) is that view: view() returns it,
// nothing is copied.
#pragma once

#include <actlens/core/dtype.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>

namespace actlens {

/// A weight tensor whose elements are T, or the bits of f16 / bf16 values (see the top of this
/// header). Cheap to copy (copies share the widened values). Const methods are thread-safe.
template <class T>
class weight_tensor {
public:
    weight_tensor() = default;
    /// The tensor `v` itself (elements of type T).
    weight_tensor(tensor_view<const T> v) : m_view(v), m_shape(v.shape()) {} // NOLINT: implicit on purpose
    /// A contiguous tensor of `shape` whose elements are the f16 or bf16 bits at `bits` (any
    /// alignment; whatever holds them must outlive every copy, e.g. a mapped file in the model's owners).
    /// `in_mapped_file`: the bits lie in a read-only file mapping, whose pages the model may hand
    /// back to the system once it has packed them (they are read again from the file if needed).
    weight_tensor(const void* bits, dtype type, const shape_t& shape, bool in_mapped_file = false);

    /// The stored element type: f16, bf16, or T's own (f32 for float, f64 for double).
    dtype type() const noexcept { return m_type; }
    /// True when the elements are 16-bit (view() then widens).
    bool is_narrow() const noexcept { return m_bits != nullptr; }
    /// True when the 16-bit elements lie in a read-only file mapping (see the constructor).
    bool in_mapped_file() const noexcept { return m_mapped; }
    /// The stored elements: view().data() when they are T, else the 16-bit values; null when empty.
    const void* raw() const noexcept { return m_bits ? m_bits : static_cast<const void*>(m_view.data()); }
    const shape_t& shape() const noexcept { return m_shape; }
    int rank() const noexcept { return m_shape.rank; }
    std::size_t extent(int axis) const noexcept { return m_shape[axis]; }
    std::size_t size() const { return m_shape.elements(); }
    bool empty() const { return raw() == nullptr || size() == 0; }
    bool is_contiguous() const noexcept { return m_bits || m_view.is_contiguous(); }

    /// The elements as T. For 16-bit elements the first call widens the whole tensor (O(size), the
    /// memory of an f32 copy, kept as long as any copy of this weight_tensor); later calls return it.
    tensor_view<const T> view() const;
    operator tensor_view<const T>() const { return view(); } // NOLINT: readers of f32 views keep working
    /// view().data().
    const T* data() const { return view().data(); }
    /// Whether the f32 values of 16-bit elements have been made (by view(), data() or a conversion).
    bool is_widened() const noexcept { return m_widened && m_widened->done.load(std::memory_order_acquire); }
    /// Element (i0, i1) of a rank-2 tensor (or i0 of a rank-1 one), without widening the rest.
    T operator()(std::size_t i0, std::size_t i1 = 0) const noexcept;
    /// Row r of a rank-2 tensor into out[extent(1)], without widening the rest.
    void widen_row(std::size_t r, T* out) const noexcept;

private:
    struct widened {
        // A mutex and a flag rather than std::call_once: libstdc++'s call_once keeps its callable in
        // thread-local variables, which the clang-repl JIT of the notebooks cannot resolve.
        std::mutex making;
        std::atomic<bool> done{false};
        tensor<T> values;
    };
    static dtype own_type() noexcept { return std::is_same_v<T, double> ? dtype::f64 : dtype::f32; }
    T element(std::size_t i) const noexcept;

    tensor_view<const T> m_view;
    const std::uint16_t* m_bits = nullptr; // not dereferenced directly: may be misaligned
    dtype m_type = own_type();
    bool m_mapped = false;
    shape_t m_shape;
    std::shared_ptr<widened> m_widened; // 16-bit only
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

template <class T>
weight_tensor<T>::weight_tensor(const void* bits, dtype type, const shape_t& shape, bool in_mapped_file)
    : m_bits(static_cast<const std::uint16_t*>(bits)), m_type(type), m_mapped(in_mapped_file), m_shape(shape),
      m_widened(std::make_shared<widened>()) {
    ACTLENS_ASSERT(type == dtype::f16 || type == dtype::bf16);
}

template <class T>
T weight_tensor<T>::element(std::size_t i) const noexcept {
    std::uint16_t b;
    std::memcpy(&b, reinterpret_cast<const unsigned char*>(m_bits) + 2 * i, 2);
    return T(m_type == dtype::f16 ? f16_to_f32(b) : bf16_to_f32(b));
}

template <class T>
tensor_view<const T> weight_tensor<T>::view() const {
    if (!m_bits) return m_view;
    if (!m_widened->done.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lock(m_widened->making);
        if (!m_widened->done.load(std::memory_order_relaxed)) {
            tensor<T> values;
            values.reshape_uninitialized(m_shape);
            T* out = values.data();
            const std::size_t n = m_shape.elements();
            for (std::size_t i = 0; i < n; ++i) out[i] = element(i);
            m_widened->values = std::move(values);
            m_widened->done.store(true, std::memory_order_release);
        }
    }
    return static_cast<const tensor<T>&>(m_widened->values).view();
}

template <class T>
T weight_tensor<T>::operator()(std::size_t i0, std::size_t i1) const noexcept {
    if (!m_bits) return m_view(i0, i1);
    return element(m_shape.rank == 2 ? i0 * m_shape[1] + i1 : i0);
}

template <class T>
void weight_tensor<T>::widen_row(std::size_t r, T* out) const noexcept {
    const std::size_t cols = m_shape[1];
    if (!m_bits) {
        for (std::size_t j = 0; j < cols; ++j) out[j] = m_view(r, j);
        return;
    }
    for (std::size_t j = 0; j < cols; ++j) out[j] = element(r * cols + j);
}

} // namespace actlens
