// Batch-1 decode speed of cotune's Generator for the DeepSeek-R1-Distill-Qwen-1.5B shape with random weights
// (bf16, and the NF4 base), measured as /work/shared/anchors/hf_generate_baseline.py measures transformers:
// a 64-token prompt, greedy, 256 new tokens, tokens/s = 256 / wall time (prefill included), after 2 warm-ups.
//   bench_decode [--device cuda|cpu] [--layers N] [--new N] [--modes bf16,nf4] [--device-loop 1|0]
//                [--fused 1|0] [--pdl 1|0] [--reps N] [--nf4-wide 1|0]
//  --nf4-wide 1: NF4 rows of <= 1536 weights take the one-stage (wide) GEMV too (kernels::Tuning::decode_nf4_wide,
//  `cotune generate --decode-nf4-wide`).
// (--device-loop 0: every step's logits go to the host for selection, the path before the device loop;
//  --fused 0: the unfused decode step (16 launches a layer); --pdl 0: fused kernels without programmatic dependent
//  launch.) Timed --reps times (default 3); tok_s is the median, all runs are listed. Prints one JSON object a line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "infer/generator.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/decode_launch.h"
#endif
#include "kernels/tuning.h"
#include "model/qwen2.h"

using namespace cotune;

int main(int argc, char** argv) {
  std::string device = "cuda", modes = "bf16,nf4";
  int64_t layers = 28, new_tokens = 256;
  bool device_loop = true, fused = true, pdl = true;
  int reps = 3;
  kernels::Tuning tuning;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--layers")) layers = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--new")) new_tokens = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--modes")) modes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--device-loop")) device_loop = std::strcmp(argv[i + 1], "0") != 0;
    else if (!std::strcmp(argv[i], "--fused")) fused = std::strcmp(argv[i + 1], "0") != 0;
    else if (!std::strcmp(argv[i], "--pdl")) pdl = std::strcmp(argv[i + 1], "0") != 0;
    else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::stoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--nf4-wide")) tuning.decode_nf4_wide = std::strcmp(argv[i + 1], "0") != 0;
    else {
      std::fprintf(stderr, "bench_decode: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  kernels::set_tuning(tuning);
#ifdef COTUNE_WITH_CUDA
  kernels::cuda::set_decode_pdl(pdl);
#endif
  formats::ModelConfig c;
  c.model_type = "qwen2";
  c.architecture = "Qwen2ForCausalLM";
  c.vocab_size = 151936;
  c.hidden_size = 1536;
  c.intermediate_size = 8960;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 12;
  c.num_key_value_heads = 2;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.attention_bias = true;
  try {
    for (const std::string mode : {"bf16", "nf4"}) {
      if (modes.find(mode) == std::string::npos) continue;
      model::LoadOptions lo;
      lo.device = device == "cuda" ? Device::cuda : Device::cpu;
      lo.load_in_4bit = mode == "nf4";
      model::Qwen2Model m = model::Qwen2Model::random(c, lo, 1);
      infer::GeneratorOptions go;
      go.max_batch = 1;
      go.device_loop = device_loop;
      go.fused_decode = fused;
      infer::Generator gen(m, nullptr, go);
      std::vector<int32_t> prompt(64);
      for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 17) % 151000);
      infer::GenerationOptions o;
      o.sampling.do_sample = false;
      o.max_new_tokens = 32;
      for (int w = 0; w < 2; ++w) gen.generate({prompt}, o, nullptr);
      o.max_new_tokens = new_tokens;
      std::vector<double> rates;
      size_t generated = 0;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        auto out = gen.generate({prompt}, o, nullptr);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        generated = out[0].ids.size();
        rates.push_back(static_cast<double>(generated) / s);
      }
      std::vector<double> sorted = rates;
      std::sort(sorted.begin(), sorted.end());
      std::string all;
      for (double r : rates) {
        char b[32];
        std::snprintf(b, sizeof b, "%s%.1f", all.empty() ? "" : ", ", r);
        all += b;
      }
      std::printf("{\"impl\": \"cotune\", \"mode\": \"%s\", \"device\": \"%s\", \"layers\": %lld, \"new_tokens\": %zu, "
                  "\"device_loop\": %s, \"fused\": %s, \"pdl\": %s, \"tok_s\": %.1f, \"runs_tok_s\": [%s], "
                  "\"weight_GB\": %.3f}\n",
                  mode.c_str(), device.c_str(), static_cast<long long>(layers), generated, device_loop ? "true" : "false",
                  fused ? "true" : "false", pdl ? "true" : "false", sorted[sorted.size() / 2], all.c_str(),
                  static_cast<double>(m.weight_bytes()) / 1e9);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
