// What a JPEG's markers say before its first scan — size, components, EXIF orientation — and
// whether the fast path (jpeg.cc) takes it or leaves it to sharp: it takes baseline, extended and
// progressive 8-bit JPEGs with 1 or 3 components in a common chroma sampling, without an EXIF
// orientation other than top-left or an ICC profile other than sRGB. Pure byte parsing, no libjpeg.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vilref {

struct JpegInfo {
  bool jpeg = false;  // starts with SOI and a marker
  int width = 0, height = 0, components = 0;
  int orientation = 0;   // the EXIF orientation tag, 0 when there is none
  std::string fallback;  // why sharp should decode it; empty when the fast path can
};

JpegInfo InspectJpeg(const uint8_t* data, size_t size);

}  // namespace vilref
