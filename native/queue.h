// Momentum encoders and memory queues of ViLReF pre-training (../shared/WSCL.md): an exponential
// moving average of the online towers, and ring buffers of momentum image/text features and label
// vectors that start empty and overwrite their oldest entries.
#pragma once

#include <torch/torch.h>

namespace vilref {

// Lives on the device of the model it serves, so that a step reads and fills it without a copy to
// or from the host.
class FeatureQueue {
 public:
  FeatureQueue(int64_t size, int64_t dim, int64_t labels, at::Device device = at::kCPU);
  // Appends B entries (on any device; copied into the queue's), wrapping around; a batch larger than
  // the queue keeps its last `size` rows.
  void Enqueue(const at::Tensor& image, const at::Tensor& text, const at::Tensor& labels);
  int64_t size() const { return size_; }
  int64_t valid() const { return valid_; }
  int64_t pointer() const { return pointer_; }
  // The valid entries (the first `valid` rows of the buffers; order does not matter to the loss).
  at::Tensor Image() const { return image_.slice(0, 0, valid_); }
  at::Tensor Text() const { return text_.slice(0, 0, valid_); }
  at::Tensor Labels() const { return labels_.slice(0, 0, valid_); }
  // Raw buffers and position, for checkpoints.
  at::Tensor& image() { return image_; }
  at::Tensor& text() { return text_; }
  at::Tensor& labels() { return labels_; }
  at::Device device() const { return image_.device(); }
  void SetPosition(int64_t valid, int64_t pointer);

 private:
  int64_t size_, valid_ = 0, pointer_ = 0;
  at::Tensor image_, text_, labels_;
};

// target ← m · target + (1 − m) · source, parameter by parameter (buffers are copied).
void EmaUpdate(torch::nn::Module& target, const torch::nn::Module& source, double m);

}  // namespace vilref
