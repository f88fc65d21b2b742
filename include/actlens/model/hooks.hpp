// actlens/model/hooks.hpp: callbacks at hook points, and a cache of activations.
//
// A hook_set is a value owned by a request or a session, never global. A callback sees the
// activation as a writable tensor_view and may read it (capture), overwrite it (patch, clamp) or add
// to it (steer). With no hook_set the forward pays one predictable branch per site; with one, a
// lookup in a flat table indexed by (layer, site).
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/model/hook_point.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace actlens {

/// What a hook callback is told besides the activation itself.
struct hook_context {
    hook_point point;
    std::size_t batch = 0;           ///< B: rows of the batch
    std::size_t positions = 0;       ///< T: positions computed in this call
    std::size_t position_offset = 0; ///< absolute position of the first of them (> 0 when decoding with a KV cache)
};

/// A hook callback: receives the activation (shape documented per site in hook_point.hpp).
template <class T>
using hook_fn = std::function<void(tensor_view<T> activation, const hook_context& context)>;

/// Callbacks keyed by hook point. Several callbacks at one point run in the order they were added.
/// Not thread-safe to modify; a const hook_set may be used by concurrent forward passes if its
/// callbacks are themselves safe to call concurrently.
template <class T>
class hook_set {
public:
    /// Adds a callback at a point.
    hook_set& add(const hook_point& point, hook_fn<T> fn) {
        if (point.layer < -1) fail(errc::bad_hook_name, "hook point '{}' has a negative layer", point.name());
        const std::size_t slot = index(point);
        if (slot >= m_table.size()) m_table.resize(slot + 1);
        m_table[slot].push_back(std::move(fn));
        ++m_count;
        return *this;
    }

    /// Adds a callback at a point given by its TransformerLens name.
    hook_set& add(std::string_view name, hook_fn<T> fn) { return add(hook_point::parse(name), std::move(fn)); }

    /// Adds the callback at every point of `points` whose name matches `glob`; returns how many matched.
    std::size_t add_matching(std::string_view glob, const std::vector<hook_point>& points, const hook_fn<T>& fn) {
        std::size_t n = 0;
        for (const hook_point& p : points)
            if (glob_match(glob, p.name())) {
                add(p, fn);
                ++n;
            }
        return n;
    }

    /// Appends every callback of another set after this set's own.
    hook_set& merge(const hook_set& other) {
        if (other.m_table.size() > m_table.size()) m_table.resize(other.m_table.size());
        for (std::size_t i = 0; i < other.m_table.size(); ++i)
            for (const auto& fn : other.m_table[i]) m_table[i].push_back(fn);
        m_count += other.m_count;
        return *this;
    }

    bool empty() const noexcept { return m_count == 0; }
    std::size_t size() const noexcept { return m_count; }

    /// True if any callback is registered at the point.
    bool has(const hook_point& point) const noexcept {
        const std::size_t slot = index(point);
        return slot < m_table.size() && !m_table[slot].empty();
    }

    /// Runs the callbacks at a point, in order.
    void run(const hook_point& point, tensor_view<T> activation, const hook_context& context) const {
        const std::size_t slot = index(point);
        if (slot >= m_table.size()) return;
        for (const auto& fn : m_table[slot]) fn(activation, context);
    }

private:
    static std::size_t index(const hook_point& p) noexcept {
        return static_cast<std::size_t>(p.layer + 1) * site_count + static_cast<std::size_t>(p.site);
    }

    std::vector<std::vector<hook_fn<T>>> m_table;
    std::size_t m_count = 0;
};

/// Activations kept from a forward pass, by hook point. Reusing one cache across runs reuses its
/// buffers (a tensor only grows). Entries are copies taken after the user's hooks ran at that point.
template <class T>
class activation_cache {
public:
    /// The activation at a point; throws actlens::error (model.402) if it was not cached.
    const tensor<T>& at(const hook_point& point) const {
        auto it = m_entries.find(point);
        if (it == m_entries.end()) fail(errc::bad_hook_name, "activation cache holds no '{}'", point.name());
        return it->second;
    }
    const tensor<T>& at(std::string_view name) const { return at(hook_point::parse(name)); }
    const tensor<T>& operator[](std::string_view name) const { return at(name); }

    bool contains(const hook_point& point) const { return m_entries.count(point) != 0; }
    bool contains(std::string_view name) const { return contains(hook_point::parse(name)); }
    std::size_t size() const noexcept { return m_entries.size(); }

    /// Names of the cached points, in forward order.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& [p, _] : m_entries) out.push_back(p.name());
        return out;
    }
    const std::map<hook_point, tensor<T>>& entries() const noexcept { return m_entries; }

    void clear() { m_entries.clear(); }

    /// Stores a copy of an activation (used by the capture hooks).
    void store(const hook_point& point, tensor_view<const T> activation) {
        tensor<T>& slot = m_entries[point];
        slot.reshape_uninitialized(activation.shape());
        tensor<T>::copy_into(activation, slot.view());
    }

    /// Adds to `hooks` one capture callback for every point in `points` (which must outlive nothing:
    /// the callback holds a pointer to this cache, which must outlive the forward pass).
    void capture_into(hook_set<T>& hooks, const std::vector<hook_point>& points) {
        for (const hook_point& p : points)
            hooks.add(p, [this](tensor_view<T> a, const hook_context& c) { store(c.point, a); });
    }

private:
    std::map<hook_point, tensor<T>> m_entries;
};

} // namespace actlens
