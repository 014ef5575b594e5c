#include "resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <emmintrin.h>
#include <xmmintrin.h>

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
// row r goes to t[i · stride + r], so a run of the block's rows is contiguous for every source
// value. Whole blocks move as 4×4 tiles through SSE registers (x86-64's baseline).
void Transpose(const float* __restrict block, int rows, int n, float* __restrict t, int64_t stride) {
  int i = 0;
  if (rows == kBlock)
    for (; i + 4 <= n; i += 4)
      for (int r = 0; r < kBlock; r += 4) {
        __m128 a = _mm_loadu_ps(block + r * n + i), b = _mm_loadu_ps(block + (r + 1) * n + i);
        __m128 c = _mm_loadu_ps(block + (r + 2) * n + i), d = _mm_loadu_ps(block + (r + 3) * n + i);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        _mm_storeu_ps(t + i * stride + r, a);
        _mm_storeu_ps(t + (i + 1) * stride + r, b);
        _mm_storeu_ps(t + (i + 2) * stride + r, c);
        _mm_storeu_ps(t + (i + 3) * stride + r, d);
      }
  for (; i < n; i++)
    for (int r = 0; r < rows; r++) t[i * stride + r] = block[r * n + i];
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

// The horizontal pass over the transposed runs `t` for output column p (source column mirrored
// when flipping) and channel c: rows8 rounded values.
struct Columns {
  const float* t;
  int rows8;
  const Taps& tx;
  bool flip;
  int outW;
  void Column(int p, int c, int32_t* dst) const {
    const int x = flip ? outW - 1 - p : p;
    HorizontalColumn(t + (static_cast<size_t>(tx.first[x]) * 3 + c) * rows8, 3 * static_cast<int64_t>(rows8),
                     tx.weights.data() + static_cast<size_t>(x) * tx.width, tx.count[x], rows8, dst);
  }
};

// Four runs of rounded values (output columns p..p+3, `rows8` apart) into rows of 4 bytes: 4×4
// tiles transposed in SSE registers and packed to bytes (the values are 0..255).
void Store4(const int32_t* runs, int rows8, int outH, uint8_t* out, int64_t row) {
  for (int y = 0; y < outH; y += 4) {
    __m128 a = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs + y)));
    __m128 b = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs + rows8 + y)));
    __m128 c = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs + 2 * rows8 + y)));
    __m128 d = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs + 3 * rows8 + y)));
    _MM_TRANSPOSE4_PS(a, b, c, d);
    const __m128i lo = _mm_packs_epi32(_mm_castps_si128(a), _mm_castps_si128(b));
    const __m128i hi = _mm_packs_epi32(_mm_castps_si128(c), _mm_castps_si128(d));
    alignas(16) uint8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), _mm_packus_epi16(lo, hi));
    for (int k = 0; k < 4 && y + k < outH; k++) std::memcpy(out + (y + k) * row, bytes + 4 * k, 4);
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
  scratch.resize(cols + static_cast<size_t>(kBlock) * n + 4 * static_cast<size_t>(rows8));
  float* t = scratch.data();
  float* block = t + cols;
  int32_t* bytes = reinterpret_cast<int32_t*>(block + static_cast<size_t>(kBlock) * n);  // 4 runs of rows8
  for (int y0 = 0; y0 < outH; y0 += kBlock) {
    const int rows = std::min(kBlock, outH - y0);
    for (int r = 0, y = y0; r < rows; r++, y++)
      VerticalRow(src + static_cast<int64_t>(ty.first[y]) * pitch, pitch, n,
                  ty.weights.data() + static_cast<size_t>(y) * ty.width, ty.count[y], block + r * n);
    Transpose(block, rows, n, t + y0, rows8);
  }
  const Columns cs{t, rows8, tx, flip, outW};
  int p = 0;
  if (layout.pixel == 1)  // planes (the loader): four output columns at a time, rows of 4 bytes
    for (; p + 4 <= outW; p += 4)
      for (int c = 0; c < 3; c++) {
        for (int q = 0; q < 4; q++) cs.Column(p + q, c, bytes + q * rows8);
        Store4(bytes, rows8, outH, out + c * layout.channel + p, layout.row);
      }
  for (; p < outW; p++)
    for (int c = 0; c < 3; c++) {
      cs.Column(p, c, bytes);
      uint8_t* o = out + p * layout.pixel + c * layout.channel;
      for (int y = 0; y < outH; y++) o[y * layout.row] = static_cast<uint8_t>(bytes[y]);
    }
}

}  // namespace vilref
