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

constexpr int kBlock = 8;  // output rows the vertical pass transposes at a time

// Stores `rows` (≤ kBlock) rows of n floats, `block` holding them n apart, transposed: element i of
// row r goes to t[i · outH + r], so a run of the block's rows is contiguous for every source value.
void Transpose(const float* __restrict block, int rows, int n, float* __restrict t, int64_t outH) {
  if (rows == kBlock) {
    for (int i = 0; i < n; i++)
      for (int r = 0; r < kBlock; r++) t[i * outH + r] = block[r * n + i];
    return;
  }
  for (int i = 0; i < n; i++)
    for (int r = 0; r < rows; r++) t[i * outH + r] = block[r * n + i];
}

typedef float V8 __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

// Horizontal pass for one output column and channel, vectorised across the output rows (8 at a
// time; `rows8` a multiple of 8): dst[y] = Σ_j k[j] · cols[j][y], the even taps and the odd taps
// summed apart and then added (the order the kernel has always used, so the bytes do not change),
// rounded to 0..255 (Round8 without branches); each column `stride` floats after the last.
__attribute__((target_clones("avx2", "default"))) void HorizontalColumn(const float* __restrict cols, int64_t stride,
                                                                        const float* __restrict k, int taps, int rows8,
                                                                        int32_t* __restrict dst) {
  for (int y = 0; y < rows8; y += 8) {
    V8 a = {}, b = {}, p;
    const float* c = cols + y;
    int j = 0;
    for (; j + 1 < taps; j += 2, c += 2 * stride) {
      std::memcpy(&p, c, sizeof p);
      a += k[j] * p;
      std::memcpy(&p, c + stride, sizeof p);
      b += k[j + 1] * p;
    }
    if (j < taps) {
      std::memcpy(&p, c, sizeof p);
      a += k[j] * p;
    }
    V8 v = a + b;
    v = v > 0.0f ? v : 0.0f;
    v = v < 255.0f ? v : 255.0f;
    const V8i q = __builtin_convertvector(v + 0.5f, V8i);
    std::memcpy(dst + y, &q, sizeof q);
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
  // Vertical pass first (the same separable filter; the order changes float rounding only): outH
  // rows of w RGB pixels in float, stored transposed (w·3 runs of outH values), then the horizontal
  // pass per output column and channel over those runs, rounding to bytes in the caller's layout.
  const int n = w * 3;
  const int rows8 = (outH + 7) / 8 * 8;  // the transposed runs, padded to whole vectors
  const size_t cols = static_cast<size_t>(n) * rows8;
  scratch.resize(cols + static_cast<size_t>(kBlock) * n + rows8);
  float* t = scratch.data();
  float* block = t + cols;
  int32_t* bytes = reinterpret_cast<int32_t*>(block + static_cast<size_t>(kBlock) * n);
  for (int y0 = 0; y0 < outH; y0 += kBlock) {
    const int rows = std::min(kBlock, outH - y0);
    for (int r = 0, y = y0; r < rows; r++, y++)
      VerticalRow(src + static_cast<int64_t>(ty.first[y]) * pitch, pitch, n,
                  ty.weights.data() + static_cast<size_t>(y) * ty.width, ty.count[y], block + r * n);
    Transpose(block, rows, n, t + y0, rows8);
  }
  const int64_t rowStride = layout.row, channel = layout.channel, pixel = layout.pixel;
  for (int x = 0; x < outW; x++) {
    const float* k = tx.weights.data() + static_cast<size_t>(x) * tx.width;
    uint8_t* o = out + (flip ? outW - 1 - x : x) * pixel;
    for (int c = 0; c < 3; c++, o += channel) {
      HorizontalColumn(t + (static_cast<size_t>(tx.first[x]) * 3 + c) * rows8, 3 * static_cast<int64_t>(rows8), k,
                       tx.count[x], rows8, bytes);
      for (int y = 0; y < outH; y++) o[y * rowStride] = static_cast<uint8_t>(bytes[y]);
    }
  }
}

}  // namespace vilref
