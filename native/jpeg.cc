#include "jpeg.h"

#include <ATen/ATen.h>

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#ifdef VILREF_WITH_TURBOJPEG
#include <turbojpeg.h>
#endif

#include "async.h"
#include "bridge.h"
#include "jitter.h"
#include "jpeg_inspect.h"
#include "resample.h"

namespace vilref {

#ifdef VILREF_WITH_TURBOJPEG

namespace {

// LibTorch's intra-op pool is OpenMP here: a resize on a libuv thread would start a team of
// threads per decode (N decodes × M threads on M cores). One image runs on one thread; the pool of
// decodes is the parallelism. The OpenMP runtime is the one LibTorch loaded (libgomp, or a copy
// under another name in a pip wheel), found among the loaded libraries: the addon's dependencies
// are not in the global symbol scope. The thread's own setting is restored afterwards for the
// model calls that share the libuv thread.
struct OmpApi {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
  std::string library;
};

int FindOmp(struct dl_phdr_info* info, size_t, void* data) {
  auto* api = static_cast<OmpApi*>(data);
  const char* name = info->dlpi_name;
  if (api->set || !name || !*name || (!std::strstr(name, "gomp") && !std::strstr(name, "omp"))) return 0;
  void* lib = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
  if (!lib) return 0;
  api->set = reinterpret_cast<void (*)(int)>(dlsym(lib, "omp_set_num_threads"));
  api->get = reinterpret_cast<int (*)()>(dlsym(lib, "omp_get_max_threads"));
  if (!api->set || !api->get) api->set = nullptr, api->get = nullptr;
  if (api->set) api->library = name;
  dlclose(lib);  // still loaded: LibTorch holds it
  return api->set ? 1 : 0;
}

const OmpApi& Omp() {
  static const OmpApi api = [] {
    OmpApi a;
    dl_iterate_phdr(FindOmp, &a);
    return a;
  }();
  return api;
}

class SingleThreadGuard {
 public:
  SingleThreadGuard() {
    if (Omp().set) {
      previous_ = Omp().get();
      if (previous_ != 1) Omp().set(1);
    }
  }
  ~SingleThreadGuard() {
    if (Omp().set && previous_ != 1) Omp().set(previous_);
  }
  SingleThreadGuard(const SingleThreadGuard&) = delete;
  SingleThreadGuard& operator=(const SingleThreadGuard&) = delete;

 private:
  int previous_ = 1;
};

// One TurboJPEG decompressor per thread: its error string belongs to the one call running there.
struct Decompressor {
  tjhandle handle = tjInitDecompress();
  std::vector<uint8_t> pixels;  // the decoded image (reused; shrunk when a huge one passed)
  std::vector<uint8_t> planes;  // the resized 8-bit output (reused)
  std::vector<float> scratch;   // the resampler's intermediate rows (reused)
  ~Decompressor() {
    if (handle) tjDestroy(handle);
  }
};

Decompressor& ThreadDecompressor() {
  thread_local Decompressor d;
  if (!d.handle) throw BoundaryError(ErrorKind::Error, std::string("TurboJPEG: ") + tjGetErrorStr2(nullptr));
  return d;
}

// The smallest scaling factor M/N ≤ 1 whose output still covers needW×needH pixels of the rectangle.
tjscalingfactor ChooseScale(double rw, double rh, int needW, int needH, bool shrink) {
  tjscalingfactor best{1, 1};
  if (!shrink) return best;
  int n = 0;
  tjscalingfactor* all = tjGetScalingFactors(&n);
  for (int i = 0; i < n; i++) {
    const double f = static_cast<double>(all[i].num) / all[i].denom;
    if (f > 1.0 || f >= static_cast<double>(best.num) / best.denom) continue;
    if (std::floor(rw * f) >= needW && std::floor(rh * f) >= needH) best = all[i];
  }
  return best;
}

struct Outcome {
  std::string status = "ok";  // ok | corrupt | error | fallback
  std::string message;
  int width = 0, height = 0, decodedWidth = 0, decodedHeight = 0, scaleNum = 1, scaleDenom = 1;
  std::vector<uint8_t> encoded;  // resize: the JPEG written
  std::string code;              // a file that could not be read: its errno name (ENOENT, EACCES, ...)
};

// The decoded crop: w×h RGB pixels, rows `pitch` bytes apart.
struct Crop {
  const uint8_t* pixels = nullptr;
  int pitch = 0, w = 0, h = 0;
};

// The crop resized to outW×outH and rounded to bytes in `layout` (see resample.h): the dedicated
// kernel, or LibTorch's _upsample_bicubic2d_aa (one OpenMP thread) when the plan asks for it.
void Resample(const Crop& c, int outW, int outH, const JpegPlan& plan, uint8_t* out, const ByteLayout& layout,
              std::vector<float>& scratch) {
  if (!plan.torchResize)
    return ResampleBicubicAA(c.pixels, c.pitch, c.w, c.h, outW, outH, out, layout, plan.flip, scratch);
  SingleThreadGuard one;
  at::Tensor x = at::from_blob(const_cast<uint8_t*>(c.pixels), {c.h, c.w, 3}, {c.pitch, 3, 1}, at::kByte)
                     .permute({2, 0, 1})
                     .unsqueeze(0)
                     .to(at::kFloat)
                     .contiguous();
  if (c.w != outW || c.h != outH) x = at::_upsample_bicubic2d_aa(x, {outH, outW}, false);
  const float* v = x.data_ptr<float>();
  const int64_t n = static_cast<int64_t>(outW) * outH;
  for (int ch = 0; ch < 3; ch++)
    for (int y = 0; y < outH; y++)
      for (int xx = 0; xx < outW; xx++) {
        const float f = v[ch * n + static_cast<int64_t>(y) * outW + xx];
        out[y * layout.row + (plan.flip ? outW - 1 - xx : xx) * layout.pixel + ch * layout.channel] =
            f <= 0.0f     ? 0
            : f >= 255.0f ? 255
                          : static_cast<uint8_t>(f + 0.5f);
      }
}

bool Fail(Decompressor& d, Outcome& o) {
  o.status = tjGetErrorCode(d.handle) == TJERR_WARNING ? "corrupt" : "error";
  o.message = tjGetErrorStr2(d.handle);
  return false;
}

// Decodes at the DCT scale that covers outW×outH of the plan's rectangle and finds that rectangle
// in the decoded pixels (rounded, at least one pixel, inside the image); false with the outcome's
// status set when libjpeg fails or warns, or the image is a kind left to sharp.
bool DecodeCrop(Decompressor& d, const uint8_t* data, size_t size, const JpegPlan& plan, int outW, int outH, Outcome& o,
                Crop& crop) {
  int W = 0, H = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(d.handle, data, static_cast<unsigned long>(size), &W, &H, &subsamp, &colorspace) != 0)
    return Fail(d, o);
  o.width = W;
  o.height = H;
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    o.status = "fallback";
    o.message = "CMYK/YCCK JPEG";
    return false;
  }
  if (static_cast<int64_t>(W) * H > (int64_t{1} << 28)) {
    o.status = "error";
    o.message = "image has " + std::to_string(static_cast<int64_t>(W) * H) + " pixels, more than 2^28";
    return false;
  }
  const double rw = plan.width > 0 ? plan.width : W, rh = plan.height > 0 ? plan.height : H;
  const tjscalingfactor sf = ChooseScale(rw, rh, outW, outH, plan.shrink);
  const int sw = TJSCALED(W, sf), sh = TJSCALED(H, sf), pitch = sw * 3;
  o.decodedWidth = sw;
  o.decodedHeight = sh;
  o.scaleNum = sf.num;
  o.scaleDenom = sf.denom;
  const size_t need = static_cast<size_t>(pitch) * sh;
  if (d.pixels.capacity() > (size_t{64} << 20) && need < d.pixels.capacity() / 4) std::vector<uint8_t>().swap(d.pixels);
  d.pixels.resize(need);
  if (tjDecompress2(d.handle, data, static_cast<unsigned long>(size), d.pixels.data(), sw, pitch, sh, TJPF_RGB,
                    TJFLAG_STOPONWARNING) != 0)
    return Fail(d, o);
  const double f = static_cast<double>(sw) / W, g = static_cast<double>(sh) / H;
  int x0 = static_cast<int>(std::lround(plan.width > 0 ? plan.left * f : 0));
  int y0 = static_cast<int>(std::lround(plan.height > 0 ? plan.top * g : 0));
  int x1 = plan.width > 0 ? static_cast<int>(std::lround((plan.left + plan.width) * f)) : sw;
  int y1 = plan.height > 0 ? static_cast<int>(std::lround((plan.top + plan.height) * g)) : sh;
  x0 = std::clamp(x0, 0, sw - 1);
  y0 = std::clamp(y0, 0, sh - 1);
  x1 = std::clamp(x1, x0 + 1, sw);
  y1 = std::clamp(y1, y0 + 1, sh);
  crop = {d.pixels.data() + static_cast<int64_t>(y0) * pitch + x0 * 3, pitch, x1 - x0, y1 - y0};
  return true;
}

// Decodes, crops, resizes and writes one image into the batch; failures become the outcome's status.
Outcome DecodeInto(const uint8_t* data, size_t size, const JpegPlan& plan, float* out) {
  Outcome o;
  const JpegInfo info = InspectJpeg(data, size);
  o.width = info.width;
  o.height = info.height;
  if (!info.jpeg || !info.fallback.empty()) {
    o.status = "fallback";
    o.message = info.jpeg ? info.fallback : "not a JPEG";
    return o;
  }
  Crop crop;
  Decompressor& d = ThreadDecompressor();
  if (!DecodeCrop(d, data, size, plan, plan.size, plan.size, o, crop)) return o;
  const JitterPlan& j = plan.jitter;
  if (!plan.torchResize && j.brightness == 1.0f && j.contrast == 1.0f && j.saturation == 1.0f) {
    // no jitter: the resize writes through the normalisation table (same floats, one pass fewer)
    ResampleNormalize(crop.pixels, crop.pitch, crop.w, crop.h, plan.size, plan.size, plan.table, out, plan.flip,
                      d.scratch);
    return o;
  }
  const int64_t n = static_cast<int64_t>(plan.size) * plan.size;
  d.planes.resize(3 * n);
  Resample(crop, plan.size, plan.size, plan, d.planes.data(), ByteLayout{plan.size, 1, n}, d.scratch);
  JitterNormalize(d.planes.data(), n, j, plan.table, out);
  return o;
}

// Decodes, crops and resizes one image to outWidth×outHeight (or, given shortSide, to the crop
// scaled so that its short side is shortSide, never enlarged: lib/data/pack.ts's rule) and encodes
// it as a JPEG (4:2:0). What jpeg_inspect.cc leaves to sharp comes back as "fallback".
Outcome Resize(const uint8_t* data, size_t size, const JpegPlan& plan) {
  Outcome o;
  const JpegInfo info = InspectJpeg(data, size);
  o.width = info.width;
  o.height = info.height;
  if (!info.jpeg || !info.fallback.empty()) {
    o.status = "fallback";
    o.message = info.jpeg ? info.fallback : "not a JPEG";
    return o;
  }
  int W = plan.outWidth, H = plan.outHeight;
  if (plan.shortSide > 0) {
    const double rw = plan.width > 0 ? plan.width : info.width, rh = plan.height > 0 ? plan.height : info.height;
    const double scale = std::min(1.0, plan.shortSide / std::min(rw, rh));
    W = std::max(1, static_cast<int>(std::lround(rw * scale)));  // Math.round: halves up (all positive)
    H = std::max(1, static_cast<int>(std::lround(rh * scale)));
  }
  Crop crop;
  Decompressor& d = ThreadDecompressor();
  if (!DecodeCrop(d, data, size, plan, W, H, o, crop)) return o;
  const uint8_t* rgb = crop.pixels;  // the decoded crop itself when it is already the output size
  int pitch = crop.pitch;
  if (crop.w != W || crop.h != H || plan.flip || plan.torchResize) {
    d.planes.resize(static_cast<size_t>(W) * H * 3);
    Resample(crop, W, H, plan, d.planes.data(), ByteLayout{static_cast<int64_t>(W) * 3, 3, 1}, d.scratch);
    rgb = d.planes.data();
    pitch = W * 3;
  }
  thread_local std::unique_ptr<void, int (*)(tjhandle)> compressor(tjInitCompress(), tjDestroy);
  if (!compressor) throw BoundaryError(ErrorKind::Error, std::string("TurboJPEG: ") + tjGetErrorStr2(nullptr));
  unsigned char* jpeg = nullptr;
  unsigned long jpegSize = 0;
  if (tjCompress2(compressor.get(), rgb, W, pitch, H, TJPF_RGB, &jpeg, &jpegSize, TJSAMP_420, plan.quality, 0) != 0) {
    o.status = "error";
    o.message = std::string("encoding: ") + tjGetErrorStr2(compressor.get());
    if (jpeg) tjFree(jpeg);
    return o;
  }
  o.encoded.assign(jpeg, jpeg + jpegSize);
  tjFree(jpeg);
  return o;
}

// Decodes the whole entropy-coded data at the smallest scale (in CMYK for CMYK files) only to learn
// whether libjpeg warns: the check for JPEGs that sharp renders (libvips stops before the end of
// the scan data and does not see what libjpeg reports there).
Outcome Validate(const uint8_t* data, size_t size) {
  Outcome o;
  Decompressor& d = ThreadDecompressor();
  int W = 0, H = 0, subsamp = 0, colorspace = 0;
  const auto fail = [&] {
    o.status = tjGetErrorCode(d.handle) == TJERR_WARNING ? "corrupt" : "error";
    o.message = tjGetErrorStr2(d.handle);
    return o;
  };
  if (tjDecompressHeader3(d.handle, data, static_cast<unsigned long>(size), &W, &H, &subsamp, &colorspace) != 0)
    return fail();
  o.width = W;
  o.height = H;
  if (static_cast<int64_t>(W) * H > (int64_t{1} << 28)) {
    o.status = "error";
    o.message = "image has " + std::to_string(static_cast<int64_t>(W) * H) + " pixels, more than 2^28";
    return o;
  }
  int n = 0;
  tjscalingfactor* all = tjGetScalingFactors(&n);
  tjscalingfactor sf{1, 1};
  for (int i = 0; i < n; i++)
    if (all[i].num * sf.denom < sf.num * all[i].denom) sf = all[i];
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const int sw = TJSCALED(W, sf), sh = TJSCALED(H, sf), pitch = sw * (cmyk ? 4 : 3);
  d.pixels.resize(static_cast<size_t>(pitch) * sh);
  if (tjDecompress2(d.handle, data, static_cast<unsigned long>(size), d.pixels.data(), sw, pitch, sh,
                    cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_STOPONWARNING) != 0)
    return fail();
  return o;
}

// Reads a whole file into `buf` (on the worker thread); false with the outcome set when it cannot.
bool ReadFile(const std::string& path, std::vector<uint8_t>& buf, Outcome& o) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  const auto fail = [&](int err) {
    o.status = "error";
    o.code = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == EISDIR ? "EISDIR" : "EIO";
    o.message = o.code + ": " + std::strerror(err) + ", open '" + path + "'";
    if (f) std::fclose(f);
    return false;
  };
  if (!f) return fail(errno);
  if (std::fseek(f, 0, SEEK_END) != 0) return fail(errno);
  const long size = std::ftell(f);
  if (size < 0) return fail(errno == 0 ? EISDIR : errno);
  std::rewind(f);
  buf.resize(static_cast<size_t>(size));
  if (size > 0 && std::fread(buf.data(), 1, buf.size(), f) != buf.size()) return fail(errno ? errno : EIO);
  std::fclose(f);
  return true;
}

class DecodeTask : public Task {
 public:
  DecodeTask(Napi::ObjectReference bytes, Napi::ObjectReference out, Napi::ObjectReference table, const uint8_t* data,
             size_t size, float* target, JpegPlan plan, std::string path = "")
      : bytes_(std::move(bytes)),
        out_(std::move(out)),
        table_(std::move(table)),
        data_(data),
        size_(size),
        target_(target),
        plan_(plan),
        path_(std::move(path)) {}

  void Execute() override {
    const uint8_t* data = data_;
    size_t size = size_;
    if (!path_.empty()) {  // read here, on the worker, into the thread's reused buffer
      thread_local std::vector<uint8_t> file;
      if (!ReadFile(path_, file, outcome_)) return;
      if (file.empty()) {
        outcome_.status = "fallback";
        outcome_.message = "empty file";
        return;
      }
      data = file.data();
      size = file.size();
    }
    if (target_)
      outcome_ = DecodeInto(data, size, plan_, target_);
    else if (plan_.outWidth > 0 || plan_.shortSide > 0)
      outcome_ = Resize(data, size, plan_);
    else
      outcome_ = Validate(data, size);
  }

  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("status", outcome_.status);
    if (!outcome_.message.empty()) r.Set("message", outcome_.message);
    if (!outcome_.code.empty()) r.Set("code", outcome_.code);
    r.Set("width", outcome_.width);
    r.Set("height", outcome_.height);
    r.Set("decodedWidth", outcome_.decodedWidth);
    r.Set("decodedHeight", outcome_.decodedHeight);
    r.Set("scale", outcome_.scaleNum / static_cast<double>(outcome_.scaleDenom));
    if (!outcome_.encoded.empty())
      r.Set("data", Napi::Buffer<uint8_t>::Copy(env, outcome_.encoded.data(), outcome_.encoded.size()));
    return r;
  }

 private:
  Napi::ObjectReference bytes_, out_, table_;
  const uint8_t* data_;
  size_t size_;
  float* target_;
  JpegPlan plan_;
  std::string path_;
  Outcome outcome_;
};

}  // namespace

#endif  // VILREF_WITH_TURBOJPEG

// The plan's fields are read as lib/data/jpeg.ts builds them: every key present (WHOLE_IMAGE and
// NO_JITTER fill what a caller does not set), each with bridge.h's strict readers, whose errors name
// `options.<key>`.

// The crop rectangle (source pixels; width and height 0: the whole image), the mirror, the DCT
// scaling and the resampler: what decodeInto and resize share.
static void ReadGeometry(const Napi::Object& o, JpegPlan& p) {
  p.left = ReadNumber(o, "options", "left", -1e9, 1e9);
  p.top = ReadNumber(o, "options", "top", -1e9, 1e9);
  p.width = ReadNumber(o, "options", "width", 0, 1e9);
  p.height = ReadNumber(o, "options", "height", 0, 1e9);
  if ((p.width > 0) != (p.height > 0)) ThrowRangeError("options.width/height: give both or neither");
  p.flip = ReadBool(o, "options", "flip");
  p.shrink = ReadBool(o, "options", "shrink");
  p.torchResize = ReadEnumName(o, "options", "resampler", {"native", "libtorch"}) == "libtorch";
}

// The colour jitter: three factors (1: none) and the order they apply in.
static void ReadJitter(const Napi::Object& o, JitterPlan& j) {
  j.brightness = static_cast<float>(ReadNumber(o, "options", "brightness", 0, 16));
  j.contrast = static_cast<float>(ReadNumber(o, "options", "contrast", 0, 16));
  j.saturation = static_cast<float>(ReadNumber(o, "options", "saturation", 0, 16));
  const std::vector<int64_t> order = ReadIntArray(o, "options", "order", 0, 2);
  int seen = 0;
  for (size_t i = 0; i < order.size() && i < 3; i++) {
    j.order[i] = static_cast<int>(order[i]);
    seen |= 1 << j.order[i];
  }
  if (order.size() != 3 || seen != 7) ThrowRangeError("options.order: expected a permutation of [0, 1, 2]");
}

// decodeInto's plan: the output side, the geometry and the jitter.
static JpegPlan ReadPlan(const Napi::Object& o) {
  JpegPlan p;
  p.size = static_cast<int>(ReadInt(o, "options", "size", 8, 4096));
  ReadGeometry(o, p);
  ReadJitter(o, p.jitter);
  return p;
}

namespace {

// The `src` argument of decodeInto and resize: a file path (read on the worker thread), or a
// Uint8Array holding the file, referenced for as long as the task runs.
struct JpegSource {
  std::string path;
  Napi::ObjectReference bytes;
  const uint8_t* data = nullptr;
  size_t size = 0;
};

JpegSource ReadSource(const Napi::Value& v) {
  JpegSource src;
  if (v.IsString()) {
    src.path = v.As<Napi::String>().Utf8Value();
    if (src.path.empty()) ThrowTypeError("src: an empty path");
    return src;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    ThrowTypeError("src: expected a Uint8Array holding a JPEG file, or a file path");
  auto bytes = v.As<Napi::Uint8Array>();
  if (bytes.ByteLength() == 0) ThrowRangeError("src: empty");
  src.bytes = Napi::Persistent(bytes.As<Napi::Object>());
  src.data = bytes.Data();
  src.size = bytes.ByteLength();
  return src;
}

Napi::Value DecodeIntoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    JpegSource src = ReadSource(info[0]);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      ThrowTypeError("out: expected a Float32Array");
    auto out = info[1].As<Napi::Float32Array>();
    const int64_t offset = ReadInteger(info[2], "offset", 0, static_cast<int64_t>(out.ElementLength()));
    if (!info[3].IsObject()) ThrowTypeError("options: expected an object");
    Napi::Object o = info[3].As<Napi::Object>();
    JpegPlan plan = ReadPlan(o);
    Napi::Value tv = o.Get("table");
    if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        tv.As<Napi::Float32Array>().ElementLength() != 768)
      ThrowTypeError("options.table: expected a Float32Array of 768 values (3 × 256)");
    const int64_t per = 3 * static_cast<int64_t>(plan.size) * plan.size;
    if (offset + per > static_cast<int64_t>(out.ElementLength()))
      ThrowRangeError("out: " + std::to_string(out.ElementLength()) + " floats, needs " + std::to_string(offset + per));
#ifdef VILREF_WITH_TURBOJPEG
    auto table = tv.As<Napi::Float32Array>();
    plan.table = table.Data();
    return RunAsync(env, std::make_unique<DecodeTask>(std::move(src.bytes), Napi::Persistent(out.As<Napi::Object>()),
                                                      Napi::Persistent(table.As<Napi::Object>()), src.data, src.size,
                                                      out.Data() + offset, plan, src.path));
#else
    (void)src;
    throw BoundaryError(ErrorKind::Error, "jpeg.decodeInto: this addon was built without TurboJPEG");
#endif
  });
}

Napi::Value ValidateJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      ThrowTypeError("bytes: expected a Uint8Array holding a JPEG file");
    auto bytes = info[0].As<Napi::Uint8Array>();
    if (bytes.ByteLength() == 0) ThrowRangeError("bytes: empty");
#ifdef VILREF_WITH_TURBOJPEG
    return RunAsync(env, std::make_unique<DecodeTask>(Napi::Persistent(bytes.As<Napi::Object>()),
                                                      Napi::ObjectReference(), Napi::ObjectReference(), bytes.Data(),
                                                      bytes.ByteLength(), nullptr, JpegPlan()));
#else
    throw BoundaryError(ErrorKind::Error, "jpeg.validate: this addon was built without TurboJPEG");
#endif
  });
}

Napi::Value ResizeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    JpegSource src = ReadSource(info[0]);
    if (!info[1].IsObject()) ThrowTypeError("options: expected an object");
    Napi::Object o = info[1].As<Napi::Object>();
    JpegPlan plan;
    ReadGeometry(o, plan);
    plan.shortSide = static_cast<int>(ReadInt(o, "options", "shortSide", 0, 16384));
    plan.outWidth = static_cast<int>(ReadInt(o, "options", "outWidth", 0, 16384));
    plan.outHeight = static_cast<int>(ReadInt(o, "options", "outHeight", 0, 16384));
    if (plan.shortSide > 0 && (plan.outWidth > 0 || plan.outHeight > 0))
      ThrowRangeError("options: give outWidth and outHeight, or shortSide (with both 0), not both");
    if (plan.shortSide == 0 && (plan.outWidth < 1 || plan.outHeight < 1))
      ThrowRangeError("options.outWidth/outHeight: expected at least 1 (or give shortSide)");
    plan.quality = static_cast<int>(ReadInt(o, "options", "quality", 1, 100));
#ifdef VILREF_WITH_TURBOJPEG
    return RunAsync(env,
                    std::make_unique<DecodeTask>(std::move(src.bytes), Napi::ObjectReference(), Napi::ObjectReference(),
                                                 src.data, src.size, nullptr, plan, src.path));
#else
    (void)plan, (void)src;
    throw BoundaryError(ErrorKind::Error, "jpeg.resize: this addon was built without TurboJPEG");
#endif
  });
}

Napi::Value InspectJs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      ThrowTypeError("bytes: expected a Uint8Array");
    auto bytes = info[0].As<Napi::Uint8Array>();
    const JpegInfo j = InspectJpeg(bytes.Data(), bytes.ByteLength());
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("jpeg", j.jpeg);
    r.Set("width", j.width);
    r.Set("height", j.height);
    r.Set("components", j.components);
    r.Set("orientation", j.orientation ? Napi::Value(Napi::Number::New(env, j.orientation)) : env.Null());
    r.Set("fallback", j.fallback.empty() ? env.Null() : Napi::Value(Napi::String::New(env, j.fallback)));
    return r;
  });
}

// Test hook: JitterNormalize on interleaved pixels through an identity table (value v → v), so
// tests compare it with the JS jitter8 byte for byte.
Napi::Value JitterJs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      ThrowTypeError("rgb: expected a Uint8Array of interleaved RGB");
    if (!info[1].IsObject()) ThrowTypeError("plan: expected an object");
    uint8_t* rgb = info[0].As<Napi::Uint8Array>().Data();
    const size_t bytes = info[0].As<Napi::Uint8Array>().ByteLength();
    JpegPlan plan;
    ReadJitter(info[1].As<Napi::Object>(), plan.jitter);
    const int64_t n = static_cast<int64_t>(bytes / 3);
    std::vector<uint8_t> planes(3 * n);
    for (int64_t i = 0; i < n; i++)
      for (int c = 0; c < 3; c++) planes[c * n + i] = rgb[3 * i + c];
    float identity[768];
    for (int i = 0; i < 768; i++) identity[i] = static_cast<float>(i % 256);
    std::vector<float> out(3 * n);
    JitterNormalize(planes.data(), n, plan.jitter, identity, out.data());
    for (int64_t i = 0; i < n; i++)
      for (int c = 0; c < 3; c++) rgb[3 * i + c] = static_cast<uint8_t>(out[c * n + i]);
    return info.Env().Undefined();
  });
}

}  // namespace

void InitJpeg(Napi::Env env, Napi::Object exports) {
  Napi::Object jpeg = Napi::Object::New(env);
#ifdef VILREF_WITH_TURBOJPEG
  jpeg.Set("available", true);
  jpeg.Set("reason", env.Null());
  jpeg.Set("openmp", Omp().library.empty() ? env.Null() : Napi::Value(Napi::String::New(env, Omp().library)));
#else
  jpeg.Set("available", false);
  jpeg.Set("openmp", env.Null());
  jpeg.Set("reason",
           "the addon was built without libjpeg-turbo's TurboJPEG (turbojpeg.h and libturbojpeg were not found); "
           "JPEGs decode through sharp. On Debian: apt-get install libturbojpeg0-dev, then npm run build:native");
#endif
  jpeg.Set("decodeInto", Napi::Function::New(env, DecodeIntoJs, "decodeInto"));
  jpeg.Set("validate", Napi::Function::New(env, ValidateJs, "validate"));
  jpeg.Set("inspect", Napi::Function::New(env, InspectJs, "inspect"));
  jpeg.Set("resize", Napi::Function::New(env, ResizeJs, "resize"));
  jpeg.Set("jitter", Napi::Function::New(env, JitterJs, "jitter"));
  exports.Set("jpeg", jpeg);
}

}  // namespace vilref
