#include "jpeg_inspect.h"

#include <cstring>

namespace vilref {

namespace {

inline int U16(const uint8_t* b) { return (b[0] << 8) | b[1]; }

// The orientation tag (0x0112) of an APP1 Exif segment's IFD0, or 0.
int ExifOrientation(const uint8_t* seg, size_t len) {
  if (len < 14 || std::memcmp(seg, "Exif", 4) != 0) return 0;
  const uint8_t* t = seg + 6;
  const size_t n = len - 6;
  const bool le = t[0] == 'I' && t[1] == 'I';
  if (!le && !(t[0] == 'M' && t[1] == 'M')) return 0;
  const auto r16 = [&](size_t i) -> uint32_t { return le ? t[i] | (t[i + 1] << 8) : (t[i] << 8) | t[i + 1]; };
  const auto r32 = [&](size_t i) -> uint32_t { return le ? r16(i) | (r16(i + 2) << 16) : (r16(i) << 16) | r16(i + 2); };
  const size_t ifd = r32(4);
  if (ifd + 2 > n) return 0;
  const uint32_t entries = r16(ifd);
  for (uint32_t k = 0; k < entries; k++) {
    const size_t e = ifd + 2 + 12 * k;
    if (e + 12 > n) return 0;
    if (r16(e) == 0x0112) return static_cast<int>(r16(e + 8));
  }
  return 0;
}

// An ICC profile chunk that names itself sRGB (in ASCII or UTF-16 in its description).
bool IccIsSrgb(const uint8_t* seg, size_t len) {
  static const char ascii[] = "sRGB";
  static const char utf16[] = {0, 's', 0, 'R', 0, 'G', 0, 'B'};
  for (size_t i = 0; i + 8 <= len; i++)
    if (std::memcmp(seg + i, ascii, 4) == 0 || std::memcmp(seg + i, utf16, 8) == 0) return true;
  return false;
}

void Refuse(JpegInfo& info, const std::string& why) {
  if (info.fallback.empty()) info.fallback = why;
}

// A frame header: size, components, and whether the fast path covers its coding and sampling.
void FrameInfo(int m, const uint8_t* seg, size_t len, JpegInfo& info) {
  if (m != 0xc0 && m != 0xc1 && m != 0xc2)
    Refuse(info, "coding process SOF" + std::to_string(m - 0xc0) + " (lossless, hierarchical or arithmetic)");
  if (len < 6) return Refuse(info, "short frame header");
  if (seg[0] != 8) Refuse(info, std::to_string(seg[0]) + "-bit samples");
  info.height = U16(seg + 1);
  info.width = U16(seg + 3);
  const int nc = seg[5];
  info.components = nc;
  if (nc != 1 && nc != 3)
    return Refuse(info, nc == 4 ? "CMYK/YCCK (4 components)" : std::to_string(nc) + " components");
  if (nc != 3 || len < 15) return;
  const auto h = [&](int k) { return seg[6 + 3 * k + 1] >> 4; };
  const auto v = [&](int k) { return seg[6 + 3 * k + 1] & 15; };
  const bool chromaOne = h(1) == 1 && v(1) == 1 && h(2) == 1 && v(2) == 1;
  const int yh = h(0), yv = v(0);
  const bool lumaOk = (yh == 1 || yh == 2 || yh == 4) && (yv == 1 || (yv == 2 && yh <= 2)) && !(yh == 4 && yv != 1);
  if (!chromaOne || !lumaOk) {
    std::string s;
    for (int k = 0; k < 3; k++) s += (k ? " " : "") + std::to_string(h(k)) + "x" + std::to_string(v(k));
    Refuse(info, "chroma sampling " + s + " (not 4:4:4, 4:2:2, 4:4:0, 4:2:0 or 4:1:1)");
  }
}

}  // namespace

JpegInfo InspectJpeg(const uint8_t* b, size_t size) {
  JpegInfo info;
  if (size < 3 || b[0] != 0xff || b[1] != 0xd8 || b[2] != 0xff) return info;
  info.jpeg = true;
  size_t i = 2;
  while (i + 4 <= size) {
    if (b[i] != 0xff) return Refuse(info, "malformed marker structure"), info;
    const int m = b[i + 1];
    if (m == 0xff) {
      i++;  // fill byte
      continue;
    }
    if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2;
      continue;
    }
    const size_t len = U16(b + i + 2);
    const uint8_t* seg = b + i + 4;
    const size_t segLen = len >= 2 ? std::min(size - (i + 4), len - 2) : 0;
    if (m == 0xda) break;  // start of scan: the header is done
    if (m == 0xe1) {
      const int o = ExifOrientation(seg, segLen);
      if (o) info.orientation = o;
      if (o && o != 1) Refuse(info, "EXIF orientation " + std::to_string(o));
    } else if (m == 0xe2 && segLen >= 12 && std::memcmp(seg, "ICC_PROFILE", 11) == 0) {
      if (!IccIsSrgb(seg, segLen)) Refuse(info, "an ICC colour profile other than sRGB");
    } else if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
      FrameInfo(m, seg, segLen, info);
    }
    i += 2 + len;
  }
  if (!info.width || !info.height) Refuse(info, "no frame header before the scan");
  return info;
}

}  // namespace vilref
