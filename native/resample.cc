#include "resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <emmintrin.h>
#include <immintrin.h>
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

// Vertical pass for one output row: acc[i] = Σ_j k[j] · rows[first + j][i] over a row of n bytes,
// summed in tap order from 0 (the order a loop over taps adding into acc has), several values at a
// time with their sums in a register across the taps: AVX2 (8 values) where the CPU has it, else
// SSE2 (4). Multiplies and adds stay separate (no fused multiply-add), as everywhere in this file.
__attribute__((target("avx2"))) void VerticalRowAvx2(const uint8_t* __restrict src, int64_t pitch, int n,
                                                     const float* __restrict k, int taps, float* __restrict acc,
                                                     int& done) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_setzero_ps();
    const uint8_t* p = src + i;
    for (int j = 0; j < taps; j++, p += pitch) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
      a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(k[j]), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))));
    }
    _mm256_storeu_ps(acc + i, a);
  }
  done = i;
}

void VerticalRow(const uint8_t* __restrict src, int64_t pitch, int n, const float* __restrict k, int taps,
                 float* __restrict acc) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  int i = 0;
  if (avx2) VerticalRowAvx2(src, pitch, n, k, taps, acc, i);
  const __m128i zero = _mm_setzero_si128();
  for (; i + 4 <= n; i += 4) {
    __m128 a = _mm_setzero_ps();
    const uint8_t* p = src + i;
    for (int j = 0; j < taps; j++, p += pitch) {
      int32_t w;
      std::memcpy(&w, p, sizeof w);
      const __m128i b = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(w), zero), zero);
      a = _mm_add_ps(a, _mm_mul_ps(_mm_set1_ps(k[j]), _mm_cvtepi32_ps(b)));
    }
    _mm_storeu_ps(acc + i, a);
  }
  for (; i < n; i++) {
    float a = 0.0f;
    for (int j = 0; j < taps; j++) a += k[j] * static_cast<float>(src[j * pitch + i]);
    acc[i] = a;
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

// Where the rounded values go: bytes in a layout, or (floats non-null) CHW planes of floats through
// a per-channel table of 3 × 256 values (8-bit value → normalised value), rows `row` apart.
struct Sink {
  uint8_t* bytes = nullptr;
  ByteLayout layout{0, 0, 0};
  float* floats = nullptr;
  const float* table = nullptr;
  int64_t plane = 0, row = 0;
};

// Rows y..y+3 of four runs (output columns p..p+3) as four vectors, one per row: a 4×4 tile
// transposed in SSE registers.
inline void Tile(const int32_t* const* runs, int y, __m128i v[4]) {
  __m128 a = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs[0] + y)));
  __m128 b = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs[1] + y)));
  __m128 c = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs[2] + y)));
  __m128 d = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(runs[3] + y)));
  _MM_TRANSPOSE4_PS(a, b, c, d);
  v[0] = _mm_castps_si128(a), v[1] = _mm_castps_si128(b), v[2] = _mm_castps_si128(c), v[3] = _mm_castps_si128(d);
}

// Four runs of a strip's rounded values (output columns p..p+3, channel c) into `rows` rows of the
// sink from output row y0: 4 bytes a row (packed, the values are 0..255), or 4 floats.
void Store4(const int32_t* const* runs, int rows, const Sink& k, int c, int p, int y0) {
  for (int y = 0; y < rows; y += 4) {
    __m128i v[4];
    Tile(runs, y, v);
    if (k.floats) {
      const float* table = k.table + 256 * c;
      float* out = k.floats + c * k.plane + static_cast<int64_t>(y0 + y) * k.row + p;
      for (int r = 0; r < 4 && y + r < rows; r++) {
        alignas(16) int32_t q[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(q), v[r]);
        const float f[4] = {table[q[0]], table[q[1]], table[q[2]], table[q[3]]};
        std::memcpy(out + r * k.row, f, sizeof f);
      }
      continue;
    }
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
    alignas(16) uint8_t b[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), bytes);
    uint8_t* out = k.bytes + c * k.layout.channel + (y0 + y) * k.layout.row + p;
    for (int r = 0; r < 4 && y + r < rows; r++) std::memcpy(out + r * k.layout.row, b + 4 * r, 4);
  }
}

// One value into the sink: output row y, column p, channel c.
inline void Put(const Sink& k, int y, int p, int c, int v) {
  if (k.floats)
    k.floats[c * k.plane + y * k.row + p] = k.table[256 * c + v];
  else
    k.bytes[y * k.layout.row + p * k.layout.pixel + c * k.layout.channel] = static_cast<uint8_t>(v);
}

// A strip's rounded values (`rows` valid rows) into the sink from output row y0: planes four
// columns at a time, any other layout value by value. Output column p shows source column x
// (mirrored when flipping).
void WriteStrip(const int32_t* res, int outW, int rows, bool flip, const Sink& k, int y0) {
  const auto run = [&](int c, int p) {
    return res + (static_cast<size_t>(c) * outW + (flip ? outW - 1 - p : p)) * kStrip;
  };
  int p = 0;
  if (k.floats || k.layout.pixel == 1)
    for (; p + 4 <= outW; p += 4)
      for (int c = 0; c < 3; c++) {
        const int32_t* runs[4] = {run(c, p), run(c, p + 1), run(c, p + 2), run(c, p + 3)};
        Store4(runs, rows, k, c, p, y0);
      }
  for (; p < outW; p++)
    for (int c = 0; c < 3; c++) {
      const int32_t* v = run(c, p);
      for (int r = 0; r < rows; r++) Put(k, y0 + r, p, c, v[r]);
    }
}

// `rows` rows of n floats from `src` (n apart) to `dst` (`row` apart), with non-temporal stores
// where the rows allow (16-byte aligned, n a multiple of 4), else ordinary ones.
void StreamRows(const float* __restrict src, int n, int rows, float* __restrict dst, int64_t row) {
  const bool aligned = n % 4 == 0 && row % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  for (int r = 0; r < rows; r++) {
    const float* s = src + static_cast<int64_t>(r) * n;
    float* d = dst + r * row;
    if (!aligned) {
      std::memcpy(d, s, sizeof(float) * n);
      continue;
    }
    for (int i = 0; i < n; i += 4) _mm_stream_ps(d + i, _mm_load_ps(s + i));
  }
}

void Resample(const uint8_t* src, int pitch, int w, int h, int outW, int outH, const Sink& k, bool flip,
              std::vector<float>& scratch) {
  if (w == outW && h == outH) {  // no resize: the values as they are
    for (int y = 0; y < h; y++) {
      const uint8_t* s = src + static_cast<int64_t>(y) * pitch;
      if (k.floats)
        for (int c = 0; c < 3; c++) {
          float* o = k.floats + c * k.plane + y * k.row;
          const float* table = k.table + 256 * c;
          for (int x = 0; x < w; x++) o[flip ? w - 1 - x : x] = table[s[3 * x + c]];
        }
      else {
        const int64_t pixel = k.layout.pixel, channel = k.layout.channel;  // locals: byte stores alias all
        uint8_t* row = k.bytes + y * k.layout.row;
        for (int x = 0; x < w; x++) {
          uint8_t* o = row + (flip ? w - 1 - x : x) * pixel;
          o[0] = s[3 * x], o[channel] = s[3 * x + 1], o[2 * channel] = s[3 * x + 2];
        }
      }
    }
    return;
  }
  const Taps tx = ComputeTaps(w, outW), ty = ComputeTaps(h, outH);
  // Vertical pass first (the same separable filter; the order changes float rounding only), in
  // strips of 8 output rows that stay in the L1 cache: the strip's rows of w RGB pixels in float,
  // transposed so each source value's 8 rows are one vector, then the horizontal pass per output
  // column and channel on those vectors, rounded, into the sink.
  const int n = w * 3;
  const size_t stripFloats = 3 * static_cast<size_t>(outW) * kStrip;
  scratch.resize(2 * static_cast<size_t>(kStrip) * n + stripFloats + (k.floats ? stripFloats + 4 : 0));
  float* block = scratch.data();
  float* t = block + static_cast<size_t>(kStrip) * n;
  int32_t* res = reinterpret_cast<int32_t*>(t + static_cast<size_t>(kStrip) * n);
  // Floats: each strip is written to a small staged copy of its rows (in the L1 cache) and then
  // streamed to the output row by row (StreamRows): the output is a batch read later by the model,
  // so filling it through the cache would evict the decoder's working set for nothing.
  Sink staged = k;
  if (k.floats) {
    float* stage = reinterpret_cast<float*>(res) + stripFloats;
    stage += (16 - reinterpret_cast<uintptr_t>(stage) % 16) % 16 / sizeof(float);  // 16-byte aligned
    staged.floats = stage;
    staged.plane = static_cast<int64_t>(kStrip) * outW;
    staged.row = outW;
  }
  for (int y0 = 0; y0 < outH; y0 += kStrip) {
    const int rows = std::min(kStrip, outH - y0);
    for (int r = 0, y = y0; r < rows; r++, y++)
      VerticalRow(src + static_cast<int64_t>(ty.first[y]) * pitch, pitch, n,
                  ty.weights.data() + static_cast<size_t>(y) * ty.width, ty.count[y], block + r * n);
    std::fill(block + static_cast<size_t>(rows) * n, t, 0.0f);  // a short last strip: zeros, never written
    Transpose(block, n, t);
    HorizontalStrip(t, tx, outW, res);
    if (!k.floats) {
      WriteStrip(res, outW, rows, flip, k, y0);
      continue;
    }
    WriteStrip(res, outW, rows, flip, staged, 0);
    for (int c = 0; c < 3; c++)
      StreamRows(staged.floats + c * staged.plane, outW, rows,
                 k.floats + c * k.plane + static_cast<int64_t>(y0) * k.row, k.row);
  }
  if (k.floats) _mm_sfence();  // the streamed stores are visible before the batch is handed over
}

}  // namespace

void ResampleBicubicAA(const uint8_t* src, int pitch, int w, int h, int outW, int outH, uint8_t* out,
                       const ByteLayout& layout, bool flip, std::vector<float>& scratch) {
  Sink k;
  k.bytes = out;
  k.layout = layout;
  Resample(src, pitch, w, h, outW, outH, k, flip, scratch);
}

void ResampleNormalize(const uint8_t* src, int pitch, int w, int h, int outW, int outH, const float* table, float* out,
                       bool flip, std::vector<float>& scratch) {
  Sink k;
  k.floats = out;
  k.table = table;
  k.plane = static_cast<int64_t>(outW) * outH;
  k.row = outW;
  Resample(src, pitch, w, h, outW, outH, k, flip, scratch);
}

}  // namespace vilref
