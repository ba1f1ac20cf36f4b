#include "base/rng.h"

#include <cmath>

namespace cotune {

float Rng::normal() {
  float u1 = uniform();
  float u2 = uniform();
  if (u1 < 1e-30f) u1 = 1e-30f;
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530717958647692f * u2);
}

}  // namespace cotune
