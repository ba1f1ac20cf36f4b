// The JSON blob bitsandbytes stores beside an NF4 weight (`*.weight.quant_state.bitsandbytes__nf4`, a u8
// tensor): QuantState.as_dict(packed=True) -> pack_dict_to_tensor(json.dumps(dict)). Written here byte for
// byte as Python writes it, so a checkpoint cotune saves is indistinguishable from one bnb saves.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <system_error>

#include "kernels/quant.h"

namespace cotune::kernels {

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";  // json.dumps spellings
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  // Shortest round-trip digits, as Python's repr picks them; only the layout differs.
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp10 = std::atoi(sci.c_str() + epos + 1);
  const int decpt = exp10 + 1;  // value = 0.<digits> * 10^decpt
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp10 < 0 ? '-' : '+', std::abs(exp10));
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return sign + out;
}

std::string write_nf4_quant_state(const Nf4QuantState& s) {
  std::string shape = "[";
  for (size_t i = 0; i < s.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(s.shape[i]);
  shape += "]";
  // json.dumps escapes nothing in these values (plain ASCII identifiers), so quoting is enough.
  std::string out = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": {})", s.quant_type,
                                s.blocksize, s.dtype, shape);
  if (s.nested) {
    out += fmt::format(R"(, "nested_blocksize": {}, "nested_dtype": "{}", "nested_offset": {})", s.nested_blocksize,
                       s.nested_dtype, python_float_repr(s.nested_offset));
  }
  out += "}";
  return out;
}

Nf4QuantState parse_nf4_quant_state(std::string_view text, std::string_view what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: quant_state is not valid JSON ({})", what, e.what());
  }
  if (!j.is_object()) fail("{}: quant_state must be a JSON object", what);
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = j.find(key);
    if (it == j.end()) fail("{}: quant_state has no field \"{}\"", what, key);
    return *it;
  };
  auto get_string = [&](const char* key) {
    const auto& v = field(key);
    if (!v.is_string()) fail("{}: quant_state field \"{}\" must be a string", what, key);
    return v.get<std::string>();
  };
  auto get_int = [&](const char* key) {
    const auto& v = field(key);
    if (!v.is_number_integer()) fail("{}: quant_state field \"{}\" must be an integer", what, key);
    return v.get<int64_t>();
  };
  Nf4QuantState s;
  s.quant_type = get_string("quant_type");
  if (s.quant_type != "nf4" && s.quant_type != "fp4")
    fail("{}: quant_state quant_type \"{}\" (expected nf4 or fp4)", what, s.quant_type);
  s.blocksize = get_int("blocksize");
  if (s.blocksize <= 0) fail("{}: quant_state blocksize {} must be positive", what, s.blocksize);
  s.dtype = get_string("dtype");
  if (s.dtype != "bfloat16" && s.dtype != "float16" && s.dtype != "float32")
    fail("{}: quant_state dtype \"{}\" (expected bfloat16, float16 or float32)", what, s.dtype);
  const auto& shape = field("shape");
  if (!shape.is_array()) fail("{}: quant_state field \"shape\" must be a list of integers", what);
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      fail("{}: quant_state field \"shape\" must be a list of non-negative integers", what);
    s.shape.push_back(d.get<int64_t>());
  }
  s.nested = j.contains("nested_offset") || j.contains("nested_blocksize") || j.contains("nested_dtype");
  if (s.nested) {
    s.nested_blocksize = get_int("nested_blocksize");
    if (s.nested_blocksize <= 0) fail("{}: quant_state nested_blocksize {} must be positive", what, s.nested_blocksize);
    s.nested_dtype = get_string("nested_dtype");
    const auto& off = field("nested_offset");
    if (!off.is_number()) fail("{}: quant_state field \"nested_offset\" must be a number", what);
    s.nested_offset = off.get<double>();
  }
  return s;
}

}  // namespace cotune::kernels
