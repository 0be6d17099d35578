/* LARS and LAMB on CPU: per tensor, the norms and then the update while the tensor is
 * still in cache. Formulas: bergab/optim/layerwise.py (lars_reference, lamb_reference). */
#ifndef T
#include "common.h"
#define T float
#define F(name) name##_f32
#include __FILE__
#undef T
#undef F
#define T double
#define F(name) name##_f64
#include __FILE__
#else

/* sum of x^2 over [0, n), squared and summed in double on LANES lanes (common.h) */
static double F(lw_sumsq1)(const T *x, int64_t n) {
  double acc[LANES] = {0};
  int64_t k = 0;
  for (; k + LANES <= n; k += LANES)
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
      double e = (double)x[k + l];
      acc[l] = ADD_PRODUCT(acc[l], e, e);
    }
  for (int l = 0; k + l < n; l++) {
    double e = (double)x[k + l];
    acc[l] = ADD_PRODUCT(acc[l], e, e);
  }
  return lanes_total(acc);
}

/* the same, reading the four quarters of x side by side: four streams get more memory
 * bandwidth out of one core than one stream (see common.h). Over [0, 4q): chunks of
 * BLOCK / 4 elements of each quarter in turn, quarter by quarter, element k of a chunk
 * added to lane k % LANES; then the rest, [4q, n), as lw_sumsq1. */
static double F(lw_sumsq)(const T *x, int64_t n) {
  if (n < 4 * BLOCK) return F(lw_sumsq1)(x, n);
  const int64_t q = n / 4, step = BLOCK / 4; /* step % LANES == 0 */
  double acc[LANES] = {0};
  for (int64_t a = 0; a < q; a += step) {
    int64_t b = a + step < q ? a + step : q;
    for (int s = 0; s < 4; s++) {
      const T *y = x + s * q;
      int64_t k = a;
      for (; k + LANES <= b; k += LANES)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
          double e = (double)y[k + l];
          acc[l] = ADD_PRODUCT(acc[l], e, e);
        }
      for (int l = 0; k + l < b; l++) {
        double e = (double)y[k + l];
        acc[l] = ADD_PRODUCT(acc[l], e, e);
      }
    }
  }
  return lanes_total(acc) + F(lw_sumsq1)(x + 4 * q, n - 4 * q);
}

/* One element of the LARS update (in T), p_new^2 added to acc in double.
 * mode 0: p <- p - lr rho (g + wd p);
 * mode 1 (heavy ball): b <- mu b + rho (g + wd p), p <- p - lr b;
 * mode 2 (Nesterov): d = rho (g + wd p), b <- mu b + d, p <- p - lr (d + mu b). */
#define LARS_ELEMENT(k, acc, mode)                  \
  do {                                              \
    T pk_;                                          \
    if ((mode) == 0) {                              \
      pk_ = p[k] - step * (rt * g[k] + twd * p[k]); \
    } else if ((mode) == 1) {                       \
      T bk_ = m * buf[k] + (rt * g[k] + twd * p[k]); \
      pk_ = p[k] - step * bk_;                      \
      buf[k] = bk_;                                 \
    } else {                                        \
      T d_ = rt * g[k] + twd * p[k];                \
      T bk_ = m * buf[k] + d_;                      \
      pk_ = p[k] - step * (d_ + m * bk_);           \
      buf[k] = bk_;                                 \
    }                                               \
    p[k] = pk_;                                     \
    double e_ = (double)pk_;                        \
    acc = ADD_PRODUCT(acc, e_, e_);                 \
  } while (0)

/* The LARS update of a whole tensor of n elements; returns its new ||p||^2 (LANES double
 * lanes, common.h). */
static inline __attribute__((always_inline)) double F(lars_update)(
    T *p, const T *g, T *buf, int64_t n, T rt, T twd, T m, T step, const int mode) {
  double acc[LANES] = {0};
  int64_t k = 0;
  for (; k + LANES <= n; k += LANES)
#pragma omp simd
    for (int l = 0; l < LANES; l++) LARS_ELEMENT(k + l, acc[l], mode);
  for (int l = 0; k + l < n; l++) LARS_ELEMENT(k + l, acc[l], mode);
  return lanes_total(acc);
}
#undef LARS_ELEMENT

/* LARS. ptrs: param, grad, momentum buffer (unused when momentum == 0). hp: LarsHp.
 * pt: per tensor (adapt, ‖w‖²): adapt 1 to apply the trust ratio, 0 for a plain step;
 *     ‖w‖² of the tensor as it is now if known (carried from the last step), else < 0.
 * out: per tensor (trust ratio used, ‖w‖² after the update).
 * Per tensor: ‖g‖ (and ‖w‖ if not carried) in one read pass, then the update, which
 * finds g in cache and computes the new ‖w‖² on the way. */
static void F(lars_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  (void)lo; /* SPLIT_TENSORS: the whole tensor, [0, hi) */
  Job *j = (Job *)vjob;
  const LarsHp *hp = (const LarsHp *)j->hp;
  T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *buf = PTR(j, 2, i, T);
  const double lr = hp->lr, mu = hp->momentum, wd = hp->weight_decay;
  const double tc = hp->trust_coefficient, eps = hp->eps;
  const int nesterov = hp->nesterov != 0, adapt = j->pt[2 * i] != 0;
  double trust = 1.0;
  if (adapt) {
    double wsq = j->pt[2 * i + 1] >= 0 ? j->pt[2 * i + 1] : F(lw_sumsq)(p, hi);
    double wn = sqrt(wsq), gn = sqrt(F(lw_sumsq)(g, hi));
    if (wn > 0 && gn > 0) trust = tc * wn / (gn + wd * wn + eps);
  }
  const T rt = (T)trust, twd = (T)(trust * wd), m = (T)mu, step = (T)lr;
  double wsq_new;
  if (mu == 0)
    wsq_new = F(lars_update)(p, g, buf, hi, rt, twd, m, step, 0);
  else if (!nesterov)
    wsq_new = F(lars_update)(p, g, buf, hi, rt, twd, m, step, 1);
  else
    wsq_new = F(lars_update)(p, g, buf, hi, rt, twd, m, step, 2);
  j->out[2 * i] = trust;
  j->out[2 * i + 1] = wsq_new;
}

void F(lars)(int64_t n, const int64_t *numel, void *const *ptrs, const LarsHp *hp,
             const double *pt, double *out, int nthreads) {
  Job j = {n, numel, ptrs, hp, pt, out, NULL, 0, nthreads, F(lars_body)};
  run_job(&j, SPLIT_TENSORS);
}

/* One element of LAMB's first pass (in T): the moments and the direction u, kept in the
 * scratch; p^2 and u^2 added to ws and us in double. */
#define LAMB_ELEMENT(k, ws, us)                                           \
  do {                                                                    \
    T mk_ = m[k] * b1 + g[k] * c1;                                        \
    T vk_ = v[k] * b2 + c2 * (g[k] * g[k]);                               \
    m[k] = mk_;                                                           \
    v[k] = vk_;                                                           \
    T uk_ = (mk_ / bias1) / (TSQRT(vk_ / bias2) + eps) + twd * p[k];      \
    u[k - lo] = uk_;                                                      \
    double pd_ = (double)p[k], ud_ = (double)uk_;                         \
    ws = ADD_PRODUCT(ws, pd_, pd_);                                       \
    us = ADD_PRODUCT(us, ud_, ud_);                                       \
  } while (0)

/* LAMB. ptrs: param, grad, exp_avg, exp_avg_sq. scratch: per thread, room for the
 * largest tensor (the direction u, kept in cache between the two passes). hp: LambHp.
 * pt: per tensor (1 - beta1^t, 1 - beta2^t) (1, 1 without bias correction).
 * out: per tensor the ratio used. */
static void F(lamb_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const LambHp *hp = (const LambHp *)j->hp;
  T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *m = PTR(j, 2, i, T), *v = PTR(j, 3, i, T);
  T *u = (T *)j->scratch + (int64_t)tid * j->scratch_numel;
  const double lr = hp->lr, wd = hp->weight_decay, clamp = hp->clamp;
  const T b1 = (T)hp->beta1, b2 = (T)hp->beta2, eps = (T)hp->eps, twd = (T)wd;
  const T c1 = (T)(1 - hp->beta1), c2 = (T)(1 - hp->beta2);
  const T bias1 = (T)j->pt[2 * i], bias2 = (T)j->pt[2 * i + 1];
  if (hp->adam != 0) {
    const T step = (T)lr;
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T mk = m[k] * b1 + g[k] * c1;
      T vk = v[k] * b2 + c2 * (g[k] * g[k]);
      m[k] = mk;
      v[k] = vk;
      p[k] -= step * ((mk / bias1) / (TSQRT(vk / bias2) + eps) + twd * p[k]);
    }
    j->out[i] = 1.0;
    return;
  }
  double ws[LANES] = {0}, us[LANES] = {0}; /* the lanes of ||p||^2 and ||u||^2 */
  int64_t k = lo;
  for (; k + LANES <= hi; k += LANES)
#pragma omp simd
    for (int l = 0; l < LANES; l++) LAMB_ELEMENT(k + l, ws[l], us[l]);
  for (int l = 0; k + l < hi; l++) LAMB_ELEMENT(k + l, ws[l], us[l]);
  double wn = sqrt(lanes_total(ws)), un = sqrt(lanes_total(us));
  if (wn > clamp) wn = clamp;
  double ratio = (wn > 0 && un > 0) ? wn / un : 1.0;
  j->out[i] = ratio;
  const T step = (T)(ratio * lr);
#pragma omp simd
  for (k = lo; k < hi; k++) p[k] -= step * u[k - lo];
}
#undef LAMB_ELEMENT

void F(lamb)(int64_t n, const int64_t *numel, void *const *ptrs, const LambHp *hp,
             const double *pt, double *out, void *scratch, int64_t scratch_numel,
             int nthreads) {
  Job j = {n, numel, ptrs, hp, pt, out, scratch, scratch_numel, nthreads, F(lamb_body)};
  run_job(&j, SPLIT_TENSORS);
}

#endif
