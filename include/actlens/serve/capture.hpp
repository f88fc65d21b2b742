// actlens/serve/capture.hpp: activations of a generation at named hook points, over every position.
//
// A generation runs its prompt in one forward pass and then one position per step; a capture keeps
// what every one of those calls showed at each requested point (after the other hooks there ran),
// appended in position order. Its hooks own their storage (no pointer to the capture object), so the
// capture may be moved or destroyed while a hook_set holding them lives on.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/model/config.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace actlens::serve {

/// One captured point: its name and its activations [positions, ...] (the point's shape without
/// the batch and position axes).
template <class T>
struct captured {
    std::string name;
    tensor<T> values;
};

template <class T>
class position_capture {
public:
    position_capture() = default;

    /// Captures the points named by `names` (TransformerLens names) of a model of config `c`. Throws
    /// actlens::error: model.402 for a name that is not a hook point (with a "did you mean"), model.403
    /// for a layer the model lacks, arg.101 for the attention scores or pattern (their key axis grows
    /// with every position, so they do not stack by position) or a name given twice.
    position_capture(const model_config& c, const std::vector<std::string>& names)
        : m_points(std::make_shared<std::vector<point>>()) {
        const hook_layout layout = hook_layout::of(c);
        for (const std::string& name : names) {
            const hook_point p = hook_point::parse(name);
            layout.check(p, "capture");
            if (p.site == site::attn_scores || p.site == site::attn_pattern)
                fail(errc::invalid_argument,
                     "capture: '{}' has a key axis that grows with each position; capture it with run_with_cache",
                     name);
            for (const point& q : *m_points)
                if (q.where == p) fail(errc::invalid_argument, "capture: '{}' is named twice", name);
            m_points->push_back({p, {}, {}, 0});
        }
    }

    /// Adds the capture callbacks to `hooks` (after the callbacks already there). The activation of a
    /// call must be [1, T, ...] (one sequence); the hook throws actlens::error (arg.102) otherwise.
    void add_hooks(hook_set<T>& hooks) const {
        if (!m_points) return;
        for (std::size_t i = 0; i < m_points->size(); ++i) {
            std::shared_ptr<std::vector<point>> points = m_points;
            hooks.add((*points)[i].where, [points, i](tensor_view<T> a, const hook_context& ctx) {
                point& p = (*points)[i];
                if (a.rank() < 3 || a.extent(0) != 1 || !a.is_contiguous())
                    fail(errc::shape_mismatch, "capture at '{}': activation {} is not one sequence [1, T, ...]",
                         ctx.point.name(), a.shape().to_string());
                const std::size_t per_position = a.size() / a.extent(1);
                if (p.positions == 0) {
                    p.inner.assign(a.shape().extents.begin() + 2, a.shape().extents.begin() + a.rank());
                } else if (per_position * p.positions != p.values.size()) {
                    fail(errc::shape_mismatch, "capture at '{}': activation {} changed shape between calls",
                         ctx.point.name(), a.shape().to_string());
                }
                p.values.insert(p.values.end(), a.data(), a.data() + a.size());
                p.positions += a.extent(1);
            });
        }
    }

    /// The activations captured so far, in the order the names were given.
    std::vector<captured<T>> results() const {
        std::vector<captured<T>> out;
        if (!m_points) return out;
        for (const point& p : *m_points) {
            shape_t shape;
            shape.rank = static_cast<int>(p.inner.size()) + 1;
            shape.extents[0] = p.positions;
            std::copy(p.inner.begin(), p.inner.end(), shape.extents.begin() + 1);
            captured<T> c{p.where.name(), tensor<T>(shape)};
            std::copy(p.values.begin(), p.values.end(), c.values.data());
            out.push_back(std::move(c));
        }
        return out;
    }

private:
    struct point {
        hook_point where;
        std::vector<std::size_t> inner;
        std::vector<T> values;
        std::size_t positions;
    };
    std::shared_ptr<std::vector<point>> m_points;
};

} // namespace actlens::serve
