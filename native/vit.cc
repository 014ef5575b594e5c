#include "vit.h"

#include <cmath>

#include "bridge.h"
#include "nn.h"

namespace vilref {

ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(int64_t width, int64_t heads_) : heads(heads_) {
  auto attnModule = std::make_shared<torch::nn::Module>();
  in_proj_weight = attnModule->register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = attnModule->register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = attnModule->register_module("out_proj", torch::nn::Linear(width, width));
  register_module("attn", attnModule);
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  auto mlp = std::make_shared<torch::nn::Module>();
  c_fc = mlp->register_module("c_fc", torch::nn::Linear(width, width * 4));
  c_proj = mlp->register_module("c_proj", torch::nn::Linear(width * 4, width));
  register_module("mlp", mlp);
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
}

at::Tensor ResidualAttentionBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = LayerNormF32(x, ln_1);
  auto qkv = at::linear(h, in_proj_weight, in_proj_bias).chunk(3, -1);
  at::Tensor a =
      MergeHeads(Attend(SplitHeads(qkv[0], heads), SplitHeads(qkv[1], heads), SplitHeads(qkv[2], heads), c10::nullopt));
  at::Tensor y = x + out_proj(a);
  return y + Mlp(LayerNormF32(y, ln_2));
}

// QuickGELU(z) = z·σ(1.702 z) = silu(1.702 z) / 1.702: the factor 1.702 goes into c_fc's matrix
// product (alpha, and the bias scaled) and 1/1.702 into c_proj's, so one silu pass over the widest
// activation [N·L, 4D] replaces three elementwise passes, and backward keeps one tensor fewer.
at::Tensor ResidualAttentionBlockImpl::Mlp(const at::Tensor& h) {
  constexpr double kQuick = 1.702;
  std::vector<int64_t> shape = h.sizes().vec();
  at::Tensor z = at::addmm(c_fc->bias * kQuick, h.reshape({-1, shape.back()}), c_fc->weight.t(), 1.0, kQuick);
  z = torch::GradMode::is_enabled() ? at::silu(z) : at::silu_(z);
  at::Tensor out = at::addmm(c_proj->bias, z, c_proj->weight.t(), 1.0, 1.0 / kQuick);
  shape.back() = out.size(-1);
  return out.view(shape);
}

VisualTransformer::VisualTransformer(int64_t resolution, int64_t patch, int64_t width, int64_t layers, int64_t heads,
                                     int64_t embedDim)
    : patch_(patch), width_(width), layers_(layers) {
  if (resolution % patch != 0)
    ThrowRangeError("config.image_resolution: " + std::to_string(resolution) +
                    " is not a multiple of vision_patch_size " + std::to_string(patch));
  if (width % heads != 0)
    ThrowRangeError("config.vision_head_width: vision_width " + std::to_string(width) + " does not split into " +
                    std::to_string(heads) + " heads");
  const int64_t grid = resolution / patch;
  conv1 =
      register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, width, patch).stride(patch).bias(false)));
  class_embedding = register_parameter("class_embedding", torch::zeros({width}));
  positional_embedding = register_parameter("positional_embedding", torch::zeros({grid * grid + 1, width}));
  ln_pre = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  auto transformer = std::make_shared<torch::nn::Module>();
  resblocks = transformer->register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) resblocks->push_back(ResidualAttentionBlock(width, heads));
  register_module("transformer", transformer);
  ln_post = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  proj = register_parameter("proj", torch::zeros({width, embedDim}));
}

at::Tensor VisualTransformer::Embed(const at::Tensor& images) {
  at::Tensor x = conv1(images);      // [N, D, g, g]
  x = x.flatten(2).transpose(1, 2);  // [N, g*g, D]
  at::Tensor cls = class_embedding.to(x.scalar_type()).expand({x.size(0), 1, width_});
  x = at::cat({cls, x}, 1) + positional_embedding.to(x.scalar_type());
  return LayerNormF32(x, ln_pre);
}

at::Tensor VisualTransformer::forward(const at::Tensor& images, bool preProjection) {
  at::Tensor x = Embed(images);
  for (const auto& block : *resblocks) {
    std::shared_ptr<torch::nn::Module> m = block;
    x = MaybeRecompute([m](const at::Tensor& t) { return m->as<ResidualAttentionBlock>()->forward(t); }, x);
  }
  x = LayerNormF32(x.select(1, 0), ln_post);
  return preProjection ? x : at::matmul(x, proj);
}

std::vector<at::Tensor> VisualTransformer::PatchTokens(const at::Tensor& images, const std::vector<int64_t>& after) {
  std::vector<at::Tensor> out;
  if (after.empty()) return out;
  at::Tensor x = Embed(images);
  size_t next = 0;
  for (int64_t i = 0; i < layers_ && next < after.size(); ++i) {
    x = (*resblocks)[i]->as<ResidualAttentionBlock>()->forward(x);
    while (next < after.size() && after[next] == i + 1) {
      out.push_back(x.slice(1, 1));
      ++next;
    }
  }
  if (next != after.size())
    ThrowRangeError("taps: block " + std::to_string(after[next]) + " is not in [1, " + std::to_string(layers_) +
                    "] or not ascending");
  return out;
}

void VisualTransformer::ResizePositions(int64_t resolution) {
  if (resolution % patch_ != 0)
    ThrowRangeError("resolution: " + std::to_string(resolution) + " is not a multiple of the patch size " +
                    std::to_string(patch_));
  torch::NoGradGuard noGrad;
  at::Tensor resized = ResizeGridEmbedding(positional_embedding.detach(), resolution / patch_);
  positional_embedding.set_data(resized);
}

void VisualTransformer::InitWeights() {
  torch::NoGradGuard noGrad;
  const double scale = std::pow(static_cast<double>(width_), -0.5);
  class_embedding.normal_(0, scale);
  positional_embedding.normal_(0, scale);
  proj.normal_(0, scale);
  const double projStd = scale * std::pow(2.0 * layers_, -0.5), attnStd = scale, fcStd = std::pow(2.0 * width_, -0.5);
  for (const auto& m : *resblocks) {
    auto block = m->as<ResidualAttentionBlock>();
    block->in_proj_weight.normal_(0, attnStd);
    block->in_proj_bias.zero_();
    block->out_proj->weight.normal_(0, projStd);
    block->out_proj->bias.zero_();
    block->c_fc->weight.normal_(0, fcStd);
    block->c_proj->weight.normal_(0, projStd);
  }
}

at::Tensor ResizeGridEmbedding(const at::Tensor& pos, int64_t newGrid) {
  const int64_t tokens = pos.size(0) - 1, dim = pos.size(1);
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
  if (grid * grid != tokens)
    ThrowRangeError("positional_embedding: " + std::to_string(tokens) + " grid tokens are not a square");
  if (newGrid == grid) return pos.clone();
  at::Tensor image = pos.slice(0, 1).to(at::kFloat).reshape({1, grid, grid, dim}).permute({0, 3, 1, 2});
  image = at::upsample_bicubic2d(image, {newGrid, newGrid}, /*align_corners=*/true);
  image = image.permute({0, 2, 3, 1}).reshape({newGrid * newGrid, dim}).to(pos.scalar_type());
  return at::cat({pos.slice(0, 0, 1), image}, 0);
}

}  // namespace vilref
