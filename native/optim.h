// One optimiser recipe for every trainable native class (Trainer, Finetuner, Segmenter): which
// parameters take weight decay, and AdamW over *named* parameter groups.
//
// The no-decay rule is by rank: tensors of rank < 2 (biases, LayerNorm and BatchNorm weights,
// logit_scale, class_embedding) take no weight decay, every other tensor does. This is the
// released recipe: the released training code (Chinese-CLIP's, which ViLReF's follows) leaves out
// `p.ndim < 2 or "bn" | "ln" | "bias" | "logit_scale" in name`, and on these architectures every
// tensor those names match is of rank < 2 already (checked over vit-b-16, rn50 and the tiny
// presets), so rank alone is the rule. One explicit option on top of it, `decayEmbeddings`: whether
// the 2-D embedding tables (names containing "embedding": positional embeddings, BERT's word,
// position and token-type embeddings) decay. The released pre-training decays them (the Trainer's
// default); fine-tuning and segmentation leave them out by default (timm's and MAE's convention
// for transferred ViTs). Each class documents its default in lib/addon-types.ts.
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include "multitensor.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vilref {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The rule above.
bool TakesWeightDecay(const std::string& name, const at::Tensor& param, bool decayEmbeddings);

// AdamW's settings shared by every group of one optimiser.
struct AdamWSettings {
  double beta1 = 0, beta2 = 0, eps = 0, weightDecay = 0;
  bool decayEmbeddings = false;
};

// Reads { betas: [b1, b2], eps, weightDecay, decayEmbeddings } from a complete options object
// (lib/train/optim.ts's fields; strict readers, errors name `prefix.key`).
AdamWSettings ReadAdamWSettings(const Napi::Object& o, const std::string& prefix);
// Writes them back in the same shape (the classes' `options` accessors).
void WriteAdamWSettings(Napi::Env env, Napi::Object& o, const AdamWSettings& s);

// AdamW whose parameter groups have names: a group `name` added with AddGroup holds the
// parameters that take weight decay, and `name.no_decay` the rest (weight decay 0). Learning
// rates are set by group name, never by index.
class NamedAdamW {
 public:
  explicit NamedAdamW(AdamWSettings settings);
  // Adds `params` as group `name` (and `name.no_decay`) at learning rate `lr`; call before Build.
  void AddGroup(const std::string& name, double lr, const NamedTensors& params);
  // Makes the optimiser from the groups added so far (once).
  void Build();

  // Sets the learning rate of group `name` (both halves); an unknown name is a logic error.
  void SetLr(const std::string& name, double lr);
  // Sets the learning rate of every group.
  void SetLr(double lr);
  void ZeroGrad() { optimizer_->zero_grad(); }
  // LibTorch's AdamW step as multi-tensor ops (native/multitensor.h): the same arithmetic, one
  // launch per op for ~100 tensors on CUDA
  void Step() { ForeachAdamWStep(*optimizer_); }
  // The LibTorch optimiser (its per-parameter state, for checkpoints).
  torch::optim::AdamW& Torch() { return *optimizer_; }
  // Names of the groups, in the optimiser's order (`x` and `x.no_decay` for each added group).
  const std::vector<std::string>& GroupNames() const { return names_; }

 private:
  AdamWSettings settings_;
  std::vector<torch::optim::OptimizerParamGroup> pending_;
  std::vector<std::string> names_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
};

}  // namespace vilref
