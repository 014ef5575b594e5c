// What the dual encoder needs of an image tower, whichever architecture it is.
#pragma once

#include <torch/torch.h>

namespace vilref {

class VisualTower : public torch::nn::Module {
 public:
  // images [N, 3, R, R] → features [N, embed] (or [N, FeatureWidth()] before the projection).
  virtual at::Tensor forward(const at::Tensor& images, bool preProjection) = 0;
  // Bicubic resize of the positional embedding for input resolution `resolution`.
  virtual void ResizePositions(int64_t resolution) = 0;
  // The released code's initialisation (uses LibTorch's global generator: seed it first).
  virtual void InitWeights() = 0;
  virtual int64_t FeatureWidth() const = 0;
};

// Resizes a [1 + g*g, D] positional embedding (class token first) to [1 + n*n, D], bicubic
// with align_corners as the released resize_pos_embed.
at::Tensor ResizeGridEmbedding(const at::Tensor& pos, int64_t newGrid);

}  // namespace vilref
