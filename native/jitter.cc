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

// A finite float clipped to 0..255 and truncated: Blend8's result without branches. Written as
// comparisons (not std::min/max, whose NaN rules cost a compare and a blend per lane) so that
// the vector clones use single max/min instructions.
inline int32_t Clip8(float v) {
  v = v > 0.0f ? v : 0.0f;
  v = v < 255.0f ? v : 255.0f;
  return static_cast<int32_t>(v);
}

// Pillow's RGB → L (ITU-R 601-2 in 16-bit fixed point, rounded).
inline int Luma8(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

bool Active(const JitterPlan& p, int op) {
  return op == 0 ? p.brightness != 1.0f : op == 1 ? p.contrast != 1.0f : p.saturation != 1.0f;
}

// A run of pixels as 32-bit values, one array per channel: the loops over it are plain arithmetic
// on contiguous ints and floats, which the compiler vectorises (AVX2 where the CPU has it).
constexpr int kRun = 256;
struct Run {
  int32_t r[kRun], g[kRun], b[kRun];
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
    const float r = fa + alpha * static_cast<float>(x.r[j] - a);
    const float g = fa + alpha * static_cast<float>(x.g[j] - a);
    const float b = fa + alpha * static_cast<float>(x.b[j] - a);
    x.r[j] = Clip8(r);
    x.g[j] = Clip8(g);
    x.b[j] = Clip8(b);
  }
}

// Each value of a run through the blend steps.
void MapOps(Run& x, int k, const BlendOps& ops) {
  for (int o = 0; o < ops.n; o++) BlendRun(x, k, ops.a[o], ops.alpha[o]);
}

// Pixels [i, i + k) of the planes as 32-bit values.
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
    const int l = Luma8(x.r[j], x.g[j], x.b[j]);
    const float fl = static_cast<float>(l);
    float v = fl + alpha * static_cast<float>(x.r[j] - l);
    x.r[j] = Clip8(v);
    v = fl + alpha * static_cast<float>(x.g[j] - l);
    x.g[j] = Clip8(v);
    v = fl + alpha * static_cast<float>(x.b[j] - l);
    x.b[j] = Clip8(v);
  }
}

// Σ Luma8 over a run.
__attribute__((target_clones("avx2", "default"))) int64_t LumaSum(const Run& x, int k) {
  int32_t sum = 0;  // ≤ 256 · 255
  for (int j = 0; j < k; j++) sum += Luma8(x.r[j], x.g[j], x.b[j]);
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

// A run's values through the per-channel float tables into `stage` (three rows of kRun floats).
NoVector void Store(const Run& x, int k, const float (*t)[256], float (*stage)[kRun]) {
  for (int j = 0; j < k; j++) stage[0][j] = t[0][x.r[j]], stage[1][j] = t[1][x.g[j]], stage[2][j] = t[2][x.b[j]];
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
  alignas(16) float stage[3][kRun];
  for (int64_t i = 0; i < n; i += kRun) {
    const int k = static_cast<int>(std::min<int64_t>(kRun, n - i));
    Load(planes, n, i, k, preOps, x);
    SaturateRun(x, k, plan.saturation);
    Store(x, k, t, stage);
    Stream(stage, k, out, n, i);
  }
  _mm_sfence();  // the streamed stores are visible before the batch is handed over
}

}  // namespace vilref
