// The ModifiedResNet image tower of the released RN50 models, with its parameter names: a 3-conv
// stem (conv1-3, bn1-3), anti-aliased Bottlenecks (layerK.N.{conv1-3, bn1-3, downsample.0/1}),
// and AttentionPool2d (attnpool.{positional_embedding, q_proj, k_proj, v_proj, c_proj}).
#pragma once

#include "tower.h"

namespace vilref {

struct BottleneckImpl : torch::nn::Module {
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride);
  at::Tensor forward(const at::Tensor& x);
  int64_t stride;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, down_conv{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, down_bn{nullptr};
};
TORCH_MODULE(Bottleneck);

class ModifiedResNet : public VisualTower {
 public:
  ModifiedResNet(const std::vector<int64_t>& layers, int64_t embedDim, int64_t heads, int64_t resolution,
                 int64_t width);
  at::Tensor forward(const at::Tensor& images, bool preProjection) override;
  void ResizePositions(int64_t resolution) override;
  void InitWeights() override;
  int64_t FeatureWidth() const override { return embedDim_; }

 private:
  int64_t heads_, embedDim_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  at::Tensor positional_embedding;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, c_proj{nullptr};
};

}  // namespace vilref
