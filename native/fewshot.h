// Few-shot adapters on frozen image features (the `fewshot` namespace of the addon); the protocol
// around them (shots, features, the validation search, metrics) is lib/adapt.
//
// Tip-Adapter (Zhang et al., 2022): a key–value cache of the few-shot images' normalised features
// (keys [m, d]) and their labels (values [m, C]). For normalised features F [n, d],
//   A = exp(−β · (1 − F·Kᵀ)),  cache = A·V  (or, with `normalize`, A·V / rowsum(A): the
//   affinity-weighted share of the neighbours that are positive, the multi-label variant),
//   logits = zeroShot + α · cache (+ bias).
// Tip-Adapter-F trains the keys (and, multi-label, a per-class bias) with AdamW on the few-shot
// set, cross-entropy or masked BCE, a cache entry's affinity to its own image masked out.
//
// CLIP-Adapter (Gao et al., 2021): x' = ratio · relu(W2 · relu(W1 · x)) + (1 − ratio) · x on the
// normalised image feature, logits = scale · cos(x', text_c) — multi-label: the cosine minus its
// mean over the classes (the "relative" zero-shot scoring) plus a per-class bias — trained with
// AdamW (native/optim.h), cosine-decayed learning rate, cross-entropy or masked BCE.
#pragma once

#include <napi.h>

namespace vilref {

void InitFewShot(Napi::Env env, Napi::Object exports);

}  // namespace vilref
