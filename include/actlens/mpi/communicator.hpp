// actlens/mpi/communicator.hpp: the few collective operations the distributed methods need.
//
// Optional: only the headers under actlens/mpi/ include <mpi.h>, and only programs that include them
// link MPI (CMake: ACTLENS_MPI, target actlens::mpi). The host program owns MPI: it calls MPI_Init
// and MPI_Finalize and passes a communicator in; actlens never initialises, duplicates or frees one.
//
// Errors: MPI's own errors abort under MPI's default handler. Errors of actlens inside distributed
// work (a bad file on one rank, a NaN in one rank's rows) must not leave the other ranks waiting in a
// collective, so distributed work runs through `together`: every rank learns whether any rank
// failed, and every rank throws.
#pragma once

#include <actlens/core/exact_sums.hpp>
#include <actlens/error.hpp>

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace actlens::mpi {

class communicator {
public:
    /// Wraps `comm` (not owned). MPI must be initialised.
    explicit communicator(MPI_Comm comm = MPI_COMM_WORLD) : m_comm(comm) {
        int initialised = 0;
        MPI_Initialized(&initialised);
        if (!initialised) fail(errc::invalid_argument, "mpi::communicator: MPI_Init has not been called");
        MPI_Comm_rank(m_comm, &m_rank);
        MPI_Comm_size(m_comm, &m_size);
    }

    int rank() const noexcept { return m_rank; }
    int size() const noexcept { return m_size; }
    MPI_Comm native() const noexcept { return m_comm; }

    /// This rank's share [first, second) of `count` items split into size() contiguous ranges, in
    /// rank order (rank r gets [count·r/P, count·(r+1)/P)): the split every distributed method uses.
    std::pair<std::size_t, std::size_t> share(std::size_t count) const noexcept {
        const auto p = static_cast<std::size_t>(m_size), r = static_cast<std::size_t>(m_rank);
        return {count * r / p, count * (r + 1) / p};
    }

    /// Every rank's sums become the sums over all ranks: exact, so the result does not depend on the
    /// number of ranks (core/exact_sums.hpp). Bytes sent per rank: 32 per sum (an all-reduce).
    void sum(exact_sums& sums) const {
        sums.normalize();
        static_assert(sizeof(std::int64_t) == sizeof(long long), "MPI_LONG_LONG is the int64 digit type");
        MPI_Allreduce(MPI_IN_PLACE, sums.digit_data(), static_cast<int>(sums.digit_count()), MPI_LONG_LONG, MPI_SUM,
                      m_comm);
        sums.digits_replaced(static_cast<std::size_t>(m_size));
    }

    /// True on every rank if `local` is true on any rank.
    bool any(bool local) const {
        int flag = local ? 1 : 0;
        MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_MAX, m_comm);
        return flag != 0;
    }

    /// Every rank's bytes, in rank order, on every rank.
    std::vector<std::string> all_gather(const std::string& mine) const {
        const int length = static_cast<int>(mine.size());
        if (mine.size() > static_cast<std::size_t>(1) << 30)
            fail(errc::invalid_argument, "mpi::all_gather: {} bytes from one rank exceed 1 GiB", mine.size());
        std::vector<int> lengths(static_cast<std::size_t>(m_size)), offsets(static_cast<std::size_t>(m_size));
        MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, m_comm);
        long long total = 0;
        for (std::size_t r = 0; r < lengths.size(); ++r) {
            offsets[r] = static_cast<int>(total);
            total += lengths[r];
        }
        if (total > (1LL << 31) - 1)
            fail(errc::invalid_argument, "mpi::all_gather: {} bytes in all exceed 2 GiB", total);
        std::string all(static_cast<std::size_t>(total), '\0');
        MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, m_comm);
        std::vector<std::string> out;
        for (std::size_t r = 0; r < lengths.size(); ++r)
            out.push_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r])));
        return out;
    }

    void barrier() const { MPI_Barrier(m_comm); }

private:
    MPI_Comm m_comm;
    int m_rank = 0, m_size = 1;
};

/// Runs `work()` on this rank, then tells every rank whether any rank's work threw. A rank whose
/// work threw rethrows its own error; the others throw an actlens::error naming the failed ranks and
/// `what`. Every rank must call it at the same point (it is a collective).
template <class Work>
void together(const communicator& comm, const char* what, Work&& work) {
    std::exception_ptr failure;
    try {
        work();
    } catch (...) {
        failure = std::current_exception();
    }
    const std::vector<std::string> failed = comm.all_gather(failure ? std::string(1, '1') : std::string());
    std::string ranks;
    for (std::size_t r = 0; r < failed.size(); ++r)
        if (!failed[r].empty()) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (failure) std::rethrow_exception(failure);
    if (!ranks.empty()) fail(errc::remote_failure, "{}: failed on rank {} (see that rank's error)", what, ranks);
}

} // namespace actlens::mpi
