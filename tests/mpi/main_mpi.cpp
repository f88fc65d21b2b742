// The MPI test runner: MPI_Init, Catch2's session on every rank, MPI_Finalize. A rank's failures make
// its exit code non-zero, which mpiexec reports as the run's failure. Only rank 0 prints a summary
// when every rank passes, so the log reads like one process's.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <mpi.h>

#include <cstdio>

int main(int argc, char* argv[]) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Catch::Session session;
    int rc = session.applyCommandLine(argc, argv);
    if (rc == 0) {
        if (rank != 0) session.configData().reporterName = "compact"; // one line per failure, none when all pass
        rc = session.run();
    }
    int worst = 0;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) std::printf("actlens MPI tests on %d ranks: %s\n", size, worst == 0 ? "all ranks passed" : "FAILED");
    MPI_Finalize();
    return rc;
}
