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

/* sum of x^2 with LANES independent accumulators (one would serialize on the FMA
 * latency), float lanes within a block of BLOCK elements, double across blocks */
static double F(lw_sumsq1)(const T *x, int64_t n) {
  double total = 0;
  for (int64_t a = 0; a < n; a += BLOCK) {
    int64_t b = a + BLOCK < n ? a + BLOCK : n;
    T acc[LANES] = {0};
    int64_t k = a;
    for (; k + LANES <= b; k += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += x[k + l] * x[k + l];
    T s = 0;
    for (; k < b; k++) s += x[k] * x[k];
    for (int l = 0; l < LANES; l++) s += acc[l];
    total += s;
  }
  return total;
}

/* the same, reading the four quarters of x side by side: four streams get more memory
 * bandwidth out of one core than one stream (about 30 against 22 GB/s here) */
static double F(lw_sumsq)(const T *x, int64_t n) {
  if (n < 4 * BLOCK) return F(lw_sumsq1)(x, n);
  const int64_t q = n / 4, step = BLOCK / 4;
  double total = 0;
  for (int64_t a = 0; a < q; a += step) {
    int64_t b = a + step < q ? a + step : q;
    T acc[LANES] = {0};
    for (int s = 0; s < 4; s++) {
      const T *y = x + s * q;
      int64_t k = a;
      for (; k + LANES <= b; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += y[k + l] * y[k + l];
      for (; k < b; k++) acc[0] += y[k] * y[k];
    }
    T t = 0;
    for (int l = 0; l < LANES; l++) t += acc[l];
    total += t;
  }
  return total + F(lw_sumsq1)(x + 4 * q, n - 4 * q);
}

/* LARS. ptrs: param, grad, momentum buffer (unused when momentum == 0).
 * hp: lr, momentum, weight_decay, trust_coefficient, eps, nesterov.
 * pt: per tensor (adapt, ‖w‖²): adapt 1 to apply the trust ratio, 0 for a plain step;
 *     ‖w‖² of the tensor as it is now if known (carried from the last step), else < 0.
 * out: per tensor (trust ratio used, ‖w‖² after the update).
 * Per tensor: ‖g‖ (and ‖w‖ if not carried) in one read pass, then the update, which
 * finds g in cache and computes the new ‖w‖² on the way. */
static void F(lars_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  (void)lo;
  Job *j = (Job *)vjob;
  T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *buf = PTR(j, 2, i, T);
  const double lr = j->hp[0], mu = j->hp[1], wd = j->hp[2], tc = j->hp[3], eps = j->hp[4];
  const int nesterov = j->hp[5] != 0, adapt = j->pt[2 * i] != 0;
  double trust = 1.0;
  if (adapt) {
    double wsq = j->pt[2 * i + 1] >= 0 ? j->pt[2 * i + 1] : F(lw_sumsq)(p, hi);
    double wn = sqrt(wsq), gn = sqrt(F(lw_sumsq)(g, hi));
    if (wn > 0 && gn > 0) trust = tc * wn / (gn + wd * wn + eps);
  }
  const T rt = (T)trust, twd = (T)(trust * wd), m = (T)mu, step = (T)lr;
  double wsq_new = 0;
  for (int64_t a = 0; a < hi; a += BLOCK) {
    int64_t b = a + BLOCK < hi ? a + BLOCK : hi;
    T s = 0;
    if (mu == 0) { /* p <- p - lr * rho * (g + wd p) */
#pragma omp simd reduction(+ : s)
      for (int64_t k = a; k < b; k++) {
        T pk = p[k] - step * (rt * g[k] + twd * p[k]);
        p[k] = pk;
        s += pk * pk;
      }
    } else if (!nesterov) { /* b <- mu b + rho (g + wd p); p <- p - lr b */
#pragma omp simd reduction(+ : s)
      for (int64_t k = a; k < b; k++) {
        T bk = m * buf[k] + (rt * g[k] + twd * p[k]);
        T pk = p[k] - step * bk;
        buf[k] = bk;
        p[k] = pk;
        s += pk * pk;
      }
    } else { /* d = rho (g + wd p); b <- mu b + d; p <- p - lr (d + mu b) */
#pragma omp simd reduction(+ : s)
      for (int64_t k = a; k < b; k++) {
        T d = rt * g[k] + twd * p[k];
        T bk = m * buf[k] + d;
        T pk = p[k] - step * (d + m * bk);
        buf[k] = bk;
        p[k] = pk;
        s += pk * pk;
      }
    }
    wsq_new += s;
  }
  j->out[2 * i] = trust;
  j->out[2 * i + 1] = wsq_new;
}

void F(lars)(int64_t n, const int64_t *numel, void *const *ptrs, const double *hp,
             const double *pt, double *out, int nthreads) {
  Job j = {n, numel, ptrs, hp, pt, out, NULL, 0, nthreads, F(lars_body)};
  run_job(&j, SPLIT_TENSORS);
}

/* LAMB. ptrs: param, grad, exp_avg, exp_avg_sq. scratch: per thread, room for the
 * largest tensor (the direction u, kept in cache between the two passes).
 * hp: lr, beta1, beta2, eps, weight_decay, clamp (inf: none), adam (ratio 1).
 * pt: per tensor (1 - beta1^t, 1 - beta2^t) (1, 1 without bias correction).
 * out: per tensor the ratio used. */
static void F(lamb_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *m = PTR(j, 2, i, T), *v = PTR(j, 3, i, T);
  T *u = (T *)j->scratch + (int64_t)tid * j->scratch_numel;
  const double lr = j->hp[0], wd = j->hp[4], clamp = j->hp[5];
  const T b1 = (T)j->hp[1], b2 = (T)j->hp[2], eps = (T)j->hp[3], twd = (T)wd;
  const T c1 = (T)(1 - j->hp[1]), c2 = (T)(1 - j->hp[2]);
  const T bias1 = (T)j->pt[2 * i], bias2 = (T)j->pt[2 * i + 1];
  const int adam = j->hp[6] != 0;
  if (adam) {
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
  double wsq = 0, usq = 0;
  for (int64_t a = lo; a < hi; a += BLOCK) {
    int64_t b = a + BLOCK < hi ? a + BLOCK : hi;
    T ws = 0, us = 0;
#pragma omp simd reduction(+ : ws, us)
    for (int64_t k = a; k < b; k++) {
      T mk = m[k] * b1 + g[k] * c1;
      T vk = v[k] * b2 + c2 * (g[k] * g[k]);
      m[k] = mk;
      v[k] = vk;
      T uk = (mk / bias1) / (TSQRT(vk / bias2) + eps) + twd * p[k];
      u[k - lo] = uk;
      ws += p[k] * p[k];
      us += uk * uk;
    }
    wsq += ws;
    usq += us;
  }
  double wn = sqrt(wsq), un = sqrt(usq);
  if (wn > clamp) wn = clamp;
  double ratio = (wn > 0 && un > 0) ? wn / un : 1.0;
  j->out[i] = ratio;
  const T step = (T)(ratio * lr);
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) p[k] -= step * u[k - lo];
}

void F(lamb)(int64_t n, const int64_t *numel, void *const *ptrs, const double *hp,
             const double *pt, double *out, void *scratch, int64_t scratch_numel,
             int nthreads) {
  Job j = {n, numel, ptrs, hp, pt, out, scratch, scratch_numel, nthreads, F(lamb_body)};
  run_job(&j, SPLIT_TENSORS);
}

#endif
