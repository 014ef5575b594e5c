#include "nn.h"

#include <torch/version.h>

#include <cmath>

namespace vilref {

at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, mask);
#else
  // LibTorch 1.13 has no public fused kernel; its private one is the same math path.
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q * scale, k.transpose(-2, -1));
  if (mask.has_value()) scores = scores + *mask;
  return at::matmul(at::softmax(scores, -1), v);
#endif
}

std::vector<std::pair<std::string, at::Tensor>> NamedState(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true))
    if (p.value().defined()) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true))
    if (b.value().defined()) out.emplace_back(b.key(), b.value());
  return out;
}

}  // namespace vilref
