// Arena: allocations are aligned and laid out in chunks; a failed allocation names the tensor it was for.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "common/sanitized.h"
#include "base/error.h"
#include "tensor/arena.h"

namespace cotune {
namespace {

using ::cotune::testing::kSanitized;

TEST(Arena, AllocationsAreAlignedAndDistinct) {
  Arena a(Device::cpu);
  Tensor x = a.alloc(DType::f32, {3, 5}, "x");
  Tensor y = a.alloc(DType::bf16, {7}, "y");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.data) % 256, 0u);
  EXPECT_NE(x.data, y.data);
  EXPECT_GE(a.used(), static_cast<size_t>(15 * 4 + 7 * 2));
}

TEST(Arena, FailedAllocationNamesTheTensor) {
  if (kSanitized) GTEST_SKIP() << "AddressSanitizer aborts on an impossible allocation instead of returning null";
  Arena a(Device::cpu);
  try {
    a.alloc(DType::f32, {int64_t{1} << 40, int64_t{1} << 20}, "attention scratch");  // 4 EiB
    FAIL() << "an impossible allocation succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("attention scratch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1099511627776, 1048576]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out of host memory"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace cotune
