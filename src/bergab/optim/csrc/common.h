/* Shared by bergab's CPU kernels (one .c file per optimizer family, all linked into one
 * library: everything defined here is static, each file has its own copy).
 *
 * A kernel receives a list of n tensors of one dtype: numel[i] elements each and K
 * parallel arrays of pointers laid out as ptrs[k * n + i] (param, grad, state...), and
 * its hyperparameters as a struct declared in hp.h (Job.hp points to it).
 * Work is split over nthreads threads, torch's OpenMP workers where the library is built
 * with -fopenmp, else POSIX threads started per call (nthreads <= 1: run in the caller):
 *   - run_job(job, SPLIT_ELEMENTS): the concatenated index space of all tensors is cut
 *     into nthreads equal ranges; job->body sees each piece of a tensor in its range.
 *   - run_job(job, SPLIT_TENSORS): whole tensors go to threads (for per-tensor norms),
 *     each thread taking the tensors whose midpoint falls in its share of the elements.
 *   - run_job(job, SPLIT_ELEMENTS_REVERSED): the same ranges as SPLIT_ELEMENTS, each
 *     thread visiting its pieces last tensor first. The update after a global reduction
 *     uses it: a thread then starts on the data it read last, still in its own L2 and in
 *     the L3 (reversing the whole list instead hands each thread the other's range).
 *
 * Reductions (sums and norms) accumulate in double, in an order fixed by the data alone:
 * over a range [lo, hi), lane l of LANES double accumulators adds the terms of elements
 * lo + l, lo + l + LANES, lo + l + 2 LANES, ... in that order, and lanes_total adds the
 * lanes in lane order (the sums that read four sub-streams at once, in dog.c and
 * layerwise.c, assign elements to lanes in their own fixed way). Each term is formed in
 * double from the kernel's elementwise values (a product of two floats is exact in
 * double, see ADD_PRODUCT), so a sum does not depend on the vector width the compiler
 * chose (a vector holds several lanes, it never reorders one) and depends on the thread
 * count only through double rounding (each thread sums its own range; the caller adds
 * the threads' partial sums in thread order). Many independent lanes also keep the adds
 * from waiting on each other's latency. The elementwise update math stays in the
 * tensors' precision.
 *
 * A read-only stream gets less memory bandwidth out of one core than a loop that mixes
 * read and write streams (figures: benchmarks/RESULTS.md, "Kernel design notes"), so a
 * reduction pass costs more than its bytes suggest. Hence the kernels read several
 * sub-streams side by side in a reduction, carry what the update pass can compute for
 * the next step (LARS: the new ‖w‖²), and run the update after a global reduction with
 * SPLIT_ELEMENTS_REVERSED (above). Per-tensor methods (LARS, LAMB, LDoG) reduce a
 * tensor and then update it while it is in cache, one tensor after the other (see
 * benchmarks/RESULTS.md for the overlapped alternative).
 *
 * Each family file includes itself twice (T = float, then T = double) so every kernel
 * exists for float32 (suffix _f32) and float64 (_f64); `#include __FILE__` needs the
 * file named by an absolute path on the command line, as bergab/optim/_kernel_build.py
 * does.
 */
#ifndef BERGAB_COMMON_H
#define BERGAB_COMMON_H

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "hp.h"

#define BLOCK 2048 /* four-stream sums (layerwise.c): BLOCK / 4 elements of each in turn */
#define LANES 32   /* double accumulators of a reduction: 4 AVX-512 or 8 AVX2 vectors */
#define MAX_THREADS 256

typedef struct {
  int64_t n;
  const int64_t *numel;
  void *const *ptrs;
  const void *hp;     /* hyperparameters: the kernel's struct from hp.h */
  const double *pt;   /* per-tensor inputs, kernel-specific (may be NULL) */
  double *out;        /* per-tensor or per-thread results, kernel-specific (may be NULL) */
  void *scratch;      /* per-thread scratch, kernel-specific (may be NULL) */
  int64_t scratch_numel; /* elements of scratch per thread */
  int nthreads;
  void (*body)(void *job, int tid, int64_t i, int64_t lo, int64_t hi);
} Job;

enum { SPLIT_ELEMENTS = 0, SPLIT_TENSORS = 1, SPLIT_ELEMENTS_REVERSED = 2 };

typedef struct {
  Job *job;
  int tid;
  int mode; /* SPLIT_* */
} Task;

static void run_task(Task *t) {
  Job *j = t->job;
  int nt = j->nthreads < 1 ? 1 : j->nthreads;
  int64_t total = 0;
  for (int64_t i = 0; i < j->n; i++) total += j->numel[i];
  int64_t lo = total / nt * t->tid + (t->tid < total % nt ? t->tid : total % nt);
  int64_t hi = lo + total / nt + (t->tid < total % nt ? 1 : 0);
  if (t->mode == SPLIT_ELEMENTS_REVERSED) {
    int64_t end = total;
    for (int64_t i = j->n - 1; i >= 0; i--) {
      int64_t m = j->numel[i], start = end - m;
      int64_t a = start > lo ? start : lo;
      int64_t b = end < hi ? end : hi;
      if (a < b) j->body(j, t->tid, i, a - start, b - start);
      end = start;
    }
    return;
  }
  int64_t start = 0;
  for (int64_t i = 0; i < j->n; i++) {
    int64_t m = j->numel[i];
    if (t->mode == SPLIT_TENSORS) {
      int64_t mid = start + m / 2;
      if ((mid >= lo && mid < hi) || (m == 0 && start >= lo && start < hi) ||
          (t->tid == nt - 1 && mid >= hi))
        j->body(j, t->tid, i, 0, m);
    } else {
      int64_t a = start > lo ? start : lo;
      int64_t b = start + m < hi ? start + m : hi;
      if (a < b) j->body(j, t->tid, i, a - start, b - start);
    }
    start += m;
  }
}

#ifdef _OPENMP
#include <omp.h>

/* Built with -fopenmp (the omp flavor, loaded where torch runs on GNU OpenMP): the
 * library then binds to the libgomp.so.1 torch has already loaded, so a kernel's
 * threads are torch's own. A separate pool of threads would fight torch's: after each
 * parallel op torch's OpenMP workers spin for a while on the other cores, and a second
 * pool started then runs at a fraction of its speed (see benchmarks/RESULTS.md, "Kernel
 * design notes"). If OpenMP gives fewer threads than asked (nested, dynamic), each takes
 * several tasks in turn. */
static void run_job(Job *j, int mode) {
  int nt = j->nthreads;
  if (nt > MAX_THREADS) nt = MAX_THREADS;
  if (nt < 1) nt = 1;
  j->nthreads = nt;
  Task tasks[MAX_THREADS];
  for (int t = 0; t < nt; t++) {
    tasks[t].job = j;
    tasks[t].tid = t;
    tasks[t].mode = mode;
  }
  if (nt == 1) {
    run_task(&tasks[0]);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int got = omp_get_num_threads();
    for (int t = omp_get_thread_num(); t < nt; t += got) run_task(&tasks[t]);
  }
}
#else
static void *thread_main(void *arg) {
  run_task((Task *)arg);
  return NULL;
}

static void run_job(Job *j, int mode) {
  int nt = j->nthreads;
  if (nt > MAX_THREADS) nt = MAX_THREADS;
  if (nt < 1) nt = 1;
  j->nthreads = nt;
  Task tasks[MAX_THREADS];
  pthread_t threads[MAX_THREADS];
  int started[MAX_THREADS];
  for (int t = 0; t < nt; t++) {
    tasks[t].job = j;
    tasks[t].tid = t;
    tasks[t].mode = mode;
    started[t] = 0;
  }
  for (int t = 1; t < nt; t++)
    started[t] = pthread_create(&threads[t], NULL, thread_main, &tasks[t]) == 0;
  run_task(&tasks[0]);
  for (int t = 1; t < nt; t++) {
    if (started[t])
      pthread_join(threads[t], NULL);
    else
      run_task(&tasks[t]); /* could not start a thread: do its share here */
  }
}
#endif

/* sqrt in the precision of its argument. NOTE: plain sqrt() of a float promotes it to
 * double, which halves the vector width and costs conversions in an update loop (see
 * benchmarks/RESULTS.md, "Kernel design notes"). */
#define TSQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

/* The sum of count lanes of a reduction, in lane order (see the top of this file). */
static inline double lanes_sum(const double *acc, int count) {
  double total = 0;
  for (int l = 0; l < count; l++) total += acc[l];
  return total;
}
static inline double lanes_total(const double *acc) { return lanes_sum(acc, LANES); }

/* acc + a b for the terms of a reduction (inside a family's T section). In a float32
 * kernel a and b are float values held in doubles, so a b is exact in double and a fused
 * multiply-add rounds once just as the add alone does: the same bits as a multiply and
 * an add, in one instruction where the target has FMA (the build's -ffp-contract=off
 * fuses nothing by itself). In a float64 kernel the product rounds, so it stays a
 * multiply and an add on every target (the same bits at every instruction-set level). */
#ifdef __FMA__
#define ADD_EXACT_PRODUCT(acc, a, b) fma((a), (b), (acc))
#else
#define ADD_EXACT_PRODUCT(acc, a, b) ((acc) + (a) * (b))
#endif
#define ADD_PRODUCT(acc, a, b) \
  (sizeof(T) == sizeof(float) ? ADD_EXACT_PRODUCT(acc, a, b) : (acc) + (a) * (b))

/* The threads a kernel runs on: nthreads within [1, MAX_THREADS]. */
static inline int clamp_threads(int nthreads) {
  return nthreads < 1 ? 1 : (nthreads > MAX_THREADS ? MAX_THREADS : nthreads);
}

#define PTR(job, k, i, type) ((type *)(job)->ptrs[(int64_t)(k) * (job)->n + (i)])

#endif
