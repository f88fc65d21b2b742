// actlens/model/kv_cache.hpp: keys and values of the positions already processed, per layer.
//
// Owned by the caller (a generation, a request, a patching sweep); a model never holds one, which is
// what keeps the forward pass const and thread-safe. Keys are stored after the rotary embedding.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <cstddef>
#include <vector>

namespace actlens {

template <class T>
class kv_cache {
public:
    kv_cache() = default;

    /// Room for `capacity` positions of `batch` sequences, for a model with `n_layers` layers and
    /// key/value rows of `kv_width` = n_kv_heads * d_head. Allocates everything up front.
    kv_cache(std::size_t n_layers, std::size_t batch, std::size_t capacity, std::size_t kv_width)
        : m_batch(batch), m_capacity(capacity), m_kv_width(kv_width) {
        if (batch == 0 || capacity == 0)
            fail(errc::invalid_argument, "kv_cache: batch ({}) and capacity ({}) must be positive", batch, capacity);
        m_keys.resize(n_layers);
        m_values.resize(n_layers);
        for (std::size_t l = 0; l < n_layers; ++l) {
            m_keys[l].resize({batch, capacity, kv_width});
            m_values[l].resize({batch, capacity, kv_width});
        }
    }

    std::size_t batch() const noexcept { return m_batch; }
    std::size_t capacity() const noexcept { return m_capacity; }
    std::size_t kv_width() const noexcept { return m_kv_width; }
    std::size_t n_layers() const noexcept { return m_keys.size(); }
    /// Positions held (the position of the next token to be processed).
    std::size_t length() const noexcept { return m_length; }

    /// Forgets every position (buffers are kept).
    void clear() noexcept { m_length = 0; }
    /// Keeps the first `n` positions only, e.g. to rerun from a position with other inputs.
    void truncate(std::size_t n) {
        if (n > m_length) fail(errc::out_of_range, "kv_cache: cannot truncate {} positions to {}", m_length, n);
        m_length = n;
    }

    /// Keys of layer `l`: [batch, capacity, kv_width], valid up to length() (plus the positions being computed).
    tensor<T>& keys(std::size_t l) noexcept { return m_keys[l]; }
    tensor<T>& values(std::size_t l) noexcept { return m_values[l]; }
    const tensor<T>& keys(std::size_t l) const noexcept { return m_keys[l]; }
    const tensor<T>& values(std::size_t l) const noexcept { return m_values[l]; }

    /// Called by the forward pass once every layer has stored `n` more positions.
    void advance(std::size_t n) noexcept { m_length += n; }

private:
    std::size_t m_batch = 0, m_capacity = 0, m_kv_width = 0, m_length = 0;
    std::vector<tensor<T>> m_keys, m_values;
};

} // namespace actlens
