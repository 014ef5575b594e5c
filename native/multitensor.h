// Multi-tensor ("foreach") versions of the per-parameter loops of a training step. On CUDA one
// launch covers a whole list of tensors instead of one launch per tensor and per op: a ViT-B/16 +
// BERT-base step has about 400 parameter tensors, so LibTorch's AdamW launches about 3,000 small
// kernels, its gradient norm 400 and an EMA update 800, which leaves the GPU idle between them. On
// the CPU the foreach ops run the same kernels tensor by tensor, so results are the same to the
// bit as the loops they replace (test/trainer*.test.ts run them there).
#pragma once

#include <c10/util/string_utils.h>
#include <torch/torch.h>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vilref {

// LibTorch's optimizer state map and its key: the TensorImpl's address as a string in 1.x, the
// address itself (void*) in 2.x.
using OptimizerStates = std::remove_reference_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
using OptimizerStateKey = typename OptimizerStates::key_type;

// The key of parameter `p` in an optimizer's state(), whichever LibTorch this is.
template <typename Key = OptimizerStateKey>
Key OptimizerKey(const at::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>)
    return c10::guts::to_string(p.unsafeGetTensorImpl());
  else
    return static_cast<Key>(p.unsafeGetTensorImpl());
}

// target[i] ← m · target[i] + (1 − m) · source[i], no gradient (the EMA of the momentum encoders).
void ForeachEma(const std::vector<at::Tensor>& target, const std::vector<at::Tensor>& source, double m);

// torch::nn::utils::clip_grad_norm_(params, maxNorm) with the 2-norm: the global norm of the
// gradients (returned), and the gradients scaled by min(1, maxNorm / (norm + 1e-6)).
double ForeachClipGradNorm(const std::vector<at::Tensor>& params, double maxNorm);

// optimizer.step() of LibTorch's AdamW, the same arithmetic in the same order, on the optimizer's
// own state (moments and step counts: checkpoints and exportState read them as before). Falls back
// to optimizer.step() for options it does not cover (amsgrad).
void ForeachAdamWStep(torch::optim::AdamW& optimizer);

}  // namespace vilref
