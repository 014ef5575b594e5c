// Building blocks shared by the towers: LayerNorm computed in float32, multi-head attention on
// [N, heads, L, head_dim] tensors (fused scaled_dot_product_attention on LibTorch >= 2).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "async.h"

namespace vilref {

// LayerNorm in float32 whatever the activations' dtype, as the released LayerNorm subclass does.
// CUDA's kernel reads bfloat16/float16 inputs and computes in float32 itself (statistics and the
// affine step), rounding once at the end: the same result without two full passes of casts.
inline at::Tensor LayerNormF32(const at::Tensor& x, const torch::nn::LayerNorm& ln) {
  const auto& o = ln->options;
  if (x.is_cuda() && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf)) {
    at::Tensor w = ln->weight.defined() ? ln->weight.to(x.scalar_type()) : at::Tensor();
    at::Tensor b = ln->bias.defined() ? ln->bias.to(x.scalar_type()) : at::Tensor();
    return at::layer_norm(x, o.normalized_shape(), w, b, o.eps());
  }
  at::Tensor w = ln->weight.defined() ? ln->weight.to(at::kFloat) : at::Tensor();
  at::Tensor b = ln->bias.defined() ? ln->bias.to(at::kFloat) : at::Tensor();
  return at::layer_norm(x.to(at::kFloat), o.normalized_shape(), w, b, o.eps()).to(x.scalar_type());
}

// softmax(q k^T / sqrt(d) + mask) v over the last two dimensions; q, k, v are [N, H, L, d];
// mask (optional) is additive and broadcasts to [N, H, Lq, Lk].
at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask);

// Splits [N, L, H*d] into [N, H, L, d].
inline at::Tensor SplitHeads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

// Merges [N, H, L, d] into [N, L, H*d].
inline at::Tensor MergeHeads(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// Parameters of `module` that hold a tensor (LibTorch registers an undefined "bias" for
// bias-free layers), then buffers, with their dotted names.
std::vector<std::pair<std::string, at::Tensor>> NamedState(const torch::nn::Module& module);

// Copies of NamedState(module), ready for JS (PrepareForJs), each name prefixed with `prefix`.
std::vector<std::pair<std::string, at::Tensor>> StateCopies(const torch::nn::Module& module,
                                                            const std::string& prefix = "");

// A task that snapshots a module's parameters and buffers as { prefix + name: TensorData }.
std::unique_ptr<Task> MakeStateDictTask(std::shared_ptr<torch::nn::Module> module, std::string prefix = "");

// Gradient checkpointing of the towers' residual blocks (ViT resblocks, BERT layers). While a
// RecomputeScope is alive on this thread (the Trainer's online forward with
// gradientCheckpointing), MaybeRecompute(fn, x) runs fn without keeping its activations (a
// torch::autograd::Function whose forward runs under NoGradGuard and saves only x) and, in
// backward, re-runs fn with grad enabled on a detached copy of x, back-propagates through it (the
// block's parameter gradients accumulate in .grad) and returns x's gradient. The recompute runs
// under the autocast state of the forward. Outside a scope, without grad mode or when x needs no
// gradient, fn runs as it is. fn must be deterministic (the towers have no dropout).
class RecomputeScope {
 public:
  explicit RecomputeScope(bool on);
  ~RecomputeScope();
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;

 private:
  bool previous_;
};
at::Tensor MaybeRecompute(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x);
// How many blocks have been recomputed in backward in this process so far (all threads).
int64_t RecomputeCount();

// CPU/CUDA autocast for the training step's forward (mixed precision, float32 master weights).
// dtype kFloat: nothing. Restores the previous state (and clears the cast cache) on exit.
class AutocastScope {
 public:
  AutocastScope(at::DeviceType device, at::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false, cuda_ = false, wasEnabled_ = false;
  at::ScalarType wasDtype_ = at::kFloat;
};

}  // namespace vilref
