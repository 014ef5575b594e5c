#include "checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <cstring>
#include <limits>
#include <map>

#include "async.h"
#include "bridge.h"
#include "pickle_check.h"
#include "torch_zip.h"

namespace vilref {

namespace {

// LibTorch reads file format versions 1 to 10 (caffe2/serialize/versions.h in 1.13).
constexpr uint64_t kMaxFormatVersion = 10;

struct ImportOptions {
  uint64_t maxBytes = 0;  // 0: 4 × the file's size + 1 MiB
};

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 200)) {
    if (c < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + (s.size() > 200 ? "...\"" : "\"");
}

std::string Dims(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < 16; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() > 16 ? ", ...]" : "]");
}

// A view of `size`/`stride` from element `offset` of a storage of `storageNumel` elements: ""
// when it lies inside, else what is wrong. `numel` receives its element count.
std::string CheckView(int64_t offset, const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                      int64_t storageNumel, int64_t& numel) {
  if (size.size() != stride.size())
    return std::to_string(size.size()) + " sizes but " + std::to_string(stride.size()) + " strides";
  if (size.size() > 64) return std::to_string(size.size()) + " dimensions (at most 64)";
  if (offset < 0) return "negative storage offset " + std::to_string(offset);
  bool empty = false;
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d] < 0) return "negative size " + Dims(size);
    if (stride[d] < 0) return "negative stride " + Dims(stride);
    empty = empty || size[d] == 0;
  }
  numel = 0;
  if (empty) {
    // LibTorch multiplies the sizes with overflow checks, zeros or not
    __int128 product = 1;
    for (int64_t d : size) product = std::min<__int128>(product * std::max<int64_t>(d, 1), __int128{1} << 64);
    if (product > std::numeric_limits<int64_t>::max()) return "size " + Dims(size) + " overflows 64 bits";
    return offset <= storageNumel ? "" : "storage offset " + std::to_string(offset) + " past its end";
  }
  __int128 count = 1, last = offset;
  for (size_t d = 0; d < size.size(); ++d) {
    count = std::min<__int128>(count * size[d], __int128{1} << 64);
    last += static_cast<__int128>(size[d] - 1) * stride[d];
  }
  if (count > storageNumel) {
    std::string n = count >= (__int128{1} << 64) ? "2^64 or more" : std::to_string(static_cast<uint64_t>(count));
    return "size " + Dims(size) + " holds " + n + " elements, more than its storage's " + std::to_string(storageNumel);
  }
  if (last >= storageNumel)
    return "offset " + std::to_string(offset) + ", size " + Dims(size) + " and stride " + Dims(stride) +
           " reach past the end of its storage of " + std::to_string(storageNumel) + " elements";
  numel = static_cast<int64_t>(count);
  return "";
}

// Bytes of a tensor once handed to JavaScript (16-bit floats become float32).
int64_t JsItemSize(c10::ScalarType t) {
  return t == c10::ScalarType::Half || t == c10::ScalarType::BFloat16 ? 4 : c10::elementSize(t);
}

// A checked record's bytes, shared by every storage that names it.
using Record = std::shared_ptr<uint8_t>;

class ImportTask : public Task {
 public:
  ImportTask(Napi::ObjectReference bytes, const uint8_t* data, size_t size, std::string name, ImportOptions options)
      : bytes_(std::move(bytes)), data_(data), size_(size), name_(std::move(name)), options_(options) {}

  void Execute() override {
    try {
      Read();
    } catch (const BoundaryError&) {
      throw;
    } catch (const c10::Error& e) {
      Fail(e.what_without_backtrace());
    } catch (const std::exception& e) {
      Fail(e.what());
    }
  }

  Napi::Value Resolve(Napi::Env env) override;

 private:
  [[noreturn]] void Fail(const std::string& detail) const {
    throw BoundaryError(ErrorKind::Error, name_ + ": not a loadable PyTorch checkpoint: " + detail);
  }
  void Read();
  std::string ReadStructure(const ZipArchive& zip, std::vector<uint8_t>& pickle);
  void CheckStorages(const ZipArchive& zip, const std::string& prefix, const PickleSummary& summary);
  void CheckTensors(const PickleSummary& summary) const;
  c10::IValue Unpickle(const std::vector<uint8_t>& pickle, uint64_t version);
  void Collect(const c10::IValue& root);
  at::Tensor Checked(const at::Tensor& t, const std::string& key) const;

  Napi::ObjectReference bytes_;
  const uint8_t* data_;
  size_t size_;
  std::string name_;
  ImportOptions options_;
  uint64_t limit_ = 0;
  uint64_t version_ = 0;
  std::map<std::string, std::pair<Record, size_t>> records_;  // storage key → bytes, size
  std::vector<std::pair<std::string, at::Tensor>> tensors_;
  std::vector<std::pair<std::string, std::string>> meta_;
};

void ImportTask::Read() {
  limit_ = options_.maxBytes ? options_.maxBytes : 4 * static_cast<uint64_t>(size_) + (1u << 20);
  ZipArchive zip(data_, size_, ZipLimits{limit_, limit_});
  std::vector<uint8_t> pickle;
  std::string prefix = ReadStructure(zip, pickle);
  PickleSummary summary;
  try {
    summary = CheckPickle(pickle.data(), pickle.size(), PickleLimits{});
  } catch (const PickleError& e) {
    Fail(prefix + "/data.pkl, " + e.what());
  }
  CheckStorages(zip, prefix, summary);
  CheckTensors(summary);
  Collect(Unpickle(pickle, version_));
}

// The archive's folder, its version and its pickle; every entry's CRC is checked on the way.
std::string ImportTask::ReadStructure(const ZipArchive& zip, std::vector<uint8_t>& pickle) {
  if (zip.entries().empty()) Fail("the archive holds no files");
  // LibTorch's rule: the folder of the first entry holds everything
  const std::string& first = zip.entries().front().name;
  size_t slash = first.find('/');
  if (slash == std::string::npos) Fail("entry " + Quote(first) + " is not in a folder (not a torch.save archive)");
  std::string prefix = first.substr(0, slash);
  const ZipEntry* pkl = zip.Find(prefix + "/data.pkl");
  const ZipEntry* ver = zip.Find(prefix + "/.data/version");
  if (!ver) ver = zip.Find(prefix + "/version");
  if (!pkl) Fail("no " + prefix + "/data.pkl in the archive (not a torch.save archive)");
  if (!ver) Fail("no " + prefix + "/version in the archive (not a torch.save archive)");
  for (const ZipEntry& e : zip.entries()) {
    // storages are read (and checked) when the pickle names them; the others now
    if (e.name.rfind(prefix + "/data/", 0) == 0 && &e != pkl) continue;
    EntryBytes b = zip.Read(e, &e == pkl);
    if (&e == pkl) pickle.assign(b.data, b.data + b.size);
    if (&e != ver) continue;
    std::string text(reinterpret_cast<const char*>(b.data), b.size);
    size_t at = text.find_first_not_of(" \t\r\n");
    size_t end = text.find_last_not_of(" \t\r\n");
    std::string digits = at == std::string::npos ? "" : text.substr(at, end - at + 1);
    if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos)
      Fail(e.name + " holds " + Quote(text.substr(0, 20)) + ", not a format version");
    version_ = std::stoull(digits);
    if (version_ < 1 || version_ > kMaxFormatVersion)
      Fail("format version " + digits + " (LibTorch 1.13 reads 1 to " + std::to_string(kMaxFormatVersion) + ")");
  }
  return prefix;
}

// Each storage against its record; every record under data/ is read and CRC-checked once.
void ImportTask::CheckStorages(const ZipArchive& zip, const std::string& prefix, const PickleSummary& summary) {
  std::map<std::string, size_t> wanted;  // key → bytes
  for (const StorageRef& s : summary.storages) {
    std::string who = "storage " + Quote(s.key) + (s.name.empty() ? "" : " (tensor " + Quote(s.name) + ")");
    const size_t item = c10::elementSize(s.dtype);
    if (static_cast<uint64_t>(s.numel) > limit_ / item)
      Fail(who + ": " + std::to_string(s.numel) + " elements of " + std::to_string(item) +
           " bytes exceed the limit of " + std::to_string(limit_) + " bytes");
    const size_t bytes = static_cast<size_t>(s.numel) * item;
    auto [it, fresh] = wanted.emplace(s.key, bytes);
    if (!fresh && it->second != bytes)
      Fail(who + " is declared with " + std::to_string(bytes) + " bytes here and " + std::to_string(it->second) +
           " elsewhere");
  }
  for (const ZipEntry& e : zip.entries()) {
    if (e.name.rfind(prefix + "/data/", 0) != 0) continue;
    std::string key = e.name.substr(prefix.size() + 6);
    auto it = wanted.find(key);
    if (it == wanted.end() || it->second == 0) {
      zip.Read(e, false);  // unused: only its CRC
      continue;
    }
    if (e.size != it->second)
      Fail("storage " + Quote(key) + " needs " + std::to_string(it->second) + " bytes but its record " + e.name +
           " holds " + std::to_string(e.size));
    EntryBytes b = zip.Read(e, true);
    records_[key] = {b.owner, b.size};
  }
  for (const auto& [key, bytes] : wanted)
    if (bytes > 0 && !records_.count(key)) Fail("storage " + Quote(key) + " has no record " + prefix + "/data/" + key);
}

void ImportTask::CheckTensors(const PickleSummary& summary) const {
  uint64_t total = 0;
  for (size_t i = 0; i < summary.tensors.size(); ++i) {
    const TensorRef& t = summary.tensors[i];
    const StorageRef& s = summary.storages[t.storage];
    std::string who = t.name.empty() ? "tensor #" + std::to_string(i) : "tensor " + Quote(t.name);
    int64_t numel = 0;
    std::string problem = CheckView(t.offset, t.size, t.stride, s.numel, numel);
    if (!problem.empty()) Fail(who + " (storage " + Quote(s.key) + "): " + problem);
    total += static_cast<uint64_t>(numel) * static_cast<uint64_t>(JsItemSize(s.dtype));
    if (total > limit_)
      Fail("the tensors up to " + who + " hold " + std::to_string(total) + " bytes, more than the limit of " +
           std::to_string(limit_));
  }
}

c10::IValue ImportTask::Unpickle(const std::vector<uint8_t>& pickle, uint64_t version) {
  size_t offset = 0;
  auto reader = [&](char* buffer, size_t length) -> size_t {
    length = std::min(length, pickle.size() - offset);
    std::memcpy(buffer, pickle.data() + offset, length);
    offset += length;
    return length;
  };
  auto readRecord = [this](const std::string& key) -> at::DataPtr {
    auto it = records_.find(key);
    if (it == records_.end()) throw std::logic_error("storage " + Quote(key) + " was not checked");
    auto* owner = new Record(it->second.first);
    return at::DataPtr(
        owner->get(), owner, [](void* p) { delete static_cast<Record*>(p); }, at::kCPU);
  };
  torch::jit::Unpickler unpickler(reader, nullptr, nullptr, readRecord, at::Device(at::kCPU));
  unpickler.set_version(version);
  return unpickler.parse_ivalue();
}

// A tensor LibTorch built, checked once more against its storage, made ready for JavaScript.
at::Tensor ImportTask::Checked(const at::Tensor& t, const std::string& key) const {
  const int64_t item = static_cast<int64_t>(t.element_size());
  const int64_t storageNumel = static_cast<int64_t>(t.storage().nbytes()) / item;
  int64_t numel = 0;
  std::string problem = CheckView(t.storage_offset(), t.sizes().vec(), t.strides().vec(), storageNumel, numel);
  if (problem.empty() && numel > 0 && t.storage().data() == nullptr) problem = "no data";
  if (!problem.empty()) Fail("state_dict[" + Quote(key) + "]: " + problem);
  return PrepareForJs(t.detach());
}

void ImportTask::Collect(const c10::IValue& root) {
  if (!root.isGenericDict()) Fail("expected a dict at the top of the checkpoint, got " + root.tagKind());
  c10::Dict<c10::IValue, c10::IValue> top = root.toGenericDict();
  c10::Dict<c10::IValue, c10::IValue> state = top;
  bool bare = true;  // the top-level dict is the state dict itself
  for (const auto& entry : top) {
    if (!entry.key().isString()) continue;
    const std::string key = entry.key().toStringRef();
    if (key == "state_dict") {
      if (!entry.value().isGenericDict()) Fail("\"state_dict\" is a " + entry.value().tagKind() + ", not a dict");
      state = entry.value().toGenericDict();
      bare = false;
    } else if ((key == "epoch" || key == "step") && entry.value().isInt()) {
      meta_.emplace_back(key, std::to_string(entry.value().toInt()));
    } else if (key == "name" && entry.value().isString()) {
      meta_.emplace_back(key, entry.value().toStringRef());
    }
  }
  for (const auto& entry : state) {
    if (!entry.key().isString()) Fail("a state_dict key is a " + entry.key().tagKind() + ", not a string");
    std::string key = entry.key().toStringRef();
    if (key.rfind("module.", 0) == 0) key = key.substr(7);
    if (key.rfind("bert.pooler.", 0) == 0) continue;  // the released BertModel's pooler is unused
    if (!entry.value().isTensor()) {
      if (bare) continue;  // a bare dict may carry entries such as "epoch" beside the tensors
      Fail("state_dict[\"" + key + "\"] is a " + entry.value().tagKind() + ", not a tensor");
    }
    tensors_.emplace_back(key, Checked(entry.value().toTensor(), key));
  }
  if (tensors_.empty()) throw BoundaryError(ErrorKind::Error, name_ + ": holds no tensors");
}

Napi::Value ImportTask::Resolve(Napi::Env env) {
  Napi::Object tensors = WrapNamed(env, tensors_), metadata = Napi::Object::New(env);
  for (auto& [key, v] : meta_) {
    if (key == "name")
      metadata.Set(key, v);
    else
      metadata.Set(key, Napi::Number::New(env, std::stod(v)));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("tensors", tensors);
  out.Set("metadata", metadata);
  return out;
}

ImportOptions ReadImportOptions(const Napi::CallbackInfo& info) {
  ImportOptions options;
  if (info.Length() < 3 || info[2].IsUndefined()) return options;
  if (!info[2].IsObject()) ThrowTypeError("options: expected an object");
  // absent: the default derived from the file's size (ImportOptions); 2^53: the largest whole
  // number a JS number holds exactly
  Napi::Value max = info[2].As<Napi::Object>().Get("maxUncompressedBytes");
  if (!max.IsUndefined())
    options.maxBytes =
        static_cast<uint64_t>(ReadNumberValue(max, "options.maxUncompressedBytes", 1, 9007199254740992.0));
  return options;
}

Napi::Value ImportTorchCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError("bytes: expected a Uint8Array with the checkpoint file's contents");
    }
    auto bytes = info[0].As<Napi::Uint8Array>();
    std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "checkpoint";
    ImportOptions options = ReadImportOptions(info);
    return RunAsync(env, std::make_unique<ImportTask>(Napi::Persistent(bytes.As<Napi::Object>()), bytes.Data(),
                                                      bytes.ByteLength(), name, options));
  });
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("importTorchCheckpoint", Napi::Function::New(env, ImportTorchCheckpoint, "importTorchCheckpoint"));
}

}  // namespace vilref
