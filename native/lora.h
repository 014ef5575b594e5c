// LoRA (Hu et al., 2021) on a ViLReF model's weights. For each target weight W (a Linear's or a
// Conv2d's weight, or a ViT block's fused attn.in_proj_weight) two factors, A [rank, fan_in]
// (uniform in ±1/√fan_in, peft's kaiming_uniform(a=√5)) and B [out, rank] (zeros), and the update
// ΔW = (alpha / rank) · B·A reshaped as W (a k×k convolution's A spans in·k·k).
//
// While a LoraScope is alive the modules compute with W.detach() + ΔW: the member each module's
// forward reads is pointed at that sum and pointed back on exit. The gradient reaches A and B and
// never W, and W's storage is never written, so the base weights stay bit-identical while
// training; Merge() adds ΔW into W (for export), after which the scope applies nothing.
//
// The JS class `Lora` (lib/adapt/lora.ts wraps it) owns a LoraSet on one model; the Finetuner
// takes it as its `lora` option and trains the factors and its head (native/finetune.cc).
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "async.h"
#include "clip.h"
#include "optim.h"

namespace vilref {

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  std::vector<std::string> targets;  // released weight names
  uint64_t seed = 0;
};

struct LoraTarget {
  std::string name;  // the weight's released name, e.g. visual.attnpool.q_proj.weight
  at::Tensor* slot;  // the module member its forward reads
  at::Tensor base;   // the parameter itself (what the slot holds outside a scope)
  at::Tensor a, b;   // [rank, fan_in], [out, rank]; float32, requires_grad
};

class LoraSet {
 public:
  // Resolves the target names on `net` (a name that is not an adaptable weight is a RangeError
  // naming it and the candidates) and makes the factors on `device`.
  LoraSet(std::shared_ptr<ViLReFNet> net, const LoraOptions& options, at::Device device);

  double Scale() const { return options_.alpha / static_cast<double>(options_.rank); }
  const LoraOptions& options() const { return options_; }
  const std::shared_ptr<ViLReFNet>& net() const { return net_; }
  std::vector<LoraTarget>& targets() { return targets_; }
  bool merged() const { return merged_.load(); }
  // ΔW of one target, reshaped as its weight, in the weight's dtype (differentiable in A and B).
  at::Tensor Delta(const LoraTarget& t) const;
  // "<name>.lora_A" and "<name>.lora_B" for every target (the tensors themselves).
  NamedTensors Factors() const;
  int64_t ParameterCount() const;
  // W += ΔW for every target, once.
  void Merge();
  // Frees the factors (dispose()); a finetuner holding the set then refuses to run.
  void Release();
  bool released() const { return released_.load(); }

 private:
  std::shared_ptr<ViLReFNet> net_;
  LoraOptions options_;
  std::vector<LoraTarget> targets_;
  std::atomic<bool> merged_{false};  // set on a worker, read on the main thread
  std::atomic<bool> released_{false};
};

// Points every target's slot at W.detach() + ΔW while alive (nothing once merged). With `train`,
// every parameter of the model is set to requires_grad = false meanwhile (restored on exit), so
// that the backward of a forward run inside the scope reaches the factors only.
class LoraScope {
 public:
  LoraScope(LoraSet& set, bool train);
  ~LoraScope();
  LoraScope(const LoraScope&) = delete;
  LoraScope& operator=(const LoraScope&) = delete;

 private:
  LoraSet& set_;
  std::vector<std::pair<at::Tensor, bool>> grads_;
};

// Image features [N, width or embed] with the adapters applied, the image tower in eval mode
// (BatchNorm statistics fixed). With `train` under grad mode the result is differentiable in the
// factors; otherwise run it under NoGradGuard.
at::Tensor LoraImageFeatures(LoraSet& set, const at::Tensor& images, bool preProjection, bool train);

class Lora : public Napi::ObjectWrap<Lora> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Lora(const Napi::CallbackInfo& info);
  // The Lora behind a JS value, or a TypeError naming `name`.
  static Lora* From(const Napi::Value& value, const std::string& name);

  const std::shared_ptr<LoraSet>& set() const { return set_; }
  ViLReF* model() const { return model_; }

 private:
  Napi::Value EncodeImages(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value Merge(const Napi::CallbackInfo& info);
  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetMerged(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void CheckAlive() const;  // these adapters and their model are not disposed

  Napi::ObjectReference modelRef_;
  ViLReF* model_ = nullptr;
  std::shared_ptr<LoraSet> set_;
  Disposal disposal_{"Lora"};
};

}  // namespace vilref
