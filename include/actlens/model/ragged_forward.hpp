// actlens/model/ragged_forward.hpp: many partial reruns of one input, stacked into one batch.
//
// Activation patching reruns one input hundreds of times with one activation changed. A patch at
// block l and position p changes nothing below block l and nothing before position p, so a patched
// run only needs the rows of positions p.. from block l on, with the keys and values of the
// positions before p taken from the unpatched ("base") run. Such runs differ in length and first
// block, so they do not fit forward()'s [B, T] batch. Here their rows are stacked instead: each
// block multiplies the rows of every active run in one GEMM (hundreds to thousands of rows, where
// the kernel runs near its peak), and only attention is done run by run, against the base run's
// keys and values before the run's start and the run's own from there on.
//
// With `last_row_only` (a metric that reads the last position), the last block computes keys and
// values for every row but the rest of the block only for each run's last row, and the output is
// that row's final residual: one row per run, all unembedded with one product.
//
// Only the sites activation patching writes are called: resid_pre, attn.hook_z, attn_out,
// resid_mid, mlp.hook_post, mlp_out and resid_post.
#pragma once

#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>
#include <actlens/kernels/activations.hpp>
#include <actlens/kernels/attention.hpp>
#include <actlens/kernels/detail/parallel.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/kernels/norms.hpp>
#include <actlens/kernels/rope.hpp>
#include <actlens/kernels/softmax.hpp>
#include <actlens/model/block.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/hook_point.hpp>
#include <actlens/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace actlens {

/// One partial run: positions [start, start + length) of row `base_row` of the base run, computed
/// from block `first_layer` on, beginning with the base run's resid_pre there.
struct ragged_run {
    std::size_t base_row = 0;
    std::size_t start = 0;
    std::size_t length = 0;
    int first_layer = 0;
    /// At first_layer, only the first row can differ from the base run before attention (an edit at
    /// its resid_pre): the other rows' queries, keys and values are then copied from the base run
    /// instead of computed (a quarter of a block's products for those rows).
    bool reuse_base_qkv = false;
};

/// What the runs read from the base run, one view per layer, each [B, S, width] and contiguous:
/// resid_pre where a run begins, and keys (after RoPE) and values of the positions before its start;
/// queries (after RoPE) only for runs with reuse_base_qkv.
template <class T>
struct ragged_base {
    std::vector<tensor_view<const T>> resid_pre, keys, values, queries;
};

/// One activation of the stacked rows at a site, as the site callback sees it.
template <class T>
struct ragged_activation {
    T* data = nullptr;
    std::size_t width = 0;
    const std::vector<ragged_run>* runs = nullptr;
    const std::size_t* first_row = nullptr; ///< row of each run's first position
    std::size_t active = 0;                 ///< runs [0, active) have started
    bool last_rows_only = false;            ///< row i is the last position of run i

    /// The row of `run` at sequence `position`, or nullptr when this activation does not hold it.
    T* row(std::size_t run, std::size_t position) const noexcept {
        const ragged_run& r = (*runs)[run];
        if (position < r.start || position >= r.start + r.length) return nullptr;
        if (last_rows_only) return position + 1 == r.start + r.length ? data + run * width : nullptr;
        return data + (first_row[run] + position - r.start) * width;
    }
};

/// The buffers of ragged_forward, reused across calls (fresh pages are slow; see workspace).
template <class T>
struct ragged_workspace {
    tensor<T> resid, normed, out; ///< [rows, d]
    tensor<T> q;                  ///< [rows, H d_h]: queries, then attention's output (hook_z) in place
    tensor<T> k, v;               ///< [rows, H_kv d_h]
    tensor<T> mlp, mlp_lin;       ///< [rows, d_mlp]: pre-activation (gate), then hook_post in place
    tensor<T> logits;
    tensor<T> last_resid, last_normed; ///< [runs, d]: the last block's rows with last_row_only
    tensor<T> scores;                  ///< [threads, query block, S]: one scratch block per thread
    tensor<T> joined_in, joined_q, joined_k, joined_v; ///< rows that join a block, gathered (reuse_base_qkv)
    std::vector<std::size_t> first_row;
    kernels::rope_table<T> rope; ///< the rotary angles of the base run's positions (rotary models)
};

namespace detail {

template <class T>
void check_ragged_input(const model_config& c, const std::vector<ragged_run>& runs, const ragged_base<T>& base) {
    const std::size_t L = c.n_layers, kvw = c.n_kv_heads * c.d_head;
    if (runs.empty()) fail(errc::empty_prompt, "ragged_forward: no runs");
    if (base.resid_pre.size() != L || base.keys.size() != L || base.values.size() != L)
        fail(errc::shape_mismatch,
             "ragged_forward: the base run has {}/{}/{} layers of resid_pre/keys/values, expected {}",
             base.resid_pre.size(), base.keys.size(), base.values.size(), L);
    const tensor_view<const T>& r0 = base.resid_pre[0];
    if (r0.rank() != 3 || r0.extent(2) != c.d_model)
        fail(errc::shape_mismatch, "ragged_forward: base resid_pre has shape {}, expected [B, S, {}]",
             r0.shape().to_string(), c.d_model);
    const std::size_t B = r0.extent(0), S = r0.extent(1);
    for (std::size_t l = 0; l < L; ++l) {
        const bool ok = base.resid_pre[l].shape() == r0.shape() && base.keys[l].size() == B * S * kvw &&
                        base.values[l].size() == B * S * kvw && base.resid_pre[l].is_contiguous() &&
                        base.keys[l].is_contiguous() && base.values[l].is_contiguous();
        if (!ok)
            fail(errc::shape_mismatch, "ragged_forward: the base run's layer {} does not match [{}, {}, ...]", l, B, S);
    }
    const std::size_t qw = c.n_heads * c.d_head;
    const bool queries_ok =
        base.queries.size() == L && std::all_of(base.queries.begin(), base.queries.end(), [&](const auto& q) {
            return q.size() == B * S * qw && q.is_contiguous();
        });
    for (std::size_t i = 0; i < runs.size(); ++i) {
        const ragged_run& r = runs[i];
        if (r.base_row >= B || r.length == 0 || r.start >= S || r.length > S - r.start || r.first_layer < 0 ||
            std::size_t(r.first_layer) >= L)
            fail(errc::invalid_argument,
                 "ragged_forward: run {} (base row {}, {} positions from {}, first layer {}) does not fit a base run "
                 "of {} rows x {} positions and {} layers",
                 i, r.base_row, r.length, r.start, r.first_layer, B, S, L);
        if (r.reuse_base_qkv && !queries_ok)
            fail(errc::shape_mismatch,
                 "ragged_forward: run {} reuses the base run's queries, but the base run has no [{}, {}, {}] queries "
                 "for each of its {} layers",
                 i, B, S, qw, L);
        if (i > 0 && r.first_layer < runs[i - 1].first_layer)
            fail(errc::invalid_argument,
                 "ragged_forward: runs must be ordered by first_layer (run {} starts at {} after {})", i, r.first_layer,
                 runs[i - 1].first_layer);
    }
}

// The ragged row layout of block_body (model/block.hpp): the rows of the active runs stacked in run
// order. A run's queries attend to the base run's keys before its start and to its own causal prefix.
// With `last_only` (the last block under last_row_only), keys and values are computed for every row
// but queries and everything past attention for each run's last row only (row i for run i).
template <class T>
class ragged_rows {
public:
    ragged_rows(const basic_transformer<T>& model, ragged_workspace<T>& ws, const std::vector<ragged_run>& runs,
                const ragged_base<T>& base)
        : m_c(model.config()), m_ws(ws), m_runs(runs), m_base(base),
          m_S(base.resid_pre[0].extent(1)) {}

    // Enters block `layer`, where runs [joined, active) begin.
    void begin_layer(int layer, std::size_t joined, std::size_t active, bool last_only) {
        m_layer = std::size_t(layer);
        m_joined = joined;
        m_active = active;
        m_last_only = last_only;
    }
    std::size_t active() const { return m_active; }
    bool last_only() const { return m_last_only; }

    std::size_t rows() const { return m_ws.first_row[m_active]; }

    block_buffers<T> buffers() const {
        return block_buffers<T>::over(m_ws.resid, m_ws.normed, m_ws.q, m_ws.k, m_ws.v, m_ws.out, m_ws.mlp, m_ws.mlp_lin);
    }

    // Runs with reuse_base_qkv that join at this block take their rows after the first from the base
    // run (not with last_only: the last block then skips most of its rows anyway).
    void project_qkv(const layer_weights<T>& w, const packed_layer<T>& pw, block_buffers<T>& b) {
        const std::size_t d = m_c.d_model, qw = m_c.n_heads * m_c.d_head, kvw = m_c.n_kv_heads * m_c.d_head;
        const std::size_t* first_row = m_ws.first_row.data();
        const std::size_t rows = this->rows(), joined = m_joined, active = m_active;
        const T* a = b.a;
        bool any_reuse = false;
        for (std::size_t i = joined; i < active; ++i) any_reuse = any_reuse || reuses(i);

        if (m_last_only) {
            T* last_a = m_ws.last_normed.data();
            for (std::size_t i = 0; i < active; ++i)
                std::copy(a + (first_row[i + 1] - 1) * d, a + first_row[i + 1] * d, last_a + i * d);
            const kernels::linear_job<T> jobs[] = {{last_a, active, &pw.w_q, w.b_q.data(), b.q},
                                                   {a, rows, &pw.w_k, w.b_k.data(), b.k},
                                                   {a, rows, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(jobs, 3);
        } else if (!any_reuse) {
            const kernels::linear_job<T> jobs[] = {{a, rows, &pw.w_q, w.b_q.data(), b.q},
                                                   {a, rows, &pw.w_k, w.b_k.data(), b.k},
                                                   {a, rows, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(jobs, 3);
        } else {
            // The rows of earlier runs in place; of the runs joining here, the rows to compute (the first
            // of a reusing run, every row of another) gathered into one product and scattered back.
            ragged_workspace<T>& ws = m_ws;
            auto computed = [&](std::size_t i) { return reuses(i) ? std::size_t(1) : m_runs[i].length; };
            std::size_t m = 0;
            for (std::size_t i = joined; i < active; ++i) m += computed(i);
            ws.joined_in.reshape_uninitialized({m, d});
            ws.joined_q.reshape_uninitialized({m, qw});
            ws.joined_k.reshape_uninitialized({m, kvw});
            ws.joined_v.reshape_uninitialized({m, kvw});
            for (std::size_t i = joined, r = 0; i < active; r += computed(i), ++i)
                std::copy(a + first_row[i] * d, a + (first_row[i] + computed(i)) * d, ws.joined_in.data() + r * d);
            const std::size_t earlier = first_row[joined];
            const T* in = ws.joined_in.data();
            const kernels::linear_job<T> jobs[] = {{in, m, &pw.w_q, w.b_q.data(), ws.joined_q.data()},
                                                   {in, m, &pw.w_k, w.b_k.data(), ws.joined_k.data()},
                                                   {in, m, &pw.w_v, w.b_v.data(), ws.joined_v.data()},
                                                   {a, earlier, &pw.w_q, w.b_q.data(), b.q},
                                                   {a, earlier, &pw.w_k, w.b_k.data(), b.k},
                                                   {a, earlier, &pw.w_v, w.b_v.data(), b.v}};
            kernels::linear_group(jobs, earlier > 0 ? 6 : 3);
            for (std::size_t i = joined, r = 0; i < active; r += computed(i), ++i) {
                const ragged_run& run = m_runs[i];
                const std::size_t n = computed(i), from = run.base_row * m_S + run.start + n;
                const std::size_t copied = run.length - n;
                std::copy(ws.joined_q.data() + r * qw, ws.joined_q.data() + (r + n) * qw, b.q + first_row[i] * qw);
                std::copy(ws.joined_k.data() + r * kvw, ws.joined_k.data() + (r + n) * kvw, b.k + first_row[i] * kvw);
                std::copy(ws.joined_v.data() + r * kvw, ws.joined_v.data() + (r + n) * kvw, b.v + first_row[i] * kvw);
                if (copied == 0) continue;
                const T* bq = m_base.queries[m_layer].data() + from * qw;
                const T* bk = m_base.keys[m_layer].data() + from * kvw;
                const T* bv = m_base.values[m_layer].data() + from * kvw;
                std::copy(bq, bq + copied * qw, b.q + (first_row[i] + n) * qw);
                std::copy(bk, bk + copied * kvw, b.k + (first_row[i] + n) * kvw);
                std::copy(bv, bv + copied * kvw, b.v + (first_row[i] + n) * kvw);
            }
        }
    }

    // Each run's rows at positions start..; rows copied from the base run are rotated already.
    void rotate(const layer_weights<T>& w, block_buffers<T>& b) const {
        const std::size_t H = m_c.n_heads, qw = H * m_c.d_head, kvw = m_c.n_kv_heads * m_c.d_head;
        const std::size_t* first_row = m_ws.first_row.data();
        const kernels::rope_table<T>& table = m_ws.rope;
        kernels::detail::for_items(long(m_active), rows() * (qw + kvw) > 65536, [&](long item) {
            const std::size_t i = std::size_t(item);
            const ragged_run& r = m_runs[i];
            const std::size_t n = reuses(i) ? 1 : r.length;
            position_heads(m_c, w.k_norm, b.k + first_row[i] * kvw, n, m_c.n_kv_heads, n, r.start, table);
            if (m_last_only)
                position_heads(m_c, w.q_norm, b.q + i * qw, 1, H, 1, r.start + r.length - 1, table);
            else
                position_heads(m_c, w.q_norm, b.q + first_row[i] * qw, n, H, n, r.start, table);
        });
    }

    // One (run, head, block of queries) at a time: scores against the base run's keys before the
    // run's start and the run's own keys after it, softmax, and the value mix, in a per-thread scratch
    // block.
    template <class Sites>
    void attend(int layer, block_buffers<T>& b, Sites&) const {
        const std::size_t dh = m_c.d_head, H = m_c.n_heads, qw = H * dh, kvw = m_c.n_kv_heads * dh;
        const std::size_t group = m_c.group_size(), S = m_S, active = m_active;
        const bool last_only = m_last_only;
        const std::size_t* first_row = m_ws.first_row.data();
        const attention_form<T> form = attention_form<T>::of(m_c, layer);
        const T* q = b.q;
        const T* k = b.k;
        const T* v = b.v;
        T* z = b.z;
        T* scores = m_ws.scores.data();
        const T* base_k = m_base.keys[std::size_t(layer)].data();
        const T* base_v = m_base.values[std::size_t(layer)].data();
        std::size_t max_blocks = 1;
        if (!last_only)
            for (std::size_t i = 0; i < active; ++i)
                max_blocks = std::max(max_blocks, (m_runs[i].length + query_block - 1) / query_block);
        const long items = long(active * H * max_blocks);
        // Threads index their scratch block only in this region of our own (threads > 1): called
        // from inside another parallel region, the loop runs plainly on scratch block 0.
        const std::size_t threads = m_ws.scores.extent(0), n = last_only ? active : rows();
        const bool threaded = threads > 1 && n * S * qw > 65536;
        kernels::detail::for_items(items, threaded, [&](long item) {
            const std::size_t i = std::size_t(item) / (H * max_blocks), h = std::size_t(item) / max_blocks % H;
            const ragged_run& r = m_runs[i];
            const std::size_t i0 = last_only ? r.length - 1 : std::size_t(item) % max_blocks * query_block;
            if (i0 >= r.length) return;
            const std::size_t nq = last_only ? 1 : std::min(query_block, r.length - i0);
            const std::size_t kv_off = (h / group) * dh;
            const std::size_t q_row = last_only ? i : first_row[i] + i0;
            const std::size_t slot = threaded ? std::size_t(kernels::detail::thread_index()) : 0;
            attended_keys<T> keys;
            keys.k_before = base_k + r.base_row * S * kvw + kv_off;
            keys.v_before = base_v + r.base_row * S * kvw + kv_off;
            keys.before = r.start;
            keys.k_own = k + first_row[i] * kvw + kv_off;
            keys.v_own = v + first_row[i] * kvw + kv_off;
            keys.own = i0 + nq;
            keys.ld = kvw;
            keys.diagonal = r.start + i0;
            attend_query_block(q + q_row * qw + h * dh, qw, nq, keys, dh, form, scores + slot * query_block * S, S,
                               z + q_row * qw + h * dh, qw);
        });
    }

    // With last_only, the rest of the block runs on each run's last row.
    std::size_t narrow(block_buffers<T>& b) const {
        if (!m_last_only) return rows();
        const std::size_t d = m_c.d_model;
        const std::size_t* first_row = m_ws.first_row.data();
        T* last_x = m_ws.last_resid.data();
        for (std::size_t i = 0; i < m_active; ++i)
            std::copy(b.x + (first_row[i + 1] - 1) * d, b.x + first_row[i + 1] * d, last_x + i * d);
        b.x = last_x;
        b.a = m_ws.last_normed.data();
        return m_active;
    }

    static constexpr std::size_t query_block = 64;

private:
    bool reuses(std::size_t i) const {
        return !m_last_only && i >= m_joined && m_runs[i].reuse_base_qkv && m_runs[i].length > 1;
    }

    const model_config& m_c;
    ragged_workspace<T>& m_ws;
    const std::vector<ragged_run>& m_runs;
    const ragged_base<T>& m_base;
    std::size_t m_S;
    std::size_t m_layer = 0, m_joined = 0, m_active = 0;
    bool m_last_only = false;
};

// block_body's site callback for ragged_forward: the sites activation patching writes, as
// ragged_activation views (the last rows only from attn.hook_z on in a last_only block).
template <class T, class OnSite>
struct ragged_sites {
    OnSite& on_site;
    const model_config& c;
    const std::vector<ragged_run>& runs;
    const std::size_t* first_row;
    const ragged_rows<T>& layout;

    void operator()(site s, int layer, T* data) const {
        std::size_t width = c.d_model;
        switch (s) {
        case site::resid_pre:
        case site::attn_out:
        case site::resid_mid:
        case site::mlp_out:
        case site::resid_post: break;
        case site::attn_z: width = c.n_heads * c.d_head; break;
        case site::mlp_post: width = c.d_mlp; break;
        default: return;
        }
        ragged_activation<T> a;
        a.data = data;
        a.width = width;
        a.runs = &runs;
        a.first_row = first_row;
        a.active = layout.active();
        a.last_rows_only = layout.last_only() && s != site::resid_pre;
        on_site(s, layer, static_cast<const ragged_activation<T>&>(a));
    }
};

} // namespace detail

/// Runs every run of `runs` (ordered by first_layer) to the end of the model. `on_site(site, layer,
/// const ragged_activation<T>&)` may overwrite the activation at each site it is called for (see the
/// file comment). Returns the final residual, before the final norm, as a view into `ws`: [rows of
/// all runs, d] stacked in run order, or with `last_row_only` [runs, d], each run's last row.
template <class T, class OnSite>
tensor_view<const T> ragged_forward(const basic_transformer<T>& model, ragged_workspace<T>& ws,
                                    const std::vector<ragged_run>& runs, const ragged_base<T>& base, bool last_row_only,
                                    OnSite&& on_site) {
    const model_config& c = model.config();
    detail::check_ragged_input(c, runs, base);
    const std::size_t L = c.n_layers, d = c.d_model, dm = c.d_mlp;
    const std::size_t qw = c.n_heads * c.d_head, kvw = c.n_kv_heads * c.d_head;
    const std::size_t S = base.resid_pre[0].extent(1), N = runs.size();

    ws.first_row.assign(N + 1, 0);
    for (std::size_t i = 0; i < N; ++i)
        ws.first_row[i + 1] = ws.first_row[i] + runs[i].length;
    const std::size_t R = ws.first_row[N];
    const std::size_t* first_row = ws.first_row.data();
    for (tensor<T>* t : {&ws.resid, &ws.normed, &ws.out})
        t->reshape_uninitialized({R, d});
    ws.q.reshape_uninitialized({R, qw});
    for (tensor<T>* t : {&ws.k, &ws.v})
        t->reshape_uninitialized({R, kvw});
    ws.mlp.reshape_uninitialized({R, dm});
    if (c.gated_mlp()) ws.mlp_lin.reshape_uninitialized({R, dm});
    if (last_row_only) {
        ws.last_resid.reshape_uninitialized({N, d});
        ws.last_normed.reshape_uninitialized({N, d});
    }
    const std::size_t threads = std::size_t(std::max(1, kernels::detail::gemm_threads()));
    ws.scores.reshape_uninitialized({threads, detail::ragged_rows<T>::query_block, S});
    cover_rope(c, ws.rope, S);

    detail::ragged_rows<T> layout(model, ws, runs, base);
    detail::ragged_sites<T, OnSite> sites{on_site, c, runs, first_row, layout};
    std::size_t active = 0;
    for (int layer = runs.front().first_layer; layer < int(L); ++layer) {
        // Runs that begin here take the base run's residual.
        const std::size_t joined = active;
        for (; active < N && runs[active].first_layer == layer; ++active) {
            const ragged_run& r = runs[active];
            const T* src = base.resid_pre[std::size_t(layer)].data() + (r.base_row * S + r.start) * d;
            std::copy(src, src + r.length * d, ws.resid.data() + first_row[active] * d);
        }
        layout.begin_layer(layer, joined, active, last_row_only && layer + 1 == int(L));
        block_body(c, model.weights().layers[std::size_t(layer)], model.packed().layers[std::size_t(layer)], layer,
                   layout, sites);
    }
    if (last_row_only) return static_cast<const tensor<T>&>(ws.last_resid).view();
    return static_cast<const tensor<T>&>(ws.resid).view();
}

/// Logits [rows, V] of final residual rows [rows, d] (e.g. ragged_forward's output, or a slice of
/// it): the final norm and the unembedding, as a view into `ws.logits`.
template <class T>
tensor_view<const T> ragged_logits(const basic_transformer<T>& model, ragged_workspace<T>& ws,
                                   tensor_view<const T> resid) {
    const model_config& c = model.config();
    if (resid.rank() != 2 || resid.extent(1) != c.d_model || !resid.is_contiguous())
        fail(errc::shape_mismatch, "ragged_logits: residual rows have shape {}, expected [rows, {}]",
             resid.shape().to_string(), c.d_model);
    const std::size_t rows = resid.extent(0);
    ws.last_normed.reshape_uninitialized({rows, c.d_model});
    model.final_norm(resid.data(), rows, ws.last_normed.data());
    ws.logits.reshape_uninitialized({rows, c.vocab_size});
    model.unembed(ws.last_normed.data(), rows, ws.logits.data());
    return static_cast<const tensor<T>&>(ws.logits).view();
}

} // namespace actlens
