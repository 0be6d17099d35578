/* RMSprop on CPU: the whole update of an element in one loop (one pass over memory).
 * Formula: bergab/optim/rmsprop.py (rmsprop_reference); each operation rounds as the
 * reference's tensor op does (the scalars in T, the lerp as torch's, ε where it sits). */
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

/* One element range of tensor i. ptrs: param, grad, square_avg, then grad_avg (centered
 * only), then momentum_buffer (momentum > 0 only). The flags are compile-time constants
 * at every call (always inlined), so each combination is its own vectorized loop. */
static inline __attribute__((always_inline)) void F(rms_range)(
    Job *j, int64_t i, int64_t lo, int64_t hi, const int l2, const int centered,
    const int inside, const int mom) {
  T *restrict p = PTR(j, 0, i, T);
  const T *restrict g = PTR(j, 1, i, T);
  T *restrict v = PTR(j, 2, i, T);
  T *restrict a = centered ? PTR(j, 3, i, T) : NULL;
  T *restrict b = mom ? PTR(j, 3 + centered, i, T) : NULL;
  const RmspropHp *hp = (const RmspropHp *)j->hp;
  const T step = (T)(-hp->lr), alpha = (T)hp->alpha, w = (T)hp->one_minus_alpha;
  const T eps = (T)hp->eps, wd = (T)hp->weight_decay, mu = (T)hp->momentum;
  const T sign = hp->maximize != 0 ? (T)-1 : (T)1;
  /* torch's lerp: a + w (d - a) for a small weight, else d + (w - 1)(d - a) */
  const int small = w < (T)0.5;
  const T cw = small ? w : w - (T)1;
#pragma omp simd
  for (int64_t k = lo; k < hi; k++) {
    T pk = p[k];
    T d = sign * g[k];
    if (l2) d = d + wd * pk;
    T vk = v[k] * alpha;
    vk = vk + (w * d) * d;
    v[k] = vk;
    T s = vk;
    if (centered) {
      T ak = a[k];
      ak = cw * (d - ak) + (small ? ak : d);
      a[k] = ak;
      s = vk - ak * ak;
    }
    T den = inside ? ROOT(s + eps) : ROOT(s) + eps;
    if (mom) {
      T bk = b[k] * mu + d / den;
      b[k] = bk;
      p[k] = pk + step * bk;
    } else {
      p[k] = pk + (step * d) / den;
    }
  }
}

static void F(rms_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  const RmspropHp *hp = (const RmspropHp *)j->hp;
  const int l2 = hp->weight_decay != 0, centered = hp->centered != 0;
  const int inside = hp->eps_inside_sqrt != 0, mom = hp->momentum > 0;
  switch (l2 | centered << 1 | inside << 2 | mom << 3) {
#define CASE(c) \
  case c: F(rms_range)(j, i, lo, hi, c & 1, (c >> 1) & 1, (c >> 2) & 1, (c >> 3) & 1); break;
    CASE(0) CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7)
    CASE(8) CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15)
#undef CASE
  }
}

/* RMSprop. hp: RmspropHp. With count != 0 the list after the state holds the step
 * counters (float32 0-d tensors, as torch keeps them), each incremented here. */
void F(rmsprop)(int64_t n, const int64_t *numel, void *const *ptrs, const RmspropHp *hp,
                int nthreads) {
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .nthreads = nthreads,
           .body = F(rms_body)};
  if (hp->count != 0) {
    const int k = 3 + (hp->centered != 0) + (hp->momentum > 0);
    for (int64_t i = 0; i < n; i++) *PTR(&j, k, i, float) += 1.0f;
  }
  run_job(&j, SPLIT_ELEMENTS);
}

#endif
