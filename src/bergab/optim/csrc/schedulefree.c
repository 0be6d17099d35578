/* Schedule-free SGD and AdamW on CPU: one pass per step, each element of y (the
 * parameter), g, z (and v) read once and y, z (and v) written once.
 * Formulas: bergab/optim/schedulefree.py (schedulefree_reference):
 *   d = g                                     (SGD)
 *   v <- beta2 v + (1 - beta2) g^2, d = g / (sqrt(v / bc2) + eps)   (AdamW)
 *   d <- d + wd y                             (wd != 0)
 *   y <- lerp(y, z, c) + lr (beta1 (1 - c) - 1) d,   z <- z - lr d
 * The scalars (lr with warmup, the averaging weight c, bc2 = 1 - beta2^(t+1)) come from
 * Python. lerp is torch's: y + c (z - y) for c < 0.5, else z - (z - y)(1 - c). */
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

#ifndef SQRT
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#endif

/* The y and z updates of one element from its direction d (shared by both kernels). */
#define SF_MOVE(k, d)                                          \
  do {                                                         \
    T yk_ = y[k], zk_ = z[k];                                  \
    T yl_ = base[k] + w * (zk_ - yk_);                         \
    y[k] = yl_ + (d) * coef;                                   \
    z[k] = zk_ - (d) * step;                                   \
  } while (0)

/* ptrs: y (the parameter), g, z. hp: SfSgdHp. */
static void F(sf_sgd_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  T *y = PTR(j, 0, i, T), *z = PTR(j, 2, i, T);
  const T *g = PTR(j, 1, i, T);
  const SfSgdHp *hp = (const SfSgdHp *)j->hp;
  const double lr = hp->lr, ckp1 = hp->ckp1, beta1 = hp->beta1, wd = hp->weight_decay;
  /* torch's lerp: y + c (z - y) for |c| < 0.5, else z - (1 - c)(z - y) */
  const int small = fabs(ckp1) < 0.5;
  const T c = (T)ckp1, w = small ? c : -((T)1 - c), step = (T)lr, twd = (T)wd;
  const T *base = small ? y : z;
  const T coef = (T)(lr * (beta1 * (1 - ckp1) - 1));
  if (wd != 0) {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T d = g[k] + twd * y[k];
      SF_MOVE(k, d);
    }
  } else {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) SF_MOVE(k, g[k]);
  }
}

void F(sf_sgd)(int64_t n, const int64_t *numel, void *const *ptrs, const SfSgdHp *hp,
               int nthreads) {
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .nthreads = nthreads,
           .body = F(sf_sgd_body)};
  run_job(&j, SPLIT_ELEMENTS);
}

/* ptrs: y (the parameter), g, z, v. hp: SfAdamwHp (bc2: bias_correction2). */
static void F(sf_adamw_body)(void *vjob, int tid, int64_t i, int64_t lo, int64_t hi) {
  (void)tid;
  Job *j = (Job *)vjob;
  T *y = PTR(j, 0, i, T), *z = PTR(j, 2, i, T), *v = PTR(j, 3, i, T);
  const T *g = PTR(j, 1, i, T);
  const SfAdamwHp *hp = (const SfAdamwHp *)j->hp;
  const double lr = hp->lr, ckp1 = hp->ckp1, beta1 = hp->beta1, wd = hp->weight_decay;
  /* torch's lerp: y + c (z - y) for |c| < 0.5, else z - (1 - c)(z - y) */
  const int small = fabs(ckp1) < 0.5;
  const T c = (T)ckp1, w = small ? c : -((T)1 - c), step = (T)lr, twd = (T)wd;
  const T *base = small ? y : z;
  const T coef = (T)(lr * (beta1 * (1 - ckp1) - 1));
  const T b2 = (T)hp->beta2, c2 = (T)(1 - hp->beta2), eps = (T)hp->eps;
  const T bc2 = (T)hp->bias_correction2;
  if (wd != 0) {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T gk = g[k];
      T vk = v[k] * b2 + c2 * (gk * gk);
      v[k] = vk;
      T d = gk / (SQRT(vk / bc2) + eps) + twd * y[k];
      SF_MOVE(k, d);
    }
  } else {
#pragma omp simd
    for (int64_t k = lo; k < hi; k++) {
      T gk = g[k];
      T vk = v[k] * b2 + c2 * (gk * gk);
      v[k] = vk;
      T d = gk / (SQRT(vk / bc2) + eps);
      SF_MOVE(k, d);
    }
  }
}

void F(sf_adamw)(int64_t n, const int64_t *numel, void *const *ptrs, const SfAdamwHp *hp,
                 int nthreads) {
  Job j = {.n = n, .numel = numel, .ptrs = ptrs, .hp = hp, .nthreads = nthreads,
           .body = F(sf_adamw_body)};
  run_job(&j, SPLIT_ELEMENTS);
}

#undef SF_MOVE
#endif
