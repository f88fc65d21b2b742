// actlens/mpi/snmf.hpp: SNMF of activations spread over MPI ranks.
//
// The data's blocks of `block_rows` tokens are split into contiguous shares, one per rank, in rank
// order (communicator::share). Each rank reads only its blocks and keeps only its rows of G; per
// iteration the ranks exchange one all-reduce of the pass's exact sums: A G [d, K], GᵀG [K, K] and
// two scalars, 32 bytes each, i.e. 32·(d·K + K² + 2) bytes per rank and iteration (plus the
// one-byte agreement on stopping). Because those sums are exact (core/exact_sums.hpp), Z, the loss
// curve, the stopping iteration and every rank's rows of G are bitwise those of fit_snmf in one
// process on the same data, blocking and threads per process, for any number of ranks.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/snmf.hpp>
#include <actlens/mpi/communicator.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace actlens::mpi {

/// The rows [first, second) whose G a rank holds in fit_snmf: its share of the blocks (the rows to
/// load when each rank holds only its own data; see local_rows).
inline std::pair<std::size_t, std::size_t> snmf_rows_of(const communicator& comm, std::size_t rows,
                                                        std::size_t block_rows) {
    if (block_rows == 0) fail(errc::invalid_argument, "mpi::snmf_rows_of: block_rows must be >= 1");
    const auto [first_block, end_block] = comm.share((rows + block_rows - 1) / block_rows);
    return {std::min(first_block * block_rows, rows), std::min(end_block * block_rows, rows)};
}

/// An SNMF source for a rank that holds only rows [first_row, first_row + local.rows) of a matrix of
/// `total_rows` rows: asking for rows outside them is an error (arg.103) naming the range.
class local_rows {
public:
    local_rows(tensor_view<const float> local, std::size_t first_row, std::size_t total_rows)
        : m_local(local), m_first(first_row), m_total(total_rows) {
        if (local.rank() != 2 || (local.extent(0) > 0 && local.stride(1) != 1))
            fail(errc::shape_mismatch, "mpi::local_rows: the local rows must be a [rows, width] matrix with "
                                       "contiguous rows, got {}",
                 local.shape().to_string());
        if (first_row > total_rows || local.extent(0) > total_rows - first_row)
            fail(errc::out_of_range, "mpi::local_rows: rows [{}, {}) are not within the {} rows", first_row,
                 first_row + local.extent(0), total_rows);
    }
    std::size_t rows() const noexcept { return m_total; }
    std::size_t width() const noexcept { return m_local.extent(1); }
    tensor_view<const float> block(std::size_t begin, std::size_t count, tensor<float>&) const {
        if (begin < m_first || count > m_local.extent(0) || begin - m_first > m_local.extent(0) - count)
            fail(errc::out_of_range, "mpi::local_rows: rows [{}, {}) requested, this rank holds [{}, {})", begin,
                 begin + count, m_first, m_first + m_local.extent(0));
        return m_local.rows(begin - m_first, begin - m_first + count);
    }

private:
    tensor_view<const float> m_local;
    std::size_t m_first, m_total;
};

/// Fits SNMF to the rows of `source` (n rows in all; every rank passes a source of the same rows()
/// and width() that can read at least its own rows, snmf_rows_of) with the same options on every
/// rank. Returns on every rank the same features, loss curve and stop; `coefficients` holds the
/// rank's rows of G, starting at `first_row`. A collective: every rank of `comm` must call it.
/// Errors in one rank's data (a NaN, an unreadable shard) throw on that rank and an
/// actlens::error (mpi.601) on the others. on_iteration is called on every rank; if any rank's
/// returns false, every rank stops.
template <class Source>
snmf_result fit_snmf(const communicator& comm, Source& source, const snmf_options& options = {}) {
    // The same data shape everywhere, checked before any rank enters the fit's collectives.
    const std::string shape = std::to_string(source.rows()) + " x " + std::to_string(source.width());
    const std::vector<std::string> shapes = comm.all_gather(shape);
    for (std::size_t r = 0; r < shapes.size(); ++r)
        if (shapes[r] != shapes.front())
            fail(errc::shape_mismatch, "mpi::fit_snmf: rank 0's source is {} rows x width, rank {}'s is {}",
                 shapes.front(), r, shapes[r]);
    detail::check_snmf_options(options, source.rows(), source.width());
    detail::snmf_partition part;
    std::tie(part.first_block, part.end_block) =
        comm.share((source.rows() + options.block_rows - 1) / options.block_rows);
    part.combine = [&comm](exact_sums& sums) { comm.sum(sums); };
    part.any = [&comm](bool flag) { return comm.any(flag); };
    part.together = [&comm](const char* what, const std::function<void()>& work) { together(comm, what, work); };
    return detail::fit_snmf_partitioned(source, options, part);
}

} // namespace actlens::mpi
