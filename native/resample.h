// The antialiased bicubic resize of 8-bit RGB that the JPEG path uses: PIL's `Image.resize(...,
// BICUBIC)` filter (a = −0.5, support widened by the scale when shrinking, weights normalised per
// output pixel), which is also what LibTorch's `_upsample_bicubic2d_aa` computes. A dedicated
// two-pass kernel on bytes: LibTorch's generic one costs about 1 ms for a 256² → 224² image on one
// core (a quarter of the JPEG decode it follows), this one a fraction of that. jpeg.cc can run
// LibTorch's instead (`resampler: "libtorch"`), and test/jpeg-fast.test.ts checks that the two agree.
#pragma once

#include <cstdint>
#include <vector>

namespace vilref {

// Where the output bytes go: element (y, x, c) at y·row + x·pixel + c·channel.
struct ByteLayout {
  int64_t row, pixel, channel;
};

// Resizes `w`×`h` RGB pixels (rows `pitch` bytes apart, 3 bytes a pixel) to outW×outH, rounding to
// 8 bits; `flip` mirrors the output left-right. `scratch` is reused between calls.
void ResampleBicubicAA(const uint8_t* src, int pitch, int w, int h, int outW, int outH, uint8_t* out,
                       const ByteLayout& layout, bool flip, std::vector<float>& scratch);

// The same resize, each rounded value v of channel c written as table[256·c + v] into CHW planes of
// outW×outH floats (the evaluation path: no jitter, the normalisation fused with the resize).
void ResampleNormalize(const uint8_t* src, int pitch, int w, int h, int outW, int outH, const float* table, float* out,
                       bool flip, std::vector<float>& scratch);

}  // namespace vilref
