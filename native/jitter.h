// Colour jitter with the semantics torchvision gives PIL images (ImageEnhance Brightness, Contrast,
// Color: each step blends with a degenerate image and truncates back to 8 bits, in a random order),
// fused with the normalisation into the batch: the steps that are tables of one value (brightness;
// contrast once its mean is known) compose with each other and with the per-channel normalisation
// table, so an image costs one pass over its pixels (two when contrast needs the mean), whatever
// the order. Byte for byte what lib/data/transforms.ts jitter8 + normTable give (tested).
#pragma once

#include <array>
#include <cstdint>

namespace vilref {

struct JitterPlan {
  float brightness = 1, contrast = 1, saturation = 1;  // 1: the step is left out
  std::array<int, 3> order{0, 1, 2};                   // 0 brightness, 1 contrast, 2 saturation
};

// Jitters planar 8-bit RGB (3 planes of n values) and writes each value through `table` (3 × 256
// floats, per channel) into `out` (3 planes of n floats).
void JitterNormalize(const uint8_t* planes, int64_t n, const JitterPlan& plan, const float* table, float* out);

}  // namespace vilref
