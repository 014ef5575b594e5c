#include "binary_loss.h"

namespace vilref {

at::Tensor BceWithLogits(const at::Tensor& logits, const at::Tensor& targets) {
  return at::clamp_min(logits, 0) - logits * targets + at::log1p(at::exp(-logits.abs()));
}

std::array<at::Tensor, 3> DiceBceLoss(const at::Tensor& logits, const at::Tensor& targets,
                                      const c10::optional<at::Tensor>& weights, double diceWeight, double bceWeight) {
  at::Tensor bce = BceWithLogits(logits, targets);
  at::Tensor p = at::sigmoid(logits), y = targets;
  at::Tensor bceMean;
  if (weights.has_value()) {
    bceMean = (bce * *weights).sum() / weights->sum().clamp_min(1.0);
    p = p * *weights;
    y = y * *weights;
  } else {
    bceMean = bce.mean();
  }
  at::Tensor dice = 1.0 - (2.0 * (p * y).sum() + 1.0) / (p.sum() + y.sum() + 1.0);
  return {bceWeight * bceMean + diceWeight * dice, bceMean, dice};
}

}  // namespace vilref
