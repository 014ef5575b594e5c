// The ViLReF dual encoder (a Chinese-CLIP model): an image tower (ViT or ModifiedResNet) under
// `visual`, the Chinese BERT under `bert`, `text_projection` and `logit_scale`. One name across the
// layers: the LibTorch module ViLReFNet, wrapped by the ObjectWrap ViLReF (the addon export
// `ViLReF`), wrapped by the public TypeScript class ViLReF (lib/model/vilref.ts); the methods JS
// sees: encodeImages, encodeTexts, similarity, stateDict/loadStateDict by the released names, and
// resizePositionalEmbedding (bicubic).
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

#include "async.h"
#include "bert.h"
#include "tower.h"

namespace vilref {

// The released code's config (argument names of cn_clip's CLIP), read from JS.
struct ModelConfig {
  int64_t embedDim = 0, imageResolution = 0, visionWidth = 0, visionPatchSize = 0, visionHeadWidth = 64;
  std::vector<int64_t> visionLayers;  // one entry: ViT depth; four: ModifiedResNet stages
  BertConfig text;
  bool IsResNet() const { return visionLayers.size() == 4; }
};

struct ViLReFNet : torch::nn::Module {
  explicit ViLReFNet(const ModelConfig& c);
  std::shared_ptr<VisualTower> visual;
  BertModel bert{nullptr};
  at::Tensor text_projection, logit_scale;
  at::Tensor EncodeTexts(const at::Tensor& ids, bool preProjection);
  void InitWeights();
};

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  at::ScalarType dtype;
};

class ViLReF : public Napi::ObjectWrap<ViLReF> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ViLReF(const Napi::CallbackInfo& info);
  // The ViLReF behind a JS value, or a TypeError naming `name`.
  static ViLReF* From(const Napi::Value& value, const std::string& name);

  // For objects that work on the model (the trainer): they queue their tasks on the model's
  // queue, so that nothing touches the network concurrently.
  const std::shared_ptr<ViLReFNet>& net() const { return net_; }
  const ModelConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  SerialQueue& queue() { return queue_; }
  // Reads token ids [rows, L] (rows -1: any) for the text tower, checked before LibTorch indexes
  // with them: L within the model's positions, every id inside the vocabulary; errors name `name`.
  JsTensor ReadTextIds(const Napi::Value& value, const std::string& name, int64_t rows = -1) const;
  // Throws "ViLReF was disposed" once dispose() was called (objects working on the model check it
  // before touching net()).
  void CheckAlive() const { disposal_.Check(); }

 private:
  Napi::Value EncodeImages(const Napi::CallbackInfo& info);
  Napi::Value EncodeTexts(const Napi::CallbackInfo& info);
  Napi::Value Similarity(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value ResizePositionalEmbedding(const Napi::CallbackInfo& info);
  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetDtype(const Napi::CallbackInfo& info);
  Napi::Value GetPending(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  void RefreshParams();

  ModelConfig config_;
  std::shared_ptr<ViLReFNet> net_;
  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  std::vector<ParamInfo> params_;  // names, shapes, dtypes as of the last task that changed them
  SerialQueue queue_;
  Disposal disposal_{"ViLReF"};
};

}  // namespace vilref
