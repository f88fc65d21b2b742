// actlens/model/hooks.hpp: callbacks at hook points, and a cache of activations.
//
// A hook_set is a value owned by a request or a session, never global. A callback sees the
// activation as a writable tensor_view and may read it (capture), overwrite it (patch, clamp) or add
// to it (steer). With no hook_set the forward pays one predictable branch per site; with one, a
// lookup in a flat table indexed by (layer, site).
//
// Hooks are strict: a hook at a point the model does not call (a layer past the last, a rotary site
// on a model with learned positions) would silently never fire, so the forward checks its hook_set
// against the model's hook_layout once per run and throws, naming the hook and the model's layers.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/hook_point.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace actlens {

/// The hook points a model calls: every block has the same sites, so a layer count and a set of sites
/// describe them all. Cheap to make and copy (no allocation): the forward makes one per run.
struct hook_layout {
    int n_layers = 0;
    std::uint32_t sites = 0; ///< bit i set when the model calls site i

    /// The layout of a model of this config: pos_embed with learned positions, attn.hook_rot_q and
    /// attn.hook_rot_k with rotary ones, mlp.hook_pre_linear with a gated MLP, hook_resid_mid without a
    /// parallel residual, ln1_post and ln2_post with post_norms; every other site always.
    static hook_layout of(const model_config& c) noexcept {
        hook_layout out;
        out.n_layers = static_cast<int>(c.n_layers);
        for (std::size_t i = 0; i < site_count; ++i) {
            const auto s = static_cast<site>(i);
            if (s == site::pos_embed && c.position != position_kind::learned) continue;
            if ((s == site::attn_rot_q || s == site::attn_rot_k) && c.position != position_kind::rotary) continue;
            if (s == site::mlp_pre_linear && !c.gated_mlp()) continue;
            if (s == site::resid_mid && c.parallel_residual) continue;
            if ((s == site::ln1_post_normalized || s == site::ln2_post_normalized) && !c.post_norms) continue;
            out.sites |= bit(s);
        }
        return out;
    }

    static constexpr std::uint32_t bit(site s) noexcept { return std::uint32_t(1) << static_cast<unsigned>(s); }

    bool has_site(site s) const noexcept { return (sites & bit(s)) != 0; }
    bool contains(const hook_point& p) const noexcept {
        if (!has_site(p.site)) return false;
        return is_block_site(p.site) ? p.layer >= 0 && p.layer < n_layers : p.layer == -1;
    }

    /// Every point, in forward order (the order of basic_transformer::hook_points()).
    std::vector<hook_point> points() const {
        std::vector<hook_point> out;
        for (site s : {site::embed, site::pos_embed})
            if (has_site(s)) out.push_back({s, -1});
        for (int l = 0; l < n_layers; ++l)
            for (std::size_t i = 0; i < site_count; ++i)
                if (is_block_site(static_cast<site>(i)) && has_site(static_cast<site>(i)))
                    out.push_back({static_cast<site>(i), l});
        if (has_site(site::ln_final_normalized)) out.push_back({site::ln_final_normalized, -1});
        return out;
    }

    /// The layers as text, "0..4" (or "none").
    std::string layer_range() const {
        return n_layers > 0 ? "0.." + std::to_string(n_layers - 1) : std::string("none");
    }

    /// Throws unless the model calls `p`: model.403 for a layer outside the model's, model.402 for a
    /// site it lacks. `who` starts the message (the function or option that named the point).
    void check(const hook_point& p, std::string_view who) const {
        if (is_block_site(p.site) && (p.layer < 0 || p.layer >= n_layers))
            fail(errc::bad_layer_range, "{}: hook point '{}' is at layer {}, but the model's layers are {}", who,
                 p.name(), p.layer, layer_range());
        if (!has_site(p.site))
            fail(errc::bad_hook_name, "{}: the model has no hook point '{}' ({}; its layers are {})", who, p.name(),
                 site_condition(p.site), layer_range());
    }

private:
    static const char* site_condition(site s) noexcept {
        switch (s) {
        case site::pos_embed: return "only models with learned positions have it";
        case site::attn_rot_q:
        case site::attn_rot_k: return "only models with rotary positions have it";
        case site::mlp_pre_linear: return "only gated MLPs (SwiGLU, GeGLU) have it";
        case site::ln1_post_normalized:
        case site::ln2_post_normalized: return "only models with norms after attention and MLP (Gemma 2) have it";
        case site::resid_mid: return "a parallel residual (GPT-NeoX) has no residual between attention and MLP";
        default: return "this model does not call it";
        }
    }
};

/// The points of `points` whose names match `glob`; throws actlens::error (model.402) naming the glob
/// when none does, since a filter that selects nothing is a typo, not a request for nothing.
inline std::vector<hook_point> select_hook_points(std::string_view glob, const std::vector<hook_point>& points) {
    std::vector<hook_point> out;
    for (const hook_point& p : points)
        if (glob_match(glob, p.name())) out.push_back(p);
    if (out.empty()) {
        const std::string near = detail::closest_hook_name(glob);
        fail(errc::bad_hook_name, "no hook point of the model matches '{}'{}", glob,
             near.empty() ? std::string() : "; did you mean '" + near + "'?");
    }
    return out;
}

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
    /// Adds a callback at a point. Throws actlens::error: model.403 for a block site with a negative
    /// layer, model.402 for a site outside the blocks with a layer other than -1. Whether the model
    /// has the point is checked by the forward (check()).
    hook_set& add(const hook_point& point, hook_fn<T> fn) {
        if (is_block_site(point.site) && point.layer < 0)
            fail(errc::bad_layer_range, "hook point '{}' has a negative layer", point.name());
        if (!is_block_site(point.site) && point.layer != -1)
            fail(errc::bad_hook_name, "hook point '{}' belongs to no block, but was given layer {}", point.name(),
                 point.layer);
        const std::size_t slot = index(point);
        if (slot >= m_table.size()) m_table.resize(slot + 1);
        m_table[slot].push_back(std::move(fn));
        m_sites |= hook_layout::bit(point.site);
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
        m_sites |= other.m_sites;
        m_count += other.m_count;
        return *this;
    }

    /// Throws actlens::error (see hook_layout::check) naming the first hook, in forward order, at a
    /// point the model does not call. The forward calls it once per run: two comparisons when every
    /// hook is valid (the table ends at the deepest hooked layer, and a mask holds the hooked sites),
    /// a scan of the table only to name the culprit.
    void check(const hook_layout& model) const {
        const std::size_t model_slots = static_cast<std::size_t>(model.n_layers + 1) * site_count;
        if (m_table.size() <= model_slots && (m_sites & ~model.sites) == 0) return;
        for (std::size_t slot = 0; slot < m_table.size(); ++slot)
            if (!m_table[slot].empty()) model.check(point_at(slot), "hook_set");
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
    static hook_point point_at(std::size_t slot) noexcept {
        return {static_cast<site>(slot % site_count), static_cast<int>(slot / site_count) - 1};
    }

    // Slot (layer + 1) * site_count + site; add() keeps the last slot non-empty.
    std::vector<std::vector<hook_fn<T>>> m_table;
    std::uint32_t m_sites = 0; // hook_layout::bit of every site with a callback
    std::size_t m_count = 0;
};

/// Activations kept from a forward pass, by hook point. Reusing one cache across runs reuses its
/// buffers (a tensor only grows). Entries are copies taken after the user's hooks ran at that point.
///
/// The entries live in storage the capture hooks share (see capture_into), so a cache may be moved
/// between capture_into and the forward pass: the hooks keep writing into the storage the moved-to
/// cache now owns. A copy is deep and receives nothing from hooks added to its source.
template <class T>
class activation_cache {
    using entry_map = std::map<hook_point, tensor<T>>;

public:
    activation_cache() = default;
    activation_cache(const activation_cache& other)
        : m_entries(other.m_entries ? std::make_shared<entry_map>(*other.m_entries) : nullptr) {}
    activation_cache& operator=(const activation_cache& other) {
        if (this != &other) m_entries = other.m_entries ? std::make_shared<entry_map>(*other.m_entries) : nullptr;
        return *this;
    }
    // A moved-from cache is empty and gets storage of its own when next written to; it never aliases
    // the storage it gave away (which the moved-to cache's hooks still write).
    activation_cache(activation_cache&&) noexcept = default;
    activation_cache& operator=(activation_cache&&) noexcept = default;

    /// The activation at a point; throws actlens::error (model.402) if it was not cached.
    const tensor<T>& at(const hook_point& point) const {
        if (m_entries) {
            auto it = m_entries->find(point);
            if (it != m_entries->end()) return it->second;
        }
        fail(errc::bad_hook_name, "activation cache holds no '{}'", point.name());
    }
    const tensor<T>& at(std::string_view name) const { return at(hook_point::parse(name)); }
    const tensor<T>& operator[](std::string_view name) const { return at(name); }

    bool contains(const hook_point& point) const { return m_entries && m_entries->count(point) != 0; }
    bool contains(std::string_view name) const { return contains(hook_point::parse(name)); }
    std::size_t size() const noexcept { return m_entries ? m_entries->size() : 0; }

    /// Names of the cached points, in forward order.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& [p, _] : entries()) out.push_back(p.name());
        return out;
    }
    /// The entries by point, in forward order.
    const entry_map& entries() const {
        static const entry_map none; // immutable: safe to share between threads
        return m_entries ? *m_entries : none;
    }

    void clear() {
        if (m_entries) m_entries->clear();
    }

    /// Stores a copy of an activation (used by the capture hooks).
    void store(const hook_point& point, tensor_view<const T> activation) { store_into(storage(), point, activation); }

    /// Adds to `hooks` one capture callback for every point in `points`. The callbacks share this
    /// cache's storage (not the cache object), so moving the cache before the run is safe.
    void capture_into(hook_set<T>& hooks, const std::vector<hook_point>& points) {
        storage();
        for (const hook_point& p : points)
            hooks.add(p, [entries = m_entries](tensor_view<T> a, const hook_context& c) {
                store_into(*entries, c.point, a);
            });
    }

private:
    entry_map& storage() {
        if (!m_entries) m_entries = std::make_shared<entry_map>();
        return *m_entries;
    }
    static void store_into(entry_map& entries, const hook_point& point, tensor_view<const T> activation) {
        tensor<T>& slot = entries[point];
        slot.reshape_uninitialized(activation.shape());
        tensor<T>::copy_into(activation, slot.view());
    }

    std::shared_ptr<entry_map> m_entries; // null until first written, and after a move
};

} // namespace actlens
