/* Prodigy on CPU: two passes per step. Formulas: bergab/optim/prodigy.py
 * (prodigy_reference_accumulate, prodigy_reference_step).
 *
 * The new estimate d_{k+1} needs two sums over every parameter, <g, x0 - x> and the
 * l1 norm of the updated s, and the parameter update needs d_{k+1} (in the eps term of
 * its denominator), so no parameter can move before every gradient has been read. The
 * work is split so that the two passes move as few bytes as the math allows (48 per
 * float32 parameter, against 40 for a single pass):
 *   1. prodigy_sums: reads x, g, x0, s, writes s <- beta3 s + c3 g, and sums
 *      <g, x0 - x> and |s| per tensor;
 *   2. (Python: d_{k+1} from the sums, as prodigyopt)
 *   3. prodigy_step: reads x, g, v, m, writes m, v (the moments need only d_k, but
 *      updating them here rather than in pass 1 saves reading them twice) and x, each
 *      thread walking the elements pass 1 gave it last tensor first, so that it starts
 *      on the x and g it read last (still in cache, for as far as pass 2's own streams
 *      have not flushed them).
 * With coupled weight decay both passes use g + wd x (x before the step).
 * The reads of both passes are the limit on the development machine (figures and what
 * did not help: benchmarks/RESULTS.md, "Kernel design notes"). */
#ifndef T
#include <string.h>

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

#ifndef SQRT
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#define FABS(x) _Generic((x), float: fabsf, default: fabs)(x)
#endif

/* One element of pass 1: s <- beta3 s + c3 g', dot += g' (x0 - x), l1 += |s| (g', the
 * difference and s in T, the terms in double). */
#define PD_SUMS_ELEMENT(k, dot, l1)                          \
  do {                                                       \
    T xk_ = x[k], gk_ = coupled ? g[k] + wd * xk_ : g[k];    \
    dot = ADD_PRODUCT(dot, (double)gk_, (double)(x0[k] - xk_)); \
    T sk_ = s[k] * b3 + c3 * gk_;                            \
    s[k] = sk_;                                              \
    l1 += (double)FABS(sk_);                                 \
  } while (0)

/* ptrs: x, g, x0, s. hp: ProdigySumsHp.
 * out: per (thread, tensor) the pair (<g, x0 - x>, ||s||_1): out[2 (tid n + i) + 0/1]. */
static void F(pd_sums_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const ProdigySumsHp *hp = (const ProdigySumsHp *)j->hp;
  const T *x = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *x0 = PTR(j, 2, i, T);
  T *s = PTR(j, 3, i, T);
  const T b3 = (T)hp->beta3, c3 = (T)hp->c3, wd = (T)hp->coupled_weight_decay;
  const int coupled = hp->coupled_weight_decay != 0;
  double ad[LANES] = {0}, al[LANES] = {0}; /* the lanes of each sum (common.h) */
  int64_t k = lo;
  if (coupled) {
    for (; k + LANES <= hi; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) PD_SUMS_ELEMENT(k + l, ad[l], al[l]);
  } else {
    for (; k + LANES <= hi; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) PD_SUMS_ELEMENT(k + l, ad[l], al[l]);
  }
  for (int l = 0; k + l < hi; l++) PD_SUMS_ELEMENT(k + l, ad[l], al[l]);
  double *o = j->out + 2 * ((int64_t)tid * j->n + i);
  o[0] += lanes_total(ad);
  o[1] += lanes_total(al);
}
#undef PD_SUMS_ELEMENT

/* out: 2 n nthreads doubles (room for every thread); on return out[2i] and out[2i + 1]
 * hold tensor i's <g, x0 - x> and ||s||_1 (the threads' partial sums added in thread
 * order). */
void F(prodigy_sums)(int64_t n, const int64_t *numel, void *const *ptrs,
                     const ProdigySumsHp *hp, double *out, int nthreads) {
  nthreads = clamp_threads(nthreads);
  memset(out, 0, sizeof(double) * 2 * (size_t)n * (size_t)nthreads);
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .out = out,
           .nthreads = nthreads, .body = F(pd_sums_body)};
  run_job(&j, SPLIT_ELEMENTS);
  for (int t = 1; t < j.nthreads; t++)
    for (int64_t q = 0; q < 2 * n; q++) out[q] += out[2 * (int64_t)t * n + q];
}

/* ptrs: x, g, v, m (m: any list when has_m == 0, never read), in the caller's order
 * (walked here in reverse). hp: ProdigyStepHp (wd: weight_decay).
 *   g' = g + wd x (coupled decay), m <- beta1 m + c1 g', v <- beta2 v + c2 g'^2, then
 *   when move != 0 (else x stays):
 *   x <- x + (-wd dlr) x                                    (decoupled decay)
 *   x <- x + (-dlr) m / (sqrt(v) + d_{k+1} eps)             (beta1 > 0)
 *   x <- x + (-dlr d_{k+1}) g' / (sqrt(v) + d_{k+1} eps)    (beta1 = 0) */
static void F(pd_step_range)(Job *j, int64_t i, int64_t lo, int64_t hi) {
  T *x = PTR(j, 0, i, T), *v = PTR(j, 2, i, T), *m = PTR(j, 3, i, T);
  const T *g = PTR(j, 1, i, T);
  const ProdigyStepHp *hp = (const ProdigyStepHp *)j->hp;
  const T b1 = (T)hp->beta1, b2 = (T)hp->beta2, c1 = (T)hp->c1, c2 = (T)hp->c2;
  const double wd = hp->weight_decay, dlr = hp->dlr;
  const T twd = (T)wd;
  const int decouple = hp->decouple != 0, has_m = hp->has_m != 0, move = hp->move != 0;
  const int couple = wd != 0 && !decouple, decay = wd != 0 && decouple && move;
  const T de = (T)hp->d_eps, dec = (T)(-wd * dlr);
  const T sc = (T)(has_m ? -dlr : -dlr * hp->d_new);
  if (!move) { /* a step without information: the moments only */
    if (has_m) {
#pragma omp simd
      for (int64_t k = lo; k < hi; k++) {
        T gk = couple ? g[k] + twd * x[k] : g[k];
        m[k] = m[k] * b1 + c1 * gk;
        v[k] = v[k] * b2 + c2 * gk * gk;
      }
    } else {
#pragma omp simd
      for (int64_t k = lo; k < hi; k++) {
        T gk = couple ? g[k] + twd * x[k] : g[k];
        v[k] = v[k] * b2 + c2 * gk * gk;
      }
    }
  } else if (has_m && couple) {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T xk = x[k], gk = g[k] + twd * xk;
      T mk = m[k] * b1 + c1 * gk, vk = v[k] * b2 + c2 * gk * gk;
      m[k] = mk;
      v[k] = vk;
      x[k] = xk + sc * (mk / (SQRT(vk) + de));
    }
  } else if (has_m) {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T gk = g[k];
      T mk = m[k] * b1 + c1 * gk, vk = v[k] * b2 + c2 * gk * gk;
      m[k] = mk;
      v[k] = vk;
      T xk = decay ? x[k] + dec * x[k] : x[k];
      x[k] = xk + sc * (mk / (SQRT(vk) + de));
    }
  } else if (couple) {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T xk = x[k], gk = g[k] + twd * xk;
      T vk = v[k] * b2 + c2 * gk * gk;
      v[k] = vk;
      x[k] = xk + sc * (gk / (SQRT(vk) + de));
    }
  } else {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T gk = g[k];
      T vk = v[k] * b2 + c2 * gk * gk;
      v[k] = vk;
      T xk = decay ? x[k] + dec * x[k] : x[k];
      x[k] = xk + sc * (gk / (SQRT(vk) + de));
    }
  }
}

/* Within a tensor the walk is forward: the hardware prefetchers follow forward streams
 * (backward blocks within a tensor lose them at every jump; see benchmarks/RESULTS.md). */
static void F(pd_step_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  F(pd_step_range)((Job *)vjob, i, lo, hi);
}

void F(prodigy_step)(int64_t n, const int64_t *numel, void *const *ptrs,
                     const ProdigyStepHp *hp, int nthreads) {
  /* the range pass 1 gave each thread (same thread count), last tensor first */
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .nthreads = nthreads,
           .body = F(pd_step_body)};
  run_job(&j, SPLIT_ELEMENTS_REVERSED);
}

#endif
