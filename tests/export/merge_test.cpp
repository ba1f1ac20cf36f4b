// Merged 16-bit export (src/export/merge.h) against independent references: the merged tensors against
// W + scale * B @ A computed here in double from the files, the merged model's logits against the base +
// adapter in cotune's runner, sharding read back by Checkpoint::open, a tied model, a bitsandbytes-style
// 4-bit checkpoint, and the errors.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "base/mmap.h"
#include "common/test_paths.h"
#include "export/merge.h"
#include "formats/model_config.h"
#include "formats/qwen2_layout.h"
#include "formats/safetensors.h"
#include "kernels/quant.h"
#include "model/lora.h"
#include "model/qwen2.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cotune-merge-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string r1like() { return testing::golden_dir() + "/model/r1like"; }
std::string tied() { return testing::golden_dir() + "/model/tied"; }
std::string adapter_init() { return r1like() + "/lora/adapter_init"; }

std::vector<float> read_floats(const formats::TensorEntry& e) {
  size_t n = 1;
  for (int64_t d : e.shape) n *= static_cast<size_t>(d);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (e.dtype_name == "F32") {
      std::memcpy(&v[i], e.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, e.data + 2 * i, 2);
      v[i] = e.dtype_name == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return v;
}

bool same_bytes(const formats::TensorEntry& a, const formats::TensorEntry& b) {
  return a.dtype_name == b.dtype_name && a.shape == b.shape && a.nbytes == b.nbytes &&
         std::memcmp(a.data, b.data, a.nbytes) == 0;
}

std::string lin_name(int64_t l, model::Proj p) {
  return "model.layers." + std::to_string(l) + "." + model::proj_parent(p) + "." + model::proj_name(p) + ".weight";
}
std::string peft_name(int64_t l, model::Proj p, const char* ab) {
  return "base_model.model.model.layers." + std::to_string(l) + "." + model::proj_parent(p) + "." +
         model::proj_name(p) + ".lora_" + ab + ".weight";
}

// Reference W + scale * B @ A in double, for one projection, from the files; `mag` (if given) receives
// |W| + scale * sum_k |B_ik A_kj|, the scale of the fp32 rounding error of any summation order.
std::vector<double> reference_merge(const std::vector<float>& W, const formats::SafetensorsFile& ad, int64_t l,
                                    model::Proj p, double scale, std::vector<double>* mag = nullptr) {
  const formats::TensorEntry* A = ad.find(peft_name(l, p, "A"));
  const formats::TensorEntry* B = ad.find(peft_name(l, p, "B"));
  EXPECT_TRUE(A && B);
  const std::vector<float> a = read_floats(*A), b = read_floats(*B);
  const int64_t r = A->shape[0], in = A->shape[1], out = B->shape[0];
  std::vector<double> ref(W.size());
  if (mag) mag->assign(W.size(), 0.0);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) {
      double acc = 0, abs_acc = 0;
      for (int64_t k = 0; k < r; ++k) {
        const double t = static_cast<double>(b[i * r + k]) * a[k * in + j];
        acc += t;
        abs_acc += std::fabs(t);
      }
      ref[i * in + j] = W[i * in + j] + scale * acc;
      if (mag) (*mag)[i * in + j] = std::fabs(W[i * in + j]) + scale * abs_acc;
    }
  return ref;
}

// Merged bf16 values vs the double reference: at most one bf16 ulp apart (fp32 accumulation may round a value
// that sits near a bf16 midpoint the other way) plus the fp32 summation error bound (which matters only where
// W and the delta cancel, e.g. NF4 zeros), and almost all exactly the reference rounded once.
void expect_bf16_matches(const formats::TensorEntry& merged, const std::vector<double>& ref,
                         const std::vector<double>& mag, const std::string& what, size_t* exact, size_t* total) {
  ASSERT_EQ(merged.dtype_name, "BF16") << what;
  const std::vector<float> m = read_floats(merged);
  ASSERT_EQ(m.size(), ref.size()) << what;
  for (size_t i = 0; i < m.size(); ++i) {
    const float want = round_bf16(static_cast<float>(ref[i]));
    if (m[i] == want) {
      ++*exact;
    } else {
      const float ulp = std::ldexp(1.0f, std::ilogb(want) - 7);
      const double fp32_err = 8.0 * std::ldexp(1.0, -24) * mag[i];
      ASSERT_LE(std::fabs(double(m[i]) - want), 1.0001 * ulp + fp32_err)
          << what << " element " << i << ": " << m[i] << " vs " << want;
    }
    ++*total;
  }
}

std::vector<float> logits_of(const std::string& model_dir, const std::string& adapter_dir,
                             const model::PackedBatch& batch) {
  const model::Qwen2Model m = model::Qwen2Model::load(model_dir);
  std::unique_ptr<model::LoraWeights> lora;
  if (!adapter_dir.empty()) {
    const auto lc = model::LoraConfig::from_peft(formats::load_peft_adapter_config(adapter_dir));
    lora = std::make_unique<model::LoraWeights>(m.config(), lc, Device::cpu);
    lora->load_peft_weights(adapter_dir);
  }
  model::RunnerOptions ro;
  ro.training = false;
  ro.max_tokens = batch.tokens();
  model::Qwen2Runner runner(m, lora.get(), ro);
  return runner.forward_logits(batch);
}

model::PackedBatch golden_batch(const std::string& model_dir) {
  const auto f = formats::SafetensorsFile::open(model_dir + "/forward.safetensors");
  auto ints = [&](const char* n) {
    const formats::TensorEntry* e = f.find(n);
    std::vector<int32_t> v(e->nbytes / 4);
    std::memcpy(v.data(), e->data, e->nbytes);
    return v;
  };
  model::PackedBatch b;
  b.input_ids = ints("input_ids");
  b.position_ids = ints("position_ids");
  b.targets = ints("targets");
  b.cu_seqlens = ints("cu_seqlens");
  return b;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double mx = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) mx = std::max(mx, std::fabs(double(a[i]) - b[i]));
  return mx;
}
double max_abs(const std::vector<float>& a) {
  double mx = 0;
  for (float v : a) mx = std::max(mx, std::fabs(double(v)));
  return mx;
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

TEST(Merge, TensorsEqualWPlusScaledBA) {
  TempDir t;
  const std::string out = t / "merged";
  const MergeResult r = merge_lora(r1like(), adapter_init(), out);
  EXPECT_EQ(r.dtype, DType::bf16);
  EXPECT_EQ(r.merged_weights, 14);
  EXPECT_FALSE(r.dequantized_4bit);
  ASSERT_EQ(r.shards, std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));

  const auto base = formats::Checkpoint::open(r1like());
  const auto merged = formats::Checkpoint::open(out);
  const auto ad = formats::SafetensorsFile::open(adapter_init() + "/adapter_model.safetensors");
  const auto pc = formats::load_peft_adapter_config(adapter_init());
  const double scale = pc.lora_alpha / pc.r;  // 8 / 4
  EXPECT_EQ(merged.names(), base.names());

  size_t exact = 0, total = 0;
  std::set<std::string> lin;
  for (int64_t l = 0; l < 2; ++l)
    for (int p = 0; p < model::kNumProj; ++p) {
      const std::string n = lin_name(l, static_cast<model::Proj>(p));
      lin.insert(n);
      std::vector<double> mag;
      const auto ref = reference_merge(read_floats(base.get(n)), ad, l, static_cast<model::Proj>(p), scale, &mag);
      expect_bf16_matches(merged.get(n), ref, mag, n, &exact, &total);
      // The delta is not lost in rounding: the merged weight differs from the base.
      EXPECT_FALSE(same_bytes(merged.get(n), base.get(n))) << n;
    }
  // Every other tensor bit-exact.
  for (const std::string& n : base.names())
    if (!lin.count(n)) {
      EXPECT_TRUE(same_bytes(merged.get(n), base.get(n))) << n;
    }
  std::printf("merged bf16 weights: %zu of %zu exactly the double reference rounded once (the rest 1 ulp)\n", exact,
              total);
  EXPECT_GE(static_cast<double>(exact), 0.999 * static_cast<double>(total));

  // config.json: the model's own keys, dtype kept; loads in cotune.
  const auto cj = read_json(out + "/config.json");
  const auto src = read_json(r1like() + "/config.json");
  EXPECT_EQ(cj["dtype"], "bfloat16");
  EXPECT_EQ(cj.size(), src.size());
  EXPECT_EQ(cj["layer_types"], src["layer_types"]);
  EXPECT_FALSE(fs::exists(fs::path(out).string() + ".tmp-" + std::to_string(getpid())));
}

TEST(Merge, LogitsMatchBasePlusAdapter) {
  TempDir t;
  const model::PackedBatch batch = golden_batch(r1like());
  const std::vector<float> want = logits_of(r1like(), adapter_init(), batch);
  const std::vector<float> base = logits_of(r1like(), "", batch);

  merge_lora(r1like(), adapter_init(), t / "bf16");
  MergeOptions f32;
  f32.dtype = DType::f32;
  merge_lora(r1like(), adapter_init(), t / "f32", f32);
  const double d_bf16 = max_abs_diff(logits_of(t / "bf16", "", batch), want);
  const double d_f32 = max_abs_diff(logits_of(t / "f32", "", batch), want);
  const double d_adapter = max_abs_diff(base, want);
  std::printf("max |logit| %.3f; adapter moves logits by up to %.4f; merged bf16 vs base+adapter: %.5f; merged f32: "
              "%.2e\n",
              max_abs(want), d_adapter, d_bf16, d_f32);
  // f32 merge: only fp32 reassociation (x@(W+sBA) vs x@W + s(xA)B).
  EXPECT_LT(d_f32, 2e-4);
  // bf16 merge: the merged weights carry one bf16 rounding (relative 2^-9) of W + sBA.
  EXPECT_LT(d_bf16, 0.05);
  EXPECT_GT(d_adapter, 20 * d_bf16);  // the adapter's effect is far above the rounding
  // The f32 output is twice the bytes and says so.
  EXPECT_EQ(read_json(t / "f32/config.json")["dtype"], "float32");
}

TEST(Merge, ShardsReadBackThroughIndex) {
  TempDir t;
  MergeOptions o;
  o.max_shard_size = 300'000;  // r1like: ~3 MB of bf16, tensors up to 196 KB (embeddings 160 KB)
  const MergeResult r = merge_lora(r1like(), adapter_init(), t / "sharded", o);
  ASSERT_GT(r.shards.size(), 5u);
  EXPECT_EQ(r.shards.front(), "model-00001-of-" + fmt::format("{:05d}", r.shards.size()) + ".safetensors");
  for (const auto& s : r.shards) {
    EXPECT_TRUE(fs::exists(t / ("sharded/" + s))) << s;
    EXPECT_LE(fs::file_size(t / ("sharded/" + s)), 300'000u + 16'384u) << s;
  }
  EXPECT_FALSE(fs::exists(t / "sharded/model.safetensors"));
  const auto index = read_json(t / "sharded/model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), r.total_size);
  EXPECT_EQ(index["metadata"]["total_parameters"].get<int64_t>(), r.total_parameters);
  EXPECT_EQ(index["weight_map"].size(), 27u);

  merge_lora(r1like(), adapter_init(), t / "single");
  const auto a = formats::Checkpoint::open(t / "sharded");
  const auto b = formats::Checkpoint::open(t / "single");
  ASSERT_EQ(a.names(), b.names());
  uint64_t total = 0;
  for (const auto& n : a.names()) {
    EXPECT_TRUE(same_bytes(a.get(n), b.get(n))) << n;
    EXPECT_EQ(fs::path(a.get(n).file).filename().string(), index["weight_map"][n].get<std::string>()) << n;
    total += a.get(n).nbytes;
  }
  EXPECT_EQ(total, r.total_size);
  // And the model loads from the shards.
  const model::Qwen2Model m = model::Qwen2Model::load(t / "sharded");
  EXPECT_EQ(m.config().num_hidden_layers, 2);
}

// An adapter with non-zero B for a model, saved in PEFT's format.
void write_random_adapter(const std::string& model_dir, const std::string& dir, std::vector<std::string> targets,
                          uint64_t seed) {
  const formats::ModelConfig mc = formats::load_model_config(model_dir);
  model::LoraConfig lc;
  lc.r = 8;
  lc.alpha = 16;
  lc.target_modules = std::move(targets);
  model::LoraWeights w(mc, lc, Device::cpu);
  w.init_peft_default(seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (const auto& p : w.params())
    if (p.peft_name.find("lora_B") != std::string::npos) {
      float* b = static_cast<float*>(p.value.data);
      for (int64_t i = 0; i < p.value.numel(); ++i) b[i] = nd(rng);
    }
  fs::create_directories(dir);
  w.save_peft(dir, std::nullopt);
}

TEST(Merge, TiedEmbeddings) {
  TempDir t;
  write_random_adapter(tied(), t / "adapter", {"q_proj", "v_proj", "down_proj"}, 7);
  const MergeResult r = merge_lora(tied(), t / "adapter", t / "merged");
  EXPECT_EQ(r.merged_weights, 3);
  const auto merged = formats::Checkpoint::open(t / "merged");
  const auto base = formats::Checkpoint::open(tied());
  EXPECT_EQ(merged.names(), base.names());
  EXPECT_EQ(merged.find("lm_head.weight"), nullptr);
  EXPECT_TRUE(read_json(t / "merged/config.json")["tie_word_embeddings"].get<bool>());
  EXPECT_TRUE(same_bytes(merged.get("model.layers.0.self_attn.k_proj.weight"),
                         base.get("model.layers.0.self_attn.k_proj.weight")));
  const model::PackedBatch batch = golden_batch(tied());
  const double d = max_abs_diff(logits_of(t / "merged", "", batch), logits_of(tied(), t / "adapter", batch));
  std::printf("tied: merged bf16 vs base+adapter max |dlogit| %.5f\n", d);
  EXPECT_LT(d, 0.05);
}

// A bitsandbytes-style 4-bit checkpoint of r1like: the seven projections as NF4 (double-quantized), the rest bf16,
// and config.json with a quantization_config, as transformers saves a load_in_4bit model.
void write_bnb_checkpoint(const std::string& dir) {
  fs::create_directories(dir);
  const auto base = formats::Checkpoint::open(r1like());
  const formats::ModelConfig mc = formats::load_model_config(r1like());
  formats::SafetensorsWriter w;
  std::vector<kernels::Nf4Buffers> bufs;
  std::vector<std::string> json;
  bufs.reserve(64);
  json.reserve(64);
  for (const auto& e : formats::expected_tensors(mc)) {
    const formats::TensorEntry& src = base.get(e.name);
    if (e.role != formats::TensorRole::linear) {
      w.add(e.name, src.dtype_name, src.shape, src.data, src.nbytes);
      continue;
    }
    bufs.push_back(kernels::nf4_quantize(src.tensor(), true));
    json.emplace_back();
    const std::string prefix = e.name.substr(0, e.name.size() - 7);
    for (const auto& [n, tensor] : kernels::nf4_checkpoint_tensors(prefix, bufs.back().view(), json.back()))
      w.add(n, tensor);
  }
  w.set_metadata("format", "pt");
  w.write(dir + "/model.safetensors");
  auto cj = nlohmann::ordered_json::parse(read_file(r1like() + "/config.json"));
  cj["quantization_config"] = {{"_load_in_4bit", true},        {"bnb_4bit_quant_type", "nf4"},
                               {"bnb_4bit_use_double_quant", true}, {"bnb_4bit_compute_dtype", "bfloat16"},
                               {"load_in_4bit", true},         {"quant_method", "bitsandbytes"}};
  std::ofstream(dir + "/config.json") << cj.dump(2);
}

TEST(Merge, FourBitCheckpointMergesIntoDequantisedWeights) {
  TempDir t;
  write_bnb_checkpoint(t / "bnb");
  const MergeResult r = merge_lora(t / "bnb", adapter_init(), t / "merged");
  EXPECT_TRUE(r.dequantized_4bit);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("DEQUANTISED"), std::string::npos) << r.notes[0];
  EXPECT_EQ(r.dtype, DType::bf16);
  EXPECT_EQ(r.merged_weights, 14);

  const auto q = formats::Checkpoint::open(t / "bnb");
  const auto merged = formats::Checkpoint::open(t / "merged");
  const auto base = formats::Checkpoint::open(r1like());
  EXPECT_EQ(merged.names(), base.names());  // no absmax / quant_map / quant_state left
  const auto ad = formats::SafetensorsFile::open(adapter_init() + "/adapter_model.safetensors");
  size_t exact = 0, total = 0;
  for (int64_t l = 0; l < 2; ++l)
    for (int p = 0; p < model::kNumProj; ++p) {
      const std::string n = lin_name(l, static_cast<model::Proj>(p));
      const kernels::Nf4Weight nw = kernels::nf4_weight_from_tensors(
          n.substr(0, n.size() - 7), [&](const std::string& name) -> std::optional<Tensor> {
            const auto* e = q.find(name);
            return e ? std::optional<Tensor>(e->tensor()) : std::nullopt;
          });
      std::vector<float> deq(static_cast<size_t>(nw.numel()));
      kernels::nf4_dequantize(nw, Tensor(deq.data(), DType::f32, {nw.numel()}));
      std::vector<double> mag;
      const auto ref = reference_merge(deq, ad, l, static_cast<model::Proj>(p), 2.0, &mag);
      expect_bf16_matches(merged.get(n), ref, mag, n, &exact, &total);
    }
  std::printf("4-bit source: %zu of %zu merged weights exactly the double reference rounded once\n", exact, total);
  EXPECT_GE(static_cast<double>(exact), 0.999 * static_cast<double>(total));
  EXPECT_TRUE(same_bytes(merged.get("model.embed_tokens.weight"), base.get("model.embed_tokens.weight")));
  const auto cj = read_json(t / "merged/config.json");
  EXPECT_FALSE(cj.contains("quantization_config"));
  EXPECT_EQ(cj["dtype"], "bfloat16");
  // Loads as a plain model.
  EXPECT_NO_THROW(model::Qwen2Model::load(t / "merged"));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Merge, AdapterForAnotherShapeNamesTheTensor) {
  TempDir t;
  // Same tensor names as adapter_init, but q_proj of layer 0 made for a hidden size of 128.
  fs::create_directories(t / "bad");
  fs::copy_file(adapter_init() + "/adapter_config.json", t / "bad/adapter_config.json");
  const auto ad = formats::SafetensorsFile::open(adapter_init() + "/adapter_model.safetensors");
  formats::SafetensorsWriter w;
  const std::string bad = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  std::vector<float> small(4 * 128, 0.01f);
  for (const auto& e : ad.tensors()) {
    if (e.name == bad) {
      w.add(e.name, "F32", {4, 128}, small.data(), small.size() * 4);
    } else {
      w.add(e.name, e.dtype_name, e.shape, e.data, e.nbytes);
    }
  }
  w.write(t / "bad/adapter_model.safetensors");
  const std::string msg = error_of([&] { merge_lora(r1like(), t / "bad", t / "out"); });
  EXPECT_NE(msg.find(bad), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(t / "out"));

  // An adapter for the 1-layer tied model lacks layer 1 of r1like.
  write_random_adapter(tied(), t / "tied_adapter", {"q_proj"}, 3);
  const std::string msg2 = error_of([&] { merge_lora(r1like(), t / "tied_adapter", t / "out"); });
  EXPECT_NE(msg2.find("model.layers.1.self_attn.q_proj.lora_A.weight"), std::string::npos) << msg2;
  EXPECT_FALSE(fs::exists(t / "out"));
}

TEST(Merge, MissingAdapterFilesAreNamed) {
  TempDir t;
  fs::create_directories(t / "empty");
  std::string msg = error_of([&] { merge_lora(r1like(), t / "empty", t / "out"); });
  EXPECT_NE(msg.find("adapter_config.json"), std::string::npos) << msg;
  fs::copy_file(adapter_init() + "/adapter_config.json", t / "empty/adapter_config.json");
  msg = error_of([&] { merge_lora(r1like(), t / "empty", t / "out"); });
  EXPECT_NE(msg.find("adapter_model.safetensors"), std::string::npos) << msg;
  msg = error_of([&] { merge_lora(r1like(), t / "nowhere", t / "out"); });
  EXPECT_NE(msg.find("nowhere"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(t / "out"));
  // A failed merge leaves an existing output folder untouched and no temp folder behind.
  fs::create_directories(t / "keep");
  std::ofstream(t / "keep/marker") << "x";
  error_of([&] { merge_lora(r1like(), t / "empty", t / "keep"); });
  EXPECT_TRUE(fs::exists(t / "keep/marker"));
  for (const auto& e : fs::directory_iterator(t.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  // A trailing slash on the output still builds beside it and lands in place.
  const MergeResult ok = merge_lora(r1like(), adapter_init(), t / "slash/");
  EXPECT_TRUE(fs::exists(t / "slash/model.safetensors"));
  EXPECT_EQ(ok.output_dir, t / "slash");
  // Output onto the input is refused.
  msg = error_of([&] { merge_lora(r1like(), adapter_init(), adapter_init()); });
  EXPECT_NE(msg.find("input folder"), std::string::npos) << msg;
}

TEST(Merge, ModelCheckpointMissingATensor) {
  TempDir t;
  fs::create_directories(t / "m");
  fs::copy_file(r1like() + "/config.json", t / "m/config.json");
  const auto base = formats::SafetensorsFile::open(r1like() + "/model.safetensors");
  formats::SafetensorsWriter w;
  for (const auto& e : base.tensors())
    if (e.name != "model.layers.1.mlp.up_proj.weight") {
      w.add(e.name, e.dtype_name, e.shape, e.data, e.nbytes);
    }
  w.write(t / "m/model.safetensors");
  const std::string msg = error_of([&] { merge_lora(t / "m", adapter_init(), t / "out"); });
  EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
}

TEST(Merge, ParseSizeAndDtype) {
  EXPECT_EQ(parse_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_size("500MB"), 500'000'000u);
  EXPECT_EQ(parse_size("2GiB"), 2u * 1073741824u);
  EXPECT_EQ(parse_size("1.5kb"), 1500u);
  EXPECT_EQ(parse_size("123"), 123u);
  EXPECT_THROW(parse_size("5XB"), Error);
  EXPECT_THROW(parse_size("GB"), Error);
  EXPECT_EQ(parse_merge_dtype("bf16"), DType::bf16);
  EXPECT_EQ(parse_merge_dtype("float16"), DType::f16);
  EXPECT_THROW(parse_merge_dtype("int8"), Error);
}

}  // namespace
}  // namespace cotune::exporting
