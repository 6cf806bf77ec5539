/* The kernels are static inline in include/cerm_rowgemm.h so Swift can inline them; this unit
   compiles the header once on its own, so a C error shows here with a C compiler's message. */
#include "cerm_rowgemm.h"
