#include "jitter.h"

#include <cmath>

namespace vilref {

namespace {

// Pillow's ImagingBlend for one value: a + alpha·(b − a) in float32, truncated, clipped to 0..255.
inline uint8_t Blend8(int a, int b, float alpha) {
  const float p = alpha * static_cast<float>(b - a);
  const float v = static_cast<float>(a) + p;
  return v <= 0.0f ? 0 : v >= 255.0f ? 255 : static_cast<uint8_t>(static_cast<int>(v));
}

// Pillow's RGB → L (ITU-R 601-2 in 16-bit fixed point, rounded).
inline int Luma8(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

// Saturation: each channel blended with the pixel's luma; the products by difference, once per image.
struct Saturate {
  float prod[511];
  explicit Saturate(float alpha) {
    for (int d = -255; d <= 255; d++) prod[d + 255] = alpha * static_cast<float>(d);
  }
  uint8_t Blend(int l, int v) const {
    const float x = static_cast<float>(l) + prod[v - l + 255];
    return x <= 0.0f ? 0 : x >= 255.0f ? 255 : static_cast<uint8_t>(static_cast<int>(x));
  }
  void Apply(int& r, int& g, int& b) const {
    const int l = Luma8(r, g, b);
    r = Blend(l, r);
    g = Blend(l, g);
    b = Blend(l, b);
  }
};

bool Active(const JitterPlan& p, int op) {
  return op == 0 ? p.brightness != 1.0f : op == 1 ? p.contrast != 1.0f : p.saturation != 1.0f;
}

// The mean luma (rounded, as ImageStat + int(x + 0.5)) of the image as contrast sees it: after the
// steps that come before contrast in the plan's order.
int ContrastMean(const uint8_t* planes, int64_t n, const JitterPlan& plan) {
  uint8_t bright[256];
  for (int v = 0; v < 256; v++) bright[v] = Blend8(0, v, plan.brightness);
  const Saturate sat(plan.saturation);
  int before[2], k = 0;
  for (int op : plan.order) {
    if (op == 1) break;
    if (Active(plan, op)) before[k++] = op;
  }
  int64_t sum = 0;  // exact, as the JS sum in doubles is for any image under 2^45 pixels
  for (int64_t i = 0; i < n; i++) {
    int r = planes[i], g = planes[n + i], b = planes[2 * n + i];
    for (int j = 0; j < k; j++) {
      if (before[j] == 0)
        r = bright[r], g = bright[g], b = bright[b];
      else
        sat.Apply(r, g, b);
    }
    sum += Luma8(r, g, b);
  }
  return static_cast<int>(std::floor(static_cast<double>(sum) / static_cast<double>(n) + 0.5));
}

}  // namespace

void JitterNormalize(const uint8_t* planes, int64_t n, const JitterPlan& plan, const float* table, float* out) {
  // The table steps before saturation compose into `pre`, those after it into `post`.
  uint8_t pre[256], post[256];
  for (int v = 0; v < 256; v++) pre[v] = post[v] = static_cast<uint8_t>(v);
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
  }
  float t[3][256];
  const bool sat = Active(plan, 2);
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) t[c][v] = table[256 * c + post[sat ? v : pre[v]]];
  const uint8_t *R = planes, *G = planes + n, *B = planes + 2 * n;
  if (!sat) {
    for (int c = 0; c < 3; c++)
      for (int64_t i = 0; i < n; i++) out[c * n + i] = t[c][planes[c * n + i]];
    return;
  }
  const Saturate s(plan.saturation);
  for (int64_t i = 0; i < n; i++) {
    int r = pre[R[i]], g = pre[G[i]], b = pre[B[i]];
    s.Apply(r, g, b);
    out[i] = t[0][r];
    out[n + i] = t[1][g];
    out[2 * n + i] = t[2][b];
  }
}

}  // namespace vilref
