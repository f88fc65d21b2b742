// actlens/methods/snmf.hpp: semi-nonnegative matrix factorisation of activations (SNMF).
//
// Shafran, Geiger & Geva, "Decomposing MLP Activations into Interpretable Features via
// Semi-Nonnegative Matrix Factorization" (arXiv 2506.10920); the update schedule, stopping rule and
// defaults are those of the authors' NMFSemiNMF.fit:
//
//   A ≈ Z Y,  A [d_a, n] activations (one column per token), Z [d_a, K] mixed-sign features,
//   Y [K, n] >= 0 coefficients. With G = Yᵀ [n, K], every iteration does
//     1. Z ← A G (GᵀG + λI)⁻¹                                  exact least squares (λ = 1e-6)
//     2. winner-take-all: in each column of Z keep |entries| >= the ceil(s·d_a)-th largest
//     3. c_j = max(‖G_:j‖, 1e-8); G_:j /= c_j; Z_:j *= c_j
//     4. G ← G ⊙ sqrt((P⁺ + G Q⁻) / (P⁻ + G Q⁺ + 1e-6)),  P = Aᵀ Z, Q = ZᵀZ  (Ding, Li & Jordan)
//     5. loss = ‖A − Z Gᵀ‖²_F; a loss below best − tol resets the patience counter and keeps
//        (Z, G); otherwise the counter grows and the fit stops when it reaches `patience`.
//   The best (Z, G) is returned, with the loss of every iteration.
//
// Out of core by construction: the data is read as blocks of tokens (rows of the [n, d_a] capture,
// i.e. columns of A), once per iteration, and every update needs only per-block products. During
// the pass of iteration i, each block b computes P_b = A_bᵀ Z, updates its rows G_b (step 4), adds
// its share of the loss (‖A‖² − 2 Σ P ⊙ G + Σ Q ⊙ GᵀG, so A Gᵀ is never formed), and accumulates
// A G and GᵀG with the new G: exactly what step 1 of iteration i + 1 needs. Two products of
// d_a·n_b·K per block and iteration, the minimum; G (n·K, d_a/K times smaller than A) stays in
// memory. Every sum over blocks (A G, GᵀG, the loss's terms, and the starts' sums) is kept exactly
// (core/exact_sums.hpp): its value does not depend on the order in which blocks are added, so a fit
// whose blocks are spread over processes (mpi/snmf.hpp) gives the same bits as one process. The
// result depends on `block_rows` only through float rounding inside a block, and not at all on
// where the data lives: a tensor in memory and the same rows in capture shards give identical bits.
//
// Products use Eigen, each thread of the caller's OpenMP team on its own rows or columns (one
// parallel region per block; see detail::snmf_team for why not Eigen's own threading).
// Deterministic for a given seed, block_rows and thread count per process (a block's products are
// split over the team's threads); independent of the number of processes.
#pragma once

#include <actlens/compiled.hpp>
#include <actlens/core/deferred.hpp>
#include <actlens/core/exact_sums.hpp>
#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/methods/detail/symmetric_eigen.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// How G starts (Z is always computed from G by step 1, so only G's start matters).
enum class snmf_init {
    random, ///< G ~ U[0, 1), clamped to >= 1e-6 (the authors' default)
    svd,    ///< G = max(V_K √Σ_K, 1e-6) from the top-K singular triplets of A (via the d_a × d_a Gram matrix)
    kmeans  ///< 15 Lloyd iterations on the tokens; G = one-hot assignments clamped to >= 1e-6
};

/// Options of fit_snmf. The defaults are the authors' (train.py: K = 100, s = 0.01,
/// max_iter = 200000, patience = 1500; λ = 1e-6, tol = 1e-4, seed 42).
struct snmf_options {
    std::size_t rank = 100;          ///< K, the number of features
    bool sparse = true;              ///< apply the winner-take-all step 2
    double sparsity = 0.01;          ///< s: fraction of neurons kept per feature (ceil(s · d_a))
    double ridge = 1e-6;             ///< λ of step 1
    double tol = 1e-4;               ///< an improvement smaller than this counts as none
    std::size_t patience = 1500;     ///< stop after this many iterations without improvement
    std::size_t max_iter = 200000;   ///< at most this many iterations
    std::uint64_t seed = 42;         ///< seeds the initialisation
    snmf_init init = snmf_init::random;
    std::size_t block_rows = 8192;   ///< tokens per block of the data pass (memory: block_rows · 3K floats)
    /// Called after every iteration with (iteration, loss); return false to stop there.
    std::function<bool(std::size_t, double)> on_iteration;
};

enum class snmf_stop { patience, max_iter, callback };

/// The best factorisation found. A [d_a, n] ≈ featuresᵀ · coefficientsᵀ.
struct snmf_result {
    tensor<float> features;          ///< [K, d_a]: row j is z_j (sparse, mixed sign)
    tensor<float> coefficients;      ///< [n, K]: row t is token t's non-negative coefficients (G);
                                     ///< a process of a distributed fit holds only its rows
    std::size_t first_row = 0;       ///< coefficients hold rows [first_row, first_row + n_local) (0 in one process)
    std::vector<double> loss;        ///< ‖A − Z Gᵀ‖²_F after every iteration, in order
    std::size_t best_iteration = 0;  ///< the iteration whose (Z, G) is returned
    double best_loss = 0.0;
    snmf_stop stop = snmf_stop::max_iter;
};

/// Rows of an in-memory matrix [n, width] as an SNMF data source (what capture_reader is on disk).
/// A source provides rows(), width() and block(begin, count, scratch) -> tensor_view [count, width].
class memory_rows {
public:
    /// `values` [n, width] with contiguous rows; it must outlive the source.
    explicit memory_rows(tensor_view<const float> values) : m_values(values) {
        if (values.rank() != 2 || values.data() == nullptr)
            fail(errc::shape_mismatch, "memory_rows: values must be a [rows, width] matrix, got {}",
                 values.shape().to_string());
        if (values.stride(1) != 1)
            fail(errc::invalid_argument, "memory_rows: the rows of values must be contiguous (column stride {})",
                 values.stride(1));
    }
    std::size_t rows() const noexcept { return m_values.extent(0); }
    std::size_t width() const noexcept { return m_values.extent(1); }
    tensor_view<const float> block(std::size_t begin, std::size_t count, tensor<float>&) const {
        return m_values.rows(begin, begin + count);
    }

private:
    tensor_view<const float> m_values;
};

/// Fits SNMF to the rows of `source` (tokens × neurons, i.e. Aᵀ) — a memory_rows, a capture_reader,
/// or anything with the same three members. Throws actlens::error: arg.101 for a bad option (named),
/// arg.102 for an empty source, arg.104 when the data holds a NaN or infinity.
/// Complexity per iteration: O(d_a·n·K + n·K² + K³); memory: G (n·K) twice, Z (d_a·K) a few times.
template <class Source>
snmf_result fit_snmf(Source& source, const snmf_options& options = {});

/// Fits SNMF to an in-memory matrix [n, d_a] (e.g. captured_activations::values). A template (of
/// nothing) only so that the solver is compiled where it is called, not in every file that includes
/// this header (README "Compile time").
template <int = 0>
snmf_result fit_snmf(tensor_view<const float> activations, const snmf_options& options = {}) {
    memory_rows source(activations);
    return fit_snmf(source, options);
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

using snmf_rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The Eigen types of a fit over a `Source`. They are spelled through the source type only so that the
/// solver's expressions are compiled where a fit is instantiated, not in every file that includes this
/// header (core/deferred.hpp).
template <class Source>
struct snmf_eigen {
    using matrix_f = deferred_t<Eigen::MatrixXf, Source>;
    using matrix_d = deferred_t<Eigen::MatrixXd, Source>;
    using rows = deferred_t<snmf_rows, Source>; ///< row-major, as the blocks and G are stored
    using rows_map = Eigen::Map<rows, Eigen::Unaligned, Eigen::OuterStride<>>;
    using const_rows_map = Eigen::Map<const rows, Eigen::Unaligned, Eigen::OuterStride<>>;

    static const_rows_map map(const tensor_view<const float>& v) {
        return const_rows_map(v.data(), Eigen::Index(v.extent(0)), Eigen::Index(v.extent(1)),
                              Eigen::OuterStride<>(v.stride(0)));
    }
    static rows_map map(float* p, std::size_t rows, std::size_t cols) {
        return rows_map(p, Eigen::Index(rows), Eigen::Index(cols), Eigen::OuterStride<>(Eigen::Index(cols)));
    }
};

/// Runs body(thread, threads) on every thread of the caller's OpenMP team (once, on the calling
/// thread, without OpenMP). The products run inside such a region, each thread on its own share of
/// rows or columns, so that Eigen runs every product single-threaded: Eigen's own GEMM threading
/// spin-waits between its threads, which on a loaded machine made an iteration 10x slower (a
/// descheduled thread stalls the others for a whole time slice).
template <class Body>
void snmf_team(Body&& body) {
#if defined(_OPENMP)
#pragma omp parallel
    body(omp_get_thread_num(), omp_get_num_threads());
#else
    body(0, 1);
#endif
}

/// Thread t's share [first, second) of `count` items split into `threads` contiguous ranges.
inline std::pair<Eigen::Index, Eigen::Index> snmf_share(std::size_t count, int t, int threads) {
    return {Eigen::Index(count * std::size_t(t) / std::size_t(threads)),
            Eigen::Index(count * std::size_t(t + 1) / std::size_t(threads))};
}

inline void snmf_barrier() {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}

inline int snmf_max_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

inline void check_snmf_options(const snmf_options& o, std::size_t n, std::size_t d) {
    if (n == 0 || d == 0) fail(errc::shape_mismatch, "fit_snmf: the data is empty ({} rows of width {})", n, d);
    if (o.rank == 0) fail(errc::invalid_argument, "fit_snmf: options.rank must be >= 1");
    if (o.sparse && !(o.sparsity > 0.0 && o.sparsity <= 1.0))
        fail(errc::invalid_argument, "fit_snmf: options.sparsity must be in (0, 1], got {}", o.sparsity);
    if (!(o.ridge >= 0.0) || !std::isfinite(o.ridge))
        fail(errc::invalid_argument, "fit_snmf: options.ridge must be finite and >= 0, got {}", o.ridge);
    if (!(o.tol >= 0.0) || !std::isfinite(o.tol))
        fail(errc::invalid_argument, "fit_snmf: options.tol must be finite and >= 0, got {}", o.tol);
    if (o.patience == 0) fail(errc::invalid_argument, "fit_snmf: options.patience must be >= 1");
    if (o.max_iter == 0) fail(errc::invalid_argument, "fit_snmf: options.max_iter must be >= 1");
    if (o.block_rows == 0) fail(errc::invalid_argument, "fit_snmf: options.block_rows must be >= 1");
    if (o.init == snmf_init::kmeans && o.rank > n)
        fail(errc::invalid_argument, "fit_snmf: k-means init needs rank ({}) <= rows ({})", o.rank, n);
}

/// Which blocks of the data this process reads, and how its sums become the sums over every
/// process. A fit in one process reads every block and has nothing to combine; mpi/snmf.hpp gives
/// each rank a contiguous share of the blocks and combines by an all-reduce. Every sum over blocks is
/// an exact_sums (core/exact_sums.hpp), so the combined sums, and with them the whole fit, are the
/// same bits for any number of processes.
struct snmf_partition {
    std::size_t first_block = 0, end_block = 0;
    /// Makes the local sums the sums over all processes (empty: they already are).
    std::function<void(exact_sums&)> combine;
    /// True everywhere if the flag is true anywhere (empty: the local flag).
    std::function<bool(bool)> any;
    /// Runs a process's local work so that an error in one process fails every process instead of
    /// leaving the others waiting (empty: runs it).
    std::function<void(const char*, const std::function<void()>&)> together;

    void combine_sums(exact_sums& s) const {
        if (combine) combine(s);
    }
    bool any_of(bool flag) const { return any ? any(flag) : flag; }
    void run(const char* what, const std::function<void()>& work) const {
        if (together)
            together(what, work);
        else
            work();
    }
};

/// Runs body(begin, block [count, d]) over the partition's blocks of the source's rows.
template <class Source, class Body>
void for_each_block(Source& source, const snmf_partition& part, std::size_t block_rows, tensor<float>& scratch,
                    Body&& body) {
    const std::size_t n = source.rows();
    for (std::size_t blk = part.first_block; blk < part.end_block; ++blk) {
        const std::size_t begin = blk * block_rows, count = std::min(block_rows, n - begin);
        const tensor_view<const float> b = source.block(begin, count, scratch);
        if (b.rank() != 2 || b.extent(0) != count || b.extent(1) != source.width() || b.stride(1) != 1)
            fail(errc::shape_mismatch, "fit_snmf: the source returned a block of shape {} for rows [{}, {})",
                 b.shape().to_string(), begin, begin + count);
        body(begin, b);
    }
}

/// Adds a column-major matrix to `sums` from index `first` on, entry by entry.
template <class Matrix>
void add_matrix(exact_sums& sums, std::size_t first, const Matrix& m) {
    for (Eigen::Index j = 0; j < m.cols(); ++j)
        for (Eigen::Index i = 0; i < m.rows(); ++i)
            sums.add(first + std::size_t(j * m.rows() + i), double(m(i, j)));
}

/// The k-th largest |x| of a column (k >= 1), using `scratch`.
inline float kth_largest_magnitude(const float* x, std::size_t n, std::size_t k, std::vector<float>& scratch) {
    scratch.resize(n);
    for (std::size_t i = 0; i < n; ++i) scratch[i] = std::fabs(x[i]);
    std::nth_element(scratch.begin(), scratch.begin() + std::ptrdiff_t(k - 1), scratch.end(), std::greater<float>());
    return scratch[k - 1];
}

/// G's starting values U[0, 1) (clamped to >= 1e-6), each row from a generator seeded by the seed
/// and the row's index, so that a process holding any part of the rows draws the same values.
inline void snmf_random_init(const snmf_options& o, std::size_t first_row, std::size_t rows, float* g) {
    const std::size_t K = o.rank;
    for (std::size_t t = 0; t < rows; ++t) {
        rng gen(o.seed ^ (0xD1B54A32D192ED03ULL * (first_row + t + 1)));
        for (std::size_t j = 0; j < K; ++j) g[t * K + j] = std::max(float(gen.uniform()), 1e-6f);
    }
}

/// G's starting values by k-means on the tokens (15 Lloyd iterations, centroids from K distinct
/// random tokens; an empty cluster keeps its centroid).
template <class Source>
void snmf_kmeans_init(Source& source, const snmf_options& o, const snmf_partition& part, std::size_t first_row,
                      std::size_t end_row, tensor<float>& scratch, float* g) {
    using eigen = snmf_eigen<Source>;
    const std::size_t n = source.rows(), d = source.width(), K = o.rank;
    rng gen(o.seed);
    std::vector<std::size_t> picks;
    while (picks.size() < K) {
        const auto r = static_cast<std::size_t>(gen.uniform() * double(n));
        if (std::find(picks.begin(), picks.end(), r) == picks.end()) picks.push_back(r);
    }
    // Each picked row comes from the process that holds it (the others add nothing).
    exact_sums picked(d * K);
    part.run("fit_snmf (k-means start)", [&] {
        for (std::size_t j = 0; j < K; ++j) {
            if (picks[j] < first_row || picks[j] >= end_row) continue;
            const tensor_view<const float> row = source.block(picks[j], 1, scratch);
            for (std::size_t i = 0; i < d; ++i) picked.add(j * d + i, double(row(0, i)));
        }
    });
    part.combine_sums(picked);
    typename eigen::matrix_f centroids(d, K); // column per centroid
    for (std::size_t j = 0; j < K; ++j)
        for (std::size_t i = 0; i < d; ++i) centroids(Eigen::Index(i), Eigen::Index(j)) = float(picked.value(j * d + i));

    std::vector<std::int32_t> assign(end_row - first_row, 0);
    exact_sums totals(d * K + K); // per-cluster sums of the rows, then the counts
    typename eigen::matrix_d block_sums(d, K);
    std::vector<double> block_counts(K);
    typename eigen::rows dist;
    for (int lloyd = 0; lloyd <= 15; ++lloyd) {
        const deferred_t<Eigen::RowVectorXf, Source> norms = centroids.colwise().squaredNorm();
        totals.clear();
        part.run("fit_snmf (k-means)", [&] {
            for_each_block(source, part, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
                const auto X = eigen::map(b);
                dist.resize(X.rows(), Eigen::Index(K));
                snmf_team([&](int t, int threads) {
                    const auto [r0, r1] = snmf_share(std::size_t(X.rows()), t, threads);
                    if (r1 > r0) dist.middleRows(r0, r1 - r0).noalias() = X.middleRows(r0, r1 - r0) * centroids;
                });
                block_sums.setZero();
                std::fill(block_counts.begin(), block_counts.end(), 0.0);
                for (Eigen::Index t = 0; t < X.rows(); ++t) {
                    Eigen::Index best = 0;
                    float best_d = std::numeric_limits<float>::infinity();
                    for (Eigen::Index j = 0; j < Eigen::Index(K); ++j) {
                        const float dj = norms(j) - 2.0f * dist(t, j);
                        if (dj < best_d) best_d = dj, best = j;
                    }
                    assign[begin - first_row + std::size_t(t)] = std::int32_t(best);
                    block_sums.col(best) += X.row(t).transpose().template cast<double>();
                    block_counts[std::size_t(best)] += 1.0;
                }
                add_matrix(totals, 0, block_sums);
                for (std::size_t j = 0; j < K; ++j) totals.add(d * K + j, block_counts[j]);
            });
        });
        if (lloyd == 15) break; // the last pass only assigns
        part.combine_sums(totals);
        for (std::size_t j = 0; j < K; ++j) {
            const double count = totals.value(d * K + j);
            if (count > 0.0)
                for (std::size_t i = 0; i < d; ++i)
                    centroids(Eigen::Index(i), Eigen::Index(j)) = float(totals.value(j * d + i) / count);
        }
    }
    for (std::size_t t = 0; t < assign.size(); ++t)
        for (std::size_t j = 0; j < K; ++j) g[t * K + j] = std::int32_t(j) == assign[t] ? 1.0f : 1e-6f;
}

/// G's starting values from the top-K singular triplets: A Aᵀ = U Σ² Uᵀ, so V_K √Σ_K = Aᵀ U_K Σ_K^{-1/2}.
template <class Source>
void snmf_svd_init(Source& source, const snmf_options& o, const snmf_partition& part, tensor<float>& scratch,
                   std::size_t first_row, float* g) {
    using eigen = snmf_eigen<Source>;
    const std::size_t d = source.width(), K = o.rank;
    // The Gram matrix A Aᵀ, upper triangle (column j holds rows 0..j) in exact sums.
    auto upper = [](std::size_t i, std::size_t j) { return j * (j + 1) / 2 + i; };
    exact_sums gram_sums(d * (d + 1) / 2);
    typename eigen::matrix_f block_gram;
    part.run("fit_snmf (SVD start)", [&] {
        for_each_block(source, part, o.block_rows, scratch, [&](std::size_t, const tensor_view<const float>& b) {
            const auto X = eigen::map(b);
            block_gram.resize(Eigen::Index(d), Eigen::Index(d));
            snmf_team([&](int t, int threads) {
                const auto [c0, c1] = snmf_share(d, t, threads);
                if (c1 > c0) block_gram.middleCols(c0, c1 - c0).noalias() = X.transpose() * X.middleCols(c0, c1 - c0);
            });
            for (std::size_t j = 0; j < d; ++j)
                for (std::size_t i = 0; i <= j; ++i)
                    gram_sums.add(upper(i, j), double(block_gram(Eigen::Index(i), Eigen::Index(j))));
        });
    });
    part.combine_sums(gram_sums);
    const auto dx = Eigen::Index(d);
    typename eigen::matrix_d gram(dx, dx);
    for (std::size_t j = 0; j < d; ++j)
        for (std::size_t i = 0; i <= j; ++i)
            gram(Eigen::Index(i), Eigen::Index(j)) = gram(Eigen::Index(j), Eigen::Index(i)) = gram_sums.value(upper(i, j));
    Eigen::SelfAdjointEigenSolver<typename eigen::matrix_d> eig(gram);
    // Eigenvalues ascend: the top K are the last columns. Components beyond the rank of A get 1e-6.
    const Eigen::Index k_avail = std::min<Eigen::Index>(Eigen::Index(K), Eigen::Index(d));
    typename eigen::matrix_f proj = eigen::matrix_f::Zero(Eigen::Index(d), Eigen::Index(K));
    for (Eigen::Index j = 0; j < k_avail; ++j) {
        const double lambda = eig.eigenvalues()(Eigen::Index(d) - 1 - j);
        if (lambda <= 0.0) continue;
        proj.col(j) = (eig.eigenvectors().col(Eigen::Index(d) - 1 - j) / std::pow(lambda, 0.25)).template cast<float>();
    }
    part.run("fit_snmf (SVD start)", [&] {
        for_each_block(source, part, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
            auto G = eigen::map(g + (begin - first_row) * K, b.extent(0), K);
            const auto X = eigen::map(b);
            snmf_team([&](int t, int threads) {
                const auto [r0, r1] = snmf_share(b.extent(0), t, threads);
                if (r1 > r0) G.middleRows(r0, r1 - r0).noalias() = X.middleRows(r0, r1 - r0) * proj;
            });
            G = G.cwiseMax(1e-6f);
        });
    });
}

/// The sums one pass over the data makes, kept exactly: A G [d, K] (column-major), GᵀG [K, K],
/// tr(Zᵀ A G) and ‖A‖².
struct snmf_pass_sums {
    std::size_t d = 0, K = 0;
    exact_sums sums;
    snmf_pass_sums(std::size_t d_, std::size_t K_) : d(d_), K(K_), sums(d_ * K_ + K_ * K_ + 2) {}
    std::size_t gtg_at() const { return d * K; }
    std::size_t cross_at() const { return d * K + K * K; }
    std::size_t a_sq_at() const { return cross_at() + 1; }

    /// One block's share: ag_block = X_bᵀ G_b, gtg_block = G_bᵀ G_b.
    template <class MatrixF>
    void add_block(const MatrixF& ag_block, const MatrixF& gtg_block) {
        add_matrix(sums, 0, ag_block);
        add_matrix(sums, gtg_at(), gtg_block);
    }
    template <class MatrixF, class MatrixD>
    void read(MatrixF& ag, MatrixD& gtg) const {
        for (std::size_t j = 0; j < K; ++j) {
            for (std::size_t i = 0; i < d; ++i) ag(Eigen::Index(i), Eigen::Index(j)) = float(sums.value(j * d + i));
            for (std::size_t i = 0; i < K; ++i)
                gtg(Eigen::Index(i), Eigen::Index(j)) = sums.value(gtg_at() + j * K + i);
        }
    }
};

/// Thread t's part of ag_block = Xᵀ G (its rows) and gtg_block = GᵀG (its columns). Called by every
/// thread of a team; X [rows, d], G [rows, K].
template <class XMap, class GMap, class MatrixF>
void snmf_block_products(const XMap& X, const GMap& G, MatrixF& ag_block, MatrixF& gtg_block, int t, int threads) {
    const auto [c0, c1] = snmf_share(std::size_t(X.cols()), t, threads);
    if (c1 > c0) ag_block.middleRows(c0, c1 - c0).noalias() = X.middleCols(c0, c1 - c0).transpose() * G;
    const auto [k0, k1] = snmf_share(std::size_t(G.cols()), t, threads);
    if (k1 > k0) gtg_block.middleCols(k0, k1 - k0).noalias() = G.transpose() * G.middleCols(k0, k1 - k0);
}

/// fit_snmf over the partition's blocks; see the top of this header for the algorithm.
template <class Source>
snmf_result fit_snmf_partitioned(Source& source, const snmf_options& o, const snmf_partition& part) {
    using Eigen::Index;
    using eigen = snmf_eigen<Source>;
    using matrix_f = typename eigen::matrix_f;
    using matrix_d = typename eigen::matrix_d;
    const std::size_t n = source.rows(), d = source.width(), K = o.rank;
    check_snmf_options(o, n, d);
    const Index Kx = Index(K), dx = Index(d);
    const std::size_t first_row = std::min(part.first_block * o.block_rows, n);
    const std::size_t end_row = std::min(part.end_block * o.block_rows, n);
    const std::size_t local = end_row - first_row;

    snmf_result result;
    result.first_row = first_row;
    tensor<float> g_now({local, K}), g_best({local, K});
    const std::size_t buffer_rows = std::max<std::size_t>(std::min(o.block_rows, local), 1);
    tensor<float> scratch, p_buf({buffer_rows, K}), h_buf({buffer_rows, 2 * K});
    float* g = g_now.data();

    // Start of G.
    if (o.init == snmf_init::random)
        snmf_random_init(o, first_row, local, g);
    else if (o.init == snmf_init::kmeans)
        snmf_kmeans_init(source, o, part, first_row, end_row, scratch, g);
    else
        snmf_svd_init(source, o, part, scratch, first_row, g);

    // First pass: ‖A‖², A G and GᵀG for step 1 of iteration 0.
    snmf_pass_sums pass(d, K);
    matrix_f ag(dx, Kx), ag_block(dx, Kx), gtg_block(Kx, Kx);
    matrix_d gtg(Kx, Kx);
    part.run("fit_snmf", [&] {
        for_each_block(source, part, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
            const auto X = eigen::map(b);
            double s = 0.0;
            for (Index t = 0; t < X.rows(); ++t) s += double(X.row(t).squaredNorm());
            if (!std::isfinite(s))
                fail(errc::non_finite, "fit_snmf: the data holds a NaN or infinity in rows [{}, {})", begin,
                     begin + b.extent(0));
            pass.sums.add(pass.a_sq_at(), s);
            const auto Gb = eigen::map(g + (begin - first_row) * K, b.extent(0), K);
            snmf_team([&](int t, int threads) { snmf_block_products(X, Gb, ag_block, gtg_block, t, threads); });
            pass.add_block(ag_block, gtg_block);
        });
    });
    part.combine_sums(pass.sums);
    const double a_sq = pass.sums.value(pass.a_sq_at());
    pass.read(ag, gtg);

    const std::size_t keep = o.sparse ? std::size_t(std::ceil(o.sparsity * double(d))) : d;
    matrix_f z(dx, Kx), z_best(dx, Kx), q(Kx, Kx), q_split(Kx, 2 * Kx);
    matrix_d zd;
    std::vector<float> column_scratch;
    std::vector<float> inv_c(K);
    std::vector<double> cross_parts(std::size_t(snmf_max_threads()), 0.0);
    double best = std::numeric_limits<double>::infinity();
    std::size_t since_best = 0;
    result.stop = snmf_stop::max_iter;

    for (std::size_t it = 0; it < o.max_iter; ++it) {
        // 1. Z = A G (GᵀG + λI)⁻¹, solved in double (GᵀG can be ill-conditioned).
        matrix_d m = gtg;
        m.diagonal().array() += o.ridge;
        zd = m.ldlt().solve(ag.transpose().template cast<double>()); // [K, d] = Zᵀ (m is symmetric)
        z = zd.transpose().template cast<float>();
        // 2. Winner-take-all per feature.
        if (keep < d)
            for (Index j = 0; j < Kx; ++j) {
                float* col = z.col(j).data();
                const float theta = kth_largest_magnitude(col, d, keep, column_scratch);
                for (std::size_t i = 0; i < d; ++i)
                    if (std::fabs(col[i]) < theta) col[i] = 0.0f;
            }
        // 3. Unit columns of G (applied to each block as it is read), scale carried by Z.
        for (Index j = 0; j < Kx; ++j) {
            const double c = std::max(std::sqrt(std::max(gtg(j, j), 0.0)), 1e-8);
            inv_c[std::size_t(j)] = float(1.0 / c);
            z.col(j) *= float(c);
        }
        // 4. Multiplicative update of G, block by block, with the sums of the next step 1.
        snmf_team([&](int t, int threads) {
            const auto [k0, k1] = snmf_share(K, t, threads);
            if (k1 > k0) q.middleCols(k0, k1 - k0).noalias() = z.transpose() * z.middleCols(k0, k1 - k0);
        });
        q_split.leftCols(Kx) = (q.cwiseAbs() - q) * 0.5f;  // Q⁻
        q_split.rightCols(Kx) = (q.cwiseAbs() + q) * 0.5f; // Q⁺
        pass.sums.clear();
        part.run("fit_snmf", [&] {
            for_each_block(source, part, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
                const std::size_t rows = b.extent(0);
                const auto X = eigen::map(b);
                auto Gb = eigen::map(g + (begin - first_row) * K, rows, K);
                auto P = eigen::map(p_buf.data(), rows, K);
                auto H = eigen::map(h_buf.data(), rows, 2 * K);
                // One parallel region per block: rows split for the update, then neurons (rows of
                // A G) and features (columns of GᵀG) split for the block's products, after a barrier.
                snmf_team([&](int t, int threads) {
                    const auto [r0, r1] = snmf_share(rows, t, threads);
                    double part_cross = 0.0;
                    if (r1 > r0) {
                        const Index m = r1 - r0;
                        for (Index r = r0; r < r1; ++r)
                            for (Index j = 0; j < Kx; ++j) Gb(r, j) *= inv_c[std::size_t(j)];
                        P.middleRows(r0, m).noalias() = X.middleRows(r0, m) * z;
                        H.middleRows(r0, m).noalias() = Gb.middleRows(r0, m) * q_split;
                        for (Index r = r0; r < r1; ++r) {
                            float* gr = &Gb(r, 0);
                            const float* pr = &P(r, 0);
                            const float* hr = &H(r, 0);
                            double row_cross = 0.0;
                            for (std::size_t j = 0; j < K; ++j) {
                                const float p = pr[j], pa = std::fabs(p);
                                const float num = (pa + p) * 0.5f + hr[j];
                                const float den = (pa - p) * 0.5f + hr[K + j] + 1e-6f;
                                gr[j] *= std::sqrt(num / den);
                                row_cross += double(p) * double(gr[j]);
                            }
                            part_cross += row_cross;
                        }
                    }
                    cross_parts[std::size_t(t)] = part_cross;
                    snmf_barrier();
                    snmf_block_products(X, Gb, ag_block, gtg_block, t, threads);
                });
                double cross = 0.0;
                for (double c : cross_parts) cross += c;
                std::fill(cross_parts.begin(), cross_parts.end(), 0.0);
                pass.sums.add(pass.cross_at(), cross);
                pass.add_block(ag_block, gtg_block);
            });
        });
        part.combine_sums(pass.sums);
        pass.read(ag, gtg);
        const double cross = pass.sums.value(pass.cross_at());
        // 5. ‖A − Z Gᵀ‖² = ‖A‖² − 2 tr(Zᵀ A G) + tr(ZᵀZ GᵀG).
        const double loss = a_sq - 2.0 * cross + (q.template cast<double>().array() * gtg.array()).sum();
        result.loss.push_back(loss);
        if (loss < best - o.tol) {
            best = loss;
            result.best_iteration = it;
            z_best = z;
            std::copy(g, g + local * K, g_best.data());
            since_best = 0;
        } else if (++since_best >= o.patience) {
            result.stop = snmf_stop::patience;
            break;
        }
        // Every process calls the callback; any of them may stop the fit, for all of them.
        const bool go_on = !o.on_iteration || o.on_iteration(it, loss);
        if (part.any_of(!go_on)) {
            result.stop = snmf_stop::callback;
            break;
        }
    }
    if (!std::isfinite(best))
        fail(errc::non_finite, "fit_snmf: no iteration produced a finite loss (first loss {})", result.loss.front());

    result.best_loss = best;
    result.features.reshape_uninitialized({K, d});
    // z_best is column-major [d, K]: its memory is exactly features [K, d] row-major.
    std::copy(z_best.data(), z_best.data() + d * K, result.features.data());
    result.coefficients = std::move(g_best);
    return result;
}

} // namespace detail

template <class Source>
snmf_result fit_snmf(Source& source, const snmf_options& o) {
    const std::size_t blocks = o.block_rows ? (source.rows() + o.block_rows - 1) / o.block_rows : 0;
    detail::snmf_partition everything;
    everything.end_block = blocks;
    return detail::fit_snmf_partitioned(source, o, everything);
}

#ifdef ACTLENS_EXTERN_TEMPLATE
ACTLENS_EXTERN_TEMPLATE snmf_result fit_snmf<0>(tensor_view<const float>, const snmf_options&);
ACTLENS_EXTERN_TEMPLATE snmf_result fit_snmf(memory_rows&, const snmf_options&);
#endif

} // namespace actlens
