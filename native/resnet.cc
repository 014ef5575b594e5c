#include "resnet.h"

#include <cmath>

#include "bridge.h"
#include "nn.h"

namespace vilref {

namespace {
torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}
at::Tensor AvgPool(const at::Tensor& x, int64_t k) { return k > 1 ? at::avg_pool2d(x, {k, k}) : x; }
}  // namespace

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride_) : stride(stride_) {
  conv1 = register_module("conv1", Conv(inplanes, planes, 1));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", Conv(planes, planes, 3));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", Conv(planes, planes * 4, 1));
  bn3 = register_module("bn3", torch::nn::BatchNorm2d(planes * 4));
  if (stride > 1 || inplanes != planes * 4) {
    // downsample = Sequential("-1": AvgPool2d(stride), "0": conv, "1": bn): the pool has no state.
    auto downsample = std::make_shared<torch::nn::Module>();
    down_conv = downsample->register_module("0", Conv(inplanes, planes * 4, 1));
    down_bn = downsample->register_module("1", torch::nn::BatchNorm2d(planes * 4));
    register_module("downsample", downsample);
  }
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x) {
  at::Tensor out = at::relu(bn1(conv1(x)));
  out = at::relu(bn2(conv2(out)));
  out = bn3(conv3(AvgPool(out, stride)));
  at::Tensor identity = down_conv ? down_bn(down_conv(AvgPool(x, stride))) : x;
  return at::relu(out + identity);
}

ModifiedResNet::ModifiedResNet(const std::vector<int64_t>& layers, int64_t embedDim, int64_t heads, int64_t resolution,
                               int64_t width)
    : heads_(heads), embedDim_(embedDim) {
  if (resolution % 32 != 0)
    ThrowRangeError("config.image_resolution: " + std::to_string(resolution) +
                    " is not a multiple of 32 (ModifiedResNet)");
  conv1 = register_module("conv1", Conv(3, width / 2, 3, 2));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(width / 2));
  conv2 = register_module("conv2", Conv(width / 2, width / 2, 3));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(width / 2));
  conv3 = register_module("conv3", Conv(width / 2, width, 3));
  bn3 = register_module("bn3", torch::nn::BatchNorm2d(width));
  int64_t inplanes = width;
  for (size_t s = 0; s < layers.size(); ++s) {
    const int64_t planes = width << s;
    torch::nn::Sequential stage;
    for (int64_t b = 0; b < layers[s]; ++b) {
      stage->push_back(Bottleneck(inplanes, planes, b == 0 && s > 0 ? 2 : 1));
      inplanes = planes * 4;
    }
    stages_.push_back(register_module("layer" + std::to_string(s + 1), stage));
  }
  const int64_t channels = width * 32, spatial = resolution / 32;
  if (channels % heads != 0)
    ThrowRangeError("config.vision_head_width: " + std::to_string(channels) + " channels do not split into " +
                    std::to_string(heads) + " heads");
  auto attnpool = std::make_shared<torch::nn::Module>();
  positional_embedding =
      attnpool->register_parameter("positional_embedding", torch::zeros({spatial * spatial + 1, channels}));
  k_proj = attnpool->register_module("k_proj", torch::nn::Linear(channels, channels));
  q_proj = attnpool->register_module("q_proj", torch::nn::Linear(channels, channels));
  v_proj = attnpool->register_module("v_proj", torch::nn::Linear(channels, channels));
  c_proj = attnpool->register_module("c_proj", torch::nn::Linear(channels, embedDim));
  register_module("attnpool", attnpool);
}

at::Tensor ModifiedResNet::forward(const at::Tensor& images,
                                   bool /*preProjection: the attention pool is the projection*/) {
  at::Tensor x = at::relu(bn1(conv1(images)));
  x = at::relu(bn2(conv2(x)));
  x = at::relu(bn3(conv3(x)));
  x = AvgPool(x, 2);
  for (auto& stage : stages_) x = stage->forward(x);
  // AttentionPool2d: tokens are the mean then every position; only the first token's output is kept.
  x = x.flatten(2).transpose(1, 2);  // [N, HW, C]
  x = at::cat({x.mean(1, /*keepdim=*/true), x}, 1) + positional_embedding.to(x.scalar_type());
  at::Tensor q = SplitHeads(q_proj(x.slice(1, 0, 1)), heads_);  // [N, H, 1, d]
  at::Tensor k = SplitHeads(k_proj(x), heads_), v = SplitHeads(v_proj(x), heads_);
  at::Tensor pooled = MergeHeads(Attend(q, k, v, c10::nullopt)).select(1, 0);
  return c_proj(pooled);
}

void ModifiedResNet::ResizePositions(int64_t resolution) {
  if (resolution % 32 != 0) ThrowRangeError("resolution: " + std::to_string(resolution) + " is not a multiple of 32");
  torch::NoGradGuard noGrad;
  positional_embedding.set_data(ResizeGridEmbedding(positional_embedding.detach(), resolution / 32));
}

void ModifiedResNet::InitWeights() {
  torch::NoGradGuard noGrad;
  const double channels = static_cast<double>(positional_embedding.size(1));
  positional_embedding.normal_(0, std::pow(channels, -0.5));
  const double std = std::pow(channels, -0.5);
  for (auto* l : {&q_proj, &k_proj, &v_proj, &c_proj}) (*l)->weight.normal_(0, std);
  // zero-init the last BN of every residual branch, as the released code does
  for (auto& p : named_parameters())
    if (p.key().size() >= 10 && p.key().compare(p.key().size() - 10, 10, "bn3.weight") == 0 &&
        p.key().rfind("layer", 0) == 0)
      p.value().zero_();
}

}  // namespace vilref
