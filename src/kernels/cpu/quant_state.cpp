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

namespace cotune::kernels {

namespace {
DType dtype_from_torch(const std::string& s, const std::string& what) {
  if (s == "bfloat16") return DType::bf16;
  if (s == "float16") return DType::f16;
  if (s == "float32") return DType::f32;
  fail("{}: quant_state dtype \"{}\" is not bfloat16, float16 or float32", what, s);
}
}  // namespace

Nf4Weight nf4_weight_from_tensors(const std::string& prefix, const TensorLookup& lookup) {
  const std::string base = prefix + ".weight";
  auto need = [&](const std::string& name) -> Tensor {
    std::optional<Tensor> t = lookup(name);
    if (!t) fail("NF4 weight {}: tensor {} is missing (bitsandbytes 4-bit checkpoints store it)", prefix, name);
    return *t;
  };
  const std::string qs_name = base + ".quant_state.bitsandbytes__nf4";
  std::optional<Tensor> qs = lookup(qs_name);
  if (!qs) {
    if (lookup(base + ".quant_state.bitsandbytes__fp4"))
      fail("NF4 weight {}: the checkpoint is FP4 (quant_state.bitsandbytes__fp4); cotune reads NF4 only", prefix);
    fail("NF4 weight {}: tensor {} is missing", prefix, qs_name);
  }
  if (qs->device != Device::cpu) fail("NF4 weight {}: {} must be a host tensor", prefix, qs_name);
  const std::string json(static_cast<const char*>(qs->data), qs->nbytes());
  const Nf4QuantState st = parse_nf4_quant_state(json, qs_name);
  if (st.quant_type != "nf4") fail("NF4 weight {}: quant_type is {} (expected nf4)", prefix, st.quant_type);
  if (st.shape.empty() || st.shape.size() > static_cast<size_t>(kMaxDims))
    fail("{}: quant_state shape has {} dimensions (expected 1 to {})", qs_name, st.shape.size(), kMaxDims);

  Nf4Weight w;
  w.shape.ndim = static_cast<int>(st.shape.size());
  for (size_t i = 0; i < st.shape.size(); ++i) w.shape.dims[i] = st.shape[i];
  w.dtype = dtype_from_torch(st.dtype, qs_name);
  w.blocksize = st.blocksize;
  Tensor packed = need(base);
  w.packed = Tensor(packed.data, DType::u8, {static_cast<int64_t>(packed.nbytes())}, packed.device);
  w.absmax = need(base + ".absmax");
  w.quant_map = need(base + ".quant_map");
  w.nested = st.nested;
  if (st.nested) {
    if (st.nested_dtype != "float32")
      fail("{}: nested_dtype \"{}\" (expected float32)", qs_name, st.nested_dtype);
    w.nested_absmax = need(base + ".nested_absmax");
    w.nested_quant_map = need(base + ".nested_quant_map");
    w.nested_blocksize = st.nested_blocksize;
    w.offset = static_cast<float>(st.nested_offset);
  }
  w.validate(prefix);
  return w;
}

std::vector<std::pair<std::string, Tensor>> nf4_checkpoint_tensors(const std::string& prefix, const Nf4Weight& q,
                                                                    std::string& json_storage) {
  q.validate(prefix);
  const std::string base = prefix + ".weight";
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(base, Tensor(q.packed.data, DType::u8, {q.packed.numel(), 1}, q.packed.device));
  out.emplace_back(base + ".absmax", q.absmax);
  out.emplace_back(base + ".quant_map", q.quant_map);
  if (q.nested) {
    out.emplace_back(base + ".nested_absmax", q.nested_absmax);
    out.emplace_back(base + ".nested_quant_map", q.nested_quant_map);
  }
  json_storage = write_nf4_quant_state(q.quant_state());
  out.emplace_back(base + ".quant_state.bitsandbytes__nf4",
                   Tensor(json_storage.data(), DType::u8, {static_cast<int64_t>(json_storage.size())}));
  return out;
}

}  // namespace cotune::kernels
