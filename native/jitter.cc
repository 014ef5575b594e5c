#include "jitter.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <emmintrin.h>
#include <xmmintrin.h>

namespace vilref {

namespace {

// Pillow's ImagingBlend for one value: a + alpha·(b − a) in float32, truncated, clipped to 0..255.
inline uint8_t Blend8(int a, int b, float alpha) {
  const float p = alpha * static_cast<float>(b - a);
  const float v = static_cast<float>(a) + p;
  return v <= 0.0f ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(static_cast<int>(v));
}

// A finite float (|v| < 2^31) truncated and clipped to 0..255, kept a float: Blend8's result
// (which clips and then truncates: the same value) without branches. Truncating first, and
// clipping as integers, lets GCC vectorise it (clipping the float and then converting does not).
inline float Clip8(float v) {
  int32_t i = static_cast<int32_t>(v);
  i = i > 0 ? i : 0;
  i = i < 255 ? i : 255;
  return static_cast<float>(i);
}

// Pillow's RGB → L (ITU-R 601-2 in 16-bit fixed point, rounded).
inline int Luma8(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

// Luma8 of values 0..255 held in floats, exactly: every product and partial sum is an integer
// below 2^24 (at most 255 · 65536 + 2^15), which float32 holds exactly, and × 2^-16 followed by
// truncation is the shift. Vector float multiplies instead of 32-bit integer ones (slow on x86).
inline float Luma8f(float r, float g, float b) {
  const float s = r * 19595.0f + g * 38470.0f + b * 7471.0f + 32768.0f;
  return static_cast<float>(static_cast<int32_t>(s * (1.0f / 65536.0f)));
}

bool Active(const JitterPlan& p, int op) {
  return op == 0 ? p.brightness != 1.0f : op == 1 ? p.contrast != 1.0f : p.saturation != 1.0f;
}

// A run of pixels as floats holding the values 0..255, one array per channel: the loops over it are
// plain arithmetic on contiguous floats, which the compiler vectorises (AVX2 where the CPU has it),
// and the steps pass values on without converting them back and forth.
constexpr int kRun = 256;
struct Run {
  float r[kRun], g[kRun], b[kRun];
};

// Blend steps that are one value each (brightness: Blend8(0, v, b); contrast: Blend8(mean, v, c)),
// in the plan's order: computed on a run in float32 exactly as Blend8 computes them (the same
// operations in the same order, no fused multiply-add in either clone), so the loops vectorise and
// give the bytes a table built with Blend8 would.
struct BlendOps {
  int n = 0;
  int a[2] = {0, 0};
  float alpha[2] = {1, 1};
  void Add(int base, float factor) { a[n] = base, alpha[n] = factor, n++; }
};

__attribute__((target_clones("avx2", "default"))) void BlendRun(Run& x, int k, int a, float alpha) {
  const float fa = static_cast<float>(a);
  for (int j = 0; j < k; j++) {
    // v − a is exact in float32 (both are integers 0..255), as Blend8's integer difference is
    x.r[j] = Clip8(fa + alpha * (x.r[j] - fa));
    x.g[j] = Clip8(fa + alpha * (x.g[j] - fa));
    x.b[j] = Clip8(fa + alpha * (x.b[j] - fa));
  }
}

// Each value of a run through the blend steps.
void MapOps(Run& x, int k, const BlendOps& ops) {
  for (int o = 0; o < ops.n; o++) BlendRun(x, k, ops.a[o], ops.alpha[o]);
}

// Pixels [i, i + k) of the planes as floats.
__attribute__((target_clones("avx2", "default"))) void Widen(const uint8_t* planes, int64_t n, int64_t i, int k,
                                                             Run& x) {
  const uint8_t *R = planes + i, *G = planes + n + i, *B = planes + 2 * n + i;
  for (int j = 0; j < k; j++) x.r[j] = R[j], x.g[j] = G[j], x.b[j] = B[j];
}

// Pixels [i, i + k) of the planes through the blend steps.
void Load(const uint8_t* planes, int64_t n, int64_t i, int k, const BlendOps& ops, Run& x) {
  Widen(planes, n, i, k, x);
  MapOps(x, k, ops);
}

// The table look-ups below stay scalar: GCC's vectorised form of a table look-up is slower
// (lanes assembled through the stack), and AVX2 gathers were slower still here. NoVector keeps it
// from trying.
#define NoVector __attribute__((optimize("no-tree-vectorize")))

// Saturation on a run: each channel blended with the pixel's luma (Blend8(l, v, alpha): the
// clip to 0..255 before the truncation gives the same byte, without branches).
__attribute__((target_clones("avx2", "default"))) void SaturateRun(Run& x, int k, float alpha) {
  for (int j = 0; j < k; j++) {
    const float l = Luma8f(x.r[j], x.g[j], x.b[j]);
    x.r[j] = Clip8(l + alpha * (x.r[j] - l));
    x.g[j] = Clip8(l + alpha * (x.g[j] - l));
    x.b[j] = Clip8(l + alpha * (x.b[j] - l));
  }
}

// Σ Luma8 over a run.
__attribute__((target_clones("avx2", "default"))) int64_t LumaSum(const Run& x, int k) {
  int32_t sum = 0;  // ≤ 256 · 255
  for (int j = 0; j < k; j++) sum += static_cast<int32_t>(Luma8f(x.r[j], x.g[j], x.b[j]));
  return sum;
}

// Σ Luma8 over the planes.
__attribute__((target_clones("avx2", "default"))) int64_t LumaSum8(const uint8_t* planes, int64_t n) {
  const uint8_t *R = planes, *G = planes + n, *B = planes + 2 * n;
  int64_t sum = 0;
  for (int64_t i = 0; i < n; i += kRun) {
    const int k = static_cast<int>(std::min<int64_t>(kRun, n - i));
    int32_t part = 0;  // ≤ kRun · 255
    for (int j = 0; j < k; j++) part += Luma8(R[i + j], G[i + j], B[i + j]);
    sum += part;
  }
  return sum;
}

// A run's values as table indices (vectorised).
struct Indices {
  int32_t r[kRun], g[kRun], b[kRun];
};
__attribute__((target_clones("avx2", "default"))) void ToIndices(const Run& x, int k, Indices& q) {
  for (int j = 0; j < k; j++)
    q.r[j] = static_cast<int32_t>(x.r[j]), q.g[j] = static_cast<int32_t>(x.g[j]), q.b[j] = static_cast<int32_t>(x.b[j]);
}

// A run's values through the per-channel float tables into `stage` (three rows of kRun floats).
NoVector void Store(const Indices& q, int k, const float (*t)[256], float (*stage)[kRun]) {
  for (int j = 0; j < k; j++) stage[0][j] = t[0][q.r[j]], stage[1][j] = t[1][q.g[j]], stage[2][j] = t[2][q.b[j]];
}

// The staged run into the output planes at i: non-temporal stores where they are 16-byte aligned
// (the output is a batch the model reads later; filling it through the cache would read each line
// in first and evict the working set for nothing), else ordinary ones.
void Stream(const float (*stage)[kRun], int k, float* out, int64_t n, int64_t i) {
  for (int c = 0; c < 3; c++) {
    float* o = out + c * n + i;
    int j = 0;
    if (reinterpret_cast<uintptr_t>(o) % 16 == 0)
      for (; j + 4 <= k; j += 4) _mm_stream_ps(o + j, _mm_load_ps(stage[c] + j));
    std::memcpy(o + j, stage[c] + j, sizeof(float) * (k - j));
  }
}

// The mean luma (rounded, as ImageStat + int(x + 0.5)) of the image as contrast sees it: after the
// steps that come before contrast in the plan's order (brightness, before or after a saturation
// pass).
int ContrastMean(const uint8_t* planes, int64_t n, const JitterPlan& plan) {
  BlendOps pre, post;
  bool sat = false;
  for (int op : plan.order) {
    if (op == 1) break;
    if (!Active(plan, op)) continue;
    if (op == 2) sat = true;
    if (op == 0) (sat ? post : pre).Add(0, plan.brightness);
  }
  int64_t sum = 0;  // exact, as the JS sum in doubles is for any image under 2^45 pixels
  if (!sat && pre.n == 0)
    sum = LumaSum8(planes, n);
  else {
    Run x;
    for (int64_t i = 0; i < n; i += kRun) {
      const int k = static_cast<int>(std::min<int64_t>(kRun, n - i));
      Load(planes, n, i, k, pre, x);
      if (sat) SaturateRun(x, k, plan.saturation);
      MapOps(x, k, post);
      sum += LumaSum(x, k);
    }
  }
  return static_cast<int>(std::floor(static_cast<double>(sum) / static_cast<double>(n) + 0.5));
}

}  // namespace

void JitterNormalize(const uint8_t* planes, int64_t n, const JitterPlan& plan, const float* table, float* out) {
  // The table steps before saturation compose into `pre`, those after it into `post`.
  uint8_t pre[256], post[256];
  for (int v = 0; v < 256; v++) pre[v] = post[v] = static_cast<uint8_t>(v);
  BlendOps preOps;  // pre as blend steps, for the runs (the tables compose into the float tables)
  const int mean = Active(plan, 1) ? ContrastMean(planes, n, plan) : 0;
  bool afterSat = false;
  for (int op : plan.order) {
    if (!Active(plan, op)) continue;
    if (op == 2) {
      afterSat = true;
      continue;
    }
    uint8_t* lut = afterSat ? post : pre;
    for (int v = 0; v < 256; v++)
      lut[v] = op == 0 ? Blend8(0, lut[v], plan.brightness) : Blend8(mean, lut[v], plan.contrast);
    if (!afterSat) preOps.Add(op == 0 ? 0 : mean, op == 0 ? plan.brightness : plan.contrast);
  }
  float t[3][256];
  const bool sat = Active(plan, 2);
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) t[c][v] = table[256 * c + post[sat ? v : pre[v]]];
  if (!sat) {
    for (int c = 0; c < 3; c++)
      for (int64_t i = 0; i < n; i++) out[c * n + i] = t[c][planes[c * n + i]];
    return;
  }
  Run x;
  Indices q;
  alignas(16) float stage[3][kRun];
  for (int64_t i = 0; i < n; i += kRun) {
    const int k = static_cast<int>(std::min<int64_t>(kRun, n - i));
    Load(planes, n, i, k, preOps, x);
    SaturateRun(x, k, plan.saturation);
    ToIndices(x, k, q);
    Store(q, k, t, stage);
    Stream(stage, k, out, n, i);
  }
  _mm_sfence();  // the streamed stores are visible before the batch is handed over
}

}  // namespace vilref
