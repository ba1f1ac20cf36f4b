#include "export/merge.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_error.h"
#include "base/half.h"
#include "base/log.h"
#include "base/mmap.h"
#include "formats/model_config.h"
#include "formats/peft_adapter.h"
#include "formats/qwen2_layout.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/lora.h"

namespace cotune::exporting {

namespace fs = std::filesystem;

namespace {

const char* kNf4Suffixes[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                              ".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

bool is_float_dtype(const std::string& st) { return st == "F32" || st == "BF16" || st == "F16"; }

DType float_dtype_from_safetensors(const std::string& st) {
  if (st == "F32") return DType::f32;
  if (st == "BF16") return DType::bf16;
  return DType::f16;
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    default: return "bfloat16";
  }
}

// Widens n elements of a 16/32-bit float tensor's bytes to fp32 (exact).
void to_f32(const void* src, DType t, size_t n, float* out) {
  if (t == DType::f32) {
    std::memcpy(out, src, n * 4);
    return;
  }
  const auto* h = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, h + 2 * i, 2);  // the mapping need not be 2-byte aligned
    out[i] = t == DType::bf16 ? bf16_to_f32(v) : f16_to_f32(v);
  }
}

// Rounds n fp32 values once (nearest even) to `t` and stores them as little-endian bytes.
std::vector<uint8_t> from_f32(const float* x, size_t n, DType t) {
  std::vector<uint8_t> out(n * dtype_size(t));
  if (t == DType::f32) {
    std::memcpy(out.data(), x, n * 4);
    return out;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t v = t == DType::bf16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
    std::memcpy(out.data() + 2 * i, &v, 2);
  }
  return out;
}

// One tensor of the output and how to make it.
struct Planned {
  std::string name;
  std::string dtype;  // safetensors spelling of the output
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  const formats::TensorEntry* src = nullptr;  // 16-bit (or other) source; the packed weight for NF4
  std::string nf4_prefix;                     // non-empty: dequantise this bitsandbytes NF4 weight
  int64_t layer = -1;                         // LoRA delta of (layer, proj) to add when layer >= 0
  model::Proj proj = model::Proj::q;
};

struct ShardFile {
  std::string file;
  std::vector<const Planned*> tensors;
  uint64_t bytes = 0;
};

// huggingface_hub split_state_dict_into_shards_factory: in order; a tensor that would overflow the current
// shard starts a new one; a tensor larger than the limit gets a shard of its own.
std::vector<ShardFile> split_into_shards(const std::vector<Planned>& plan, uint64_t max_shard_size) {
  std::vector<ShardFile> shards;
  ShardFile cur;
  for (const Planned& p : plan) {
    if (p.nbytes > max_shard_size) {
      shards.push_back(ShardFile{"", {&p}, p.nbytes});
      continue;
    }
    if (cur.bytes + p.nbytes > max_shard_size && !cur.tensors.empty()) {
      shards.push_back(std::move(cur));
      cur = ShardFile{};
    }
    cur.tensors.push_back(&p);
    cur.bytes += p.nbytes;
  }
  if (!cur.tensors.empty()) shards.push_back(std::move(cur));
  if (shards.size() == 1) {
    shards[0].file = "model.safetensors";
  } else {
    for (size_t i = 0; i < shards.size(); ++i)
      shards[i].file = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
  }
  return shards;
}

class FileOut {
 public:
  explicit FileOut(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) fail("{}: cannot create: {}", path, std::strerror(errno));
  }
  ~FileOut() {
    if (f_) std::fclose(f_);
  }
  FileOut(const FileOut&) = delete;
  FileOut& operator=(const FileOut&) = delete;
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("{}: write failed: {}", path_, std::strerror(errno));
  }
  void close() {
    const bool flush_ok = std::fflush(f_) == 0;
    const int e = errno;
    const bool close_ok = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!flush_ok || !close_ok) fail("{}: cannot write to disk: {}", path_, std::strerror(flush_ok ? errno : e));
  }

 private:
  std::string path_;
  FILE* f_;
};

size_t dtype_rank(const std::string& st) { return formats::safetensors_dtype_size(st); }

class Merger {
 public:
  Merger(const std::string& model_dir, const std::string& adapter_dir, const MergeOptions& opts)
      : model_dir_(model_dir),
        adapter_dir_(adapter_dir),
        opts_(opts),
        cfg_(formats::load_model_config(model_dir)),
        ckpt_(formats::Checkpoint::open(model_dir)),
        lora_(load_adapter()) {}

  MergeResult run(const std::string& output_dir);

 private:
  std::string model_dir_, adapter_dir_;
  MergeOptions opts_;
  formats::ModelConfig cfg_;
  formats::Checkpoint ckpt_;
  model::LoraWeights lora_;
  float scale_ = 1.0f;
  DType out_dtype_ = DType::bf16;
  bool any_nf4_ = false;

  model::LoraWeights load_adapter() {
    return with_context("adapter " + adapter_dir_, [&] {
      if (!fs::is_directory(adapter_dir_)) fail("{}: not a folder (expected a PEFT adapter folder)", adapter_dir_);
      const formats::PeftAdapterConfig pc = formats::load_peft_adapter_config(adapter_dir_);
      const model::LoraConfig lc = model::LoraConfig::from_peft(pc);
      lc.validate();
      model::LoraWeights w(cfg_, lc, Device::cpu);
      w.load_peft_weights(adapter_dir_);
      return w;
    });
  }

  kernels::Nf4Weight nf4_weight(const std::string& prefix) const {
    return kernels::nf4_weight_from_tensors(prefix, [this](const std::string& n) -> std::optional<Tensor> {
      const formats::TensorEntry* e = ckpt_.find(n);
      if (!e) return std::nullopt;
      return e->tensor();
    });
  }

  std::vector<Planned> plan();
  std::vector<uint8_t> produce(const Planned& p, const uint8_t** direct) const;
  void write_shard(const std::string& path, const ShardFile& s) const;
};

std::vector<Planned> Merger::plan() {
  // The 4-bit weights and their auxiliary tensors.
  std::set<std::string> nf4_prefixes, aux;
  for (const std::string& n : ckpt_.names()) {
    for (const char* q : {".weight.quant_state.bitsandbytes__nf4", ".weight.quant_state.bitsandbytes__fp4"}) {
      const std::string qs = q;
      if (n.size() > qs.size() && n.compare(n.size() - qs.size(), qs.size(), qs) == 0) {
        const std::string prefix = n.substr(0, n.size() - qs.size());
        nf4_prefixes.insert(prefix);
        for (const char* s : kNf4Suffixes) aux.insert(prefix + ".weight" + s);
      }
    }
  }
  any_nf4_ = !nf4_prefixes.empty();

  // LoRA-targeted weights by name.
  std::map<std::string, std::pair<int64_t, model::Proj>> targets;
  for (int64_t l = 0; l < lora_.num_layers(); ++l)
    for (int i = 0; i < model::kNumProj; ++i) {
      const auto p = static_cast<model::Proj>(i);
      if (lora_.has(l, p))
        targets[fmt::format("model.layers.{}.{}.{}.weight", l, model::proj_parent(p), model::proj_name(p))] = {l, p};
    }

  // Checkpoint order: the layout's order first, then anything else the checkpoint holds (sorted).
  std::vector<std::string> order;
  std::set<std::string> seen;
  const std::vector<formats::ExpectedTensor> expected = formats::expected_tensors(cfg_);
  for (const auto& e : expected) {
    if (!ckpt_.find(e.name))
      fail("{}: tensor {} is missing (the config expects shape {})", ckpt_.path(), e.name, shape_str(e.shape));
    order.push_back(e.name);
    seen.insert(e.name);
  }
  for (const std::string& n : ckpt_.names())
    if (!seen.count(n) && !aux.count(n)) {
      log::warn("merge: {}: tensor {} is not part of the {} layout; copied as is", ckpt_.path(), n, cfg_.model_type);
      order.push_back(n);
    }

  // Output dtype: asked for, else the dtype the linear weights had before any quantization.
  if (opts_.dtype) {
    out_dtype_ = *opts_.dtype;
  } else {
    const std::string first = fmt::format("model.layers.0.{}.{}.weight", model::proj_parent(model::Proj::q),
                                          model::proj_name(model::Proj::q));
    const std::string first_prefix = first.substr(0, first.size() - 7);
    if (nf4_prefixes.count(first_prefix)) {
      out_dtype_ = nf4_weight(first_prefix).dtype;
    } else if (const formats::TensorEntry* e = ckpt_.find(first); e && is_float_dtype(e->dtype_name)) {
      out_dtype_ = float_dtype_from_safetensors(e->dtype_name);
    } else {
      out_dtype_ = cfg_.torch_dtype == "float32"   ? DType::f32
                   : cfg_.torch_dtype == "float16" ? DType::f16
                                                   : DType::bf16;
    }
  }
  if (out_dtype_ != DType::bf16 && out_dtype_ != DType::f16 && out_dtype_ != DType::f32)
    fail("merge: output dtype {} is not bf16, f16 or f32", dtype_name(out_dtype_));
  const std::string out_st = formats::dtype_to_safetensors(out_dtype_);

  std::map<std::string, std::vector<int64_t>> expected_shape;
  for (const auto& e : expected) expected_shape[e.name] = e.shape;

  std::vector<Planned> plan;
  for (const std::string& name : order) {
    Planned p;
    p.name = name;
    p.src = &ckpt_.get(name);
    const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const std::string prefix = weight ? name.substr(0, name.size() - 7) : "";
    if (weight && nf4_prefixes.count(prefix)) {
      const kernels::Nf4Weight q = nf4_weight(prefix);
      p.nf4_prefix = prefix;
      p.shape.assign(q.shape.dims.begin(), q.shape.dims.begin() + q.shape.ndim);
      p.dtype = out_st;
    } else {
      p.shape = p.src->shape;
      p.dtype = is_float_dtype(p.src->dtype_name) ? out_st : p.src->dtype_name;
    }
    if (auto it = expected_shape.find(name); it != expected_shape.end() && it->second != p.shape)
      fail("{}: tensor {} has shape {}, the config expects {}", p.src->file, name, shape_str(p.shape),
           shape_str(it->second));
    if (auto it = targets.find(name); it != targets.end()) {
      p.layer = it->second.first;
      p.proj = it->second.second;
      p.dtype = out_st;
      if (p.nf4_prefix.empty() && !is_float_dtype(p.src->dtype_name))
        fail("{}: tensor {} has dtype {}; a LoRA target must be F32, BF16, F16 or a bitsandbytes NF4 weight",
             p.src->file, name, p.src->dtype_name);
    }
    uint64_t n = formats::safetensors_dtype_size(p.dtype);
    for (int64_t d : p.shape) n *= static_cast<uint64_t>(d);
    p.nbytes = n;
    plan.push_back(std::move(p));
  }
  return plan;
}

// The output bytes of one tensor: either a pointer straight into the source mapping (*direct, bit-exact
// copy, empty vector returned) or a freshly computed buffer.
std::vector<uint8_t> Merger::produce(const Planned& p, const uint8_t** direct) const {
  *direct = nullptr;
  const bool is_nf4 = !p.nf4_prefix.empty();
  if (!is_nf4 && p.layer < 0 && p.src->dtype_name == p.dtype) {
    *direct = p.src->data;
    return {};
  }
  int64_t numel = 1;
  for (int64_t d : p.shape) numel *= d;
  std::vector<float> w(static_cast<size_t>(numel));
  if (is_nf4) {
    const kernels::Nf4Weight q = nf4_weight(p.nf4_prefix);
    kernels::nf4_dequantize(q, Tensor(w.data(), DType::f32, {numel}));
  } else {
    to_f32(p.src->data, float_dtype_from_safetensors(p.src->dtype_name), w.size(), w.data());
  }
  if (p.layer >= 0) {
    // W[out, in] += scale * B[out, r] @ A[r, in], fp32 accumulation.
    const Tensor& A = lora_.A(p.layer, p.proj);
    const Tensor& B = lora_.B(p.layer, p.proj);
    const Tensor wt(w.data(), DType::f32, {p.shape[0], p.shape[1]});
    kernels::matmul(wt, B, A, false, false, scale_, 1.0f);
  }
  return from_f32(w.data(), w.size(), float_dtype_from_safetensors(p.dtype));
}

void Merger::write_shard(const std::string& path, const ShardFile& s) const {
  // Tensors in the order the Rust safetensors crate stores them: wider dtypes first, then by name.
  std::vector<const Planned*> sorted = s.tensors;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Planned* a, const Planned* b) {
    const size_t ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const Planned* p : sorted) {
    h += ',';
    h += nlohmann::json(p->name).dump();
    h += ":{\"dtype\":\"";
    h += p->dtype;
    h += "\",\"shape\":[";
    for (size_t i = 0; i < p->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(p->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + p->nbytes) + "]}";
    offset += p->nbytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');

  FileOut out(path);
  uint8_t len[8];
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const Planned* p : sorted) {
    const uint8_t* direct = nullptr;
    const std::vector<uint8_t> bytes = with_context("tensor " + p->name, [&] { return produce(*p, &direct); });
    const void* data = direct ? static_cast<const void*>(direct) : bytes.data();
    const size_t nb = direct ? p->nbytes : bytes.size();
    if (nb != p->nbytes) fail("merge: tensor {}: produced {} bytes, expected {}", p->name, nb, p->nbytes);
    out.write(data, nb);
  }
  out.close();
}

MergeResult Merger::run(const std::string& output_dir) {
  scale_ = lora_.config().scale();
  const std::vector<Planned> plan_list = plan();
  std::vector<ShardFile> shards = split_into_shards(plan_list, opts_.max_shard_size);

  MergeResult r;
  r.output_dir = output_dir;
  r.dtype = out_dtype_;
  r.dequantized_4bit = any_nf4_;
  if (any_nf4_) {
    const std::string note = fmt::format(
        "{} holds a bitsandbytes 4-bit (NF4) checkpoint, not the original 16-bit weights: the adapter was merged "
        "into the DEQUANTISED weights, so the merged model keeps the 4-bit rounding error of the base (merge from "
        "the 16-bit model folder to avoid it)",
        model_dir_);
    log::warn("merge: {}", note);
    r.notes.push_back(note);
  }
  for (const Planned& p : plan_list) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    r.total_parameters += n;
    r.total_size += p.nbytes;
    if (p.layer >= 0) ++r.merged_weights;
  }
  r.tensors = static_cast<int64_t>(plan_list.size());
  log::info("merge: {} LoRA deltas (scale {}) into {} tensors, {:.1f} MB of {} in {} shard(s)", r.merged_weights,
            scale_, r.tensors, static_cast<double>(r.total_size) / 1e6, dtype_name(out_dtype_), shards.size());

  const std::string tmp = fresh_temp_dir_for(output_dir);
  try {
    nlohmann::ordered_json index_map = nlohmann::ordered_json::object();
    for (const ShardFile& s : shards) {
      write_shard(tmp + "/" + s.file, s);
      r.shards.push_back(s.file);
      for (const Planned* p : s.tensors) index_map[p->name] = s.file;
    }
    if (shards.size() > 1) {
      // weight_map sorted by name, as transformers writes it.
      nlohmann::ordered_json sorted_map = nlohmann::ordered_json::object();
      std::map<std::string, std::string> m;
      for (auto it = index_map.begin(); it != index_map.end(); ++it) m[it.key()] = it.value().get<std::string>();
      for (const auto& [k, v] : m) sorted_map[k] = v;
      nlohmann::ordered_json index;
      index["metadata"] = {{"total_parameters", r.total_parameters}, {"total_size", r.total_size}};
      index["weight_map"] = sorted_map;
      write_file_atomic(tmp + "/model.safetensors.index.json", index.dump(2) + "\n");
    }

    // config.json: the model's own, with the output dtype (and no quantization_config once dequantised).
    const std::string cfg_path = (fs::path(model_dir_) / "config.json").string();
    nlohmann::ordered_json cj;
    try {
      cj = nlohmann::ordered_json::parse(read_file(cfg_path));
    } catch (const nlohmann::json::exception&) {
      fail("{}: not valid JSON: {}", cfg_path, json_syntax_error(read_file(cfg_path)));
    }
    const char* td = torch_dtype_name(out_dtype_);
    bool set = false;
    for (const char* key : {"torch_dtype", "dtype"})
      if (cj.contains(key)) {
        cj[key] = td;
        set = true;
      }
    if (!set) cj["torch_dtype"] = td;
    if (any_nf4_) cj.erase("quantization_config");
    write_file_atomic(tmp + "/config.json", cj.dump(2) + "\n");

    copy_files_if_present(model_dir_, tmp, {"generation_config.json", "chat_template.jinja", "added_tokens.json"});
    // Tokenizer files: the model's, else those saved beside the adapter.
    copy_tokenizer_files(fs::exists(fs::path(model_dir_) / "tokenizer.json") ? model_dir_ : adapter_dir_, tmp);
    if (!fs::exists(fs::path(tmp) / "tokenizer.json"))
      log::warn("merge: no tokenizer.json in {} or {}; the merged folder has no tokenizer", model_dir_, adapter_dir_);
    replace_directory(tmp, output_dir, kModelFolder);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  log::info("merge: wrote {} ({})", output_dir, fmt::join(r.shards, ", "));
  return r;
}

}  // namespace

MergeResult merge_lora(const std::string& model_dir, const std::string& adapter_dir, const std::string& output_dir,
                       const MergeOptions& options) {
  return with_context("merging adapter " + adapter_dir + " into " + model_dir, [&] {
    if (options.max_shard_size == 0) fail("max_shard_size must be positive");
    if (output_dir.empty()) fail("no output folder given");
    // "out/" -> "out": the temp folder goes beside the output, never inside it.
    fs::path out_path = fs::path(output_dir).lexically_normal();
    if (!out_path.has_filename()) out_path = out_path.parent_path();
    const std::string output = out_path.string();
    std::error_code ec;
    const fs::path out = fs::weakly_canonical(out_path, ec);
    for (const std::string& d : {model_dir, adapter_dir})
      if (fs::exists(d) && fs::weakly_canonical(d, ec) == out)
        fail("the output folder {} is the input folder {}; choose another output", output_dir, d);
    require_replaceable_directory(output, kModelFolder);  // before the work, not after
    Merger m(model_dir, adapter_dir, options);
    return m.run(output);
  });
}

uint64_t parse_size(const std::string& text) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c)))
      s += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) fail("size \"{}\": expected a number with an optional unit (e.g. 5GB, 500MB, 2GiB)", text);
  double v = 0;
  try {
    v = std::stod(s.substr(0, i));
  } catch (const std::exception&) {
    fail("size \"{}\": bad number", text);
  }
  const std::string unit = s.substr(i);
  static const std::map<std::string, double> kUnits = {
      {"", 1.0},     {"B", 1.0},     {"KB", 1e3},  {"MB", 1e6},  {"GB", 1e9},  {"TB", 1e12},
      {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) fail("size \"{}\": unknown unit \"{}\" (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", text, unit);
  const double b = v * it->second;
  if (!(b >= 1.0)) fail("size \"{}\": must be at least 1 byte", text);
  return static_cast<uint64_t>(b);
}

DType parse_merge_dtype(const std::string& text) {
  if (text == "bf16" || text == "bfloat16") return DType::bf16;
  if (text == "f16" || text == "fp16" || text == "float16") return DType::f16;
  if (text == "f32" || text == "fp32" || text == "float32") return DType::f32;
  fail("dtype \"{}\": expected bf16, f16 or f32", text);
}

}  // namespace cotune::exporting
