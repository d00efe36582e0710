/* Fused pair search of mrfrecon's two-component matching (see pairsearch.py for the model).
 *
 * For a voxel s (K complex coefficients, given as re[K], im[K]) and a (B1, df) group with unit-norm
 * water atoms w_i, fat atoms f_j, c_ij = w_i^H f_j and g_ij = 1 / (1 - |c_ij|^2), the explained
 * energy of the pair (i, j) is
 *     E_ij = |p_i|^2 + |q_j - conj(c_ij) p_i|^2 g_ij,   p_i = w_i^H s,  q_j = f_j^H s.
 * The energies of a group are computed into a buffer that stays in L1 cache, with their maximum
 * in the same vectorized loop; nothing but the best pair leaves the kernel.
 *
 * Built by `make` (pairsearch.build()) with -O3 -march=native -ffast-math; loaded with ctypes.
 */
#include <stdint.h>
#include <stdlib.h>

/* Projections p = w^H s of n atoms stored as (K, stride) planes starting at column 0. */
static void project(const float *restrict sr, const float *restrict si, int nk,
                    const float *restrict wr, const float *restrict wi, long stride, int n,
                    float *restrict pr, float *restrict pi) {
    for (int t = 0; t < n; t++) { pr[t] = 0.0f; pi[t] = 0.0f; }
    for (int k = 0; k < nk; k++) {
        const float a = sr[k], b = si[k];
        const float *restrict x = wr + k * stride, *restrict y = wi + k * stride;
        for (int t = 0; t < n; t++) {
            pr[t] += x[t] * a + y[t] * b;   /* Re(conj(w) s) */
            pi[t] += x[t] * b - y[t] * a;   /* Im(conj(w) s) */
        }
    }
}

/* Energies of the ni pairs (., j) for fat projection (a, b) into e; returns their maximum.
 * One non-inlined instance, so that every search computes bit-identical energies. */
__attribute__((noinline))
static float pair_row(float a, float b, const float *restrict pr, const float *restrict pi,
                      const float *restrict p2, const float *restrict cr, const float *restrict ci,
                      const float *restrict inv, int ni, float *restrict e) {
    float m = -1.0f;
    for (int i = 0; i < ni; i++) {
        const float x = cr[i], y = ci[i];
        const float rr = a - (x * pr[i] + y * pi[i]);   /* Re(q - conj(c) p) */
        const float ri = b - (x * pi[i] - y * pr[i]);   /* Im(q - conj(c) p) */
        const float v = p2[i] + (rr * rr + ri * ri) * inv[i];
        e[i] = v;
        m = v > m ? v : m;
    }
    return m;
}

static long first_index(const float *e, long n, float m) {
    for (long t = 0; t < n; t++)
        if (e[t] == m) return t;
    return 0;
}

typedef struct {
    float *pr, *pi, *p2, *qr, *qi, *e;
} work_t;

static int work_alloc(work_t *w, long na, long nf, long ne) {
    w->pr = malloc(sizeof(float) * (3 * na + 2 * nf + ne));
    if (!w->pr) return -1;
    w->pi = w->pr + na; w->p2 = w->pi + na; w->qr = w->p2 + na; w->qi = w->qr + nf; w->e = w->qi + nf;
    return 0;
}

/* All pairs of group g of a grid stored as wr, wi (G, K, I), fr, fi (G, K, J), cr, ci, inv (G, J, I);
 * energies into w->e (j major), returns the maximum. */
static float group_max(const float *sr, const float *si, int nk, int ni, int nj, long g,
                       const float *wr, const float *wi, const float *fr, const float *fi,
                       const float *cr, const float *ci, const float *inv, work_t *w) {
    project(sr, si, nk, wr + g * nk * ni, wi + g * nk * ni, ni, ni, w->pr, w->pi);
    project(sr, si, nk, fr + g * nk * nj, fi + g * nk * nj, nj, nj, w->qr, w->qi);
    for (int i = 0; i < ni; i++) w->p2[i] = w->pr[i] * w->pr[i] + w->pi[i] * w->pi[i];
    float m = -1.0f;
    const long o = g * (long)nj * ni;
    for (int j = 0; j < nj; j++) {
        const float r = pair_row(w->qr[j], w->qi[j], w->pr, w->pi, w->p2, cr + o + (long)j * ni,
                                 ci + o + (long)j * ni, inv + o + (long)j * ni, ni, w->e + (long)j * ni);
        m = r > m ? r : m;
    }
    return m;
}

/* Best pair over every group for n voxels s (n, 2, K) -> out (n, 3): group, i, j. */
int mrf_exhaustive(long n, const float *s, int nk, long ng, int ni, int nj,
                   const float *wr, const float *wi, const float *fr, const float *fi,
                   const float *cr, const float *ci, const float *inv, int64_t *out) {
    work_t w;
    if (work_alloc(&w, ni, nj, (long)ni * nj)) return -1;
    for (long v = 0; v < n; v++) {
        const float *sr = s + v * 2 * nk, *si = sr + nk;
        float best = -2.0f;
        long bg = 0, bt = 0;
        for (long g = 0; g < ng; g++) {
            const float m = group_max(sr, si, nk, ni, nj, g, wr, wi, fr, fi, cr, ci, inv, &w);
            if (m > best) { best = m; bg = g; bt = first_index(w.e, (long)ni * nj, m); }
        }
        out[3 * v] = bg; out[3 * v + 1] = bt % ni; out[3 * v + 2] = bt / ni;
    }
    free(w.pr);
    return 0;
}

/* Coarse-to-fine search (method "fast" of mrfrecon.matching.match).
 * Coarse grid merged per term: cwr, cwi (K, cna = G.I), cfr, cfi (K, cnf = G.J),
 * ccr, cci, cinv (J, cna); cb, cd, cii, cjj: its indices on the fine axes. Stage 1: the best
 * coarse pair. Stage 2: every pair of the (2 hb + 1) x (2 hd + 1) (B1, df) groups around it,
 * re-centred (at most max_moves times) while the best group lies on the window's inner edge;
 * the best pair of all groups visited wins (exact ties: lower group index, as exhaustive).
 * out (n, 4): b, d, i, j on the fine grid. */
int mrf_fast(long n, const float *s, int nk,
             long cna, long cnf, int cni, int cnj, int cnd,
             const int64_t *cb, const int64_t *cd, const int64_t *cii, const int64_t *cjj,
             const float *cwr, const float *cwi, const float *cfr, const float *cfi,
             const float *ccr, const float *cci, const float *cinv,
             int nb, int nd, int hb, int hd, int max_moves, int ni, int nj,
             const float *wr, const float *wi, const float *fr, const float *fi,
             const float *cr, const float *ci, const float *inv, int64_t *out) {
    work_t w;
    const long na = cna > ni ? cna : ni, nf = cnf > nj ? cnf : nj;
    const long ne = cna * cnj > (long)ni * nj ? cna * cnj : (long)ni * nj;
    if (work_alloc(&w, na, nf, ne)) return -1;
    char *seen = malloc((size_t)nb * nd);
    if (!seen) { free(w.pr); return -1; }
    const int lb = 2 * hb + 1, ld = 2 * hd + 1;
    const int cng = (int)(cna / cni);
    for (long v = 0; v < n; v++) {
        const float *sr = s + v * 2 * nk, *si = sr + nk;
        /* stage 1 */
        project(sr, si, nk, cwr, cwi, cna, (int)cna, w.pr, w.pi);
        project(sr, si, nk, cfr, cfi, cnf, (int)cnf, w.qr, w.qi);
        for (long t = 0; t < cna; t++) w.p2[t] = w.pr[t] * w.pr[t] + w.pi[t] * w.pi[t];
        float m = -1.0f;
        for (int j = 0; j < cnj; j++)
            for (int g = 0; g < cng; g++) {
                const long o = (long)g * cni;
                const float r = pair_row(w.qr[g * cnj + j], w.qi[g * cnj + j], w.pr + o, w.pi + o, w.p2 + o,
                                         ccr + j * cna + o, cci + j * cna + o, cinv + j * cna + o, cni,
                                         w.e + j * cna + o);
                m = r > m ? r : m;
            }
        const long t = first_index(w.e, cna * cnj, m);
        const long cg = (t % cna) / cni;
        long cb0 = cb[cg / cnd], cd0 = cd[cg % cnd];
        long bb = cb0, bd = cd0, bi = cii[(t % cna) % cni], bj = cjj[t / cna];
        float best = -2.0f;
        /* stage 2 */
        for (long q = 0; q < (long)nb * nd; q++) seen[q] = 0;
        for (int move = 0; move <= max_moves; move++) {
            long b0 = cb0 - hb, d0 = cd0 - hd;
            b0 = b0 < 0 ? 0 : (b0 > nb - lb ? nb - lb : b0);
            d0 = d0 < 0 ? 0 : (d0 > nd - ld ? nd - ld : d0);
            for (long b = b0; b < b0 + lb; b++)
                for (long d = d0; d < d0 + ld; d++) {
                    const long g = b * nd + d;
                    if (seen[g]) continue;
                    seen[g] = 1;
                    const float mg = group_max(sr, si, nk, ni, nj, g, wr, wi, fr, fi, cr, ci, inv, &w);
                    if (mg > best || (mg == best && g < bb * nd + bd)) {
                        const long u = first_index(w.e, (long)ni * nj, mg);
                        best = mg; bb = b; bd = d; bi = u % ni; bj = u / ni;
                    }
                }
            const int on_edge = (bb == b0 && bb > 0) || (bb == b0 + lb - 1 && bb < nb - 1) ||
                                (bd == d0 && bd > 0) || (bd == d0 + ld - 1 && bd < nd - 1);
            if (!on_edge || (bb == cb0 && bd == cd0)) break;
            cb0 = bb; cd0 = bd;
        }
        out[4 * v] = bb; out[4 * v + 1] = bd; out[4 * v + 2] = bi; out[4 * v + 3] = bj;
    }
    free(seen);
    free(w.pr);
    return 0;
}
