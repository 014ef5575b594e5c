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

constexpr int kStrip = 8;  // output rows resized together (one 8-float vector per source value)

// Stores kStrip rows of n floats (`block`, n apart) transposed: element i of row r goes to
// t[i · kStrip + r], so the strip's values of each source value are one vector. 4×4 tiles move
// through SSE registers (x86-64's baseline).
void Transpose(const float* __restrict block, int n, float* __restrict t) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int r = 0; r < kStrip; r += 4) {
      __m128 a = _mm_loadu_ps(block + r * n + i), b = _mm_loadu_ps(block + (r + 1) * n + i);
      __m128 c = _mm_loadu_ps(block + (r + 2) * n + i), d = _mm_loadu_ps(block + (r + 3) * n + i);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      _mm_storeu_ps(t + i * kStrip + r, a);
      _mm_storeu_ps(t + (i + 1) * kStrip + r, b);
      _mm_storeu_ps(t + (i + 2) * kStrip + r, c);
      _mm_storeu_ps(t + (i + 3) * kStrip + r, d);
    }
  for (; i < n; i++)
    for (int r = 0; r < kStrip; r++) t[i * kStrip + r] = block[r * n + i];
}

typedef float V8 __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

// Horizontal pass over one strip (the transposed vertical output `t`): for every output column x
// and channel c, the strip's 8 values Σ_j k[j] · t[first + j][c] with the even taps and the odd
// taps summed apart and then added (the order the kernel has always used, so the bytes do not
// change), rounded to 0..255 (Round8 without branches) into res[(c · outW + x) · 8 ...].
__attribute__((target_clones("avx2", "default"))) void HorizontalStrip(const float* __restrict t, const Taps& tx,
                                                                       int outW, int32_t* __restrict res) {
  constexpr int kColumn = 3 * kStrip;  // floats between one source pixel's vectors and the next one's
  for (int x = 0; x < outW; x++) {
    const float* __restrict k = tx.weights.data() + static_cast<size_t>(x) * tx.width;
    const int taps = tx.count[x];
    for (int c = 0; c < 3; c++) {
      const float* col = t + (static_cast<size_t>(tx.first[x]) * 3 + c) * kStrip;
      V8 a = {}, b = {}, p;
      int j = 0;
      for (; j + 1 < taps; j += 2, col += 2 * kColumn) {
        std::memcpy(&p, col, sizeof p);
        a += k[j] * p;
        std::memcpy(&p, col + kColumn, sizeof p);
        b += k[j + 1] * p;
      }
      if (j < taps) {
        std::memcpy(&p, col, sizeof p);
        a += k[j] * p;
      }
      V8 v = a + b;
      v = v > 0.0f ? v : 0.0f;
      v = v < 255.0f ? v : 255.0f;
      const V8i q = __builtin_convertvector(v + 0.5f, V8i);
      std::memcpy(res + (static_cast<size_t>(c) * outW + x) * kStrip, &q, sizeof q);
    }
  }
}

// Four runs of a strip's rounded values (output columns p..p+3) into `rows` rows of 4 bytes: 4×4
// tiles transposed in SSE registers and packed to bytes (the values are 0..255).
void Store4(const int32_t* const* runs, int rows, uint8_t* out, int64_t row) {
  for (int y = 0; y < rows; y += 4) {
    __m128 v[4];
    for (int q = 0; q < 4; q++) v[q] = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs[q] + y)));
    _MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);
    const __m128i lo = _mm_packs_epi32(_mm_castps_si128(v[0]), _mm_castps_si128(v[1]));
    const __m128i hi = _mm_packs_epi32(_mm_castps_si128(v[2]), _mm_castps_si128(v[3]));
    alignas(16) uint8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), _mm_packus_epi16(lo, hi));
    for (int k = 0; k < 4 && y + k < rows; k++) std::memcpy(out + (y + k) * row, bytes + 4 * k, 4);
  }
}

// A strip's rounded values (`rows` valid rows) into the caller's layout from output row y0: planes
// four columns at a time, any other layout value by value. Output column p shows source column x
// (mirrored when flipping).
void WriteStrip(const int32_t* res, int outW, int rows, bool flip, uint8_t* out, const ByteLayout& layout) {
  const auto run = [&](int c, int p) {
    return res + (static_cast<size_t>(c) * outW + (flip ? outW - 1 - p : p)) * kStrip;
  };
  int p = 0;
  if (layout.pixel == 1)
    for (; p + 4 <= outW; p += 4)
      for (int c = 0; c < 3; c++) {
        const int32_t* runs[4] = {run(c, p), run(c, p + 1), run(c, p + 2), run(c, p + 3)};
        Store4(runs, rows, out + c * layout.channel + p, layout.row);
      }
  for (; p < outW; p++)
    for (int c = 0; c < 3; c++) {
      const int32_t* v = run(c, p);
      uint8_t* o = out + p * layout.pixel + c * layout.channel;
      for (int r = 0; r < rows; r++) o[r * layout.row] = static_cast<uint8_t>(v[r]);
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
  // Vertical pass first (the same separable filter; the order changes float rounding only), in
  // strips of 8 output rows that stay in the L1 cache: the strip's rows of w RGB pixels in float,
  // transposed so each source value's 8 rows are one vector, then the horizontal pass per output
  // column and channel on those vectors, rounding to bytes in the caller's layout.
  const int n = w * 3;
  scratch.resize(2 * static_cast<size_t>(kStrip) * n + 3 * static_cast<size_t>(outW) * kStrip);
  float* block = scratch.data();
  float* t = block + static_cast<size_t>(kStrip) * n;
  int32_t* res = reinterpret_cast<int32_t*>(t + static_cast<size_t>(kStrip) * n);
  for (int y0 = 0; y0 < outH; y0 += kStrip) {
    const int rows = std::min(kStrip, outH - y0);
    for (int r = 0, y = y0; r < rows; r++, y++)
      VerticalRow(src + static_cast<int64_t>(ty.first[y]) * pitch, pitch, n,
                  ty.weights.data() + static_cast<size_t>(y) * ty.width, ty.count[y], block + r * n);
    std::fill(block + static_cast<size_t>(rows) * n, t, 0.0f);  // a short last strip: zeros, never written
    Transpose(block, n, t);
    HorizontalStrip(t, tx, outW, res);
    WriteStrip(res, outW, rows, flip, out + y0 * layout.row, layout);
  }
}

}  // namespace vilref
