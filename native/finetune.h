// Finetuner: the released fine-tuning protocol on a ViLReF model's image tower — a linear head
// (`head.weight`, `head.bias`) on the pre-projection image features, BCE with logits over
// multi-label targets, AdamW with one learning rate for the backbone (1e-6) and one for the
// head (1e-3); with `frozen` the backbone runs without gradient, in eval mode, and is not in the
// optimizer, so its weights stay bit-identical. Tasks run on the model's queue, in order with
// the model's own calls.
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include <memory>

#include "clip.h"
#include "lora.h"
#include "optim.h"

namespace vilref {

// The options as lib/finetune/finetuner.ts hands them over, complete (its schema owns the defaults).
struct FinetunerOptions {
  int64_t classes = 0;
  double lr = 0, backboneLr = 0, loraLr = 0;
  AdamWSettings adamw;
  bool frozen = false;
  uint64_t seed = 0;
};

struct FinetunerState {
  at::Tensor weight, bias;                // the head: [classes, width], [classes]
  std::unique_ptr<NamedAdamW> optimizer;  // groups "head" and "backbone" (unless frozen) or "lora"
  std::shared_ptr<LoraSet> lora;          // with the `lora` option: the backbone is frozen, its adapters train
  int64_t steps = 0;
};

class Finetuner : public Napi::ObjectWrap<Finetuner> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Finetuner(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetOptions(const Napi::CallbackInfo& info);
  Napi::Value GetSteps(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void CheckAlive() const;  // this finetuner and its model are not disposed

  Napi::ObjectReference modelRef_, loraRef_;
  ViLReF* model_ = nullptr;
  FinetunerOptions options_;
  int64_t width_ = 0;
  std::shared_ptr<FinetunerState> state_;
  Disposal disposal_{"Finetuner"};
};

}  // namespace vilref
