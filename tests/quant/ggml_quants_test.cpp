// ggml block quantizers / dequantizers against ggml itself (tests/golden/gguf/quants, made by
// tools/make_gguf_golden.py with llama.cpp's libggml-base): quantized bytes identical, dequantized floats
// bit-identical, for every type cotune writes or reads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "base/error.h"
#include "common/test_paths.h"
#include "kernels/ggml_quants.h"

namespace cotune::kernels {
namespace {

std::vector<uint8_t> read_bytes(const std::string& name) {
  const std::string path = testing::golden_dir() + "/gguf/quants/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing golden " + path);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<float> read_f32(const std::string& name) {
  auto b = read_bytes(name);
  std::vector<float> f(b.size() / 4);
  memcpy(f.data(), b.data(), b.size());
  return f;
}

struct Case {
  GgmlType type;
  bool quantize;  // cotune writes this type
};

class GgmlQuants : public ::testing::TestWithParam<Case> {};

TEST_P(GgmlQuants, MatchesGgmlReference) {
  const GgmlType t = GetParam().type;
  const std::string name = ggml_type_name(t);
  const std::vector<float> x = read_f32("input.f32");
  const std::vector<uint8_t> want = read_bytes(name + ".bin");
  const std::vector<float> want_deq = read_f32(name + ".deq.f32");
  const int64_t n = static_cast<int64_t>(x.size());
  ASSERT_EQ(static_cast<int64_t>(want.size()), ggml_bytes(t, n));
  ASSERT_EQ(want_deq.size(), x.size());

  if (GetParam().quantize) {
    ASSERT_TRUE(ggml_can_quantize(t));
    std::vector<uint8_t> got(want.size());
    ggml_quantize(t, x.data(), got.data(), n);
    const int64_t bs = ggml_type_info(t).type_size;
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << name << ": byte " << i << " (block " << static_cast<int64_t>(i) / bs << ", byte "
                                 << static_cast<int64_t>(i) % bs << " in it) differs";
  }
  ASSERT_TRUE(ggml_can_dequantize(t));
  std::vector<float> deq(x.size());
  ggml_dequantize(t, want.data(), deq.data(), n);
  for (size_t i = 0; i < deq.size(); ++i) {
    uint32_t a, b;
    memcpy(&a, &deq[i], 4);
    memcpy(&b, &want_deq[i], 4);
    ASSERT_EQ(a, b) << name << ": element " << i << " dequantized to " << deq[i] << ", ggml " << want_deq[i];
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgmlQuants,
                         ::testing::Values(Case{GgmlType::f16, true}, Case{GgmlType::bf16, true},
                                           Case{GgmlType::q4_0, true}, Case{GgmlType::q4_1, true},
                                           Case{GgmlType::q5_0, true}, Case{GgmlType::q5_1, true},
                                           Case{GgmlType::q8_0, true}, Case{GgmlType::q2_k, false},
                                           Case{GgmlType::q3_k, false}, Case{GgmlType::q4_k, true},
                                           Case{GgmlType::q5_k, true}, Case{GgmlType::q6_k, true}),
                         [](const auto& info) { return std::string(ggml_type_name(info.param.type)); });

TEST(GgmlQuantsErrors, RejectsPartialBlocksAndTypesWithoutQuantizer) {
  std::vector<float> x(48, 1.0f);
  std::vector<uint8_t> y(1024);
  EXPECT_THROW(ggml_quantize(GgmlType::q8_0, x.data(), y.data(), 48), Error);
  EXPECT_THROW(ggml_quantize(GgmlType::q3_k, x.data(), y.data(), 256), Error);
  EXPECT_THROW(ggml_bytes(GgmlType::q4_k, 300), Error);
  EXPECT_EQ(ggml_bytes(GgmlType::q4_k, 512), 288);
  EXPECT_EQ(ggml_type_info(99u), nullptr);
}

// Round trips stay within each type's step: a check independent of the goldens (catches a golden made wrong).
TEST(GgmlQuantsErrors, RoundTripErrorIsWithinTheStep) {
  std::vector<float> x(1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 0.05f;
  for (GgmlType t : {GgmlType::q8_0, GgmlType::q4_0, GgmlType::q5_k, GgmlType::q4_k, GgmlType::q6_k}) {
    std::vector<uint8_t> q(static_cast<size_t>(ggml_bytes(t, 1024)));
    std::vector<float> y(1024);
    ggml_quantize(t, x.data(), q.data(), 1024);
    ggml_dequantize(t, q.data(), y.data(), 1024);
    const float bits = t == GgmlType::q8_0 ? 8 : t == GgmlType::q6_k ? 6 : t == GgmlType::q5_k ? 5 : 4;
    const float tol = 0.1f / std::pow(2.0f, bits - 1) * 1.5f;
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], tol) << ggml_type_name(t) << " " << i;
  }
}

}  // namespace
}  // namespace cotune::kernels
