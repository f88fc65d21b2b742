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
//
// A weight_tensor can also hold ggml's quantised rows (Q8_0, Q4_0, Q4_K, Q6_K; kernels/weight_format.hpp),
// and be marked to be multiplied in place (multiplied_in_place(): the model then refers to its rows
// instead of packing them, kernels/gemm_rows.hpp; always so for quantised rows). Element access,
// widen_row() and view() decode blocks to the values ggml's dequantisation gives.
#pragma once

#include <actlens/core/dtype.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/weight_format.hpp>

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
    /// A rank-2 tensor of `shape` stored as shape[0] rows of `format` (any; a quantised format's
    /// block must divide shape[1]) at `rows`, kept as the constructor above keeps 16-bit values (f32
    /// rows too: view() copies them, e.g. a float reference multiplied by the row kernels).
    /// `in_place`: the model multiplies with the rows where they are instead of packing them
    /// (forced for quantised formats, which have no panels).
    weight_tensor(const void* rows, kernels::weight_format format, const shape_t& shape, bool in_mapped_file,
                  bool in_place);

    /// The stored element type: f16, bf16, or T's own (f32 for float, f64 for double); u8 for
    /// quantised blocks (see format()).
    dtype type() const noexcept { return m_type; }
    /// How the elements are stored: f16, bf16, a quantised format, or f32 for elements of T.
    kernels::weight_format format() const noexcept { return m_format; }
    /// True when the model multiplies with the stored rows in place rather than packed panels.
    bool multiplied_in_place() const noexcept { return m_in_place; }
    /// Bytes of one stored row of a rank-2 tensor (its narrow or quantised elements).
    std::size_t row_bytes() const noexcept { return kernels::weight_row_bytes(m_format, m_shape[1]); }
    /// True when the elements are not T: 16-bit or quantised (view() then widens or decodes).
    bool is_narrow() const noexcept { return m_bits != nullptr; }
    /// True when the narrow elements lie in a read-only file mapping (see the constructor).
    bool in_mapped_file() const noexcept { return m_mapped; }
    /// The stored elements: view().data() when they are T, else the 16-bit values; null when empty.
    const void* raw() const noexcept { return m_bits ? m_bits : static_cast<const void*>(m_view.data()); }
    const shape_t& shape() const noexcept { return m_shape; }
    int rank() const noexcept { return m_shape.rank; }
    std::size_t extent(int axis) const noexcept { return m_shape[axis]; }
    std::size_t size() const { return m_shape.elements(); }
    bool empty() const { return raw() == nullptr || size() == 0; }
    bool is_contiguous() const noexcept { return m_bits || m_view.is_contiguous(); }

    /// The elements as T. For narrow elements the first call widens the whole tensor (O(size), the
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
    // The `cols` values of a stored row (a whole number of blocks) as T.
    void decode_row(const unsigned char* row, std::size_t cols, T* out) const noexcept;

    tensor_view<const T> m_view;
    const unsigned char* m_bits = nullptr; // narrow elements, read with memcpy: may be misaligned
    dtype m_type = own_type();
    kernels::weight_format m_format = kernels::weight_format::f32;
    bool m_mapped = false, m_in_place = false;
    shape_t m_shape;
    std::shared_ptr<widened> m_widened; // 16-bit only
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

template <class T>
weight_tensor<T>::weight_tensor(const void* bits, dtype type, const shape_t& shape, bool in_mapped_file)
    : m_bits(static_cast<const unsigned char*>(bits)), m_type(type),
      m_format(type == dtype::f16 ? kernels::weight_format::f16 : kernels::weight_format::bf16),
      m_mapped(in_mapped_file), m_shape(shape), m_widened(std::make_shared<widened>()) {
    ACTLENS_ASSERT(type == dtype::f16 || type == dtype::bf16);
}

template <class T>
weight_tensor<T>::weight_tensor(const void* rows, kernels::weight_format format, const shape_t& shape,
                                bool in_mapped_file, bool in_place)
    : m_bits(static_cast<const unsigned char*>(rows)), m_format(format), m_mapped(in_mapped_file),
      m_in_place(in_place || kernels::is_quantised(format)), m_shape(shape), m_widened(std::make_shared<widened>()) {
    ACTLENS_ASSERT(shape.rank == 2 && shape[1] % kernels::weight_block_values(format) == 0);
    m_type = format == kernels::weight_format::f32    ? dtype::f32
             : format == kernels::weight_format::f16  ? dtype::f16
             : format == kernels::weight_format::bf16 ? dtype::bf16
                                                      : dtype::u8;
}

template <class T>
T weight_tensor<T>::element(std::size_t i) const noexcept {
    // The block holding element i (a row is a whole number of blocks): decoded alone.
    const std::size_t block = kernels::weight_block_values(m_format);
    float values[256];
    kernels::decode_block(m_format, m_bits + i / block * kernels::weight_block_bytes(m_format), values);
    return T(values[i % block]);
}

template <class T>
tensor_view<const T> weight_tensor<T>::view() const {
    if (!m_bits) return m_view;
    if (!m_widened->done.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lock(m_widened->making);
        if (!m_widened->done.load(std::memory_order_relaxed)) {
            tensor<T> values;
            values.reshape_uninitialized(m_shape);
            const std::size_t n = m_shape.elements(), cols = m_shape.rank == 2 ? m_shape[1] : n;
            for (std::size_t r = 0; cols > 0 && r < n / cols; ++r)
                decode_row(m_bits + r * kernels::weight_row_bytes(m_format, cols), cols, values.data() + r * cols);
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
    decode_row(m_bits + r * kernels::weight_row_bytes(m_format, cols), cols, out);
}

template <class T>
void weight_tensor<T>::decode_row(const unsigned char* row, std::size_t cols, T* out) const noexcept {
    if constexpr (std::is_same_v<T, float>) {
        kernels::decode_values(m_format, row, 0, cols, out);
    } else {
        const std::size_t block = kernels::weight_block_values(m_format);
        float values[256];
        for (std::size_t j = 0; j < cols; j += block) {
            kernels::decode_block(m_format, row + j / block * kernels::weight_block_bytes(m_format), values);
            for (std::size_t i = 0; i < block; ++i) out[j + i] = T(values[i]);
        }
    }
}

} // namespace actlens
