/* The LIF recurrence's forward and backward loops (float: suffix f, double: suffix d), shared by the torch
   backend (ctypes, kernels_torch.py) and the JAX backend (XLA FFI, lif_ffi.cc appended to this file by
   native.lif_library_ffi).  The same float operations in the same order as the reference step; compiled
   with -ffp-contract=off for torch so no multiply-add is fused (lif_ffi.cc says how the JAX build differs).
   lif_backward_* reads a slope array, or with slope NULL computes surrogates.FastSigmoid's slope in the
   loop, with its operations in its order. */
#include <stdint.h>
#include <pthread.h>

/* fn(args, j0, j1) on up to nthreads threads, each a contiguous range of the n neurons: neurons are
   independent, so every element sees the same operations in the same order whatever the split */
typedef struct { void (*fn)(void *, int64_t, int64_t); void *args; int64_t j0, j1; } np_job;
static void *np_run_job(void *p) { np_job *j = (np_job *)p; j->fn(j->args, j->j0, j->j1); return 0; }
static void np_parallel(void (*fn)(void *, int64_t, int64_t), void *args, int64_t n, int nthreads) {
    np_job jobs[16]; pthread_t th[16]; int used = 0;
    if (nthreads > 16) nthreads = 16;
    if (nthreads > n / 2048) nthreads = (int)(n / 2048);  /* at least 2048 neurons a thread */
    if (nthreads < 1) nthreads = 1;
    int64_t per = ((n + nthreads - 1) / nthreads + 15) / 16 * 16;
    for (int i = 0; i < nthreads && i * per < n; ++i) {
        jobs[i].fn = fn; jobs[i].args = args; jobs[i].j0 = i * per; jobs[i].j1 = (i + 1) * per < n ? (i + 1) * per : n;
        used++;
    }
    for (int i = 1; i < used; ++i) if (pthread_create(&th[i], 0, np_run_job, &jobs[i]) != 0) { np_run_job(&jobs[i]); th[i] = 0; }
    np_run_job(&jobs[0]);
    for (int i = 1; i < used; ++i) if (th[i]) pthread_join(th[i], 0);
}

#define LIF_KERNELS(T, S)                                                                            \
typedef struct { const T *cur, *v0; T *u_all, *spikes, *v_a, *v_b; int64_t steps, n; T alpha, thr; int reset; } fwd_args_##S; \
static void lif_forward_range_##S(void *p, int64_t j0, int64_t j1) {                                  \
    fwd_args_##S *a = (fwd_args_##S *)p;                                                               \
    const T alpha = a->alpha, thr = a->thr;                                                            \
    const int64_t steps = a->steps, n = a->n;                                                         \
    const int reset = a->reset;                                                                        \
    const T *v = a->v0;                                                                                \
    for (int64_t t = 0; t < steps; ++t) {                                                              \
        const T *I = a->cur + t * n;                                                                   \
        T *u = a->u_all + t * n, *z = a->spikes + t * n;                                               \
        T *vn = ((steps - 1 - t) % 2 == 0) ? a->v_a : a->v_b;                                          \
        for (int64_t j = j0; j < j1; ++j) {                                                            \
            T uu = v[j] * alpha;                                                                       \
            uu = uu + I[j];                                                                            \
            u[j] = uu;                                                                                 \
            T x = uu - thr;                                                                            \
            T zz = (x > (T)0) ? (T)1 : (T)0;                                                           \
            z[j] = zz;                                                                                 \
            if (reset == 0) { T r = zz * thr; vn[j] = uu - r; }                                        \
            else if (reset == 1) { T k = (T)1 - zz; vn[j] = uu * k; }                                  \
            else { vn[j] = uu; }                                                                       \
        }                                                                                              \
        v = vn;                                                                                        \
    }                                                                                                  \
}                                                                                                      \
void lif_forward_##S(const T *cur, const T *v0, T *u_all, T *spikes, T *v_a, T *v_b,                  \
                     int64_t steps, int64_t n, double alpha_d, double thr_d, int reset, int nthreads) { \
    fwd_args_##S a = {cur, v0, u_all, spikes, v_a, v_b, steps, n, (T)alpha_d, (T)thr_d, reset};        \
    np_parallel(lif_forward_range_##S, &a, n, nthreads);                                               \
}                                                                                                      \
typedef struct { const T *u_all, *slope, *gz; T *dI, *g; int has_g; int64_t steps, n; T alpha, thr; int reset, detach; \
                 T beta; } bwd_args_##S; \
/* one step of the backward for neurons j0..j1; slope_given / gz_given / g_given are constants at each call      \
   below, so every combination is its own loop without branches (the division of the computed slope in a    \
   branch kept the loop scalar, 3x slower: the compiler does not hoist a division that might trap) */        \
static inline void lif_backward_row_##S(const T *__restrict u, const T *__restrict s, const T *__restrict gzt,   \
                                        T *__restrict out, T *__restrict g, int64_t j0, int64_t j1, T alpha,   \
                                        T thr, T beta, int reset, int detach, const int slope_given,           \
                                        const int gz_given, const int g_given) {                              \
    for (int64_t j = j0; j < j1; ++j) {                                                                \
        T sj;                                                                                          \
        if (slope_given) sj = s[j];                                                                    \
        else { /* the fast sigmoid 1 / (1 + beta |u - thr|)^2, as surrogates.FastSigmoid computes it */ \
            T x = u[j] - thr; T ax = x < (T)0 ? -x : x; T q = (T)1 + beta * ax; sj = (T)1 / (q * q);   \
        }                                                                                              \
        T val = gz_given ? gzt[j] * sj : (T)0;                                                         \
        if (g_given) {                                                                                 \
            T c = (T)1;                                                                                \
            if (reset == 0) { if (!detach) c = (T)1 - thr * sj; }                                      \
            else if (reset == 1) {                                                                     \
                c = ((u[j] - thr) > (T)0) ? (T)0 : (T)1;                                               \
                if (!detach) c = c - u[j] * sj;                                                        \
            }                                                                                          \
            val = val + c * g[j];                                                                      \
        }                                                                                              \
        out[j] = val;                                                                                  \
        g[j] = val * alpha;                                                                            \
    }                                                                                                  \
}                                                                                                      \
static void lif_backward_range_##S(void *p, int64_t j0, int64_t j1) {                                 \
    bwd_args_##S *a = (bwd_args_##S *)p;                                                               \
    const T alpha = a->alpha, thr = a->thr, beta = a->beta;                                            \
    const int64_t steps = a->steps, n = a->n;                                                         \
    const int reset = a->reset, detach = a->detach;                                                    \
    int has_g = a->has_g;                                                                              \
    for (int64_t t = steps - 1; t >= 0; --t) {                                                         \
        const T *u = a->u_all + t * n, *s = a->slope ? a->slope + t * n : 0;                           \
        const T *gzt = a->gz ? a->gz + t * n : 0;                                                      \
        T *out = a->dI + t * n, *g = a->g;                                                             \
        const int code = (s ? 4 : 0) | (gzt ? 2 : 0) | (has_g ? 1 : 0);                               \
        switch (code) {                                                                                \
        case 0: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 0, 0, 0); break; \
        case 1: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 0, 0, 1); break; \
        case 2: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 0, 1, 0); break; \
        case 3: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 0, 1, 1); break; \
        case 4: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 1, 0, 0); break; \
        case 5: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 1, 0, 1); break; \
        case 6: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 1, 1, 0); break; \
        default: lif_backward_row_##S(u, s, gzt, out, g, j0, j1, alpha, thr, beta, reset, detach, 1, 1, 1); break; \
        }                                                                                              \
        has_g = 1;                                                                                     \
    }                                                                                                  \
}                                                                                                      \
/* slope: the surrogate's derivative at u - thr for every step and neuron, or NULL for the fast sigmoid     \
   1 / (1 + beta |u - thr|)^2, which the loop then computes itself (beta is read only then) */          \
void lif_backward_##S(const T *u_all, const T *slope, const T *gz, T *dI, T *g, int has_g,            \
                      int64_t steps, int64_t n, double alpha_d, double thr_d, int reset, int detach,   \
                      double beta_d, int nthreads) {                                                   \
    bwd_args_##S a = {u_all, slope, gz, dI, g, has_g, steps, n, (T)alpha_d, (T)thr_d, reset, detach, (T)beta_d}; \
    np_parallel(lif_backward_range_##S, &a, n, nthreads);                                              \
}
LIF_KERNELS(float, f)
LIF_KERNELS(double, d)
