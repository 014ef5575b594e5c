// Losses over binary targets, shared by the Finetuner (multi-label BCE) and the Segmenter
// (BCE + soft Dice over pixels): one implementation of each.
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace vilref {

// Binary cross-entropy with logits per element, the stable form max(x, 0) − x·y + log(1 + e^−|x|).
at::Tensor BceWithLogits(const at::Tensor& logits, const at::Tensor& targets);

// Soft Dice + BCE with logits over a batch; `weights` (optional, same shape) masks pixels out.
// Returns {bceWeight · bce + diceWeight · dice, bce, dice loss}.
std::array<at::Tensor, 3> DiceBceLoss(const at::Tensor& logits, const at::Tensor& targets,
                                      const c10::optional<at::Tensor>& weights, double diceWeight, double bceWeight);

}  // namespace vilref
