// actlens/mpi/capture.hpp: one hook's activations over a corpus, captured by many MPI ranks.
//
// Every rank holds the corpus's token ids (small next to the activations) and the model; rank r
// runs its contiguous share of the sequences (communicator::share) and writes its own shard files,
// shard_rRRRRR_NNNNN.npy, into one directory that every rank can write (a shared file system).
// Rank 0 then writes the one manifest.json, listing every rank's shards in rank order, so the
// directory is read by the single-process capture_reader (methods/capture.hpp) and its rows are,
// in order and bit for bit, those of capture_to_shards in one process. What crosses the network is
// only the shard lists (a few hundred bytes per shard), never activations.
#pragma once

#include <actlens/methods/capture.hpp>
#include <actlens/mpi/communicator.hpp>

#include <actlens/io/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace actlens::mpi {

/// capture_to_shards (methods/capture.hpp) with the sequences split over the ranks of `comm`. Every
/// rank passes the same corpus, hook, directory and options. Returns the total number of rows on
/// every rank. options.on_progress reports the rank's own sequences. A collective: an error on one
/// rank (a bad token id in its sequences, an unwritable file) throws there and an actlens::error
/// (mpi.601) on the others, and no manifest is written.
template <int = 0>
std::size_t capture_to_shards(const communicator& comm, const transformer& model,
                              const std::vector<std::vector<std::int32_t>>& corpus, std::string_view hook_name,
                              const std::string& directory, const capture_options& options = {}) {
    detail::capture_plan plan;
    io::json_value mine;
    together(comm, "mpi::capture_to_shards", [&] {
        plan = detail::prepare_capture_directory(model, hook_name, directory, options);
        const auto [first, end] = comm.share(corpus.size());
        char prefix[32];
        std::snprintf(prefix, sizeof prefix, "shard_r%05d_", comm.rank());
        mine = detail::write_capture_shards(model, corpus, first, end, plan, options, directory, prefix);
    });
    // Every rank learns every rank's shard list; rank 0 offsets them into one row order.
    const std::vector<std::string> lists = comm.all_gather(io::dump_json(mine));
    io::json_value shards = io::json_value::array();
    std::size_t rows = 0;
    for (const std::string& text : lists)
        for (io::json_value shard : io::parse_json(text, "a rank's shard list", errc::remote_failure).elements()) {
            const std::uint64_t count = shard.find("rows")->integer_magnitude();
            shard.set("first_row", rows);
            rows += count;
            shards.push_back(std::move(shard));
        }
    together(comm, "mpi::capture_to_shards (manifest)", [&] {
        if (comm.rank() == 0) detail::write_capture_manifest(model, plan, options, corpus.size(), rows, shards, directory);
    });
    return rows;
}

} // namespace actlens::mpi
