/* NAdam and RAdam on CPU: the whole update of an element in one loop (one pass over
 * memory). Formulas: bergab/optim/adam.py (adam_reference, variant "nadam" / "radam");
 * each operation rounds as the reference's tensor op does. The per-tensor factors (bias
 * corrections, NAdam's momentum schedule, RAdam's rectification) depend on each tensor's
 * step count and are computed by the caller in Python, as the reference does.
 * (Adam and AdamW use torch's own fused kernels.) */
#ifndef T
#include "common.h"
#define T float
#define F(name) name##_f32
#define ROOT sqrtf
#include __FILE__
#undef T
#undef F
#undef ROOT
#define T double
#define F(name) name##_f64
#define ROOT sqrt
#include __FILE__
#else

/* hp (both kernels): AdamHp.
 * ptrs: param, grad, exp_avg, exp_avg_sq, then max_exp_avg_sq (amsgrad only), then with
 * count != 0 the per-tensor counters the caller has computed (float32 0-d tensors: the
 * step, and for NAdam the product of mu), stored here from pt.
 *
 * The moments of one element: d (the direction: ±g, plus λθ for L2 decay; θ shrunk first
 * for decoupled decay), m (torch's lerp towards d), v, and the second moment the
 * denominator uses (v, or its running maximum). */
#define ADAM_MOMENTS                                                              \
  T pk = p[k];                                                                    \
  T d = sign * g[k];                                                              \
  if (wdmode == 1) d = d + wd * pk;                                               \
  if (wdmode == 2) pk = pk * decay;                                               \
  T mk = m[k];                                                                    \
  mk = cw * (d - mk) + (small ? mk : d);                                          \
  m[k] = mk;                                                                      \
  T vk = v[k] * b2;                                                               \
  vk = vk + (c2 * d) * d;                                                         \
  v[k] = vk;                                                                      \
  T sk = vk;                                                                      \
  if (ams) {                                                                      \
    T mx = vmax[k];                                                               \
    sk = (mx > vk || mx != mx) ? mx : vk; /* torch.maximum: NaN propagates */     \
    vmax[k] = sk;                                                                 \
  }

#define ADAM_SETUP                                                                \
  T *restrict p = PTR(j, 0, i, T);                                                \
  const T *restrict g = PTR(j, 1, i, T);                                          \
  T *restrict m = PTR(j, 2, i, T);                                                \
  T *restrict v = PTR(j, 3, i, T);                                                \
  T *restrict vmax = ams ? PTR(j, 4, i, T) : NULL;                                \
  const AdamHp *hp = (const AdamHp *)j->hp;                                       \
  const T w = (T)hp->one_minus_beta1, b2 = (T)hp->beta2;                          \
  const T c2 = (T)hp->one_minus_beta2, eps = (T)hp->eps;                          \
  const T wd = (T)hp->weight_decay, decay = (T)hp->decay;                         \
  const T sign = hp->maximize != 0 ? (T)-1 : (T)1;                                \
  /* torch's lerp: m + w (d - m) for a small weight, else d + (w - 1)(d - m) */   \
  const int small = w < (T)0.5;                                                   \
  const T cw = small ? w : w - (T)1;

/* wdmode: 0 none, 1 L2 (added to the gradient), 2 decoupled */
static inline int F(adam_wdmode)(const Job *j) {
  const AdamHp *hp = (const AdamHp *)j->hp;
  return hp->weight_decay == 0 ? 0 : (hp->decoupled_weight_decay != 0 ? 2 : 1);
}

/* Store the counters: pt[width i + first + c] into counter c of tensor i. */
static void F(adam_count)(Job *j, int width, int first, int ncounters) {
  const AdamHp *hp = (const AdamHp *)j->hp;
  if (hp->count == 0) return;
  const int k = 4 + (hp->amsgrad != 0);
  for (int64_t i = 0; i < j->n; i++)
    for (int c = 0; c < ncounters; c++)
      *PTR(j, k + c, i, float) = (float)j->pt[width * i + first + c];
}

/* NAdam. pt: per tensor (-lr (1 - mu_t) / (1 - Pi_t), -lr mu_{t+1} / (1 - Pi_{t+1}),
 * sqrt(1 - beta2^t), t, Pi_t). */
static inline __attribute__((always_inline)) void F(nadam_range)(
    Job *j, int64_t i, int64_t lo, int64_t hi, const int wdmode, const int ams) {
  ADAM_SETUP
  const T cg = (T)j->pt[5 * i], cm = (T)j->pt[5 * i + 1], root2 = (T)j->pt[5 * i + 2];
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) {
    ADAM_MOMENTS
    T den = ROOT(sk) / root2 + eps;
    pk = pk + (cg * d) / den;
    p[k] = pk + (cm * mk) / den;
  }
}

static void F(nadam_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  const int ams = ((const AdamHp *)j->hp)->amsgrad != 0;
  switch (F(adam_wdmode)(j) | ams << 2) {
#define CASE(c) \
  case c: F(nadam_range)(j, i, lo, hi, c & 3, c >> 2); break;
    CASE(0) CASE(1) CASE(2) CASE(4) CASE(5) CASE(6)
#undef CASE
  }
}

void F(nadam)(int64_t n, const int64_t *numel, void *const *ptrs, const AdamHp *hp,
              const double *pt, int nthreads) {
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .pt = pt, .nthreads = nthreads,
           .body = F(nadam_body)};
  F(adam_count)(&j, 5, 3, 2);
  run_job(&j, SPLIT_ELEMENTS);
}

/* RAdam. pt: per tensor (rectified, scale, t): rectified != 0: θ += scale m / (sqrt(v) + ε)
 * with scale = -lr r_t sqrt(1 - beta2^t) / (1 - beta1^t); else θ += scale m with
 * scale = -lr / (1 - beta1^t). */
static inline __attribute__((always_inline)) void F(radam_range)(
    Job *j, int64_t i, int64_t lo, int64_t hi, const int wdmode, const int ams,
    const int rect) {
  ADAM_SETUP
  const T scale = (T)j->pt[3 * i + 1];
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) {
    ADAM_MOMENTS
    if (rect)
      p[k] = pk + (scale * mk) / (ROOT(sk) + eps);
    else
      p[k] = pk + scale * mk;
  }
}

static void F(radam_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  const int ams = ((const AdamHp *)j->hp)->amsgrad != 0, rect = j->pt[3 * i] != 0;
  switch (F(adam_wdmode)(j) | ams << 2 | rect << 3) {
#define CASE(c) \
  case c: F(radam_range)(j, i, lo, hi, c & 3, (c >> 2) & 1, c >> 3); break;
    CASE(0) CASE(1) CASE(2) CASE(4) CASE(5) CASE(6)
    CASE(8) CASE(9) CASE(10) CASE(12) CASE(13) CASE(14)
#undef CASE
  }
}

void F(radam)(int64_t n, const int64_t *numel, void *const *ptrs, const AdamHp *hp,
              const double *pt, int nthreads) {
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .pt = pt, .nthreads = nthreads,
           .body = F(radam_body)};
  F(adam_count)(&j, 3, 2, 1);
  run_job(&j, SPLIT_ELEMENTS);
}

#endif
