#include "base/parallel.h"

#include <omp.h>

namespace cotune {
int cpu_threads() { return omp_get_max_threads(); }
}  // namespace cotune
