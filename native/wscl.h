// The Weighted Similarity Coupling Loss (../shared/WSCL.md) and plain CLIP InfoNCE, as pure
// functions of features, labels and queue. The trainer calls the tensor functions; JS reaches
// them as losses.wscl / losses.clip for scripting and tests.
#pragma once

#include <napi.h>

#include <torch/torch.h>

namespace vilref {

struct WsclOptions {
  double threshold = 1.0;  // false negative: j ≠ i and c_ij ≥ threshold (tolerance 1e-6)
  double gamma = 1.0;      // negative weight (1 − c_ij)^gamma
};

struct LossTerms {
  at::Tensor loss;  // ½(mean i2t + mean t2i)
  at::Tensor i2t;   // [B] per anchor image
  at::Tensor t2i;   // [B] per anchor text
};

// c(y, y') = y·y' / (|y| |y'|), 0 where either is all zero: [B, C] × [M, C] → [B, M].
at::Tensor LabelSimilarity(const at::Tensor& y, const at::Tensor& candidates);

// u, v: L2-normalised online features [B, D] (with gradient); y: labels [B, C]; qu, qv, qy: the
// valid queue entries [K, D] / [K, C] (K may be 0; undefined tensors mean no queue);
// logitScale: the learnable scalar (s = exp(logitScale)).
LossTerms Wscl(const at::Tensor& u, const at::Tensor& v, const at::Tensor& y, const at::Tensor& qu,
               const at::Tensor& qv, const at::Tensor& qy, const at::Tensor& logitScale, const WsclOptions& options);

// Plain CLIP InfoNCE over the batch: ½(CE(s·u vᵀ, I) + CE(s·v uᵀ, I)).
LossTerms Clip(const at::Tensor& u, const at::Tensor& v, const at::Tensor& logitScale);

// losses.wscl(args) / losses.clip(args) → Promise<{ loss, lossI2T, lossT2I, gradImage, gradText, gradLogitScale }>
void InitLosses(Napi::Env env, Napi::Object exports);

}  // namespace vilref
