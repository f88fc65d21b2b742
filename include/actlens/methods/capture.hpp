// actlens/methods/capture.hpp: one hook's activations over a corpus, in memory or in shards on disk.
//
// Every token of every sequence becomes one row [width] (width = the product of the hook's trailing
// extents, e.g. d_mlp for blocks.l.mlp.hook_post), tagged with its token id, sequence index and
// position; rows whose token is in `skip_tokens` (BOS, padding) are left out, as SNMF's data
// matrix wants (Shafran et al., arXiv 2506.10920). Sequences run one forward each, through a reused workspace,
// and the forward stops right after the hooked block, so the layers above are never computed.
//
// capture_activations()  -> captured_activations (all rows in one tensor [rows, width]).
// capture_to_shards()    -> a directory of shard_NNNNN.npy ([rows, width] <f4) and
//                           shard_NNNNN_rows.npy ([rows, 3] <i4: token, sequence, position), plus
//                           manifest.json (hook, width, model sizes, shard list). Memory stays at one
//                           shard's rows whatever the corpus size; numpy reads the files directly.
// capture_reader         reads such a directory back, a shard or a block of rows at a time, with
//                           one reused buffer (the out-of-core source of methods/snmf.hpp).
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/io/json.hpp>
#include <actlens/io/npy.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/hooks.hpp>
#include <actlens/model/transformer.hpp>
#include <actlens/model/workspace.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// Where each captured row came from. All three vectors have one entry per row.
struct capture_rows {
    std::vector<std::int32_t> token;     ///< token id at that position
    std::vector<std::uint32_t> sequence; ///< index of the sequence in the corpus
    std::vector<std::uint32_t> position; ///< position within the sequence
    std::size_t size() const noexcept { return token.size(); }
};

/// A capture held in memory.
struct captured_activations {
    std::string hook;        ///< TransformerLens name of the hook point
    tensor<float> values;    ///< [rows, width]
    capture_rows rows;       ///< origin of each row
    std::size_t width() const noexcept { return values.rank() == 2 ? values.extent(1) : 0; }
};

struct capture_options {
    /// Rows whose token id is one of these are not captured (e.g. {1}, llama2.c's BOS).
    std::vector<std::int32_t> skip_tokens;
    /// Called after every sequence with (sequences done, sequences in all).
    std::function<void(std::size_t, std::size_t)> on_progress;
    /// Rows per shard file (capture_to_shards only); bounds the memory a capture holds.
    std::size_t shard_rows = 65536;
};

// The functions that take a model are templates of nothing (`template <int = 0>`): the forward code
// they call is then compiled only where they are called, not in every file that includes this
// header (README "Compile time").

/// Runs every sequence of `corpus` and keeps hook `hook_name`'s activation at every position whose
/// token is not skipped. Throws actlens::error: model.402 for a name that is not a hook point of
/// this model or is not per-position (attention scores/pattern), model.403 for a layer the model
/// does not have (the message gives its layers, "0..4"), tokenizer.303 for an empty
/// sequence, tokenizer.302 / model.404 from the forward for bad ids or too long sequences.
/// Complexity: one forward per sequence, stopped after the hooked block.
template <int = 0>
captured_activations capture_activations(const transformer& model,
                                                const std::vector<std::vector<std::int32_t>>& corpus,
                                                std::string_view hook_name,
                                                const capture_options& options = {});

/// The same capture written to `directory` (created if missing) as shards plus manifest.json; see
/// the top of this header for the layout. Returns the number of rows written. Throws as
/// capture_activations, plus io.201 when a file cannot be written, arg.101 for shard_rows == 0.
template <int = 0>
std::size_t capture_to_shards(const transformer& model,
                                     const std::vector<std::vector<std::int32_t>>& corpus,
                                     std::string_view hook_name, const std::string& directory,
                                     const capture_options& options = {});

/// Reads a capture directory written by capture_to_shards. Opening validates the manifest and every
/// shard's header (dtype, shape, row count); reading a shard reads only its data, into one buffer
/// reused across calls. Not thread-safe (the buffer is shared); one reader per thread.
class capture_reader {
public:
    /// Opens `directory`/manifest.json. Throws actlens::error: io.201 (missing or unreadable file),
    /// io.204 (a manifest field missing or of the wrong type, a shard whose shape disagrees with the
    /// manifest), io.206 (a shard that is not <f4 / <i4). A template (of nothing) so that the JSON
    /// parser is compiled only where a capture is opened (io/json.hpp).
    template <class Deferred = void>
    explicit capture_reader(const std::string& directory);

    const std::string& hook() const noexcept { return m_hook; }
    std::size_t width() const noexcept { return m_width; }
    std::size_t rows() const noexcept { return m_rows; }
    std::size_t shard_count() const noexcept { return m_shards.size(); }
    /// The manifest as written (model sizes, skip tokens, shard list), members in file order.
    const io::json_value& manifest() const noexcept { return m_manifest; }

    /// Rows of shard i: [first_row, first_row + count).
    std::size_t shard_first_row(std::size_t i) const { return shard(i).first_row; }
    std::size_t shard_rows(std::size_t i) const { return shard(i).rows; }

    /// Shard i's values [rows, width], valid until the next read through this reader.
    tensor_view<const float> read_shard(std::size_t i);

    /// Rows [begin, begin + count) as [count, width]: a view into the shard buffer when they lie in
    /// one shard, else gathered into `scratch`. Valid until the next read or change of `scratch`.
    /// Throws arg.103 for a range past the end. (The block source methods/snmf.hpp iterates.)
    tensor_view<const float> block(std::size_t begin, std::size_t count, tensor<float>& scratch);

    /// Token id, sequence and position of every row (12 bytes per row, read from the *_rows files).
    capture_rows row_info() const;

    /// Everything in memory (tests, small captures).
    captured_activations read_all();

private:
    struct shard_entry {
        std::string values_path, rows_path;
        std::size_t rows = 0, first_row = 0, data_offset = 0;
    };
    const shard_entry& shard(std::size_t i) const {
        if (i >= m_shards.size())
            fail(errc::out_of_range, "capture_reader: shard {} of {} in '{}'", i, m_shards.size(), m_directory);
        return m_shards[i];
    }

    std::string m_directory, m_hook;
    std::size_t m_width = 0, m_rows = 0;
    io::json_value m_manifest;
    std::vector<shard_entry> m_shards;
    tensor<float> m_buffer;
    std::size_t m_loaded = static_cast<std::size_t>(-1);
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

/// The capture plan shared by the two capture functions: which point, which width, where to stop.
struct capture_plan {
    hook_point point;
    std::size_t width = 0;
    run_options<float> run;
};

template <int = 0>
capture_plan make_capture_plan(const transformer& model, std::string_view hook_name) {
    capture_plan plan;
    plan.point = hook_point::parse(hook_name);
    const model_config& c = model.config();
    hook_layout::of(c).check(plan.point, "capture");
    switch (plan.point.site) {
    case site::attn_scores:
    case site::attn_pattern:
        fail(errc::bad_hook_name, "capture: '{}' is [B, H, T, T_k], not one row per position", hook_name);
    case site::attn_q:
    case site::attn_rot_q:
    case site::attn_z: plan.width = c.n_heads * c.d_head; break;
    case site::attn_k:
    case site::attn_v:
    case site::attn_rot_k: plan.width = c.n_kv_heads * c.d_head; break;
    case site::mlp_pre:
    case site::mlp_pre_linear:
    case site::mlp_post: plan.width = c.d_mlp; break;
    default: plan.width = c.d_model; break;
    }
    // Nothing above the hooked block is needed: stop there (embeddings: before block 0).
    if (is_block_site(plan.point.site))
        plan.run.stop_at_layer = plan.point.layer + 1;
    else if (plan.point.site != site::ln_final_normalized)
        plan.run.stop_at_layer = 0;
    else
        plan.run.last_position_only = true;
    return plan;
}

/// Runs sequences [first, end) of the corpus and hands each kept row to sink(row values, token,
/// sequence, position). Progress counts the sequences of that range.
template <class Sink>
void run_capture(const transformer& model, const std::vector<std::vector<std::int32_t>>& corpus, std::size_t first,
                 std::size_t end, const capture_plan& plan, const capture_options& options, Sink&& sink) {
    workspace<float> ws;
    hook_set<float> hooks;
    const std::vector<std::int32_t>* current = nullptr;
    std::uint32_t sequence = 0;
    hooks.add(plan.point, [&](tensor_view<float> a, const hook_context& ctx) {
        // Per position, the trailing extents are one row of `width` (contiguous in the workspace;
        // the strided path keeps this correct for any view).
        const auto flat = a.rank() == 4 ? a.reshaped({a.extent(0), a.extent(1), a.extent(2) * a.extent(3)}) : a;
        for (std::size_t t = 0; t < ctx.positions; ++t) {
            const std::int32_t token = (*current)[t];
            if (std::find(options.skip_tokens.begin(), options.skip_tokens.end(), token) != options.skip_tokens.end())
                continue;
            sink(&flat(0, t, 0), flat.stride(2), token, sequence, static_cast<std::uint32_t>(t));
        }
    });
    run_options<float> run = plan.run;
    run.hooks = &hooks;
    for (std::size_t s = first; s < end; ++s) {
        if (corpus[s].empty()) fail(errc::empty_prompt, "capture: sequence {} of the corpus is empty", s);
        current = &corpus[s];
        sequence = static_cast<std::uint32_t>(s);
        model.forward_into(ws, tensor_view<const std::int32_t>(corpus[s].data(), {corpus[s].size()}), run);
        if (options.on_progress) options.on_progress(s + 1 - first, end - first);
    }
}

inline void copy_row(const float* src, std::ptrdiff_t stride, std::size_t width, float* dst) noexcept {
    if (stride == 1)
        std::copy(src, src + width, dst);
    else
        for (std::size_t i = 0; i < width; ++i) dst[i] = src[std::ptrdiff_t(i) * stride];
}

inline std::string shard_name(const std::string& prefix, std::size_t index, const char* suffix) {
    char number[32];
    std::snprintf(number, sizeof number, "%05zu", index);
    return prefix + number + suffix;
}

/// A shard file name from a manifest: a plain name beside the manifest, never a path elsewhere.
inline const std::string& shard_file_name(const io::json_value& name, const std::string& path) {
    const std::string& file = name.as_string();
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos)
        fail(errc::bad_header, "capture manifest '{}': shard file {} is not a file name in the capture's directory",
             path, io::detail::json_excerpt(name));
    return file;
}

/// A manifest field of the expected JSON type, or io.204 naming it.
inline const io::json_value& manifest_field(const io::json_value& j, const char* key, const std::string& path,
                                            bool (io::json_value::*is_type)() const noexcept) {
    const io::json_value* it = j.find(key);
    if (!it || !(it->*is_type)())
        fail(errc::bad_header, "capture manifest '{}': field '{}' is missing or of the wrong type", path, key);
    return *it;
}

} // namespace detail

template <int>
captured_activations capture_activations(const transformer& model,
                                                const std::vector<std::vector<std::int32_t>>& corpus,
                                                std::string_view hook_name, const capture_options& options) {
    const detail::capture_plan plan = detail::make_capture_plan(model, hook_name);
    captured_activations out;
    out.hook = plan.point.name();
    // Count the kept rows first so that the values are allocated once.
    std::size_t rows = 0;
    for (const auto& seq : corpus)
        for (std::int32_t t : seq)
            rows += std::find(options.skip_tokens.begin(), options.skip_tokens.end(), t) == options.skip_tokens.end();
    out.values.reshape_uninitialized({rows, plan.width});
    out.rows.token.reserve(rows);
    out.rows.sequence.reserve(rows);
    out.rows.position.reserve(rows);
    std::size_t next = 0;
    detail::run_capture(model, corpus, 0, corpus.size(), plan, options,
                        [&](const float* src, std::ptrdiff_t stride, std::int32_t token, std::uint32_t seq,
                            std::uint32_t pos) {
                            detail::copy_row(src, stride, plan.width, out.values.data() + next * plan.width);
                            ++next;
                            out.rows.token.push_back(token);
                            out.rows.sequence.push_back(seq);
                            out.rows.position.push_back(pos);
                        });
    return out;
}

namespace detail {

/// Captures sequences [first, end) of the corpus into shard files of `directory` named
/// `prefix`NNNNN.npy (and `prefix`NNNNN_rows.npy). Returns the shard entries of a manifest, with
/// first_row counted from the first row this call writes.
template <int = 0>
io::json_value write_capture_shards(const transformer& model, const std::vector<std::vector<std::int32_t>>& corpus,
                                    std::size_t first, std::size_t end, const capture_plan& plan,
                                    const capture_options& options, const std::string& directory,
                                    const std::string& prefix) {
    const std::size_t width = plan.width;
    tensor<float> values({options.shard_rows, width});
    tensor<std::int32_t> meta({options.shard_rows, 3});
    std::size_t fill = 0, total = 0;
    io::json_value shards = io::json_value::array();
    auto flush = [&]() {
        if (fill == 0) return;
        const std::size_t index = shards.size();
        const std::string values_name = shard_name(prefix, index, ".npy");
        const std::string rows_name = shard_name(prefix, index, "_rows.npy");
        io::save_npy(directory + "/" + values_name, tensor_view<const float>(values.view()).rows(0, fill));
        io::save_npy(directory + "/" + rows_name, tensor_view<const std::int32_t>(meta.view()).rows(0, fill));
        shards.push_back(io::json_value::object(
            {{"values", values_name}, {"rows_file", rows_name}, {"rows", fill}, {"first_row", total}}));
        total += fill;
        fill = 0;
    };
    run_capture(model, corpus, first, end, plan, options,
                [&](const float* src, std::ptrdiff_t stride, std::int32_t token, std::uint32_t seq, std::uint32_t pos) {
                    copy_row(src, stride, width, values.data() + fill * width);
                    meta(fill, 0) = token;
                    meta(fill, 1) = static_cast<std::int32_t>(seq);
                    meta(fill, 2) = static_cast<std::int32_t>(pos);
                    if (++fill == options.shard_rows) flush();
                });
    flush();
    return shards;
}

/// Checks the options and makes the capture's directory; returns the plan.
template <int = 0>
capture_plan prepare_capture_directory(const transformer& model, std::string_view hook_name,
                                       const std::string& directory, const capture_options& options) {
    if (options.shard_rows == 0) fail(errc::invalid_argument, "capture_to_shards: options.shard_rows must be > 0");
    capture_plan plan = make_capture_plan(model, hook_name);
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) fail(errc::file_open, "capture_to_shards: cannot create directory '{}': {}", directory, ec.message());
    return plan;
}

/// Writes `directory`/manifest.json for `shards` (entries in row order, first_row already global).
template <int = 0>
void write_capture_manifest(const transformer& model, const capture_plan& plan, const capture_options& options,
                            std::size_t sequences, std::size_t rows, const io::json_value& shards,
                            const std::string& directory) {
    const model_config& c = model.config();
    using json = io::json_value;
    json skip_tokens = json::array();
    for (const std::int32_t t : options.skip_tokens) skip_tokens.push_back(t);
    const json manifest = json::object({{"format", "actlens.capture"},
                                        {"version", 1},
                                        {"hook", plan.point.name()},
                                        {"width", plan.width},
                                        {"rows", rows},
                                        {"sequences", sequences},
                                        {"skip_tokens", std::move(skip_tokens)},
                                        {"model", json::object({{"family", c.family},
                                                                {"n_layers", c.n_layers},
                                                                {"d_model", c.d_model},
                                                                {"d_mlp", c.d_mlp},
                                                                {"n_heads", c.n_heads},
                                                                {"n_kv_heads", c.n_kv_heads},
                                                                {"vocab_size", c.vocab_size}})},
                                        {"rows_columns", json::array({"token", "sequence", "position"})},
                                        {"shards", shards}});
    const std::string path = directory + "/manifest.json";
    std::ofstream file(path);
    file << io::dump_json(manifest, 1) << '\n';
    file.flush();
    if (!file) fail(errc::file_open, "capture_to_shards: cannot write '{}'", path);
}

} // namespace detail

template <int>
std::size_t capture_to_shards(const transformer& model, const std::vector<std::vector<std::int32_t>>& corpus,
                                     std::string_view hook_name, const std::string& directory,
                                     const capture_options& options) {
    const detail::capture_plan plan = detail::prepare_capture_directory(model, hook_name, directory, options);
    const io::json_value shards =
        detail::write_capture_shards(model, corpus, 0, corpus.size(), plan, options, directory, "shard_");
    std::size_t rows = 0;
    for (const io::json_value& s : shards.elements()) rows += s.find("rows")->integer_magnitude();
    detail::write_capture_manifest(model, plan, options, corpus.size(), rows, shards, directory);
    return rows;
}

template <class Deferred>
capture_reader::capture_reader(const std::string& directory) : m_directory(directory) {
    const std::string path = directory + "/manifest.json";
    std::ifstream file(path, std::ios::binary);
    if (!file) fail(errc::file_open, "capture_reader: cannot open '{}': {}", path, std::strerror(errno));
    const std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    // Bounded nesting (io/json.hpp): a hostile manifest of 24,000 '[' is refused, not a stack overflow.
    m_manifest = io::parse_json<Deferred>(text, path, errc::bad_header);
    if (!m_manifest.is_object())
        fail(errc::bad_header, "capture manifest '{}' is not a JSON object", path);
    using detail::manifest_field;
    using json = io::json_value;
    m_hook = manifest_field(m_manifest, "hook", path, &json::is_string).as_string();
    m_width = manifest_field(m_manifest, "width", path, &json::is_unsigned).integer_magnitude();
    m_rows = manifest_field(m_manifest, "rows", path, &json::is_unsigned).integer_magnitude();
    if (m_width == 0) fail(errc::bad_header, "capture manifest '{}': width is 0", path);
    std::size_t next_row = 0;
    for (const json& s : manifest_field(m_manifest, "shards", path, &json::is_array).elements()) {
        if (!s.is_object()) fail(errc::bad_header, "capture manifest '{}': a shard entry is not an object", path);
        shard_entry e;
        using detail::shard_file_name;
        e.values_path = directory + "/" + shard_file_name(manifest_field(s, "values", path, &json::is_string), path);
        e.rows_path = directory + "/" + shard_file_name(manifest_field(s, "rows_file", path, &json::is_string), path);
        e.rows = manifest_field(s, "rows", path, &json::is_unsigned).integer_magnitude();
        e.first_row = manifest_field(s, "first_row", path, &json::is_unsigned).integer_magnitude();
        if (e.first_row != next_row || e.rows == 0)
            fail(errc::bad_header, "capture manifest '{}': shard {} starts at row {} with {} rows, expected start {}",
                 path, m_shards.size(), e.first_row, e.rows, next_row);
        const io::npy_info values = io::read_npy_info(e.values_path);
        if (values.descr != "<f4")
            fail(errc::unsupported_format, "capture shard '{}' holds dtype '{}', expected '<f4'", e.values_path,
                 values.descr);
        if (values.shape != shape_t{e.rows, m_width})
            fail(errc::bad_header, "capture shard '{}' has shape {}, the manifest says [{}, {}]", e.values_path,
                 values.shape.to_string(), e.rows, m_width);
        const io::npy_info meta = io::read_npy_info(e.rows_path);
        if (meta.descr != "<i4" || meta.shape != shape_t{e.rows, 3})
            fail(errc::bad_header, "capture rows file '{}' is {} {}, expected <i4 [{}, 3]", e.rows_path, meta.descr,
                 meta.shape.to_string(), e.rows);
        e.data_offset = values.data_offset;
        next_row += e.rows;
        m_shards.push_back(std::move(e));
    }
    if (next_row != m_rows)
        fail(errc::bad_header, "capture manifest '{}': shards hold {} rows, the manifest says {}", path, next_row,
             m_rows);
}

inline tensor_view<const float> capture_reader::read_shard(std::size_t i) {
    const shard_entry& e = shard(i);
    if (m_loaded != i) {
        // Into the one reused buffer: reading costs a copy from the page cache but never faults
        // fresh pages per pass, which a new mapping or allocation would (core/memory.hpp).
        m_loaded = static_cast<std::size_t>(-1);
        m_buffer.reshape_uninitialized({e.rows, m_width});
        std::unique_ptr<std::FILE, io::detail::npy_file_closer> f(std::fopen(e.values_path.c_str(), "rb"));
        if (!f) fail(errc::file_open, "capture_reader: cannot open '{}': {}", e.values_path, std::strerror(errno));
        const std::size_t bytes = e.rows * m_width * sizeof(float);
        if (std::fseek(f.get(), static_cast<long>(e.data_offset), SEEK_SET) != 0 ||
            std::fread(m_buffer.data(), 1, bytes, f.get()) != bytes)
            fail(errc::file_truncated, "capture_reader: '{}' ends before its {} rows", e.values_path, e.rows);
        m_loaded = i;
    }
    return tensor_view<const float>(m_buffer.data(), {e.rows, m_width});
}

inline tensor_view<const float> capture_reader::block(std::size_t begin, std::size_t count, tensor<float>& scratch) {
    if (begin > m_rows || count > m_rows - begin)
        fail(errc::out_of_range, "capture_reader: rows [{}, {}) past the {} rows of '{}'", begin, begin + count,
             m_rows, m_directory);
    // The shard holding `begin` (shards are few: a linear search is fine).
    if (count == 0) return tensor_view<const float>(scratch.data(), {0, m_width});
    std::size_t s = 0;
    while (s + 1 < m_shards.size() && m_shards[s + 1].first_row <= begin) ++s;
    const std::size_t offset = begin - m_shards[s].first_row;
    if (offset + count <= m_shards[s].rows) return read_shard(s).rows(offset, offset + count);
    scratch.reshape_uninitialized({count, m_width});
    std::size_t done = 0;
    while (done < count) {
        const tensor_view<const float> v = read_shard(s);
        const std::size_t from = begin + done - m_shards[s].first_row;
        const std::size_t take = std::min(count - done, m_shards[s].rows - from);
        std::copy(&v(from, 0), &v(from, 0) + take * m_width, scratch.data() + done * m_width);
        done += take;
        ++s;
    }
    return tensor_view<const float>(scratch.data(), {count, m_width});
}

inline capture_rows capture_reader::row_info() const {
    capture_rows out;
    out.token.reserve(m_rows);
    out.sequence.reserve(m_rows);
    out.position.reserve(m_rows);
    for (const shard_entry& e : m_shards) {
        const tensor<std::int32_t> meta = io::load_npy<std::int32_t>(e.rows_path);
        for (std::size_t r = 0; r < e.rows; ++r) {
            out.token.push_back(meta(r, 0));
            out.sequence.push_back(static_cast<std::uint32_t>(meta(r, 1)));
            out.position.push_back(static_cast<std::uint32_t>(meta(r, 2)));
        }
    }
    return out;
}

inline captured_activations capture_reader::read_all() {
    captured_activations out;
    out.hook = m_hook;
    out.values.reshape_uninitialized({m_rows, m_width});
    for (std::size_t i = 0; i < m_shards.size(); ++i) {
        const tensor_view<const float> v = read_shard(i);
        std::copy(v.data(), v.data() + v.size(), out.values.data() + m_shards[i].first_row * m_width);
    }
    out.rows = row_info();
    return out;
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE capture_reader::capture_reader(const std::string&);
ACTLENS_EXTERN_TEMPLATE captured_activations capture_activations<0>(const transformer&,
                                                                   const std::vector<std::vector<std::int32_t>>&,
                                                                   std::string_view, const capture_options&);
ACTLENS_EXTERN_TEMPLATE std::size_t capture_to_shards<0>(const transformer&,
                                                         const std::vector<std::vector<std::int32_t>>&,
                                                         std::string_view, const std::string&, const capture_options&);
#endif

} // namespace actlens
