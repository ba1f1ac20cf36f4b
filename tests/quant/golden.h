// Reads the golden .safetensors files of tests/golden/{quant,optim}/ into host vectors. A small reader of
// its own (header JSON + raw bytes) so these tests do not depend on the formats module.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/half.h"
#include "common/test_paths.h"

namespace cotune::testing {

struct GoldenTensor {
  std::string dtype;  // "F32", "BF16", "U8", "I64", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::vector<float> f32() const {  // F32 as is; BF16/F16 widened
    std::vector<float> out(static_cast<size_t>(numel()));
    if (dtype == "F32") {
      std::memcpy(out.data(), bytes.data(), bytes.size());
    } else if (dtype == "BF16" || dtype == "F16") {
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        out[i] = dtype == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
      }
    } else {
      ADD_FAILURE() << "golden tensor of dtype " << dtype << " read as f32";
    }
    return out;
  }
  std::vector<uint16_t> u16() const {
    std::vector<uint16_t> out(bytes.size() / 2);
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  std::vector<double> f64() const {
    std::vector<double> out(bytes.size() / 8);
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
};

class GoldenFile {
 public:
  // Returns false (and the test should GTEST_SKIP) when the file is absent.
  bool open(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    uint64_t hlen = 0;
    f.read(reinterpret_cast<char*>(&hlen), 8);
    std::string header(hlen, '\0');
    f.read(header.data(), static_cast<std::streamsize>(hlen));
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto j = nlohmann::json::parse(header);
    for (auto& [name, v] : j.items()) {
      if (name == "__metadata__") continue;
      GoldenTensor t;
      t.dtype = v["dtype"].get<std::string>();
      t.shape = v["shape"].get<std::vector<int64_t>>();
      auto off = v["data_offsets"].get<std::vector<size_t>>();
      t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(off[0]),
                     data.begin() + static_cast<std::ptrdiff_t>(off[1]));
      tensors_[name] = std::move(t);
    }
    return true;
  }
  const GoldenTensor& operator[](const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::runtime_error("golden tensor missing: " + name);
    return it->second;
  }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }

 private:
  std::map<std::string, GoldenTensor> tensors_;
};

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// Distance in units in the last place between two finite floats of the same sign (or both zero).
inline int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return std::llabs(static_cast<long long>(ia) - static_cast<long long>(ib));
}

}  // namespace cotune::testing

// Opens golden file `file` under tests/golden/<sub>/ into `var`, or skips the test with a message.
#define COTUNE_OPEN_GOLDEN(var, sub, file)                                                                    \
  ::cotune::testing::GoldenFile var;                                                                         \
  const std::string var##_path = ::cotune::testing::golden_dir() + "/" sub "/" file;                        \
  if (!var.open(var##_path)) GTEST_SKIP() << "golden file missing: " << var##_path                           \
                                          << " (make it with tools/make_" sub "_golden.py)"

// Skips the test with a message when tests/golden/<sub>/<file> is absent.
#define COTUNE_REQUIRE_GOLDEN_FILE(sub, file)                                                                  \
  do {                                                                                                       \
    const std::string p_ = ::cotune::testing::golden_dir() + "/" sub "/" file;                              \
    if (!std::filesystem::exists(p_)) GTEST_SKIP() << "golden file missing: " << p_                          \
                                                   << " (make it with tools/make_" sub "_golden.py)";         \
  } while (0)
