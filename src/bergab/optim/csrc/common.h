/* Shared by bergab's CPU kernels (one .c file per optimizer family).
 *
 * A kernel receives a list of n tensors of one dtype: numel[i] elements each and K
 * parallel arrays of pointers laid out as ptrs[k * n + i] (param, grad, state...).
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
 * Reductions use LANES independent float accumulators within blocks of BLOCK elements
 * (a single vector accumulator would wait on the FMA latency) and double across blocks;
 * threads write partial sums that the caller adds.
 *
 * Measured on one core of the development machine (AMD EPYC): a read-only stream gets
 * about 22 GB/s, a loop mixing 3-5 read and write streams about 47 GB/s. So a reduction
 * pass costs more than its bytes suggest: read several sub-streams side by side, carry
 * what the update pass can compute for the next step (LARS: the new ‖w‖²), and run the
 * update after a global reduction with SPLIT_ELEMENTS_REVERSED (above). (Overlapping one
 * tensor's reduction with the update of the one before did not help, for LARS nor for LAMB's in-cache second pass: measured
 * slower than reduction-then-update.)
 *
 * Each family file includes itself twice (T = float, then T = double) so every kernel
 * exists for float32 (suffix _f32) and float64 (_f64); `#include __FILE__` needs the
 * file named by an absolute path on the command line, as bergab/optim/_native.py does.
 */
#ifndef BERGAB_COMMON_H
#define BERGAB_COMMON_H

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 2048
#define LANES 32 /* independent accumulators of a reduction: 4 AVX2 vectors of floats */
#define MAX_THREADS 256

typedef struct {
  int64_t n;
  const int64_t *numel;
  void *const *ptrs;
  const double *hp;   /* hyperparameters, kernel-specific */
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

/* Built with -fopenmp (bergab/optim/_native.py does so when torch runs on GNU OpenMP):
 * the library then binds to the libgomp.so.1 torch has already loaded, so a kernel's
 * threads are torch's own. A separate pool of threads would fight torch's: after each
 * parallel op torch's OpenMP workers spin for a while on the other cores, and a second
 * pool started then runs at a fraction of its speed (measured: RMSprop on 2 threads
 * 9.1 ms with pthreads, 6.8 ms with the spinning turned off). If OpenMP gives fewer
 * threads than asked (nested, dynamic), each takes several tasks in turn. */
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
 * double, which halves the vector width and costs conversions (LAMB ran 2x slower). */
#define TSQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

#define PTR(job, k, i, type) ((type *)(job)->ptrs[(int64_t)(k) * (job)->n + (i)])

#endif
