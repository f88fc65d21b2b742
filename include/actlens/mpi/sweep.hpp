// actlens/mpi/sweep.hpp: a patching / AtP / RelP / IG sweep over many prompt pairs, spread over ranks.
//
// Each item of a sweep (one prompt pair, one method) is independent of the others, so rank r runs
// its contiguous share of the items (communicator::share) and the results are gathered in item
// order on every rank. Each result is computed exactly as one process computes it, so the gathered
// list is bitwise the list a loop in one process makes. What crosses the network: each result's
// axes, shape and scores (8 bytes per score).
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/patching.hpp>
#include <actlens/mpi/communicator.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace actlens::mpi {

namespace detail {

inline void put_u64(std::string& out, std::uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

inline std::uint64_t get_u64(const std::string& in, std::size_t& at) {
    std::uint64_t v = 0;
    if (in.size() - at < sizeof v) fail(errc::file_truncated, "mpi::sweep: a gathered result ends early");
    std::memcpy(&v, in.data() + at, sizeof v);
    at += sizeof v;
    return v;
}

/// Results as bytes: per result its axes (length-prefixed), its shape and its scores (native
/// endianness: every rank of one job runs on the same kind of machine).
inline std::string encode_results(const std::vector<patching_result>& results) {
    std::string out;
    put_u64(out, results.size());
    for (const patching_result& r : results) {
        put_u64(out, r.axes.size());
        for (const std::string& a : r.axes) {
            put_u64(out, a.size());
            out += a;
        }
        put_u64(out, std::uint64_t(r.scores.rank()));
        for (int i = 0; i < r.scores.rank(); ++i) put_u64(out, r.scores.extent(i));
        out.append(reinterpret_cast<const char*>(r.scores.data()), r.scores.size() * sizeof(double));
    }
    return out;
}

inline void decode_results(const std::string& in, std::vector<patching_result>& out) {
    std::size_t at = 0;
    const std::uint64_t count = get_u64(in, at);
    for (std::uint64_t k = 0; k < count; ++k) {
        patching_result r;
        const std::uint64_t axes = get_u64(in, at);
        for (std::uint64_t a = 0; a < axes; ++a) {
            const std::uint64_t length = get_u64(in, at);
            if (in.size() - at < length) fail(errc::file_truncated, "mpi::sweep: a gathered result ends early");
            r.axes.push_back(in.substr(at, length));
            at += length;
        }
        const std::uint64_t rank = get_u64(in, at);
        if (rank > std::uint64_t(max_rank))
            fail(errc::bad_header, "mpi::sweep: a gathered result has rank {}", rank);
        if (rank > 0) { // rank 0: an empty result, as a default patching_result
            shape_t shape;
            shape.rank = static_cast<int>(rank);
            for (std::size_t i = 0; i < rank; ++i) shape.extents[i] = get_u64(in, at);
            r.scores.reshape_uninitialized(shape);
        }
        const std::size_t bytes = r.scores.size() * sizeof(double);
        if (in.size() - at < bytes) fail(errc::file_truncated, "mpi::sweep: a gathered result ends early");
        std::memcpy(r.scores.data(), in.data() + at, bytes);
        at += bytes;
        out.push_back(std::move(r));
    }
}

} // namespace detail

/// Runs `item(i)` -> patching_result for every i < count, rank r on its share of the items, and
/// returns all results in item order on every rank. `item` is typically a lambda calling
/// activation_patch, attribution_patch (AtP, RelP) or integrated_gradients on pair i. A collective:
/// an error in one rank's items throws there and an actlens::error (mpi.601) on the others.
template <class Item>
std::vector<patching_result> sweep(const communicator& comm, std::size_t count, Item&& item) {
    std::vector<patching_result> mine;
    together(comm, "mpi::sweep", [&] {
        const auto [first, end] = comm.share(count);
        for (std::size_t i = first; i < end; ++i) mine.push_back(item(i));
    });
    std::vector<patching_result> all;
    all.reserve(count);
    for (const std::string& part : comm.all_gather(detail::encode_results(mine))) detail::decode_results(part, all);
    return all;
}

} // namespace actlens::mpi
