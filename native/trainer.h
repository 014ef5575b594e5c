// One ViLReF pre-training step in LibTorch (../shared/WSCL.md): EMA update of the momentum
// encoders, momentum features, WSCL (or CLIP) over batch + queue, backward, gradient clipping,
// AdamW with the released recipe (optim.h: no weight decay below rank 2; embeddings decay), logit-scale
// clamp to [0, ln 100], enqueue. Its tasks run on the model's queue, in order with the model's own.
//
// With a process group (dist.h) the step is data-parallel and equal to one process taking the
// global batch: parameters are broadcast from rank 0 before the first step; every rank gathers
// the online features, labels and momentum features of all ranks (gradient only through its own
// slice), computes the loss over the global batch, and the gradients are summed over ranks (the
// sum of the ranks' partial gradients is the global batch's gradient; logit_scale, which every
// rank differentiates in full, is divided by the world size); the gathered momentum features and
// labels are enqueued, so every rank holds the same queue. The global batch is in the loader's
// order (lib/data/loader.ts shards by striding): sample j of rank r is row j·W + r.
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include <memory>

#include "clip.h"
#include "dist.h"
#include "optim.h"
#include "queue.h"
#include "wscl.h"

namespace vilref {

// The options as lib/train/trainer.ts hands them over, complete (its schema owns the defaults).
struct TrainerOptions {
  double lr = 0;
  AdamWSettings adamw;
  double momentum = 0, gradClip = 0;  // gradClip 0: off
  int64_t queueSize = 0, labelDim = 0;
  bool wscl = true;
  WsclOptions loss;
  bool freezeVisual = false, freezeText = false;  // freeze: the tower's weights get no gradient
  bool gradientCheckpointing = false;             // recompute the residual blocks in backward
  at::ScalarType precision = at::kFloat;          // kBFloat16 / kHalf: autocast of the forward
};

// Dynamic loss scaling for float16 (CUDA): start at 2^16, ×2 after `interval` finite steps in a
// row, ÷2 (and the step skipped) on a non-finite gradient.
struct LossScaler {
  double scale = 65536.0;
  int64_t goodSteps = 0;
  int64_t interval = 2000;
  // Updates the scale for a step whose gradients were finite or not; returns whether to apply it.
  bool Update(bool finite);
};

// What the trainer keeps between steps; read and written only by tasks on the model's queue.
struct TrainerState {
  std::shared_ptr<ViLReFNet> momentum;
  std::unique_ptr<NamedAdamW> optimizer;  // one group, "model": the trainable parameters
  std::unique_ptr<FeatureQueue> queue;
  int64_t steps = 0, skipped = 0;
  std::shared_ptr<Communicator> comm;                      // null: one process
  bool synced = false;                                     // parameters broadcast from rank 0
  LossScaler scaler;                                       // used with precision float16 only
  std::vector<std::pair<std::string, at::Tensor>> frozen;  // (name, online parameter) of frozen towers
  std::string lossDevice;                                  // where the last step's loss was computed
};

class Trainer : public Napi::ObjectWrap<Trainer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Trainer(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value QueueState(const Napi::CallbackInfo& info);
  Napi::Value MomentumStateDict(const Napi::CallbackInfo& info);
  Napi::Value ExportState(const Napi::CallbackInfo& info);
  Napi::Value ImportState(const Napi::CallbackInfo& info);
  Napi::Value GetSkipped(const Napi::CallbackInfo& info);
  // The effective options, in the shape lib/train/trainer.ts gave them (the process group aside).
  Napi::Value GetOptions(const Napi::CallbackInfo& info);
  // devices() → Promise<{ parameters, momentum, queue, optimizer, loss }>: where each lives.
  Napi::Value Devices(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void CheckAlive() const;  // this trainer and its model are not disposed
  // Trainer.lossScalerUpdate(scale, goodSteps, finite[], interval?) → { scale, goodSteps, applied[] }:
  // LossScaler::Update over a sequence of steps (the rule that float16 steps follow; for tests).
  static Napi::Value LossScalerUpdate(const Napi::CallbackInfo& info);

  Napi::ObjectReference modelRef_;
  Napi::ObjectReference groupRef_;
  ViLReF* model_ = nullptr;
  TrainerOptions options_;
  std::shared_ptr<TrainerState> state_;
  Disposal disposal_{"Trainer"};
};

}  // namespace vilref
