// actlens/core/tensor.hpp: the one tensor abstraction.
//
// tensor<T>       owns a contiguous, row-major, 64-byte aligned buffer of rank 1 to 4. Its capacity
//                 only grows: resize() to a smaller or equal size never allocates, which is how
//                 workspaces are reused across forward passes without touching fresh pages.
// tensor_view<T>  a non-owning pointer + shape + strides (in elements) over any buffer: a tensor,
//                 a memory-mapped weight file, a caller's activation buffer.
#pragma once

#include <actlens/core/memory.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

namespace actlens {

/// Largest supported rank.
inline constexpr int max_rank = 4;

/// Largest element count, and so largest stride, of any tensor: strides are std::ptrdiff_t.
inline constexpr std::size_t max_tensor_elements = static_cast<std::size_t>(PTRDIFF_MAX);

/// The one size check of every shape, whether built in memory or read from a file (gguf, safetensors,
/// npy): true, with `elements` set to the product of the extents [first, last), when the product of
/// the extents counting a zero extent as 1 is at most max_tensor_elements. A zero extent empties the
/// tensor but not its other axes: the row-major strides of [0, 2^40, 2^40] are still computed, so
/// they must not overflow either. False (and `elements` untouched) otherwise. Extents of any
/// unsigned type (a file's uint64 as well as size_t). Complexity: one division per extent.
template <class It>
bool addressable_elements(It first, It last, std::size_t& elements) noexcept {
    std::size_t span = 1;
    bool empty = false;
    for (; first != last; ++first) {
        const auto e = *first;
        if (e == 0) {
            empty = true;
            continue;
        }
        if (e > max_tensor_elements || span > max_tensor_elements / static_cast<std::size_t>(e)) return false;
        span *= static_cast<std::size_t>(e);
    }
    elements = empty ? 0 : span;
    return true;
}

/// A shape of rank 1..4. Unused trailing extents are 1.
struct shape_t {
    std::array<std::size_t, max_rank> extents{{1, 1, 1, 1}};
    int rank = 0;

    shape_t() = default;
    shape_t(std::initializer_list<std::size_t> dims) {
        if (dims.size() < 1 || dims.size() > static_cast<std::size_t>(max_rank))
            fail(errc::invalid_argument, "tensor rank must be 1..4, got {}", dims.size());
        rank = static_cast<int>(dims.size());
        std::copy(dims.begin(), dims.end(), extents.begin());
    }

    std::size_t operator[](int axis) const { return extents[static_cast<std::size_t>(axis)]; }

    /// Number of elements; throws errc::size_overflow unless the shape is addressable (see
    /// addressable_elements): a shape such as [0, 2^40, 2^40] holds no element, yet its strides overflow.
    std::size_t elements() const {
        std::size_t n = 0;
        if (!addressable_elements(extents.begin(), extents.begin() + rank, n))
            fail(errc::size_overflow, "tensor shape {} has strides or a size that overflow ptrdiff_t", to_string());
        return rank == 0 ? 0 : n;
    }

    std::string to_string() const {
        std::string s = "[";
        for (int i = 0; i < rank; ++i) {
            if (i) s += ", ";
            s += std::to_string(extents[static_cast<std::size_t>(i)]);
        }
        return s + "]";
    }

    friend bool operator==(const shape_t& a, const shape_t& b) {
        return a.rank == b.rank && a.extents == b.extents;
    }
    friend bool operator!=(const shape_t& a, const shape_t& b) { return !(a == b); }
};

/// Non-owning view: pointer, shape and strides in elements. Copying a view copies the pointer.
template <class T>
class tensor_view {
public:
    using value_type = std::remove_const_t<T>;

    tensor_view() = default;

    /// A contiguous row-major view of `shape` starting at `data`. Throws errc::size_overflow for a
    /// shape whose strides overflow (shape_t::elements).
    tensor_view(T* data, const shape_t& shape) : tensor_view(data, checked(shape), validated) {}

    /// A strided view; strides are in elements. Throws as the contiguous constructor for a shape
    /// that is not addressable.
    tensor_view(T* data, const shape_t& shape, const std::array<std::ptrdiff_t, max_rank>& strides)
        : m_data(data), m_shape(checked(shape)), m_strides(strides) {}

    /// A view of mutable data converts to a view of const data.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    tensor_view(const tensor_view<U>& other)
        : m_data(other.data()), m_shape(other.shape()), m_strides(other.strides()) {}

    T* data() const noexcept { return m_data; }
    const shape_t& shape() const noexcept { return m_shape; }
    int rank() const noexcept { return m_shape.rank; }
    std::size_t extent(int axis) const noexcept { return m_shape[axis]; }
    std::ptrdiff_t stride(int axis) const noexcept { return m_strides[static_cast<std::size_t>(axis)]; }
    const std::array<std::ptrdiff_t, max_rank>& strides() const noexcept { return m_strides; }
    std::size_t size() const { return m_shape.elements(); }
    bool empty() const { return m_data == nullptr || size() == 0; }

    /// True when the elements are dense and row-major.
    bool is_contiguous() const noexcept {
        std::ptrdiff_t s = 1;
        for (int i = m_shape.rank - 1; i >= 0; --i) {
            if (m_shape[i] != 1 && m_strides[static_cast<std::size_t>(i)] != s) return false;
            s *= static_cast<std::ptrdiff_t>(m_shape[i]);
        }
        return true;
    }

    /// Element access without bounds checks (hot paths); indices beyond the rank are ignored.
    T& operator()(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) const noexcept {
        return m_data[static_cast<std::ptrdiff_t>(i0) * m_strides[0] +
                      static_cast<std::ptrdiff_t>(i1) * m_strides[1] +
                      static_cast<std::ptrdiff_t>(i2) * m_strides[2] +
                      static_cast<std::ptrdiff_t>(i3) * m_strides[3]];
    }

    /// Element access with bounds checks; throws actlens::error naming the axis and index.
    T& at(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) const {
        const std::array<std::size_t, max_rank> idx{{i0, i1, i2, i3}};
        for (int a = 0; a < max_rank; ++a)
            if (idx[static_cast<std::size_t>(a)] >= m_shape[a])
                fail(errc::out_of_range, "tensor index {} on axis {} is out of range for shape {}",
                     idx[static_cast<std::size_t>(a)], a, m_shape.to_string());
        return (*this)(i0, i1, i2, i3);
    }

    /// The sub-tensor at index i of the first axis (rank decreases by one; rank-1 gives a 1-element view).
    tensor_view slice(std::size_t i) const {
        if (i >= m_shape[0])
            fail(errc::out_of_range, "slice index {} out of range for shape {}", i, m_shape.to_string());
        tensor_view v;
        v.m_data = m_data + static_cast<std::ptrdiff_t>(i) * m_strides[0];
        if (m_shape.rank == 1) {
            v.m_shape = shape_t{1};
            v.m_strides[0] = 1;
            return v;
        }
        v.m_shape.rank = m_shape.rank - 1;
        for (int a = 1; a < m_shape.rank; ++a) {
            v.m_shape.extents[static_cast<std::size_t>(a - 1)] = m_shape[a];
            v.m_strides[static_cast<std::size_t>(a - 1)] = m_strides[static_cast<std::size_t>(a)];
        }
        return v;
    }

    /// Rows [begin, end) of the first axis, keeping the rank.
    tensor_view rows(std::size_t begin, std::size_t end) const {
        if (begin > end || end > m_shape[0])
            fail(errc::out_of_range, "row range [{}, {}) out of range for shape {}", begin, end,
                 m_shape.to_string());
        tensor_view v = *this;
        v.m_data = m_data + static_cast<std::ptrdiff_t>(begin) * m_strides[0];
        v.m_shape.extents[0] = end - begin;
        return v;
    }

    /// The same elements with another shape; requires a contiguous view of equal size.
    tensor_view reshaped(const shape_t& shape) const {
        if (!is_contiguous() || shape.elements() != size())
            fail(errc::shape_mismatch, "cannot reshape {} to {}", m_shape.to_string(), shape.to_string());
        return tensor_view(m_data, shape);
    }

private:
    template <class>
    friend class tensor;
    struct validated_t {};
    static constexpr validated_t validated{};

    static const shape_t& checked(const shape_t& shape) {
        shape.elements();
        return shape;
    }

    // Row-major strides of a shape that passed shape_t::elements(), so that no product overflows.
    tensor_view(T* data, const shape_t& shape, validated_t) noexcept : m_data(data), m_shape(shape) {
        std::ptrdiff_t s = 1;
        for (int i = shape.rank - 1; i >= 0; --i) {
            m_strides[static_cast<std::size_t>(i)] = s;
            s *= static_cast<std::ptrdiff_t>(shape[i]);
        }
    }

    T* m_data = nullptr;
    shape_t m_shape{};
    std::array<std::ptrdiff_t, max_rank> m_strides{{0, 0, 0, 0}};
};

namespace detail {
struct aligned_free {
    void operator()(void* p) const noexcept { std::free(p); }
};
} // namespace detail

/// Owning, contiguous, row-major, 64-byte aligned tensor of rank 1..4.
/// Not thread-safe for writes; const access from several threads is safe.
template <class T>
class tensor {
    static_assert(std::is_trivially_copyable_v<T>, "actlens::tensor holds trivially copyable element types");

public:
    using value_type = T;
    static constexpr std::size_t alignment = 64;

    tensor() = default;
    /// A zero-filled tensor of the given shape.
    explicit tensor(const shape_t& shape) { resize(shape); }
    tensor(std::initializer_list<std::size_t> dims) : tensor(shape_t(dims)) {}

    tensor(const tensor& other) { *this = other; }
    tensor& operator=(const tensor& other) {
        if (this != &other) {
            resize(other.m_shape);
            if (other.size()) std::copy(other.data(), other.data() + other.size(), data());
        }
        return *this;
    }
    // A moved-from tensor is empty with no capacity, so that it can be resized and reused safely.
    tensor(tensor&& other) noexcept
        : m_buffer(std::move(other.m_buffer)), m_capacity(other.m_capacity), m_shape(other.m_shape) {
        other.m_capacity = 0;
        other.m_shape = shape_t{};
    }
    tensor& operator=(tensor&& other) noexcept {
        if (this != &other) {
            m_buffer = std::move(other.m_buffer);
            m_capacity = other.m_capacity;
            m_shape = other.m_shape;
            other.m_capacity = 0;
            other.m_shape = shape_t{};
        }
        return *this;
    }

    /// A tensor holding a copy of the view's elements.
    static tensor copy_of(tensor_view<const T> v) {
        tensor t(v.shape());
        copy_into(v, t.view());
        return t;
    }

    /// Sets a new shape and zero-fills it. Reuses the buffer when it is large enough.
    void resize(const shape_t& shape) {
        reshape_uninitialized(shape);
        std::fill(data(), data() + size(), T{});
    }

    /// Sets a new shape without initialising the elements (workspaces: they are overwritten anyway).
    void reshape_uninitialized(const shape_t& shape) {
        const std::size_t n = shape.elements();
        if (n > m_capacity) {
            if (n > (std::numeric_limits<std::size_t>::max() - alignment) / sizeof(T))
                fail(errc::size_overflow, "tensor of shape {} is too large", shape.to_string());
            m_buffer.reset(detail::allocate_aligned(n * sizeof(T)));
            m_capacity = n;
        }
        m_shape = shape;
    }

    T* data() noexcept { return static_cast<T*>(m_buffer.get()); }
    const T* data() const noexcept { return static_cast<const T*>(m_buffer.get()); }
    const shape_t& shape() const noexcept { return m_shape; }
    int rank() const noexcept { return m_shape.rank; }
    std::size_t extent(int axis) const noexcept { return m_shape[axis]; }
    std::size_t size() const { return m_shape.rank ? m_shape.elements() : 0; }
    std::size_t capacity() const noexcept { return m_capacity; }
    bool empty() const { return size() == 0; }

    // m_shape passed shape_t::elements() in reshape_uninitialized: no check per view.
    tensor_view<T> view() noexcept { return tensor_view<T>(data(), m_shape, tensor_view<T>::validated); }
    tensor_view<const T> view() const noexcept {
        return tensor_view<const T>(data(), m_shape, tensor_view<const T>::validated);
    }
    operator tensor_view<T>() noexcept { return view(); }
    operator tensor_view<const T>() const noexcept { return view(); }

    T& operator()(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) noexcept {
        return view()(i0, i1, i2, i3);
    }
    const T& operator()(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) const noexcept {
        return view()(i0, i1, i2, i3);
    }
    T& at(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) {
        return view().at(i0, i1, i2, i3);
    }
    const T& at(std::size_t i0, std::size_t i1 = 0, std::size_t i2 = 0, std::size_t i3 = 0) const {
        return view().at(i0, i1, i2, i3);
    }
    T* begin() noexcept { return data(); }
    T* end() noexcept { return data() + size(); }
    const T* begin() const noexcept { return data(); }
    const T* end() const noexcept { return data() + size(); }

    /// Copies a view's elements (any strides) into a view of equal shape.
    static void copy_into(tensor_view<const T> from, tensor_view<T> to) {
        if (from.shape() != to.shape())
            fail(errc::shape_mismatch, "copy from shape {} into shape {}", from.shape().to_string(),
                 to.shape().to_string());
        const shape_t& s = from.shape();
        for (std::size_t i = 0; i < s[0]; ++i)
            for (std::size_t j = 0; j < s[1]; ++j)
                for (std::size_t k = 0; k < s[2]; ++k)
                    for (std::size_t l = 0; l < s[3]; ++l) to(i, j, k, l) = from(i, j, k, l);
    }

private:
    std::unique_ptr<void, detail::aligned_free> m_buffer;
    std::size_t m_capacity = 0;
    shape_t m_shape{};
};

} // namespace actlens
