// Head: a small multilayer perceptron over feature vectors (Linear, activation, ..., Linear) —
// the classifier or projection head that sits on a tower's features. Parameters are named
// `layers.<i>.weight` / `layers.<i>.bias` as torch.nn.Sequential of Linear layers names them.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "async.h"

namespace vilref {

class Head : public Napi::ObjectWrap<Head> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Head(const Napi::CallbackInfo& info);

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetPending(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::vector<int64_t> widths_;  // in, hidden..., out
  std::string activation_;
  // Read and written only by tasks on queue_, which run one at a time: a task sees exactly the
  // parameters that the tasks queued before it left.
  std::vector<at::Tensor> params_;
  SerialQueue queue_;
  Disposal disposal_{"Head"};
};

}  // namespace vilref
