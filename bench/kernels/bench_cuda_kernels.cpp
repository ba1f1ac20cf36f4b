// Micro-benchmarks of the CUDA kernels at the DeepSeek-R1-Distill-Qwen-1.5B shapes (hidden 1536, 12 heads / 2 KV
// heads of 128, intermediate 8960, vocabulary 151936), packed batch of T tokens (default 4 x 2048).
// Times are medians of CUDA-event timings after a warm-up; prints one line per op with the achieved TFLOP/s or
// GB/s. Usage: bench_cuda_kernels [--nf4-kernel v1] [--ce-kernel v1] [--attention-split F,Q,W] [sequences] [seq_len]
// [attention], or bench_cuda_kernels [options] bw (only the memory-bound training kernels: the NF4 dequantization of
// one layer and one cross-entropy chunk; --nf4-kernel v1 / --ce-kernel v1 select the previous kernels). With
// `attention`, only the attention timings (the flash ones; --attention-split overrides their work split, see
// ops_cuda.cpp). The options are kernels::Tuning's, as `cotune train` takes them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/half.h"
#include "kernels/cuda/attention.h"
#include "kernels/tuning.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/nf4.h"
#include "kernels/cuda/optim.h"
#include "kernels/ops.h"
#include "tensor/arena.h"

using namespace cotune;
namespace kc = cotune::kernels::cuda;

namespace {

Tensor random_tensor(Arena& arena, DType dt, Shape s, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  const size_t n = static_cast<size_t>(s.numel());
  Tensor t = arena.alloc(dt, s);
  if (dt == DType::f32) {
    std::vector<float> h(n);
    for (auto& x : h) x = dist(rng);
    copy_bytes(t, Tensor(h.data(), DType::f32, s));
  } else {
    std::vector<uint16_t> h(n);
    for (auto& x : h) x = f32_to_bf16(dist(rng));
    copy_bytes(t, Tensor(h.data(), DType::bf16, s));
  }
  return t;
}

double time_ms(const std::function<void()>& fn, int reps = 20) {
  cudaEvent_t a, b;
  kc::check(cudaEventCreate(&a), "event");
  kc::check(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) fn();
  kc::synchronize();
  std::vector<double> ts;
  for (int i = 0; i < reps; ++i) {
    kc::check(cudaEventRecord(a, kc::stream()), "record");
    fn();
    kc::check(cudaEventRecord(b, kc::stream()), "record");
    kc::check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    kc::check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    ts.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void report(const char* name, double ms, double flop, double bytes) {
  std::printf("%-34s %9.3f ms", name, ms);
  if (flop > 0) std::printf("  %7.1f TFLOP/s", flop / ms / 1e9);
  if (bytes > 0) std::printf("  %7.1f GB/s", bytes / ms / 1e6);
  std::printf("\n");
}

// Flash attention (automatic choice, then each flash variant forced; `with_simple`: the simple kernels too) on S
// sequences of L tokens, 12 query heads, 2 KV heads, head dim 128.
void bench_attention(Arena& arena, int S, int L, bool with_simple) {
  const int64_t T = static_cast<int64_t>(S) * L, H = 12, KV = 2, D = 128;
  std::vector<int32_t> cu(static_cast<size_t>(S + 1));
  for (int s = 0; s <= S; ++s) cu[static_cast<size_t>(s)] = s * L;
  Tensor dcu = arena.alloc(DType::i32, Shape{S + 1});
  copy_bytes(dcu, Tensor(cu.data(), DType::i32, Shape{S + 1}));
  Tensor qh = random_tensor(arena, DType::bf16, Shape{T, H, D}, 1.0f, 9);
  Tensor kh = random_tensor(arena, DType::bf16, Shape{T, KV, D}, 1.0f, 10), vh = random_tensor(arena, DType::bf16, Shape{T, KV, D}, 1.0f, 11);
  Tensor o = arena.alloc(DType::bf16, Shape{T, H, D}), lse = arena.alloc(DType::f32, Shape{H, T});
  Tensor dout = random_tensor(arena, DType::bf16, Shape{T, H, D}, 1.0f, 12);
  Tensor dq = arena.alloc(DType::bf16, Shape{T, H, D}), dk = arena.alloc(DType::bf16, Shape{T, KV, D});
  Tensor dv = arena.alloc(DType::bf16, Shape{T, KV, D});
  const float scale = 1.0f / std::sqrt(128.0f);
  const double attn_flop = 4.0 * S * (static_cast<double>(L) * L / 2) * H * D;  // causal: half the pairs
  std::vector<kc::AttentionImpl> impls = {kc::AttentionImpl::automatic, kc::AttentionImpl::flash,
                                          kc::AttentionImpl::flash_m64};
  if (with_simple) impls.push_back(kc::AttentionImpl::simple);
  for (auto impl : impls) {
    const char* nm = impl == kc::AttentionImpl::automatic ? "auto"
                     : impl == kc::AttentionImpl::flash   ? "flash"
                     : (impl == kc::AttentionImpl::flash_m64 ? "flash_m64" : "simple");
    const char* env_reps = std::getenv("COTUNE_BENCH_REPS");  // e.g. 2 under ncu
    const int reps = impl == kc::AttentionImpl::simple ? 3 : (env_reps ? std::max(1, std::atoi(env_reps)) : 50);
    char name[64];
    std::snprintf(name, sizeof name, "attention fwd (%s)", nm);
    report(name, time_ms([&] { kc::attention_forward_impl(impl, o, lse, qh, kh, vh, dcu, L, scale); }, reps),
           attn_flop, 0);
    std::snprintf(name, sizeof name, "attention bwd (%s)", nm);
    report(name,
           time_ms([&] { kc::attention_backward_impl(impl, dq, dk, dv, dout, qh, kh, vh, o, lse, dcu, L, scale); }, reps),
           2.5 * attn_flop, 0);
  }
}

Tensor random_bytes(Arena& arena, DType dt, Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t = arena.alloc(dt, s);
  std::vector<uint8_t> h(t.nbytes());
  for (auto& x : h) x = static_cast<uint8_t>(rng());
  copy_bytes(t, Tensor(h.data(), dt, s));
  return t;
}

// The memory-bound kernels of the training step: the batch NF4 dequantization of one layer's seven projections
// (46.8M weights, double-quantized absmax) into bf16, and the cross-entropy rows of one LM-head chunk of 441
// tokens (f32 logits in, losses / correct and the bf16 gradient written over each row's start, as the fused
// LM head does; here into a separate buffer of the same row stride so that the logits stay intact).
void bench_memory_bound(Arena& arena, int64_t C, int64_t I, int64_t V) {
  const int64_t KV = 256;
  const std::vector<Shape> shapes = {Shape{C, C}, Shape{KV, C}, Shape{KV, C}, Shape{C, C},
                                     Shape{I, C}, Shape{I, C}, Shape{C, I}};
  std::vector<kernels::Nf4Weight> qs;
  std::vector<Tensor> outs;
  double bytes = 0;
  std::vector<float> qmap(16), nmap(256);
  for (int i = 0; i < 16; ++i) qmap[static_cast<size_t>(i)] = -1.0f + i / 7.5f;
  for (int i = 0; i < 256; ++i) nmap[static_cast<size_t>(i)] = -1.0f + i / 127.5f;
  uint32_t seed = 100;
  for (const Shape& s : shapes) {
    kernels::Nf4Weight q;
    const int64_t n = s.numel(), nb = (n + 63) / 64, nn = (nb + 255) / 256;
    q.shape = s;
    q.packed = random_bytes(arena, DType::u8, Shape{(n + 1) / 2}, seed++);
    q.absmax = random_bytes(arena, DType::u8, Shape{nb}, seed++);
    q.quant_map = arena.alloc(DType::f32, Shape{16});
    copy_bytes(q.quant_map, Tensor(qmap.data(), DType::f32, Shape{16}));
    q.nested = true;
    q.nested_absmax = random_tensor(arena, DType::f32, Shape{nn}, 0.05f, seed++);
    q.nested_quant_map = arena.alloc(DType::f32, Shape{256});
    copy_bytes(q.nested_quant_map, Tensor(nmap.data(), DType::f32, Shape{256}));
    q.offset = 0.01f;
    qs.push_back(q);
    outs.push_back(arena.alloc(DType::bf16, s));
    bytes += static_cast<double>((n + 1) / 2 + nb + 4 * nn + 2 * n);
  }
  report("nf4 dequant batch (1 layer, 46.8M)", time_ms([&] { kc::nf4_dequantize_batch(qs, outs); }, 50), 0, bytes);

  const int64_t R = 441;
  Tensor logits = random_tensor(arena, DType::f32, Shape{R, V}, 3.0f, 21);
  Tensor grad = arena.alloc(DType::bf16, Shape{R, 2 * V});
  Tensor losses = arena.alloc(DType::f32, Shape{R}), correct = arena.alloc(DType::i32, Shape{R});
  std::vector<int32_t> tg(static_cast<size_t>(R));
  for (int64_t t = 0; t < R; ++t)
    tg[static_cast<size_t>(t)] = t % 50 == 7 ? -100 : static_cast<int32_t>((t * 7919) % V);  // a few ignored
  Tensor dtg = arena.alloc(DType::i32, Shape{R});
  copy_bytes(dtg, Tensor(tg.data(), DType::i32, Shape{R}));
  report("CE rows [441 x 151936] f32->bf16", time_ms([&] {
           kc::launch_ce_rows(losses.ptr<float>(), correct.ptr<int32_t>(), grad.data, true, 2 * V, logits.data, false,
                              V, dtg.ptr<int32_t>(), R, V, 1.0f / 4096);
         }, 50),
         0, static_cast<double>(R * V) * 6.0);
}

}  // namespace

int main(int argc_in, char** argv_in) {
  try {
    // Tuning options first (kernels/tuning.h), then the positional arguments.
    std::vector<char*> args{argv_in[0]};
    kernels::Tuning tuning;
    for (int i = 1; i < argc_in; ++i) {
      const std::string a = argv_in[i];
      if ((a == "--nf4-kernel" || a == "--ce-kernel" || a == "--attention-split") && i + 1 < argc_in) {
        const std::string v = argv_in[++i];
        if (a == "--nf4-kernel") tuning.nf4_kernel = kernels::parse_kernel_generation(v, a);
        if (a == "--ce-kernel") tuning.ce_kernel = kernels::parse_kernel_generation(v, a);
        if (a == "--attention-split") kernels::parse_attention_split(v, a, tuning);
      } else {
        args.push_back(argv_in[i]);
      }
    }
    kernels::set_tuning(tuning);
    std::printf("kernel tuning: %s\n", tuning.describe().c_str());
    const int argc = static_cast<int>(args.size());
    char** argv = args.data();
    if (argc > 1 && std::string(argv[1]) == "bw") {
      const kc::DeviceInfo info = kc::device_info();
      std::printf("device: %s, %d SMs\n", info.name.c_str(), info.sm_count);
      Arena arena(Device::cuda, size_t{2} << 30);
      bench_memory_bound(arena, 1536, 8960, 151936);
      kc::synchronize();
      return 0;
    }
    const int S = argc > 1 ? std::atoi(argv[1]) : 4;
    const int L = argc > 2 ? std::atoi(argv[2]) : 2048;
    const int64_t T = static_cast<int64_t>(S) * L, C = 1536, H = 12, D = 128, I = 8960, V = 151936;
    const kc::DeviceInfo info = kc::device_info();
    std::printf("device: %s, %d SMs, %.1f GiB; T = %d x %d = %ld tokens\n", info.name.c_str(), info.sm_count,
                info.total_bytes / 1073741824.0, S, L, static_cast<long>(T));
    Arena arena(Device::cuda, size_t{12} << 30);
    if (argc > 3 && std::string(argv[3]) == "attention") {
      bench_attention(arena, S, L, false);
      kc::synchronize();
      return 0;
    }

    // ---- GEMMs (frozen bf16 weights) ----
    Tensor x = random_tensor(arena, DType::bf16, Shape{T, C}, 1.0f, 1);
    Tensor wq = random_tensor(arena, DType::bf16, Shape{C, C}, 0.02f, 2);
    Tensor bq = random_tensor(arena, DType::bf16, Shape{C}, 0.02f, 3);
    Tensor wg = random_tensor(arena, DType::bf16, Shape{I, C}, 0.02f, 4);
    Tensor q = arena.alloc(DType::bf16, Shape{T, C}), g = arena.alloc(DType::bf16, Shape{T, I});
    report("linear q_proj (bias) [T,1536x1536]", time_ms([&] { kernels::linear_forward(q, x, wq, bq); }),
           2.0 * T * C * C, 0);
    report("linear gate_proj [T,1536->8960]", time_ms([&] { kernels::linear_forward(g, x, wg, Tensor()); }),
           2.0 * T * C * I, 0);
    Tensor dx = arena.alloc(DType::bf16, Shape{T, C});
    report("linear bwd input [T,8960->1536]", time_ms([&] { kernels::linear_backward_input(dx, g, wg, true); }),
           2.0 * T * C * I, 0);
    // ---- LoRA r=16 on q_proj ----
    const int64_t R = 16;
    Tensor A = random_tensor(arena, DType::f32, Shape{R, C}, 0.02f, 5), B = random_tensor(arena, DType::f32, Shape{C, R}, 0.02f, 6);
    Tensor xa = arena.alloc(DType::f32, Shape{T, R}), gr = arena.alloc(DType::f32, Shape{T, R});
    Tensor dA = arena.zeros(DType::f32, Shape{R, C}), dB = arena.zeros(DType::f32, Shape{C, R});
    report("lora fwd r16 1536->1536", time_ms([&] { kernels::lora_forward(q, xa, x, A, B, 2.0f); }), 4.0 * T * C * R, 0);
    report("lora bwd r16 1536->1536", time_ms([&] { kernels::lora_backward(dx, dA, dB, gr, q, x, xa, A, B, 2.0f); }),
           8.0 * T * C * R, 0);
    // The training runner's path: bf16 copies of A/B, xa and g in bf16, no conversions (train_ops.h).
    {
      Tensor A16 = random_tensor(arena, DType::bf16, Shape{R, C}, 0.02f, 5);
      Tensor B16 = random_tensor(arena, DType::bf16, Shape{C, R}, 0.02f, 6);
      Tensor xa16 = arena.alloc(DType::bf16, Shape{T, R}), g16 = arena.alloc(DType::bf16, Shape{T, R});
      report("lora fwd bf16 r16 1536->1536", time_ms([&] {
               kernels::cuda::lora_xa(xa16.data, R, x, A16.data, R);
               kernels::cuda::lora_up(q, xa16.data, R, B16.data, R, 2.0f);
             }),
             4.0 * T * C * R, 0);
      report("lora bwd bf16 r16 1536->1536", time_ms([&] {
               kernels::cuda::lora_grad_b(dB.ptr<float>(), g16.data, R, q, xa16.data, R, B16.data, R, 2.0f);
               kernels::cuda::lora_grad_a(dA.ptr<float>(), dx, g16.data, R, R, x, A16.data);
             }),
             8.0 * T * C * R, 0);
    }
    // ---- elementwise ----
    Tensor w = random_tensor(arena, DType::bf16, Shape{C}, 1.0f, 7), rstd = arena.alloc(DType::f32, Shape{T});
    Tensor y = arena.alloc(DType::bf16, Shape{T, C});
    report("rmsnorm fwd", time_ms([&] { kernels::rmsnorm_forward(y, rstd, x, w, 1e-6f); }), 0, 2.0 * T * C * 2);
    report("rmsnorm bwd (accumulate)", time_ms([&] { kernels::rmsnorm_backward(dx, y, x, w, rstd, true); }), 0,
           4.0 * T * C * 2);
    Tensor up = random_tensor(arena, DType::bf16, Shape{T, I}, 1.0f, 8), act = arena.alloc(DType::bf16, Shape{T, I});
    report("swiglu fwd", time_ms([&] { kernels::swiglu_forward(act, g, up); }), 0, 3.0 * T * I * 2);
    Tensor dg = arena.alloc(DType::bf16, Shape{T, I}), du = arena.alloc(DType::bf16, Shape{T, I});
    report("swiglu bwd", time_ms([&] { kernels::swiglu_backward(dg, du, act, g, up); }), 0, 5.0 * T * I * 2);
    std::vector<int32_t> pos(static_cast<size_t>(T)), cu(static_cast<size_t>(S + 1));
    for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t % L);
    for (int s = 0; s <= S; ++s) cu[static_cast<size_t>(s)] = s * L;
    Tensor dpos = arena.alloc(DType::i32, Shape{T}), dcu = arena.alloc(DType::i32, Shape{S + 1});
    copy_bytes(dpos, Tensor(pos.data(), DType::i32, Shape{T}));
    copy_bytes(dcu, Tensor(cu.data(), DType::i32, Shape{S + 1}));
    Tensor qh = random_tensor(arena, DType::bf16, Shape{T, H, D}, 1.0f, 9);
    report("rope fwd q [T,12,128]", time_ms([&] { kernels::rope_forward(qh, dpos, 10000.0f); }), 0, 2.0 * T * H * D * 2);
    bench_attention(arena, S, L, true);
    // ---- LM head + cross-entropy ----
    Tensor wl = random_tensor(arena, DType::bf16, Shape{V, C}, 0.02f, 13);
    std::vector<int32_t> tg(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) tg[static_cast<size_t>(t)] = static_cast<int32_t>((t * 7919) % V);
    Tensor dtg = arena.alloc(DType::i32, Shape{T});
    copy_bytes(dtg, Tensor(tg.data(), DType::i32, Shape{T}));
    Tensor losses = arena.alloc(DType::f32, Shape{T}), correct = arena.alloc(DType::i32, Shape{T});
    for (int64_t chunk : {1024, 2048}) {
      Tensor ws = arena.alloc(DType::f32, Shape{chunk * V});
      char name[64];
      std::snprintf(name, sizeof name, "lm_head+CE fwd+bwd (chunk %ld)", static_cast<long>(chunk));
      report(name,
             time_ms([&] { kernels::lm_head_cross_entropy(losses, correct, dx, x, wl, dtg, 1.0f / T, ws, chunk); }, 5),
             4.0 * T * C * V, 0);
    }
    bench_memory_bound(arena, C, I, V);
    kc::synchronize();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_kernels: %s\n", e.what());
    return 1;
  }
}
