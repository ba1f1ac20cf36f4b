// Whether this build runs under AddressSanitizer: gcc defines __SANITIZE_ADDRESS__, clang answers
// __has_feature(address_sanitizer). Memory-bound checks (peak RSS, arena sizes) do not hold under ASan's shadow
// memory and quarantine, so tests that measure memory skip those bounds when kSanitized.
#pragma once

namespace cotune::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace cotune::testing
