#include "checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include "async.h"
#include "bridge.h"

namespace vilref {

namespace {

class ImportTask : public Task {
 public:
  ImportTask(Napi::ObjectReference bytes, const uint8_t* data, size_t size, std::string name)
      : bytes_(std::move(bytes)), data_(data), size_(size), name_(std::move(name)) {}

  void Execute() override {
    std::vector<char> buffer(reinterpret_cast<const char*>(data_), reinterpret_cast<const char*>(data_) + size_);
    c10::IValue root;
    try {
      root = torch::pickle_load(buffer);
    } catch (const c10::Error& e) {
      throw BoundaryError(ErrorKind::Error,
                          name_ + ": not a loadable PyTorch checkpoint: " + e.what_without_backtrace());
    }
    if (!root.isGenericDict())
      throw BoundaryError(ErrorKind::Error,
                          name_ + ": expected a dict at the top of the checkpoint, got " + root.tagKind());
    c10::Dict<c10::IValue, c10::IValue> top = root.toGenericDict();
    c10::Dict<c10::IValue, c10::IValue> state = top;
    bool bare = true;  // the top-level dict is the state dict itself
    for (const auto& entry : top) {
      if (!entry.key().isString()) continue;
      const std::string key = entry.key().toStringRef();
      if (key == "state_dict") {
        if (!entry.value().isGenericDict())
          throw BoundaryError(ErrorKind::Error,
                              name_ + ": \"state_dict\" is a " + entry.value().tagKind() + ", not a dict");
        state = entry.value().toGenericDict();
        bare = false;
      } else if ((key == "epoch" || key == "step") && entry.value().isInt()) {
        meta_.emplace_back(key, std::to_string(entry.value().toInt()));
      } else if (key == "name" && entry.value().isString()) {
        meta_.emplace_back(key, entry.value().toStringRef());
      }
    }
    for (const auto& entry : state) {
      if (!entry.key().isString())
        throw BoundaryError(ErrorKind::Error,
                            name_ + ": a state_dict key is a " + entry.key().tagKind() + ", not a string");
      std::string key = entry.key().toStringRef();
      if (key.rfind("module.", 0) == 0) key = key.substr(7);
      if (key.rfind("bert.pooler.", 0) == 0) continue;  // the released BertModel's pooler is unused
      if (!entry.value().isTensor()) {
        if (bare) continue;  // a bare dict may carry entries such as "epoch" beside the tensors
        throw BoundaryError(ErrorKind::Error,
                            name_ + ": state_dict[\"" + key + "\"] is a " + entry.value().tagKind() + ", not a tensor");
      }
      tensors_.emplace_back(key, PrepareForJs(entry.value().toTensor().detach()));
    }
    if (tensors_.empty()) throw BoundaryError(ErrorKind::Error, name_ + ": holds no tensors");
  }

  Napi::Value Resolve(Napi::Env env) override {
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

 private:
  Napi::ObjectReference bytes_;
  const uint8_t* data_;
  size_t size_;
  std::string name_;
  std::vector<std::pair<std::string, at::Tensor>> tensors_;
  std::vector<std::pair<std::string, std::string>> meta_;
};

Napi::Value ImportTorchCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError("bytes: expected a Uint8Array with the checkpoint file's contents");
    }
    auto bytes = info[0].As<Napi::Uint8Array>();
    std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "checkpoint";
    return RunAsync(env, std::make_unique<ImportTask>(Napi::Persistent(bytes.As<Napi::Object>()), bytes.Data(),
                                                      bytes.ByteLength(), name));
  });
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("importTorchCheckpoint", Napi::Function::New(env, ImportTorchCheckpoint, "importTorchCheckpoint"));
}

}  // namespace vilref
