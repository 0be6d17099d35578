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
 *      on the x and g it read last (the gain is small, ~1-2%: the L3 is a victim cache
 *      that pass 2's own streams flush).
 * With coupled weight decay both passes use g + wd x (x before the step).
 * Measured on the development machine (1 core, 16M float32 parameters in 64 tensors):
 * the reads of both passes run at about 29 GB/s and are the limit (no gain from software
 * prefetch, split streams, or removing the sqrt and division), so the two kernels take
 * about 1.2x the time of a single 40-byte pass at the 43 GB/s of the benchmark floor. */
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

/* One element of pass 1: s <- beta3 s + c3 g', dot += g' (x0 - x), l1 += |s|. */
#define PD_SUMS_ELEMENT(k, dot, l1)                   \
  do {                                                \
    T xk_ = x[k], gk_ = coupled ? g[k] + wd * xk_ : g[k]; \
    dot += gk_ * (x0[k] - xk_);                       \
    T sk_ = s[k] * b3 + c3 * gk_;                     \
    s[k] = sk_;                                       \
    l1 += FABS(sk_);                                  \
  } while (0)

/* ptrs: x, g, x0, s. hp: beta3, c3 (the weight of g in s), wd (coupled decay:
 * g <- g + wd x; 0 when decoupled).
 * out: per (thread, tensor) the pair (<g, x0 - x>, ||s||_1): out[2 (tid n + i) + 0/1]. */
static void F(pd_sums_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const T *x = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *x0 = PTR(j, 2, i, T);
  T *s = PTR(j, 3, i, T);
  const T b3 = (T)j->hp[0], c3 = (T)j->hp[1], wd = (T)j->hp[2];
  const int coupled = j->hp[2] != 0;
  double dot = 0, l1 = 0;
  /* LANES independent float accumulators per sum within a block, double across blocks
   * (measured: a few per cent faster than one vector accumulator per sum) */
  for (int64_t a = lo; a < hi; a += BLOCK) {
    int64_t b = a + BLOCK < hi ? a + BLOCK : hi;
    T ad[LANES] = {0}, al[LANES] = {0};
    int64_t k = a;
    if (coupled) {
      for (; k + LANES <= b; k += LANES)
#pragma omp simd
        for (int l = 0; l < LANES; l++) PD_SUMS_ELEMENT(k + l, ad[l], al[l]);
    } else {
      for (; k + LANES <= b; k += LANES)
#pragma omp simd
        for (int l = 0; l < LANES; l++) PD_SUMS_ELEMENT(k + l, ad[l], al[l]);
    }
    T bd = 0, bl = 0;
    for (; k < b; k++) PD_SUMS_ELEMENT(k, bd, bl);
    for (int l = 0; l < LANES; l++) {
      bd += ad[l];
      bl += al[l];
    }
    dot += bd;
    l1 += bl;
  }
  double *o = j->out + 2 * ((int64_t)tid * j->n + i);
  o[0] += dot;
  o[1] += l1;
}
#undef PD_SUMS_ELEMENT

/* out: 2 n nthreads doubles (room for every thread); on return out[2i] and out[2i + 1]
 * hold tensor i's <g, x0 - x> and ||s||_1. */
void F(prodigy_sums)(int64_t n, const int64_t *numel, void *const *ptrs, const double *hp,
                     double *out, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  memset(out, 0, sizeof(double) * 2 * (size_t)n * (size_t)nthreads);
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .out = out,
           .nthreads = nthreads, .body = F(pd_sums_body)};
  run_job(&j, SPLIT_ELEMENTS);
  for (int t = 1; t < j.nthreads; t++)
    for (int64_t q = 0; q < 2 * n; q++) out[q] += out[2 * (int64_t)t * n + q];
}

/* ptrs: x, g, v, m (m: any list when has_m == 0, never read), in the caller's order
 * (walked here in reverse).
 * hp: beta1, beta2, c1 = d_k (1 - beta1), c2 = d_k^2 (1 - beta2), wd, decouple, has_m,
 *     move, dlr (= d_k lr, bias correction included), d_{k+1} eps, d_{k+1}.
 *   g' = g + wd x (coupled decay), m <- beta1 m + c1 g', v <- beta2 v + c2 g'^2, then
 *   when move != 0 (else x stays):
 *   x <- x + (-wd dlr) x                                    (decoupled decay)
 *   x <- x + (-dlr) m / (sqrt(v) + d_{k+1} eps)             (beta1 > 0)
 *   x <- x + (-dlr d_{k+1}) g' / (sqrt(v) + d_{k+1} eps)    (beta1 = 0) */
static void F(pd_step_range)(Job *j, int64_t i, int64_t lo, int64_t hi) {
  T *x = PTR(j, 0, i, T), *v = PTR(j, 2, i, T), *m = PTR(j, 3, i, T);
  const T *g = PTR(j, 1, i, T);
  const double *hp = j->hp;
  const T b1 = (T)hp[0], b2 = (T)hp[1], c1 = (T)hp[2], c2 = (T)hp[3], twd = (T)hp[4];
  const double wd = hp[4], dlr = hp[8];
  const int decouple = hp[5] != 0, has_m = hp[6] != 0, move = hp[7] != 0;
  const int couple = wd != 0 && !decouple, decay = wd != 0 && decouple && move;
  const T de = (T)hp[9], dec = (T)(-wd * dlr);
  const T sc = (T)(has_m ? -dlr : -dlr * hp[10]);
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

/* Within a tensor the walk is forward (measured: backward blocks within a tensor were
 * slower, the hardware prefetchers lose the streams at every jump). */
static void F(pd_step_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  F(pd_step_range)((Job *)vjob, i, lo, hi);
}

void F(prodigy_step)(int64_t n, const int64_t *numel, void *const *ptrs, const double *hp,
                     int nthreads) {
  /* the range pass 1 gave each thread (same thread count), last tensor first */
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .nthreads = nthreads,
           .body = F(pd_step_body)};
  run_job(&j, SPLIT_ELEMENTS_REVERSED);
}

#endif
