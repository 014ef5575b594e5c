// The ViT image tower of the released models (CLIP's VisualTransformer), with its parameter
// names: conv1 (no bias), class_embedding, positional_embedding, ln_pre,
// transformer.resblocks.N.{attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_1,
// mlp.c_fc, mlp.c_proj, ln_2}, ln_post, proj.
#pragma once

#include "tower.h"

namespace vilref {

struct ResidualAttentionBlockImpl : torch::nn::Module {
  ResidualAttentionBlockImpl(int64_t width, int64_t heads);
  at::Tensor forward(const at::Tensor& x);  // [N, L, D]
  at::Tensor Mlp(const at::Tensor& h);      // c_proj(QuickGELU(c_fc(h)))
  int64_t heads;
  at::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr}, c_fc{nullptr}, c_proj{nullptr};
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

class VisualTransformer : public VisualTower {
 public:
  VisualTransformer(int64_t resolution, int64_t patch, int64_t width, int64_t layers, int64_t heads, int64_t embedDim);
  at::Tensor forward(const at::Tensor& images, bool preProjection) override;
  void ResizePositions(int64_t resolution) override;
  void InitWeights() override;
  int64_t FeatureWidth() const override { return width_; }

  // Patch tokens [N, g*g, D] (class token dropped, before ln_post) after each of the blocks
  // counted in `after` (1-based, ascending, each in [1, layers]): what a dense decoder reads.
  std::vector<at::Tensor> PatchTokens(const at::Tensor& images, const std::vector<int64_t>& after);
  int64_t Layers() const { return layers_; }
  int64_t Patch() const { return patch_; }

 private:
  at::Tensor Embed(const at::Tensor& images);  // [N, 1 + g*g, D] after ln_pre
  int64_t patch_, width_, layers_;
  torch::nn::Conv2d conv1{nullptr};
  at::Tensor class_embedding, positional_embedding, proj;
  torch::nn::LayerNorm ln_pre{nullptr}, ln_post{nullptr};
  torch::nn::ModuleList resblocks{nullptr};
};

}  // namespace vilref
