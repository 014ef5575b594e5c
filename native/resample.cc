#include "resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace vilref {

namespace {

// Keys' cubic with a = −0.5 (PIL's and LibTorch's bicubic).
inline double Cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For each output index: the first input index, the number of taps, and their weights (PIL's
// precompute_coeffs: centre (i + ½)·scale, support 2·max(scale, 1), weights normalised).
struct Taps {
  std::vector<int> first, count;
  std::vector<float> weights;  // count.size() × width
  int width = 0;
};

Taps ComputeTaps(int in, int out) {
  Taps t;
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  t.width = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out) * t.width, 0.0f);
  std::vector<double> w(t.width);
  for (int i = 0; i < out; i++) {
    const double center = (i + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int lo = static_cast<int>(center - support + 0.5);
    int hi = static_cast<int>(center + support + 0.5);
    lo = std::max(lo, 0);
    hi = std::min(hi, in);
    const int n = std::min(hi - lo, t.width);
    double sum = 0;
    for (int k = 0; k < n; k++) sum += (w[k] = Cubic((k + lo - center + 0.5) * ss));
    for (int k = 0; k < n; k++)
      t.weights[static_cast<size_t>(i) * t.width + k] = static_cast<float>(sum ? w[k] / sum : 0);
    t.first[i] = lo;
    t.count[i] = n;
  }
  return t;
}

inline uint8_t Round8(float v) { return v <= 0.0f ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(v + 0.5f); }

// Vertical pass for one output row: acc[i] = Σ_j k[j] · rows[first + j][i] over a row of n bytes.
// A loop over contiguous floats the compiler vectorises (AVX2 where the CPU has it).
__attribute__((target_clones("avx2", "default"))) void VerticalRow(const uint8_t* __restrict src, int64_t pitch, int n,
                                                                   const float* __restrict k, int taps,
                                                                   float* __restrict acc) {
  for (int i = 0; i < n; i++) acc[i] = 0.0f;
  for (int j = 0; j < taps; j++) {
    const uint8_t* __restrict row = src + j * pitch;
    const float w = k[j];
    for (int i = 0; i < n; i++) acc[i] += w * static_cast<float>(row[i]);
  }
}

}  // namespace

void ResampleBicubicAA(const uint8_t* src, int pitch, int w, int h, int outW, int outH, uint8_t* out,
                       const ByteLayout& layout, bool flip, std::vector<float>& scratch) {
  if (w == outW && h == outH) {  // no resize: the bytes, in the caller's layout
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        const uint8_t* p = src + static_cast<int64_t>(y) * pitch + 3 * x;
        uint8_t* o = out + y * layout.row + (flip ? w - 1 - x : x) * layout.pixel;
        o[0] = p[0];
        o[layout.channel] = p[1];
        o[2 * layout.channel] = p[2];
      }
    return;
  }
  const Taps tx = ComputeTaps(w, outW), ty = ComputeTaps(h, outH);
  // Vertical pass first (the same separable filter; the order changes float rounding only):
  // outH rows of w RGB pixels, float, one vectorised loop per row.
  const int n = w * 3;
  scratch.resize(static_cast<size_t>(outH) * n + 4);  // + a vector's reach past the last pixel
  for (int y = 0; y < outH; y++)
    VerticalRow(src + static_cast<int64_t>(ty.first[y]) * pitch, pitch, n,
                ty.weights.data() + static_cast<size_t>(y) * ty.width, ty.count[y],
                scratch.data() + static_cast<size_t>(y) * n);
  // Horizontal pass, rounding to bytes in the caller's layout: one 4-float vector per pixel (its
  // three channels and the next pixel's red, ignored), so each tap is one vector multiply-add.
  // (Locals for everything the loop reads: byte stores may alias anything, and would make the
  // compiler reload the tables after each one.)
  typedef float v4 __attribute__((vector_size(16)));
  const int* __restrict first = tx.first.data();
  const int* __restrict count = tx.count.data();
  const float* __restrict weights = tx.weights.data();
  const int width = tx.width;
  const int64_t pixel = layout.pixel, channel = layout.channel, rowStride = layout.row;
  const float* __restrict rows = scratch.data();
  for (int y = 0; y < outH; y++) {
    const float* row = rows + static_cast<size_t>(y) * n;
    uint8_t* __restrict orow = out + y * rowStride;
    const auto dot = [&](int x) {
      const float* k = weights + static_cast<size_t>(x) * width;
      const float* p = row + first[x] * 3;
      v4 a = {0, 0, 0, 0}, b = {0, 0, 0, 0};  // two chains: taps alternate between them
      const int c = count[x];
      int j = 0;
      for (; j + 1 < c; j += 2, p += 6) {
        v4 p0, p1;
        std::memcpy(&p0, p, sizeof p0);
        std::memcpy(&p1, p + 3, sizeof p1);
        a += k[j] * p0;
        b += k[j + 1] * p1;
      }
      if (j < c) {
        v4 p0;
        std::memcpy(&p0, p, sizeof p0);
        a += k[j] * p0;
      }
      return a + b;
    };
    for (int x = 0; x < outW; x++) {
      const v4 acc = dot(x);
      uint8_t* o = orow + (flip ? outW - 1 - x : x) * pixel;
      o[0] = Round8(acc[0]);
      o[channel] = Round8(acc[1]);
      o[2 * channel] = Round8(acc[2]);
    }
  }
}

}  // namespace vilref
