// The JPEG fast path of the data loader (and the packer's resize): decode a JPEG with libjpeg-turbo's TurboJPEG API at
// the largest DCT scale (M/8) that still covers the output, crop the sample's rectangle, resize it with LibTorch's
// antialiased bicubic (PIL's filter), round to 8 bits, apply the colour jitter with torchvision-on-PIL semantics, and
// write CHW float32 through the caller's normalisation table straight into the batch's memory. One call per image, on
// the libuv pool; each call has its own TurboJPEG handle, so a decoder message always belongs to the image that caused
// it.
//
// JS sees `jpeg = { available, reason, decodeInto(bytes, out, offset, options) }` (lib/addon-types.ts);
// lib/data/transforms.ts decides which images take this path and falls back to sharp for the rest.
// Built without TurboJPEG (no libturbojpeg0-dev), `available` is false and `reason` says why.
#pragma once

#include <napi.h>

#include <cstdint>

#include "jitter.h"

namespace vilref {

// How one image becomes size×size CHW float32 (all geometry in source pixels).
struct JpegPlan {
  int size = 224;
  double left = 0, top = 0, width = 0, height = 0;  // the crop rectangle; width 0: the whole image
  bool flip = false;
  bool shrink = true;  // decode at a reduced DCT scale when the output allows
  JitterPlan jitter;
  const float* table = nullptr;     // 3 × 256 floats: 8-bit value → normalised value per channel
  int outWidth = 0, outHeight = 0;  // resize (the packer): the output size, and its JPEG quality
  int shortSide = 0;                // resize: else the region scaled to this short side (never enlarged)
  int quality = 90;
  bool torchResize = false;  // LibTorch's _upsample_bicubic2d_aa instead of resample.h's kernel
};

void InitJpeg(Napi::Env env, Napi::Object exports);

}  // namespace vilref
