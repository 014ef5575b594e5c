#include "queue.h"

#include "bridge.h"
#include "multitensor.h"
#include "nn.h"

namespace vilref {

FeatureQueue::FeatureQueue(int64_t size, int64_t dim, int64_t labels, at::Device device)
    : size_(size),
      image_(torch::zeros({size, dim}, at::TensorOptions().device(device))),
      text_(torch::zeros({size, dim}, at::TensorOptions().device(device))),
      labels_(torch::zeros({size, labels}, at::TensorOptions().device(device))) {}

void FeatureQueue::Enqueue(const at::Tensor& image, const at::Tensor& text, const at::Tensor& labels) {
  if (size_ == 0) return;
  torch::NoGradGuard noGrad;
  int64_t b = image.size(0), start = 0;
  if (b > size_) {
    start = b - size_;
    b = size_;
  }
  for (int64_t done = 0; done < b;) {
    const int64_t n = std::min(b - done, size_ - pointer_);
    image_.slice(0, pointer_, pointer_ + n).copy_(image.slice(0, start + done, start + done + n));
    text_.slice(0, pointer_, pointer_ + n).copy_(text.slice(0, start + done, start + done + n));
    labels_.slice(0, pointer_, pointer_ + n).copy_(labels.slice(0, start + done, start + done + n));
    pointer_ = (pointer_ + n) % size_;
    done += n;
  }
  valid_ = std::min(size_, valid_ + b);
}

void FeatureQueue::SetPosition(int64_t valid, int64_t pointer) {
  if (valid < 0 || valid > size_ || pointer < 0 || (size_ > 0 && pointer >= size_))
    ThrowRangeError("queue position out of range");
  valid_ = valid;
  pointer_ = pointer;
}

void EmaUpdate(torch::nn::Module& target, const torch::nn::Module& source, double m) {
  torch::NoGradGuard noGrad;
  auto src = source.named_parameters(true);
  std::vector<at::Tensor> to, from;
  for (auto& p : target.named_parameters(true)) {
    if (!p.value().defined()) continue;
    to.push_back(p.value());
    from.push_back(src[p.key()].detach());
  }
  ForeachEma(to, from, m);  // one launch per op for all of them on CUDA
  auto srcBuffers = source.named_buffers(true);
  for (auto& b : target.named_buffers(true))
    if (b.value().defined()) b.value().copy_(srcBuffers[b.key()]);
}

}  // namespace vilref
