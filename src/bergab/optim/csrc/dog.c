/* DoG and LDoG on CPU. Formulas: bergab/optim/dog.py (dog_statistics, dog_reference and
 * the step sizes of DoG._step_sizes / LDoG._step_sizes).
 *
 * DoG (one step size per param group) needs two sums over the whole group before any
 * element moves: sum ||g + wd x||^2 and sum ||x - x0||^2. The distance of the NEW x is
 * accumulated by the update pass and kept by the caller for the next step, so a step is
 *   dog_reduce: read g (and x with weight decay): the per-tensor ||g + wd x||^2;
 *               ||x - x0||^2 only for tensors whose kept distance is stale;
 *   dog_update: x <- x - eta (g + wd x) and ||x_new - x0||^2, each thread walking the
 *               elements dog_reduce gave it last tensor first, so that it starts on the
 *               gradients it read last, still in cache.
 * LDoG (one step size per tensor) needs only the tensor's own sums: ldog does the whole
 * step in one call, tensor by tensor (its sums, then its update while it is in cache).
 */
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

/* sum of (a[k] + c b[k])^2 over [0, n) (b NULL: a[k]^2): a + c b in T, squared and
 * summed in double on LANES lanes (common.h) */
#define DG_SQ_TERM(k) (b ? (double)(a[k] + c * b[k]) : (double)a[k])
static double F(dg_sq)(const T *a, const T *b, T c, int64_t n) {
  double acc[LANES] = {0};
  int64_t k = 0;
  if (b) {
    for (; k + LANES <= n; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) {
        double e = (double)(a[k + l] + c * b[k + l]);
        acc[l] = ADD_PRODUCT(acc[l], e, e);
      }
  } else {
    for (; k + LANES <= n; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) {
        double e = (double)a[k + l];
        acc[l] = ADD_PRODUCT(acc[l], e, e);
      }
  }
  for (int l = 0; k + l < n; l++) {
    double e = DG_SQ_TERM(k + l);
    acc[l] = ADD_PRODUCT(acc[l], e, e);
  }
  return lanes_total(acc);
}

/* the same sum reading four sub-streams at once (a single read-only stream does not reach
 * the memory bandwidth on one core): the four quarters of [0, 4q) side by side, stream s
 * on lanes s SUBLANES to (s + 1) SUBLANES - 1, lane s SUBLANES + l adding the elements
 * s q + l, s q + l + SUBLANES, ... in order; then the rest, [4q, n), as dg_sq. Each
 * stream has LANES / 2 lanes of its own (four streams of LANES / 4 ran slower: see
 * benchmarks/RESULTS.md). */
#define SUB 512
#define SUBLANES (LANES / 2)
static double F(dg_sq4)(const T *a, const T *b, T c, int64_t n) {
  if (n < 8 * SUB) return F(dg_sq)(a, b, c, n);
  const int64_t q = n / (4 * SUB) * SUB; /* each sub-stream: q elements, q % SUB == 0 */
  const T *a1 = a + q, *a2 = a + 2 * q, *a3 = a + 3 * q;
  double acc[4][SUBLANES] = {{0}};
  if (b) {
    const T *b1 = b + q, *b2 = b + 2 * q, *b3 = b + 3 * q;
    for (int64_t k = 0; k < q; k += SUBLANES)
#pragma omp simd
      for (int l = 0; l < SUBLANES; l++) {
        double e0 = (double)(a[k + l] + c * b[k + l]);
        double e1 = (double)(a1[k + l] + c * b1[k + l]);
        double e2 = (double)(a2[k + l] + c * b2[k + l]);
        double e3 = (double)(a3[k + l] + c * b3[k + l]);
        acc[0][l] = ADD_PRODUCT(acc[0][l], e0, e0);
        acc[1][l] = ADD_PRODUCT(acc[1][l], e1, e1);
        acc[2][l] = ADD_PRODUCT(acc[2][l], e2, e2);
        acc[3][l] = ADD_PRODUCT(acc[3][l], e3, e3);
      }
  } else {
    for (int64_t k = 0; k < q; k += SUBLANES)
#pragma omp simd
      for (int l = 0; l < SUBLANES; l++) {
        double e0 = (double)a[k + l], e1 = (double)a1[k + l];
        double e2 = (double)a2[k + l], e3 = (double)a3[k + l];
        acc[0][l] = ADD_PRODUCT(acc[0][l], e0, e0);
        acc[1][l] = ADD_PRODUCT(acc[1][l], e1, e1);
        acc[2][l] = ADD_PRODUCT(acc[2][l], e2, e2);
        acc[3][l] = ADD_PRODUCT(acc[3][l], e3, e3);
      }
  }
  const double head = lanes_sum(&acc[0][0], 4 * SUBLANES);
  return head + F(dg_sq)(a + 4 * q, b ? b + 4 * q : NULL, c, n - 4 * q);
}

/* One element of the update: x <- x - eta (g + wd x) (T), acc += (x_new - x0)^2 (the
 * difference in T, its square in double). */
#define DG_STEP_ELEMENT(k, acc, decay)                                    \
  do {                                                                    \
    T xn_ = (decay) ? x[k] - eta * (g[k] + wd * x[k]) : x[k] - eta * g[k]; \
    x[k] = xn_;                                                           \
    double d_ = (double)(xn_ - x0[k]);                                    \
    acc = ADD_PRODUCT(acc, d_, d_);                                       \
  } while (0)

/* x <- x - eta (g + wd x) over [lo, hi); returns sum (x_new - x0)^2 (LANES double lanes,
 * common.h) */
static double F(dg_step)(T *x, const T *g, const T *x0, int64_t lo, int64_t hi, T eta, T wd,
                         int decay) {
  double acc[LANES] = {0};
  int64_t k = lo;
  if (decay) {
    for (; k + LANES <= hi; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) DG_STEP_ELEMENT(k + l, acc[l], 1);
    for (int l = 0; k + l < hi; l++) DG_STEP_ELEMENT(k + l, acc[l], 1);
  } else {
    for (; k + LANES <= hi; k += LANES)
#pragma omp simd
      for (int l = 0; l < LANES; l++) DG_STEP_ELEMENT(k + l, acc[l], 0);
    for (int l = 0; k + l < hi; l++) DG_STEP_ELEMENT(k + l, acc[l], 0);
  }
  return lanes_total(acc);
}

/* DoG statistics. ptrs: param, grad, x0. hp: DogHp. pt: per tensor 1 to compute
 * ||x - x0||^2 (the kept one is stale), else 0. scratch: 2 doubles per (thread, tensor).
 * out: per tensor (||g + wd x||^2, ||x - x0||^2 or 0). */
static void F(dog_reduce_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const T *x = PTR(j, 0, i, T), *g = PTR(j, 1, i, T), *x0 = PTR(j, 2, i, T);
  const double wd = ((const DogHp *)j->hp)->weight_decay;
  double *part = (double *)j->scratch + 2 * ((int64_t)tid * j->n + i);
  if (wd != 0)
    part[0] = F(dg_sq4)(g + lo, x + lo, (T)wd, hi - lo);
  else
    part[0] = F(dg_sq4)(g + lo, NULL, 0, hi - lo);
  if (j->pt[i] != 0) part[1] = F(dg_sq4)(x + lo, x0 + lo, (T)-1, hi - lo);
}

/* reduce the per-(thread, tensor) partial sums of `width` doubles into out, in thread
 * order (deterministic for a given thread count) */
static void F(dg_gather)(const double *part, double *out, int64_t n, int nt, int width) {
  for (int64_t r = 0; r < n * width; r++) {
    double s = 0;
    for (int t = 0; t < nt; t++) s += part[(int64_t)t * n * width + r];
    out[r] = s;
  }
}

void F(dog_reduce)(int64_t n, const int64_t *numel, void *const *ptrs, const DogHp *hp,
                   const double *pt, double *out, int nthreads) {
  int nt = clamp_threads(nthreads);
  double *part = (double *)calloc((size_t)(2 * n * nt), sizeof(double));
  if (!part) nt = 1, part = out; /* no memory for partials: one thread writes out */
  for (int64_t r = 0; part == out && r < 2 * n; r++) out[r] = 0;
  Job j = {n, numel, ptrs, hp, pt, out, part, 0, nt, F(dog_reduce_body)};
  run_job(&j, SPLIT_ELEMENTS);
  if (part != out) {
    F(dg_gather)(part, out, n, nt, 2);
    free(part);
  }
}

/* DoG update (SPLIT_ELEMENTS_REVERSED: each thread takes the range it reduced, last tensor
 * first). ptrs: param, grad, x0. hp: DogHp. pt: eta per tensor. scratch: one double
 * per (thread, tensor). out: per tensor ||x_new - x0||^2. */
static void F(dog_update_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  T *x = PTR(j, 0, i, T);
  const T *g = PTR(j, 1, i, T), *x0 = PTR(j, 2, i, T);
  const double wd = ((const DogHp *)j->hp)->weight_decay;
  double *part = (double *)j->scratch + ((int64_t)tid * j->n + i);
  *part = F(dg_step)(x, g, x0, lo, hi, (T)j->pt[i], (T)wd, wd != 0);
}

void F(dog_update)(int64_t n, const int64_t *numel, void *const *ptrs, const DogHp *hp,
                   const double *pt, double *out, int nthreads) {
  int nt = clamp_threads(nthreads);
  double *part = (double *)calloc((size_t)(n * nt), sizeof(double));
  if (!part) { /* no memory for partials: one thread */
    for (int64_t i = 0; i < n; i++)
      out[i] = F(dg_step)((T *)ptrs[i], (const T *)ptrs[n + i], (const T *)ptrs[2 * n + i],
                          0, numel[i], (T)pt[i], (T)hp->weight_decay, hp->weight_decay != 0);
    return;
  }
  Job j = {n, numel, ptrs, hp, pt, out, part, 0, nt, F(dog_update_body)};
  run_job(&j, SPLIT_ELEMENTS_REVERSED);
  F(dg_gather)(part, out, n, nt, 1);
  free(part);
}

/* LDoG, the whole step, tensor by tensor: its sums, then its update while
 * the tensor is still in cache. ptrs: param, grad, x0.
 * hp: LdogHp.
 * pt: per tensor (rbar, G, ||x - x0||^2 or -1 when stale, 1 on the tensor's first step).
 * out: per tensor (new rbar, new G, eta, ||x_new - x0||^2).
 * The caller guarantees G > 0 before the step (it takes the two-call path otherwise). */
static void F(ldog_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  const LdogHp *hp = (const LdogHp *)j->hp;
  const double wd = hp->weight_decay, scale = hp->scale, init_eta = hp->init_eta;
  const double *in = j->pt + 4 * i;
  double *o = j->out + 4 * i;
  T *x = PTR(j, 0, i, T);
  const T *g = PTR(j, 1, i, T), *x0 = PTR(j, 2, i, T);
  double g2 = wd != 0 ? F(dg_sq4)(g + lo, x + lo, (T)wd, hi - lo)
                      : F(dg_sq4)(g + lo, NULL, 0, hi - lo);
  double d2 = in[2] >= 0 ? in[2] : F(dg_sq4)(x + lo, x0 + lo, (T)-1, hi - lo);
  /* as LDoG._step_sizes: rbar = max(rbar, sqrt(d2)), G += g2, eta = c rbar / sqrt(G) */
  double rbar = in[0], dist = sqrt(d2);
  if (dist > rbar) rbar = dist;
  double G = in[1] + g2;
  double eta = scale * rbar / sqrt(G);
  if (in[3] != 0 && !isnan(init_eta)) eta = init_eta;
  o[0] = rbar;
  o[1] = G;
  o[2] = eta;
  o[3] = F(dg_step)(x, g, x0, lo, hi, (T)eta, (T)wd, wd != 0);
}

void F(ldog)(int64_t n, const int64_t *numel, void *const *ptrs, const LdogHp *hp,
             const double *pt, double *out, int nthreads) {
  Job j = {n, numel, ptrs, hp, pt, out, NULL, 0, nthreads, F(ldog_body)};
  run_job(&j, SPLIT_TENSORS);
}

#undef DG_SQ_TERM
#undef DG_STEP_ELEMENT
#undef SUB
#undef SUBLANES
#endif
