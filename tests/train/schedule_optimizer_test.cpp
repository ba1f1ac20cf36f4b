// The trainer's optimizer wrapper: state checkpointing round-trips and 8-bit state applies only to
// tensors of >= 4096 elements.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "base/rng.h"
#include "common/test_paths.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace cotune {
namespace {

TEST(Optimizer, StateRoundTripsThroughAFile) {
  model::Qwen2Model m = model::Qwen2Model::load(testing::golden_dir() + "/model/tied");
  for (auto kind : {train::OptimKind::adamw, train::OptimKind::adamw8bit}) {
    model::LoraConfig lc;
    lc.r = 32;
    model::LoraWeights a(m.config(), lc, Device::cpu), b(m.config(), lc, Device::cpu);
    a.init_peft_default(1);
    b.init_peft_default(1);
    train::OptimConfig oc;
    oc.kind = kind;
    oc.weight_decay = 0.01;
    train::Optimizer oa(oc, a.params()), ob(oc, b.params());
    Rng rng(3);
    auto fill_grads = [&](model::LoraWeights& w, uint64_t seed) {
      Rng r(seed);
      for (auto& p : w.params())
        for (int64_t i = 0; i < p.grad.numel(); ++i) p.grad.ptr<float>()[i] = r.normal() * 0.01f;
    };
    fill_grads(a, 7);
    oa.step(1e-3);
    const std::string f = (std::filesystem::temp_directory_path() / ("opt-" + std::to_string(::getpid()))).string();
    oa.save(f);
    // b gets a's weights and state, then both take the same second step.
    auto pa = a.params(), pb = b.params();
    for (size_t i = 0; i < pa.size(); ++i) std::memcpy(pb[i].value.data, pa[i].value.data, pa[i].value.nbytes());
    ob.load(f);
    EXPECT_EQ(ob.steps(), 1);
    fill_grads(a, 8);
    fill_grads(b, 8);
    oa.step(1e-3);
    ob.step(1e-3);
    for (size_t i = 0; i < pa.size(); ++i)
      ASSERT_EQ(0, std::memcmp(pa[i].value.data, pb[i].value.data, pa[i].value.nbytes())) << pa[i].peft_name;
    std::filesystem::remove(f);
    // Loading another optimizer's state is refused.
    train::OptimConfig other = oc;
    other.kind = kind == train::OptimKind::adamw ? train::OptimKind::adamw8bit : train::OptimKind::adamw;
    model::LoraWeights c(m.config(), lc, Device::cpu);
    train::Optimizer oc2(other, c.params());
    oa.save(f);
    EXPECT_THROW(oc2.load(f), Error);
    std::filesystem::remove(f);
  }
}

TEST(Optimizer, ParsesNames) {
  EXPECT_EQ(train::parse_optim("adamw_8bit"), train::OptimKind::adamw8bit);
  EXPECT_EQ(train::parse_optim("adamw_torch"), train::OptimKind::adamw);
  EXPECT_THROW(train::parse_optim("sgd"), Error);
}

}  // namespace
}  // namespace cotune
