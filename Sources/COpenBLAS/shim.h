#ifndef CERM_COPENBLAS_SHIM_H
#define CERM_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
