/* The layout of every hyperparameter struct and the list of entry points (hp.h), as the
 * compiler sees them: tests/test_native_abi.py checks bergab/optim/_abi.py, the ctypes
 * mirror, against these. Defined in this file only, so each appears once in the library
 * that links all the csrc .c files together. */
#include <stddef.h>
#include <string.h>

#include "hp.h"

#define BERGAB_STR_(...) #__VA_ARGS__
#define BERGAB_STR(args) BERGAB_STR_ args

/* Each lookup: one block per struct, in which Hp names that struct. */

/* sizeof(struct_name), or -1 for an unknown name. */
int64_t bergab_hp_size(const char *struct_name) {
#define SIZE_OF(Name, LIST) \
  if (strcmp(struct_name, #Name) == 0) return (int64_t)sizeof(Name);
  BERGAB_HP_STRUCTS(SIZE_OF)
#undef SIZE_OF
  return -1;
}

/* offsetof(struct_name, field), or -1 for an unknown struct or field. */
int64_t bergab_hp_offset(const char *struct_name, const char *field) {
#define OFFSET_FIELD(type, name) \
  if (strcmp(field, #name) == 0) return (int64_t)offsetof(Hp, name);
#define OFFSET_IN(Name, LIST)                 \
  if (strcmp(struct_name, #Name) == 0) {      \
    typedef Name Hp;                          \
    LIST(OFFSET_FIELD)                        \
    return -1;                                \
  }
  BERGAB_HP_STRUCTS(OFFSET_IN)
#undef OFFSET_IN
#undef OFFSET_FIELD
  return -1;
}

/* The name of struct number index (0, 1, ...), NULL past the last. */
const char *bergab_hp_struct(int64_t index) {
  int64_t k = 0;
#define NTH_STRUCT(Name, LIST) \
  if (k++ == index) return #Name;
  BERGAB_HP_STRUCTS(NTH_STRUCT)
#undef NTH_STRUCT
  return NULL;
}

/* The name of field number index of struct_name in declaration order, NULL past the last
 * (or for an unknown struct). */
const char *bergab_hp_field(const char *struct_name, int64_t index) {
  int64_t k = 0;
#define NTH_FIELD(type, name) \
  if (k++ == index) return #name;
#define FIELDS_OF(Name, LIST)            \
  if (strcmp(struct_name, #Name) == 0) { \
    LIST(NTH_FIELD)                      \
    return NULL;                         \
  }
  BERGAB_HP_STRUCTS(FIELDS_OF)
#undef FIELDS_OF
#undef NTH_FIELD
  return NULL;
}

/* The C type of a field as written in hp.h ("double", "int64_t"), NULL if unknown. */
const char *bergab_hp_field_type(const char *struct_name, const char *field) {
#define TYPE_FIELD(type, name) \
  if (strcmp(field, #name) == 0) return #type;
#define TYPES_IN(Name, LIST)             \
  if (strcmp(struct_name, #Name) == 0) { \
    LIST(TYPE_FIELD)                     \
    return NULL;                         \
  }
  BERGAB_HP_STRUCTS(TYPES_IN)
#undef TYPES_IN
#undef TYPE_FIELD
  return NULL;
}

/* The name of entry point number index, without its dtype suffix; NULL past the last. */
const char *bergab_kernel(int64_t index) {
  int64_t k = 0;
#define NTH_KERNEL(name, args) \
  if (k++ == index) return #name;
  BERGAB_KERNELS(NTH_KERNEL)
#undef NTH_KERNEL
  return NULL;
}

/* The arguments of an entry point between ptrs and nthreads, as declared in hp.h (e.g.
 * "const LarsHp *hp, const double *pt, double *out"); NULL for an unknown name. */
const char *bergab_kernel_args(const char *kernel) {
#define ARGS_OF(name, args) \
  if (strcmp(kernel, #name) == 0) return BERGAB_STR(args);
  BERGAB_KERNELS(ARGS_OF)
#undef ARGS_OF
  return NULL;
}
