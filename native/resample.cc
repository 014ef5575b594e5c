#include "resample.h"

#include <algorithm>
#include <cmath>

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

}  // namespace

void ResampleBicubicAA(const uint8_t* src, int pitch, int w, int h, int outW, int outH, uint8_t* out,
                       const ByteLayout& layout, bool flip, std::vector<float>& scratch) {
  const Taps tx = ComputeTaps(w, outW), ty = ComputeTaps(h, outH);
  // Horizontal pass: h rows × outW pixels × 3, float.
  scratch.resize(static_cast<size_t>(h) * outW * 3);
  for (int y = 0; y < h; y++) {
    const uint8_t* row = src + static_cast<int64_t>(y) * pitch;
    float* dst = scratch.data() + static_cast<size_t>(y) * outW * 3;
    for (int x = 0; x < outW; x++) {
      const float* k = tx.weights.data() + static_cast<size_t>(x) * tx.width;
      const uint8_t* p = row + tx.first[x] * 3;
      float r = 0, g = 0, b = 0;
      for (int j = 0; j < tx.count[x]; j++, p += 3) {
        r += k[j] * p[0];
        g += k[j] * p[1];
        b += k[j] * p[2];
      }
      dst[3 * x] = r;
      dst[3 * x + 1] = g;
      dst[3 * x + 2] = b;
    }
  }
  // Vertical pass, rounding to bytes in the caller's layout.
  const int64_t stride = static_cast<int64_t>(outW) * 3;
  for (int y = 0; y < outH; y++) {
    const float* k = ty.weights.data() + static_cast<size_t>(y) * ty.width;
    const float* col0 = scratch.data() + static_cast<int64_t>(ty.first[y]) * stride;
    uint8_t* orow = out + y * layout.row;
    for (int x = 0; x < outW; x++) {
      const float* p = col0 + 3 * x;
      float r = 0, g = 0, b = 0;
      for (int j = 0; j < ty.count[y]; j++, p += stride) {
        r += k[j] * p[0];
        g += k[j] * p[1];
        b += k[j] * p[2];
      }
      uint8_t* o = orow + (flip ? outW - 1 - x : x) * layout.pixel;
      o[0] = Round8(r);
      o[layout.channel] = Round8(g);
      o[2 * layout.channel] = Round8(b);
    }
  }
}

}  // namespace vilref
