/* Which instruction-set levels this CPU (and its operating system) can run, asked of the
 * baseline library before a wider one is loaded (bergab/optim/_native.py).
 * __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers. */
#include <string.h>

int bergab_cpu_supports(const char *level) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  int v2 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3") &&
           __builtin_cpu_supports("popcnt");
  int v3 = v2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
  if (strcmp(level, "x86-64") == 0) return 1;
  if (strcmp(level, "x86-64-v2") == 0) return v2;
  if (strcmp(level, "x86-64-v3") == 0) return v3;
  if (strcmp(level, "x86-64-v4") == 0) return v4;
  return 0;
#else
  return strcmp(level, "generic") == 0;
#endif
}
