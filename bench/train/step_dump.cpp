// step_dump: one forward/backward step of cotune on a model folder + PEFT adapter + batch, printing the
// loss and every LoRA gradient's norm as JSON, for tools/compare_hf_step.py (cotune vs transformers + peft).
//   step_dump --model DIR --adapter DIR --batch FILE.json [--device cuda|cpu] [--4bit]
// FILE.json: {"sequences": [[ids...], ...]} — every position predicts the next token of its sequence.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "formats/peft_adapter.h"
#include "model/lora.h"
#include "model/qwen2.h"

using namespace cotune;

int main(int argc, char** argv) {
  CLI::App app{"one cotune training step: loss and LoRA gradient norms as JSON"};
  std::string model_dir, adapter_dir, batch_file, device = "cuda";
  bool four_bit = false;
  app.add_option("--model", model_dir)->required();
  app.add_option("--adapter", adapter_dir)->required();
  app.add_option("--batch", batch_file)->required();
  app.add_option("--device", device);
  app.add_flag("--4bit", four_bit);
  CLI11_PARSE(app, argc, argv);
  try {
    const Device dev = device == "cpu" ? Device::cpu : Device::cuda;
    model::Qwen2Model m = model::Qwen2Model::load(model_dir, {dev, four_bit});
    model::LoraWeights lora(m.config(), model::LoraConfig::from_peft(formats::load_peft_adapter_config(adapter_dir)), dev);
    lora.load_peft_weights(adapter_dir);
    auto j = nlohmann::json::parse(read_file(batch_file));
    auto seqs = j.at("sequences").get<std::vector<std::vector<int32_t>>>();
    model::PackedBatch b = model::PackedBatch::from_sequences(seqs);
    model::RunnerOptions ro;
    ro.max_tokens = b.tokens();
    model::Qwen2Runner runner(m, &lora, ro);
    lora.zero_grads();
    const int64_t n = b.counted();
    model::StepStats st = runner.forward_backward(b, true, 1.0f / static_cast<float>(n));
    nlohmann::json out;
    out["loss"] = st.loss_sum / static_cast<double>(n);
    out["counted"] = n;
    nlohmann::json norms = nlohmann::json::object();
    for (const auto& p : lora.params()) {
      std::vector<float> g(static_cast<size_t>(p.grad.numel()));
      copy_bytes(Tensor(g.data(), DType::f32, p.grad.shape), p.grad);
      double s = 0;
      for (float x : g) s += static_cast<double>(x) * x;
      norms[p.peft_name] = std::sqrt(s);
    }
    out["grad_norms"] = norms;
    fmt::print("{}\n", out.dump());
  } catch (const std::exception& e) {
    fmt::print(stderr, "step_dump: {}\n", e.what());
    return 1;
  }
  return 0;
}
