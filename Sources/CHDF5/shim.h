#ifndef CERM_CHDF5_SHIM_H
#define CERM_CHDF5_SHIM_H
#include <hdf5.h>

/* HDF5's flag and type "constants" are macros that call H5open() or read library globals,
   so Swift cannot import them. Each is exposed as a static inline function. */
static inline unsigned cerm_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned cerm_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned cerm_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned cerm_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline hid_t cerm_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t cerm_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t cerm_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t cerm_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t cerm_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t cerm_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t cerm_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t cerm_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t cerm_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t cerm_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t cerm_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t cerm_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t cerm_H5T_C_S1(void) { return H5T_C_S1; }
static inline size_t cerm_H5T_VARIABLE(void) { return H5T_VARIABLE; }

/* Collects the messages of the current thread's H5 error stack into buf (NUL-terminated). */
typedef struct { char *buf; size_t cap; size_t len; } cerm_h5_err_sink;

static inline herr_t cerm_h5_err_walk(unsigned n, const H5E_error2_t *e, void *data) {
    cerm_h5_err_sink *s = (cerm_h5_err_sink *)data;
    if (s->len + 4 >= s->cap) return 0;
    int w = snprintf(s->buf + s->len, s->cap - s->len, "%s%s (%s)", s->len ? "; " : "",
                     e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    if (w > 0) { s->len += (size_t)w; if (s->len >= s->cap) s->len = s->cap - 1; }
    return 0;
}

static inline size_t cerm_h5_error_message(char *buf, size_t cap) {
    if (cap == 0) return 0;
    buf[0] = 0;
    cerm_h5_err_sink s = { buf, cap, 0 };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cerm_h5_err_walk, &s);
    return s.len;
}

/* Silences HDF5's automatic printing of the error stack to stderr; errors are reported as
   Swift errors carrying the stack's messages instead. */
static inline void cerm_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
