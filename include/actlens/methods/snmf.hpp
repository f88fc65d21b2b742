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
// memory. The result depends on `block_rows` only through float rounding, and not at all on where
// the data lives: a tensor in memory and the same rows in capture shards give identical bits.
//
// Products use Eigen, each thread of the caller's OpenMP team on its own rows or columns (one
// parallel region per block; see detail::snmf_team for why not Eigen's own threading).
// Deterministic for a given seed, block_rows and thread count.
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/Eigenvalues>

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
    tensor<float> coefficients;      ///< [n, K]: row t is token t's non-negative coefficients (G)
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
using snmf_rows_map = Eigen::Map<snmf_rows, Eigen::Unaligned, Eigen::OuterStride<>>;
using snmf_const_rows_map = Eigen::Map<const snmf_rows, Eigen::Unaligned, Eigen::OuterStride<>>;

inline snmf_const_rows_map snmf_map(const tensor_view<const float>& v) {
    return snmf_const_rows_map(v.data(), Eigen::Index(v.extent(0)), Eigen::Index(v.extent(1)),
                               Eigen::OuterStride<>(v.stride(0)));
}
inline snmf_rows_map snmf_map(float* p, std::size_t rows, std::size_t cols) {
    return snmf_rows_map(p, Eigen::Index(rows), Eigen::Index(cols), Eigen::OuterStride<>(Eigen::Index(cols)));
}

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

/// Thread t's part of ag += Xᵀ G (its rows of ag) and gtg_block = GᵀG (its columns). Called by
/// every thread of a team; X [rows, d], G [rows, K].
template <class XMap, class GMap>
void snmf_accumulate(const XMap& X, const GMap& G, Eigen::MatrixXf& ag, Eigen::MatrixXf& gtg_block, int t, int threads) {
    const auto [c0, c1] = snmf_share(std::size_t(X.cols()), t, threads);
    if (c1 > c0) ag.middleRows(c0, c1 - c0).noalias() += X.middleCols(c0, c1 - c0).transpose() * G;
    const auto [k0, k1] = snmf_share(std::size_t(G.cols()), t, threads);
    if (k1 > k0) gtg_block.middleCols(k0, k1 - k0).noalias() = G.transpose() * G.middleCols(k0, k1 - k0);
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

/// Runs body(begin, block [count, d]) over the source's rows in blocks of `block_rows`.
template <class Source, class Body>
void for_each_block(Source& source, std::size_t block_rows, tensor<float>& scratch, Body&& body) {
    const std::size_t n = source.rows();
    for (std::size_t begin = 0; begin < n; begin += block_rows) {
        const std::size_t count = std::min(block_rows, n - begin);
        const tensor_view<const float> b = source.block(begin, count, scratch);
        if (b.rank() != 2 || b.extent(0) != count || b.extent(1) != source.width() || b.stride(1) != 1)
            fail(errc::shape_mismatch, "fit_snmf: the source returned a block of shape {} for rows [{}, {})",
                 b.shape().to_string(), begin, begin + count);
        body(begin, b);
    }
}

/// The k-th largest |x| of a column (k >= 1), using `scratch`.
inline float kth_largest_magnitude(const float* x, std::size_t n, std::size_t k, std::vector<float>& scratch) {
    scratch.resize(n);
    for (std::size_t i = 0; i < n; ++i) scratch[i] = std::fabs(x[i]);
    std::nth_element(scratch.begin(), scratch.begin() + std::ptrdiff_t(k - 1), scratch.end(), std::greater<float>());
    return scratch[k - 1];
}

/// G's starting values by k-means on the tokens (15 Lloyd iterations, centroids from K distinct
/// random tokens; an empty cluster keeps its centroid).
template <class Source>
void snmf_kmeans_init(Source& source, const snmf_options& o, tensor<float>& scratch, float* g) {
    const std::size_t n = source.rows(), d = source.width(), K = o.rank;
    rng gen(o.seed);
    std::vector<std::size_t> picks;
    while (picks.size() < K) {
        const auto r = static_cast<std::size_t>(gen.uniform() * double(n));
        if (std::find(picks.begin(), picks.end(), r) == picks.end()) picks.push_back(r);
    }
    Eigen::MatrixXf centroids(d, K); // column per centroid
    for (std::size_t j = 0; j < K; ++j) {
        const tensor_view<const float> row = source.block(picks[j], 1, scratch);
        for (std::size_t i = 0; i < d; ++i) centroids(Eigen::Index(i), Eigen::Index(j)) = row(0, i);
    }
    std::vector<std::int32_t> assign(n, 0);
    Eigen::MatrixXd sums(d, K);
    std::vector<std::size_t> counts(K);
    snmf_rows dist;
    for (int lloyd = 0; lloyd <= 15; ++lloyd) {
        const Eigen::RowVectorXf norms = centroids.colwise().squaredNorm();
        sums.setZero();
        std::fill(counts.begin(), counts.end(), 0);
        for_each_block(source, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
            const auto X = snmf_map(b);
            dist.resize(X.rows(), Eigen::Index(K));
            snmf_team([&](int t, int threads) {
                const auto [r0, r1] = snmf_share(std::size_t(X.rows()), t, threads);
                if (r1 > r0) dist.middleRows(r0, r1 - r0).noalias() = X.middleRows(r0, r1 - r0) * centroids;
            });
            for (Eigen::Index t = 0; t < X.rows(); ++t) {
                Eigen::Index best = 0;
                float best_d = std::numeric_limits<float>::infinity();
                for (Eigen::Index j = 0; j < Eigen::Index(K); ++j) {
                    const float dj = norms(j) - 2.0f * dist(t, j);
                    if (dj < best_d) best_d = dj, best = j;
                }
                assign[begin + std::size_t(t)] = std::int32_t(best);
                sums.col(best) += X.row(t).transpose().cast<double>();
                ++counts[std::size_t(best)];
            }
        });
        if (lloyd == 15) break; // the last pass only assigns
        for (std::size_t j = 0; j < K; ++j)
            if (counts[j]) centroids.col(Eigen::Index(j)) = (sums.col(Eigen::Index(j)) / double(counts[j])).cast<float>();
    }
    for (std::size_t t = 0; t < n; ++t)
        for (std::size_t j = 0; j < K; ++j) g[t * K + j] = std::int32_t(j) == assign[t] ? 1.0f : 1e-6f;
}

/// G's starting values from the top-K singular triplets: A Aᵀ = U Σ² Uᵀ, so V_K √Σ_K = Aᵀ U_K Σ_K^{-1/2}.
template <class Source>
void snmf_svd_init(Source& source, const snmf_options& o, tensor<float>& scratch, float* g) {
    const std::size_t d = source.width(), K = o.rank;
    Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(Eigen::Index(d), Eigen::Index(d));
    Eigen::MatrixXf block_gram;
    for_each_block(source, o.block_rows, scratch, [&](std::size_t, const tensor_view<const float>& b) {
        const auto X = snmf_map(b);
        block_gram.resize(Eigen::Index(d), Eigen::Index(d));
        snmf_team([&](int t, int threads) {
            const auto [c0, c1] = snmf_share(d, t, threads);
            if (c1 > c0) block_gram.middleCols(c0, c1 - c0).noalias() = X.transpose() * X.middleCols(c0, c1 - c0);
        });
        gram += block_gram.cast<double>();
    });
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
    // Eigenvalues ascend: the top K are the last columns. Components beyond the rank of A get 1e-6.
    const Eigen::Index k_avail = std::min<Eigen::Index>(Eigen::Index(K), Eigen::Index(d));
    Eigen::MatrixXf proj = Eigen::MatrixXf::Zero(Eigen::Index(d), Eigen::Index(K));
    for (Eigen::Index j = 0; j < k_avail; ++j) {
        const double lambda = eig.eigenvalues()(Eigen::Index(d) - 1 - j);
        if (lambda <= 0.0) continue;
        proj.col(j) = (eig.eigenvectors().col(Eigen::Index(d) - 1 - j) / std::pow(lambda, 0.25)).cast<float>();
    }
    for_each_block(source, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
        auto G = snmf_map(g + begin * K, b.extent(0), K);
        const auto X = snmf_map(b);
        snmf_team([&](int t, int threads) {
            const auto [r0, r1] = snmf_share(b.extent(0), t, threads);
            if (r1 > r0) G.middleRows(r0, r1 - r0).noalias() = X.middleRows(r0, r1 - r0) * proj;
        });
        G = G.cwiseMax(1e-6f);
    });
}

} // namespace detail

template <class Source>
snmf_result fit_snmf(Source& source, const snmf_options& o) {
    using Eigen::Index;
    const std::size_t n = source.rows(), d = source.width(), K = o.rank;
    detail::check_snmf_options(o, n, d);
    const Index Kx = Index(K), dx = Index(d);

    snmf_result result;
    tensor<float> g_now({n, K}), g_best({n, K});
    tensor<float> scratch, p_buf({std::min(o.block_rows, n), K}), h_buf({std::min(o.block_rows, n), 2 * K});
    float* g = g_now.data();

    // Start of G.
    if (o.init == snmf_init::random) {
        rng gen(o.seed);
        for (std::size_t i = 0; i < n * K; ++i) g[i] = std::max(float(gen.uniform()), 1e-6f);
    } else if (o.init == snmf_init::kmeans) {
        detail::snmf_kmeans_init(source, o, scratch, g);
    } else {
        detail::snmf_svd_init(source, o, scratch, g);
    }

    // First pass: ‖A‖², A G and GᵀG for step 1 of iteration 0.
    Eigen::MatrixXf ag = Eigen::MatrixXf::Zero(dx, Kx), gtg_block(Kx, Kx);
    Eigen::MatrixXd gtg = Eigen::MatrixXd::Zero(Kx, Kx);
    double a_sq = 0.0;
    detail::for_each_block(source, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
        const auto X = detail::snmf_map(b);
        double s = 0.0;
        for (Index t = 0; t < X.rows(); ++t) s += double(X.row(t).squaredNorm());
        if (!std::isfinite(s))
            fail(errc::non_finite, "fit_snmf: the data holds a NaN or infinity in rows [{}, {})", begin,
                 begin + b.extent(0));
        a_sq += s;
        const auto Gb = detail::snmf_map(g + begin * K, b.extent(0), K);
        detail::snmf_team([&](int t, int threads) { detail::snmf_accumulate(X, Gb, ag, gtg_block, t, threads); });
        gtg += gtg_block.cast<double>();
    });

    const std::size_t keep = o.sparse ? std::size_t(std::ceil(o.sparsity * double(d))) : d;
    Eigen::MatrixXf z(dx, Kx), z_best(dx, Kx), q(Kx, Kx), q_split(Kx, 2 * Kx);
    Eigen::MatrixXd zd;
    std::vector<float> column_scratch;
    std::vector<float> inv_c(K);
    std::vector<double> cross_parts(std::size_t(detail::snmf_max_threads()), 0.0);
    double best = std::numeric_limits<double>::infinity();
    std::size_t since_best = 0;
    result.stop = snmf_stop::max_iter;

    for (std::size_t it = 0; it < o.max_iter; ++it) {
        // 1. Z = A G (GᵀG + λI)⁻¹, solved in double (GᵀG can be ill-conditioned).
        Eigen::MatrixXd m = gtg;
        m.diagonal().array() += o.ridge;
        zd = m.ldlt().solve(ag.transpose().cast<double>()); // [K, d] = Zᵀ (m is symmetric)
        z = zd.transpose().cast<float>();
        // 2. Winner-take-all per feature.
        if (keep < d)
            for (Index j = 0; j < Kx; ++j) {
                float* col = z.col(j).data();
                const float theta = detail::kth_largest_magnitude(col, d, keep, column_scratch);
                for (std::size_t i = 0; i < d; ++i)
                    if (std::fabs(col[i]) < theta) col[i] = 0.0f;
            }
        // 3. Unit columns of G (applied to each block as it is read), scale carried by Z.
        for (Index j = 0; j < Kx; ++j) {
            const double c = std::max(std::sqrt(std::max(gtg(j, j), 0.0)), 1e-8);
            inv_c[std::size_t(j)] = float(1.0 / c);
            z.col(j) *= float(c);
        }
        // 4. Multiplicative update of G, block by block, with the accumulators of the next step 1.
        detail::snmf_team([&](int t, int threads) {
            const auto [k0, k1] = detail::snmf_share(K, t, threads);
            if (k1 > k0) q.middleCols(k0, k1 - k0).noalias() = z.transpose() * z.middleCols(k0, k1 - k0);
        });
        q_split.leftCols(Kx) = (q.cwiseAbs() - q) * 0.5f;  // Q⁻
        q_split.rightCols(Kx) = (q.cwiseAbs() + q) * 0.5f; // Q⁺
        ag.setZero();
        gtg.setZero();
        double cross = 0.0;
        detail::for_each_block(source, o.block_rows, scratch, [&](std::size_t begin, const tensor_view<const float>& b) {
            const std::size_t rows = b.extent(0);
            const auto X = detail::snmf_map(b);
            auto Gb = detail::snmf_map(g + begin * K, rows, K);
            auto P = detail::snmf_map(p_buf.data(), rows, K);
            auto H = detail::snmf_map(h_buf.data(), rows, 2 * K);
            // One parallel region per block: rows split for the update, then neurons (rows of
            // A G) and features (columns of GᵀG) split for the accumulators, after a barrier.
            detail::snmf_team([&](int t, int threads) {
                const auto [r0, r1] = detail::snmf_share(rows, t, threads);
                double part = 0.0;
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
                        part += row_cross;
                    }
                }
                cross_parts[std::size_t(t)] = part;
                detail::snmf_barrier();
                detail::snmf_accumulate(X, Gb, ag, gtg_block, t, threads);
            });
            for (double part : cross_parts) cross += part;
            std::fill(cross_parts.begin(), cross_parts.end(), 0.0);
            gtg += gtg_block.cast<double>();
        });
        // 5. ‖A − Z Gᵀ‖² = ‖A‖² − 2 tr(Zᵀ A G) + tr(ZᵀZ GᵀG).
        const double loss = a_sq - 2.0 * cross + (q.cast<double>().array() * gtg.array()).sum();
        result.loss.push_back(loss);
        if (loss < best - o.tol) {
            best = loss;
            result.best_iteration = it;
            z_best = z;
            std::copy(g, g + n * K, g_best.data());
            since_best = 0;
        } else if (++since_best >= o.patience) {
            result.stop = snmf_stop::patience;
            break;
        }
        if (o.on_iteration && !o.on_iteration(it, loss)) {
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

} // namespace actlens
