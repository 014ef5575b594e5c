// Segmenter: a dense decoder over ViT patch tokens for binary segmentation (vessels on fundus
// photos), exposed to JS. UNETR-like: patch tokens from several blocks of a ViT image tower
// (released parameter names under `visual.`) are concatenated on a g×g grid and upsampled
// progressively (×2 per stage, bilinear + 3×3 convs) to full resolution, each stage joined by a
// skip from a light convolutional stem (`stem.<k>`, full resolution at k = 0, halved per level).
// Loss: BCE with logits + soft Dice, optionally weighted (field-of-view mask). AdamW with one
// learning rate for the backbone and another for stem + decoder. Calls run on the segmenter's
// own queue; initialisation from a ViLReF model goes through loadStateDict with the model's
// `visual.*` tensors (the positional embedding is resized to the tile grid when it differs).
#pragma once

#include <napi.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "async.h"
#include "optim.h"
#include "vit.h"

namespace vilref {

// Architecture and options as lib/segment/segmenter.ts hands them over, complete (its schemas own
// the defaults: tile 64, patch 8, width 64, layers 4, heads 2, taps at the quarters of the depth...).
struct SegmenterConfig {
  int64_t tile = 0, patch = 0, width = 0, layers = 0, heads = 0;
  std::vector<int64_t> taps;    // blocks whose tokens the decoder reads (1-based, ascending)
  int64_t stemChannels = 0;     // channels at full resolution, doubled per level (capped at 4×)
  int64_t decoderChannels = 0;  // channels of the token bottleneck
};

struct SegmenterOptions {
  uint64_t seed = 0;
  double lr = 0, backboneLr = 0;  // stem + decoder + head; the ViT backbone
  AdamWSettings adamw;
  bool freezeBackbone = false;
  double diceWeight = 0, bceWeight = 0;
};

struct SegmenterNet : torch::nn::Module {
  explicit SegmenterNet(const SegmenterConfig& c);
  at::Tensor forward(const at::Tensor& images);  // [N, 3, T, T] → logits [N, 1, T, T]
  SegmenterConfig config;
  std::shared_ptr<VisualTransformer> visual;
  std::vector<torch::nn::Sequential> stem, decoder;  // stem[k] at 1/2^k; decoder[k] outputs at 1/2^k
  torch::nn::Sequential bottleneck{nullptr};
  torch::nn::Conv2d head{nullptr};
};

struct SegmenterState {
  std::shared_ptr<SegmenterNet> net;
  std::unique_ptr<NamedAdamW> optimizer;  // groups "backbone" (visual.*, unless frozen) and "decoder"
  int64_t steps = 0;
};

class Segmenter : public Napi::ObjectWrap<Segmenter> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Segmenter(const Napi::CallbackInfo& info);

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetOptions(const Napi::CallbackInfo& info);
  Napi::Value GetSteps(const Napi::CallbackInfo& info);
  Napi::Value GetPending(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  SegmenterConfig config_;
  SegmenterOptions options_;
  std::shared_ptr<SegmenterState> state_;  // read and written only by tasks on queue_
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes_;
  SerialQueue queue_;
  Disposal disposal_{"Segmenter"};
};

}  // namespace vilref
