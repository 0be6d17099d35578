/* The C boundary of bergab's CPU kernels: every entry point's hyperparameter struct and
 * prototype, each written once here. bergab/optim/_abi.py mirrors them in ctypes, and
 * tests/test_native_abi.py checks the mirror against the layout functions of abi.c.
 *
 * A struct is an X-macro list of (type, name) fields, NAME_HP(X); BERGAB_HP_STRUCTS lists
 * every struct with its list. Fields are double (real values) or int64_t (flags, counts,
 * modes), all 8 bytes, so a struct has no padding and its layout is the same for every
 * compiler and flag set.
 *
 * BERGAB_KERNELS lists every entry point with the arguments it takes between ptrs and
 * nthreads; each exists as name_f32 and name_f64 (float32 / float64 tensors) with the
 * signature
 *   void name_fXX(int64_t n, const int64_t *numel, void *const *ptrs, <args>, int nthreads)
 * (n tensors, numel[i] elements each, ptrs[k * n + i] = list k, tensor i; see common.h).
 * The declarations below make the compiler check each family file's definitions against
 * this list, and abi.c exports the list (names and argument text) for the test.
 *
 * Per-tensor inputs (pt) and outputs (out) are double arrays whose layout each family
 * file documents at its kernel (and _abi.py in its prototype table).
 */
#ifndef BERGAB_HP_H
#define BERGAB_HP_H

#include <stdint.h>

/* ----------------------------------------------------------------- the structs */

/* RMSprop (rmsprop.c). */
#define RMSPROP_HP(X)        \
  X(double, lr)              \
  X(double, alpha)           \
  X(double, one_minus_alpha) \
  X(double, eps)             \
  X(double, weight_decay)    \
  X(double, momentum)        \
  X(int64_t, maximize)       \
  X(int64_t, centered)       \
  X(int64_t, eps_inside_sqrt)\
  X(int64_t, count) /* 1: the kernel increments the float32 step counters */

/* NAdam and RAdam (adam.c): the same hyperparameters, the per-tensor factors differ. */
#define ADAM_HP(X)                                                              \
  X(double, one_minus_beta1)                                                    \
  X(double, beta2)                                                              \
  X(double, one_minus_beta2)                                                    \
  X(double, eps)                                                                \
  X(double, weight_decay)                                                       \
  X(double, decay) /* 1 - lr weight_decay: the decoupled shrink factor */       \
  X(int64_t, maximize)                                                          \
  X(int64_t, decoupled_weight_decay)                                            \
  X(int64_t, amsgrad)                                                           \
  X(int64_t, count) /* 1: the kernel stores the float32 counters given in pt */

/* Schedule-free SGD (schedulefree.c). */
#define SF_SGD_HP(X)                                                \
  X(double, lr)                                                     \
  X(double, ckp1) /* the averaging weight c_{k+1} */                \
  X(double, beta1)                                                  \
  X(double, weight_decay)

/* Schedule-free AdamW (schedulefree.c). */
#define SF_ADAMW_HP(X)                                                    \
  SF_SGD_HP(X)                                                            \
  X(double, beta2)                                                        \
  X(double, eps)                                                          \
  X(double, bias_correction2) /* 1 - beta2^(t+1) */

/* Prodigy pass 1 (prodigy.c). */
#define PRODIGY_SUMS_HP(X)                                                    \
  X(double, beta3)                                                            \
  X(double, c3) /* the weight of g in s */                                    \
  X(double, coupled_weight_decay) /* g <- g + wd x; 0 when decay is decoupled */

/* Prodigy pass 2 (prodigy.c). */
#define PRODIGY_STEP_HP(X)                                                       \
  X(double, beta1)                                                               \
  X(double, beta2)                                                               \
  X(double, c1) /* d_k (1 - beta1) */                                            \
  X(double, c2) /* d_k^2 (1 - beta2) */                                          \
  X(double, weight_decay)                                                        \
  X(double, dlr) /* d_k lr, bias correction included */                          \
  X(double, d_eps) /* d_{k+1} eps */                                             \
  X(double, d_new) /* d_{k+1} */                                                 \
  X(int64_t, decouple)                                                           \
  X(int64_t, has_m) /* beta1 > 0: the first moment exists */                     \
  X(int64_t, move) /* 0: update the moments only (a step without information) */

/* DoG's two kernels (dog.c). */
#define DOG_HP(X) X(double, weight_decay)

/* LDoG (dog.c). */
#define LDOG_HP(X)                                                            \
  X(double, weight_decay)                                                     \
  X(double, scale) /* lr lr_scale */                                          \
  X(double, init_eta) /* NaN: none */

/* LARS (layerwise.c). */
#define LARS_HP(X)                 \
  X(double, lr)                    \
  X(double, momentum)              \
  X(double, weight_decay)          \
  X(double, trust_coefficient)     \
  X(double, eps)                   \
  X(int64_t, nesterov)

/* LAMB (layerwise.c). */
#define LAMB_HP(X)                                             \
  X(double, lr)                                                \
  X(double, beta1)                                             \
  X(double, beta2)                                             \
  X(double, eps)                                               \
  X(double, weight_decay)                                      \
  X(double, clamp) /* the bound on ||w|| (inf: none) */        \
  X(int64_t, adam) /* 1: trust ratio 1 (plain Adam step) */

/* SGD-HD reduction (hypergradient.c). */
#define SGD_HD_REDUCE_HP(X)                                                \
  X(int64_t, mode) /* 0 plain, 1 heavy ball, 2 Nesterov */                 \
  X(double, weight_decay)                                                  \
  X(int64_t, norms) /* 1: also sum |g|^2 and |u|^2 (multiplicative rule) */ \
  X(double, momentum)

/* Adam-HD reduction (hypergradient.c). */
#define ADAM_HD_REDUCE_HP(X)                                               \
  X(double, beta1)                                                         \
  X(double, beta2)                                                         \
  X(double, weight_decay)                                                  \
  X(int64_t, norms) /* 1: also sum |g|^2 and |u|^2 (multiplicative rule) */

/* SGD-HD update (hypergradient.c). */
#define SGD_HD_UPDATE_HP(X) X(double, alpha)

/* Every struct: S(TypeName, FIELD_LIST). */
#define BERGAB_HP_STRUCTS(S)              \
  S(RmspropHp, RMSPROP_HP)                \
  S(AdamHp, ADAM_HP)                      \
  S(SfSgdHp, SF_SGD_HP)                   \
  S(SfAdamwHp, SF_ADAMW_HP)               \
  S(ProdigySumsHp, PRODIGY_SUMS_HP)       \
  S(ProdigyStepHp, PRODIGY_STEP_HP)       \
  S(DogHp, DOG_HP)                        \
  S(LdogHp, LDOG_HP)                      \
  S(LarsHp, LARS_HP)                      \
  S(LambHp, LAMB_HP)                      \
  S(SgdHdReduceHp, SGD_HD_REDUCE_HP)      \
  S(AdamHdReduceHp, ADAM_HD_REDUCE_HP)    \
  S(SgdHdUpdateHp, SGD_HD_UPDATE_HP)

#define BERGAB_HP_FIELD(type, name) type name;
#define BERGAB_HP_TYPEDEF(Name, LIST) typedef struct { LIST(BERGAB_HP_FIELD) } Name;
BERGAB_HP_STRUCTS(BERGAB_HP_TYPEDEF)
#undef BERGAB_HP_TYPEDEF
#undef BERGAB_HP_FIELD

/* ----------------------------------------------------------------- the entry points */

/* K(name, (arguments between ptrs and nthreads)) */
#define BERGAB_KERNELS(K)                                                                \
  K(rmsprop, (const RmspropHp *hp))                                                      \
  K(nadam, (const AdamHp *hp, const double *pt))                                         \
  K(radam, (const AdamHp *hp, const double *pt))                                         \
  K(sf_sgd, (const SfSgdHp *hp))                                                         \
  K(sf_adamw, (const SfAdamwHp *hp))                                                     \
  K(prodigy_sums, (const ProdigySumsHp *hp, double *out))                                \
  K(prodigy_step, (const ProdigyStepHp *hp))                                             \
  K(dog_reduce, (const DogHp *hp, const double *pt, double *out))                        \
  K(dog_update, (const DogHp *hp, const double *pt, double *out))                        \
  K(ldog, (const LdogHp *hp, const double *pt, double *out))                             \
  K(lars, (const LarsHp *hp, const double *pt, double *out))                             \
  K(lamb, (const LambHp *hp, const double *pt, double *out, void *scratch,               \
           int64_t scratch_numel))                                                       \
  K(sgd_hd_reduce, (const SgdHdReduceHp *hp, const double *pt, double *out))             \
  K(adam_hd_reduce, (const AdamHdReduceHp *hp, const double *pt, double *out))           \
  K(sgd_hd_update, (const SgdHdUpdateHp *hp))                                            \
  K(adam_hd_update, (const double *pt))

/* The arguments every entry point starts with. */
#define BERGAB_KERNEL_HEAD int64_t n, const int64_t *numel, void *const *ptrs

#define BERGAB_UNPAREN(...) __VA_ARGS__
#define BERGAB_DECLARE_KERNEL(name, args)                                         \
  void name##_f32(BERGAB_KERNEL_HEAD, BERGAB_UNPAREN args, int nthreads);         \
  void name##_f64(BERGAB_KERNEL_HEAD, BERGAB_UNPAREN args, int nthreads);
BERGAB_KERNELS(BERGAB_DECLARE_KERNEL)
#undef BERGAB_DECLARE_KERNEL

/* The layout and kernel tables (abi.c), for the test of the Python mirror. */
int64_t bergab_hp_size(const char *struct_name);
int64_t bergab_hp_offset(const char *struct_name, const char *field);
const char *bergab_hp_struct(int64_t index);
const char *bergab_hp_field(const char *struct_name, int64_t index);
const char *bergab_hp_field_type(const char *struct_name, const char *field);
const char *bergab_kernel(int64_t index);
const char *bergab_kernel_args(const char *kernel);

#endif
