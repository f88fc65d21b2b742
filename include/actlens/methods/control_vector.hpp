// actlens/methods/control_vector.hpp: llama.cpp control vectors (steering vectors as GGUF files),
// written, read, and applied as hooks.
//
// A control vector holds one direction per block, indexed here by actlens block l: the direction
// is added to the residual stream at the output of block l, `blocks.{l}.hook_resid_post`, at every
// position (what llama.cpp's --control-vector does).
//
// llama.cpp's numbering: the file holds F32 1-D tensors `direction.N`, and llama.cpp adds
// direction.N to the output of its block N (0-based; `l_out-N`, the same point as actlens's
// blocks.N.hook_resid_post). So actlens block l is written as direction.l and read back to block
// l, with no shift. llama.cpp rejects N = 0 (its buffer starts at block 1), so a vector for block
// 0 cannot be represented: save_control_vector refuses one with a non-zero entry and drops one
// that is all zeros. (llama.cpp's cvector-generator measures at block i and writes direction.i+1,
// so its vectors are added one block after where they were measured; that shift belongs to the
// tool that made the vector, not to the file format, and is not undone here.)
//
// Metadata written: general.architecture = "controlvector", controlvector.model_hint (e.g.
// "llama"), controlvector.layer_count = number of directions (i32, as llama.cpp writes it). The
// reader, like llama.cpp's, does not need the metadata; it rejects a file whose
// general.architecture is another one (a model file given by mistake).
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/gguf.hpp>
#include <actlens/methods/steering.hpp>
#include <actlens/model/hooks.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// Directions by actlens block: `directions[l]` is added to blocks.{l}.hook_resid_post.
struct control_vector {
    std::string model_hint = "llama"; ///< controlvector.model_hint: the architecture it was made for
    std::map<std::size_t, std::vector<float>> directions;

    /// The width shared by every direction (0 when there are none); throws arg.102 if they differ.
    std::size_t d_model() const;
};

// The functions that read, write or hook a control vector are templates (of nothing) so that the GGUF
// reader and writer and the steering hooks are compiled only where they are called (README "Compile time").

/// Writes `cv` as a llama.cpp control-vector GGUF (tensors direction.l for each block l >= 1, in
/// increasing order). Throws actlens::error: arg.101 for a non-zero direction at block 0 (which
/// llama.cpp cannot represent), no directions, an empty direction; arg.102 for directions of
/// different widths; arg.104 for a non-finite entry; io.201 when the file cannot be written.
template <class Deferred = void>
void save_control_vector(const std::string& path, const control_vector& cv);

/// Reads a control-vector GGUF into actlens block indexing (direction.N -> block N). Throws
/// actlens::error naming the file and the tensor: io.204 for a tensor not named direction.N with a
/// decimal N >= 1, a type other than F32, a rank other than 1, widths that differ, or another
/// general.architecture; plus whatever gguf_file reports.
template <class Deferred = void>
control_vector load_control_vector(const std::string& path);

/// Adds hooks that add `strength * directions[l]` to blocks.{l}.hook_resid_post at every position,
/// for the blocks in [first_block, last_block] (llama.cpp's --control-vector-layer-range). The
/// hook_set keeps its own copy of the directions. Throws arg.102 when a direction's width is not
/// the activation's (checked when the hook runs) and arg.104 for a non-finite strength.
template <class Deferred = void>
void add_control_vector_hooks(hook_set<float>& hooks, const control_vector& cv, float strength = 1.0f,
                              std::size_t first_block = 0, std::size_t last_block = SIZE_MAX);

/// The control vector that adds what `add_steering(hooks, v, {alpha})` adds, at every position:
/// `alpha * v.direction` (rounded as add_steering rounds it) at the block whose output v's point
/// is. blocks.l.hook_resid_post is block l's output; blocks.l.hook_resid_pre is block l-1's, so a
/// vector measured there goes to block l - 1. save_control_vector then writes it as direction.N
/// for llama.cpp (which cannot hold block 0). Throws actlens::error arg.101 for another site, for
/// hook_resid_pre of layer 0 (the embedding, no block's output) or an empty direction, and
/// arg.104 for a non-finite alpha or direction entry.
template <class T>
control_vector to_control_vector(const steering_vector<T>& v, double alpha = 1.0, std::string model_hint = "llama");

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline std::size_t control_vector::d_model() const {
    std::size_t width = 0;
    for (const auto& [block, v] : directions) {
        if (width == 0) width = v.size();
        if (v.size() != width)
            fail(errc::shape_mismatch, "control_vector: direction of block {} has {} entries, others have {}", block,
                 v.size(), width);
    }
    return width;
}

template <class Deferred>
void save_control_vector(const std::string& path, const control_vector& cv) {
    cv.d_model(); // throws when widths differ
    io::gguf_writer writer;
    writer.set("general.architecture", io::gguf_value::string("controlvector"));
    writer.set("controlvector.model_hint", io::gguf_value::string(cv.model_hint));
    std::int32_t count = 0;
    for (const auto& [block, v] : cv.directions) {
        if (v.empty())
            fail(errc::invalid_argument, "save_control_vector('{}'): the direction of block {} is empty", path, block);
        for (std::size_t i = 0; i < v.size(); ++i)
            if (!std::isfinite(v[i]))
                fail(errc::non_finite, "save_control_vector('{}'): direction of block {} has {} at entry {}", path,
                     block, v[i], i);
        if (block == 0) {
            for (float x : v)
                if (x != 0.0f)
                    fail(errc::invalid_argument,
                         "save_control_vector('{}'): block 0 has a non-zero direction, but llama.cpp adds "
                         "direction.N at block N >= 1 only (block 0's output cannot be steered by a control "
                         "vector file)",
                         path);
            continue; // all zeros: nothing is lost by leaving it out
        }
        if (block > static_cast<std::size_t>(INT32_MAX))
            fail(errc::invalid_argument, "save_control_vector('{}'): block {} is out of range", path, block);
        ++count;
    }
    if (count == 0)
        fail(errc::invalid_argument,
             "save_control_vector('{}'): the control vector has no direction for a block >= 1 ({} given)", path,
             cv.directions.size());
    writer.set("controlvector.layer_count", io::gguf_value::i32(count));
    for (const auto& [block, v] : cv.directions)
        if (block != 0)
            writer.add_tensor("direction." + std::to_string(block), tensor_view<const float>(v.data(), {v.size()}));
    writer.write(path);
}

template <class Deferred>
control_vector load_control_vector(const std::string& path) {
    const io::gguf_file f(path);
    const std::string arch = f.get_string("general.architecture", "controlvector");
    if (arch != "controlvector")
        fail(errc::bad_header, "'{}': general.architecture is '{}', not 'controlvector'", path, arch);
    control_vector cv;
    cv.model_hint = f.get_string("controlvector.model_hint", "");
    std::size_t width = 0;
    for (const io::gguf_tensor_info& t : f.tensors()) {
        const std::string prefix = "direction.";
        const std::string digits = t.name.compare(0, prefix.size(), prefix) == 0 ? t.name.substr(prefix.size()) : "";
        bool numeric = !digits.empty() && digits.size() <= 9;
        for (char ch : digits) numeric = numeric && ch >= '0' && ch <= '9';
        if (!numeric)
            fail(errc::bad_header, "'{}': tensor '{}' is not named direction.N with a layer number N", path, t.name);
        const std::size_t block = std::stoul(digits);
        if (block == 0)
            fail(errc::bad_header,
                 "'{}': tensor 'direction.0' would steer block 0, which llama.cpp rejects (direction.N is "
                 "added at block N >= 1)",
                 path);
        if (t.type != io::ggml_type::f32)
            fail(errc::bad_header, "'{}': tensor '{}' has type {}; control vectors are F32", path, t.name,
                 io::ggml_traits(t.type).name);
        if (t.ne.size() != 1 || t.ne[0] == 0)
            fail(errc::bad_header, "'{}': tensor '{}' has ne {}; a direction is 1-D and non-empty", path, t.name,
                 t.ne_string());
        if (width == 0) width = static_cast<std::size_t>(t.ne[0]);
        if (t.ne[0] != width)
            fail(errc::bad_header, "'{}': tensor '{}' has {} entries, earlier directions {}", path, t.name, t.ne[0],
                 width);
        const tensor<float> v = f.to_float(t.name);
        // llama.cpp sums repeated layers; names are unique within one GGUF file, so each block is
        // read once here.
        cv.directions[block].assign(v.data(), v.data() + v.size());
    }
    return cv;
}

template <class Deferred>
void add_control_vector_hooks(hook_set<float>& hooks, const control_vector& cv, float strength, std::size_t first_block,
                              std::size_t last_block) {
    if (!std::isfinite(strength)) fail(errc::non_finite, "add_control_vector_hooks: strength is {}", strength);
    cv.d_model();
    // A control vector is a steering vector per block at resid_post, added at every position.
    steering_options all_positions;
    all_positions.alpha = strength;
    for (const auto& [block, direction] : cv.directions) {
        if (block < first_block || block > last_block) continue;
        if (block > std::size_t(std::numeric_limits<int>::max()))
            fail(errc::invalid_argument, "add_control_vector_hooks: block {} is out of range", block);
        steering_vector<float> v;
        v.point = hook_point{site::resid_post, int(block)};
        v.direction = tensor<float>({direction.size()});
        std::copy(direction.begin(), direction.end(), v.direction.data());
        add_steering(hooks, v, all_positions);
    }
}

template <class T>
control_vector to_control_vector(const steering_vector<T>& v, double alpha, std::string model_hint) {
    if (!std::isfinite(alpha)) fail(errc::non_finite, "to_control_vector: alpha is {}", alpha);
    if (v.direction.size() == 0) fail(errc::invalid_argument, "to_control_vector: the direction at '{}' is empty",
                                      v.point.name());
    if (v.point.site != site::resid_post && v.point.site != site::resid_pre)
        fail(errc::invalid_argument,
             "to_control_vector: '{}' is not a block output; a control vector is added at "
             "blocks.l.hook_resid_post (or blocks.l+1.hook_resid_pre)",
             v.point.name());
    const int block = v.point.site == site::resid_post ? v.point.layer : v.point.layer - 1;
    if (block < 0)
        fail(errc::invalid_argument, "to_control_vector: '{}' is the embedding, the output of no block",
             v.point.name());
    control_vector cv;
    cv.model_hint = std::move(model_hint);
    std::vector<float>& out = cv.directions[std::size_t(block)];
    out.resize(v.direction.size());
    // add_steering adds T(alpha) * direction[k]; the same product, so that strength 1 matches it.
    const T scaled = T(alpha);
    for (std::size_t k = 0; k < out.size(); ++k) {
        out[k] = float(scaled * v.direction.data()[k]);
        if (!std::isfinite(out[k]))
            fail(errc::non_finite, "to_control_vector: entry {} of alpha * direction is {}", k, out[k]);
    }
    return cv;
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE void save_control_vector(const std::string&, const control_vector&);
ACTLENS_EXTERN_TEMPLATE control_vector load_control_vector(const std::string&);
ACTLENS_EXTERN_TEMPLATE void add_control_vector_hooks(hook_set<float>&, const control_vector&, float, std::size_t,
                                                      std::size_t);
#endif

} // namespace actlens
