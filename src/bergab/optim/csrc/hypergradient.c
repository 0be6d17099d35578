/* Hypergradient descent (SGD-HD, Adam-HD) on CPU. Formulas: bergab/optim/hypergradient.py
 * (sgd_hd_statistics / sgd_hd_reference, adam_hd_statistics / adam_hd_reference).
 *
 * The learning rate alpha of a step needs h = g_t . u_{t-1} summed over the whole param
 * group before any parameter moves, so a step is two calls:
 *   *_reduce: reads g and the state that holds u_{t-1}, adds up h (and the norms for the
 *             multiplicative rule), and already writes everything that does not need
 *             alpha: the new direction or momentum buffer (SGD), the new moments (Adam);
 *   *_update: theta <- theta - alpha u_t, each thread walking the elements the reduction
 *             gave it last tensor first (the state it wrote last is the likeliest to be
 *             still in cache).
 * Per step that is SGD: g, u read and u written, then theta, u read and theta written
 * (24 bytes per float32 parameter); Adam: g, m, v read and m, v written, then theta, m,
 * v read and theta written (36 bytes); u_{t-1} of Adam is recomputed from the moments.
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

#ifndef HD_ONCE
#define HD_ONCE
#define HD_INLINE static inline __attribute__((always_inline))
enum { HD_PLAIN = 0, HD_HEAVY_BALL = 1, HD_NESTEROV = 2 };
#endif

/* ------------------------------------------------------------------ SGD-HD reduction */
/* One element of the SGD-HD reduction (see sgd_hd_piece): the state update in T, the
 * terms of the sums in double. */
#define SGD_HD_ELEMENT(k, sd, sg, su)                 \
  do {                                                \
    T gd_ = decay ? g[k] + wd * p[k] : g[k];          \
    T prev_ = mode == HD_HEAVY_BALL ? b[k] : d[k];    \
    if (stats) {                                      \
      double gv_ = (double)gd_, pv_ = (double)prev_;  \
      sd = ADD_PRODUCT(sd, gv_, pv_);                 \
      if (norms) {                                    \
        sg = ADD_PRODUCT(sg, gv_, gv_);               \
        su = ADD_PRODUCT(su, pv_, pv_);               \
      }                                               \
    }                                                 \
    if (mode == HD_PLAIN) {                           \
      d[k] = gd_;                                     \
    } else {                                          \
      T bk_ = mub * b[k] + gd_;                       \
      b[k] = bk_;                                     \
      if (mode == HD_NESTEROV) d[k] = gd_ + mu * bk_; \
    }                                                 \
  } while (0)

/* Over [lo, hi) of one tensor: gd = g + wd p; with stats, h += gd . prev (and |gd|^2,
 * |prev|^2 with norms), prev = d (plain, Nesterov) or b (heavy ball); then the state of
 * step t: plain d = gd; heavy ball b = mu b + gd; Nesterov b = mu b + gd, d = gd + mu b.
 * (mub: mu, or 0 for a buffer created this step: b = gd, torch's first momentum step.)
 * sums: += this piece's (gd . prev, |gd|^2, |prev|^2), each on LANES double lanes. */
HD_INLINE void F(sgd_hd_piece)(const T *p, const T *g, T *b, T *d, int64_t lo, int64_t hi,
                               T mu, T mub, T wd, double *sums, const int mode, const int decay,
                               const int stats, const int norms) {
  double sd[LANES] = {0}, sg[LANES] = {0}, su[LANES] = {0};
  int64_t k = lo;
  for (; k + LANES <= hi; k += LANES)
#pragma omp simd
    for (int l = 0; l < LANES; l++) SGD_HD_ELEMENT(k + l, sd[l], sg[l], su[l]);
  for (int l = 0; k + l < hi; l++) SGD_HD_ELEMENT(k + l, sd[l], sg[l], su[l]);
  if (stats) {
    sums[0] += lanes_total(sd);
    if (norms) {
      sums[1] += lanes_total(sg);
      sums[2] += lanes_total(su);
    }
  }
}
#undef SGD_HD_ELEMENT

#define HD_SGD_CASE(mode)                                                                  \
  do {                                                                                     \
    if (decay) {                                                                           \
      if (!stats)                                                                          \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 1, 0, 0);                \
      else if (norms)                                                                      \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 1, 1, 1);                \
      else                                                                                 \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 1, 1, 0);                \
    } else {                                                                               \
      if (!stats)                                                                          \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 0, 0, 0);                \
      else if (norms)                                                                      \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 0, 1, 1);                \
      else                                                                                 \
        F(sgd_hd_piece)(p, g, b, d, lo, hi, mu, mub, wd, s, mode, 0, 1, 0);                \
    }                                                                                      \
  } while (0)

/* ptrs: param, grad, momentum buffer, direction (unused lists: any tensors of the sizes).
 * hp: SgdHdReduceHp. pt: per tensor (1 if it took the previous step (adds to the sums), 1 if
 * its momentum buffer is new (b = g)).
 * scratch: 3 doubles per thread. out: (sum g.u, sum |g|^2, sum |u|^2). */
static void F(sgd_hd_reduce_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T);
  T *b = PTR(j, 2, i, T), *d = PTR(j, 3, i, T);
  const SgdHdReduceHp *hp = (const SgdHdReduceHp *)j->hp;
  const int mode = (int)hp->mode, decay = hp->weight_decay != 0, norms = hp->norms != 0;
  const int stats = j->pt[2 * i] != 0;
  const T wd = (T)hp->weight_decay, mu = (T)hp->momentum;
  const T mub = j->pt[2 * i + 1] != 0 ? 0 : mu;
  double *s = (double *)j->scratch + 3 * tid;
  if (mode == HD_PLAIN)
    HD_SGD_CASE(HD_PLAIN);
  else if (mode == HD_HEAVY_BALL)
    HD_SGD_CASE(HD_HEAVY_BALL);
  else
    HD_SGD_CASE(HD_NESTEROV);
}

/* out[r] = the threads' partial sums part[t width + r] added in thread order */
static void F(hd_sum_threads)(const double *part, double *out, int nt, int width) {
  for (int r = 0; r < width; r++) {
    double s = 0;
    for (int t = 0; t < nt; t++) s += part[t * width + r];
    out[r] = s;
  }
}

void F(sgd_hd_reduce)(int64_t n, const int64_t *numel, void *const *ptrs,
                      const SgdHdReduceHp *hp, const double *pt, double *out, int nthreads) {
  int nt = clamp_threads(nthreads);
  double part[3 * MAX_THREADS] = {0};
  Job j = {n, numel, ptrs, hp, pt, out, part, 0, nt, F(sgd_hd_reduce_body)};
  run_job(&j, SPLIT_ELEMENTS);
  F(hd_sum_threads)(part, out, nt, 3);
}

/* ------------------------------------------------------------------ Adam-HD reduction */
/* One element of the Adam-HD reduction (see adam_hd_piece): r and the moments in T, the
 * terms of the sums in double. */
#define ADAM_HD_ELEMENT(k, sd, sg, su)                  \
  do {                                                  \
    T gd_ = decay ? g[k] + wd * p[k] : g[k];            \
    T mk_ = m[k], vk_ = v[k];                           \
    if (stats) {                                        \
      T r_ = mk_ / (TSQRT(vk_) + eprev);                \
      double gv_ = (double)gd_, rv_ = (double)r_;       \
      sd = ADD_PRODUCT(sd, gv_, rv_);                   \
      if (norms) {                                      \
        sg = ADD_PRODUCT(sg, gv_, gv_);                 \
        su = ADD_PRODUCT(su, rv_, rv_);                 \
      }                                                 \
    }                                                   \
    m[k] = (small ? mk_ : gd_) + coef * (gd_ - mk_);    \
    v[k] = vk_ * b2 + (c2 * gd_) * gd_;                 \
  } while (0)

/* Over [lo, hi): gd = g + wd p; with stats, r = m / (sqrt(v) + eprev) (u_{t-1} = cprev r),
 * h += gd . r (and |gd|^2, |r|^2); then m <- lerp(m, gd, 1 - beta1) (torch's formula),
 * v <- beta2 v + (1 - beta2) gd^2. sums: this piece's (gd . r, |gd|^2, |r|^2), each on
 * LANES double lanes. */
HD_INLINE void F(adam_hd_piece)(const T *p, const T *g, T *m, T *v, int64_t lo, int64_t hi,
                                T w, T b2, T c2, T wd, T eprev, double *sums,
                                const int decay, const int stats, const int norms,
                                const int small) {
  const T coef = small ? w : w - 1;
  double sd[LANES] = {0}, sg[LANES] = {0}, su[LANES] = {0};
  int64_t k = lo;
  for (; k + LANES <= hi; k += LANES)
#pragma omp simd
    for (int l = 0; l < LANES; l++) ADAM_HD_ELEMENT(k + l, sd[l], sg[l], su[l]);
  for (int l = 0; k + l < hi; l++) ADAM_HD_ELEMENT(k + l, sd[l], sg[l], su[l]);
  if (stats) {
    sums[0] += lanes_total(sd);
    if (norms) {
      sums[1] += lanes_total(sg);
      sums[2] += lanes_total(su);
    }
  }
}
#undef ADAM_HD_ELEMENT

/* ptrs: param, grad, exp_avg, exp_avg_sq. hp: AdamHdReduceHp.
 * pt: per tensor (1 if it took the previous step, cprev = sqrt(b2')/b1',
 * eprev = eps sqrt(b2') with b1', b2' the previous step's bias corrections).
 * scratch: 3 doubles per thread. out: (sum g.u, sum |g|^2, sum |u|^2). */
static void F(adam_hd_reduce_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  Job *j = (Job *)vjob;
  const T *p = PTR(j, 0, i, T), *g = PTR(j, 1, i, T);
  T *m = PTR(j, 2, i, T), *v = PTR(j, 3, i, T);
  const AdamHdReduceHp *hp = (const AdamHdReduceHp *)j->hp;
  const T w = (T)(1 - hp->beta1), b2 = (T)hp->beta2, c2 = (T)(1 - hp->beta2);
  const T wd = (T)hp->weight_decay;
  const int decay = hp->weight_decay != 0, norms = hp->norms != 0;
  const int stats = j->pt[3 * i] != 0;
  const int small = fabs((double)w) < 0.5;
  const double cprev = j->pt[3 * i + 1];
  const T eprev = (T)j->pt[3 * i + 2];
  double s[3] = {0, 0, 0};
#define HD_ADAM(dc, st, nr)                                                                \
  (small ? F(adam_hd_piece)(p, g, m, v, lo, hi, w, b2, c2, wd, eprev, s, dc, st, nr, 1)     \
         : F(adam_hd_piece)(p, g, m, v, lo, hi, w, b2, c2, wd, eprev, s, dc, st, nr, 0))
  if (decay) {
    if (!stats)
      HD_ADAM(1, 0, 0);
    else if (norms)
      HD_ADAM(1, 1, 1);
    else
      HD_ADAM(1, 1, 0);
  } else {
    if (!stats)
      HD_ADAM(0, 0, 0);
    else if (norms)
      HD_ADAM(0, 1, 1);
    else
      HD_ADAM(0, 1, 0);
  }
#undef HD_ADAM
  double *acc = (double *)j->scratch + 3 * tid;
  acc[0] += cprev * s[0];
  acc[1] += s[1];
  acc[2] += cprev * cprev * s[2];
}

void F(adam_hd_reduce)(int64_t n, const int64_t *numel, void *const *ptrs,
                       const AdamHdReduceHp *hp, const double *pt, double *out, int nthreads) {
  int nt = clamp_threads(nthreads);
  double part[3 * MAX_THREADS] = {0};
  Job j = {n, numel, ptrs, hp, pt, out, part, 0, nt, F(adam_hd_reduce_body)};
  run_job(&j, SPLIT_ELEMENTS);
  F(hd_sum_threads)(part, out, nt, 3);
}

/* ------------------------------------------------------------------ the updates */
/* Both run with SPLIT_ELEMENTS_REVERSED: each thread takes the elements the reduction
 * gave it (same thread count), last tensor first. */
static void F(hd_reversed)(int64_t n, const int64_t *numel, void *const *ptrs,
                           const void *hp, const double *pt, int nthreads,
                           void (*body)(void *, int, int64_t, int64_t, int64_t)) {
  Job j = {n, numel, ptrs, hp, pt, NULL, NULL, 0, clamp_threads(nthreads), body};
  run_job(&j, SPLIT_ELEMENTS_REVERSED);
}

/* SGD-HD: p <- p - alpha u. ptrs: param, direction u (d, or b for heavy ball).
 * hp: SgdHdUpdateHp. */
static void F(sgd_hd_update_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  T *p = PTR(j, 0, i, T);
  const T *u = PTR(j, 1, i, T);
  const T alpha = (T)((const SgdHdUpdateHp *)j->hp)->alpha;
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) p[k] -= alpha * u[k];
}

void F(sgd_hd_update)(int64_t n, const int64_t *numel, void *const *ptrs,
                      const SgdHdUpdateHp *hp, int nthreads) {
  F(hd_reversed)(n, numel, ptrs, hp, NULL, nthreads, F(sgd_hd_update_body));
}

/* Adam-HD: p <- p + coef m / (sqrt(v) + e), coef = -alpha sqrt(b2) / b1, e = eps sqrt(b2)
 * (Adam's step with the bias corrections b1, b2 of this step folded in).
 * ptrs: param, exp_avg, exp_avg_sq. pt: per tensor (coef, e). */
static void F(adam_hd_update_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  T *p = PTR(j, 0, i, T);
  const T *m = PTR(j, 1, i, T), *v = PTR(j, 2, i, T);
  const T coef = (T)j->pt[2 * i], e = (T)j->pt[2 * i + 1];
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) p[k] += coef * (m[k] / (TSQRT(v[k]) + e));
}

void F(adam_hd_update)(int64_t n, const int64_t *numel, void *const *ptrs, const double *pt,
                       int nthreads) {
  F(hd_reversed)(n, numel, ptrs, NULL, pt, nthreads, F(adam_hd_update_body));
}

#endif
