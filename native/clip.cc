#include "clip.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>

#include "bridge.h"
#include "nn.h"
#include "profile.h"
#include "resnet.h"
#include "runtime.h"
#include "vit.h"

namespace vilref {

ViLReFNet::ViLReFNet(const ModelConfig& c) {
  if (c.IsResNet()) {
    const int64_t heads = c.visionWidth * 32 / c.visionHeadWidth;
    visual = register_module<VisualTower>("visual", std::make_shared<ModifiedResNet>(c.visionLayers, c.embedDim, heads,
                                                                                     c.imageResolution, c.visionWidth));
  } else {
    const int64_t heads = c.visionWidth / c.visionHeadWidth;
    visual = register_module<VisualTower>(
        "visual", std::make_shared<VisualTransformer>(c.imageResolution, c.visionPatchSize, c.visionWidth,
                                                      c.visionLayers[0], heads, c.embedDim));
  }
  bert = register_module("bert", BertModel(c.text));
  text_projection = register_parameter("text_projection", torch::zeros({c.text.hidden, c.embedDim}));
  logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / 0.07)));
}

at::Tensor ViLReFNet::EncodeTexts(const at::Tensor& ids, bool preProjection) {
  at::Tensor cls = bert->forward(ids).select(1, 0);
  return preProjection ? cls : at::matmul(cls, text_projection.to(cls.scalar_type()));
}

void ViLReFNet::InitWeights() {
  torch::NoGradGuard noGrad;
  visual->InitWeights();
  bert->InitWeights();
  text_projection.normal_(0, std::pow(static_cast<double>(text_projection.size(0)), -0.5));
  logit_scale.fill_(std::log(1.0 / 0.07));
}

namespace {

// The released config, complete and validated by lib/model/config.ts (modelConfigSchema): read
// strictly, with guards only (the relations between fields are the schema's).
ModelConfig ReadConfig(const Napi::Value& value) {
  auto o = ReadOptions(value, "config",
                       "an object with the released config fields (embed_dim, image_resolution, vision_layers, ...)");
  auto field = [&](const char* key, int64_t hi) { return ReadInt(o, "config", key, 1, hi); };
  ModelConfig c;
  c.embedDim = field("embed_dim", 1 << 16);
  c.imageResolution = field("image_resolution", 1 << 14);
  c.visionWidth = field("vision_width", 1 << 16);
  c.visionHeadWidth = field("vision_head_width", 1 << 16);
  if (o.Get("vision_layers").IsArray()) {
    c.visionLayers = ReadIntArray(o, "config", "vision_layers", 1, 1024);
    if (c.visionLayers.size() != 4)
      ThrowRangeError("config.vision_layers: a ModifiedResNet has 4 stages, got " +
                      std::to_string(c.visionLayers.size()));
  } else {
    c.visionLayers.push_back(field("vision_layers", 1024));
    c.visionPatchSize = field("vision_patch_size", 1 << 12);
  }
  c.text.vocab = field("vocab_size", 1 << 24);
  c.text.hidden = field("text_hidden_size", 1 << 16);
  c.text.layers = field("text_num_hidden_layers", 1024);
  c.text.heads = field("text_num_attention_heads", 1024);
  c.text.intermediate = field("text_intermediate_size", 1 << 18);
  c.text.maxPositions = field("text_max_position_embeddings", 1 << 16);
  c.text.typeVocab = field("text_type_vocab_size", 1024);
  ReadEnumName(o, "config", "text_hidden_act", {"gelu"});  // the released models' exact GELU, the only one
  return c;
}

std::vector<int64_t> Shape(const at::Tensor& t) { return std::vector<int64_t>(t.sizes().begin(), t.sizes().end()); }

// encode options { features: "projected" | "pre" } at info[index]: whether "pre".
bool WantPreProjection(const Napi::CallbackInfo& info, size_t index) {
  auto o = ReadOptions(info[index], "options", "an object { features }");
  return ReadEnumName(o, "options", "features", {"projected", "pre"}) == "pre";
}

// Checks token ids against the vocabulary before LibTorch indexes with them.
template <typename T>
void CheckIds(const at::Tensor& ids, int64_t vocab, const std::string& name) {
  const T* p = ids.data_ptr<T>();
  for (int64_t i = 0; i < ids.numel(); ++i) {
    if (p[i] < 0 || static_cast<int64_t>(p[i]) >= vocab) {
      ThrowRangeError(name + ".data[" + std::to_string(i) + "] = " + std::to_string(static_cast<int64_t>(p[i])) +
                      " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
}

// An encode call: `body` runs on the worker without gradient; its result goes to JS. With
// VILREF_PROFILE=DIR each call writes a chrome trace (LibTorch's profiler) to DIR, for finding
// where the time goes; the profiler is per thread, so it records here. `body` owns (captures) the
// JS arrays it reads, which keeps them alive until it has run.
template <typename Body>
std::unique_ptr<Task> EncodeTask(Body body) {
  return MakeTensorTask([body = std::move(body)]() {
    torch::NoGradGuard noGrad;
    if (const char* dir = std::getenv("VILREF_PROFILE")) {
      static std::atomic<int> counter{0};
      ProfileScope profile(std::string(dir) + "/encode-" + std::to_string(counter++) + ".json");
      return PrepareForJs(body());
    }
    return PrepareForJs(body());
  });
}

// Copies `inputs` into the network's tensors of the same names (checked at submission; a queued
// resize may have changed a shape since, which is an error here).
void CopyState(ViLReFNet& net, const std::vector<std::pair<std::string, JsTensor>>& inputs) {
  torch::NoGradGuard noGrad;
  std::map<std::string, at::Tensor> state;
  for (auto& [name, t] : NamedState(net)) state[name] = t;
  for (auto& [name, in] : inputs) {
    at::Tensor& target = state.at(name);
    if (target.sizes() != in.tensor.sizes())
      ThrowRangeError("stateDict[\"" + name + "\"]: shape " + ShapeText(Shape(in.tensor)) + " does not fit " +
                      ShapeText(Shape(target)));
    target.copy_(in.tensor);
  }
}

}  // namespace

namespace {
Napi::FunctionReference* g_modelConstructor = nullptr;  // the main thread's; set by Define
}

ViLReF* ViLReF::From(const Napi::Value& value, const std::string& name) {
  if (!g_modelConstructor || !value.IsObject() || !value.As<Napi::Object>().InstanceOf(g_modelConstructor->Value())) {
    ThrowTypeError(name + ": expected a ViLReF model");
  }
  ViLReF* model = ViLReF::Unwrap(value.As<Napi::Object>());
  model->CheckAlive();
  return model;
}

Napi::Function ViLReF::Define(Napi::Env env) {
  Napi::Function constructor =
      DefineClass(env, "ViLReF",
                  {
                      InstanceMethod<&ViLReF::EncodeImages>("encodeImages"),
                      InstanceMethod<&ViLReF::EncodeTexts>("encodeTexts"),
                      InstanceMethod<&ViLReF::Similarity>("similarity"),
                      InstanceMethod<&ViLReF::StateDict>("stateDict"),
                      InstanceMethod<&ViLReF::LoadStateDict>("loadStateDict"),
                      InstanceMethod<&ViLReF::Parameters>("parameters"),
                      InstanceMethod<&ViLReF::ResizePositionalEmbedding>("resizePositionalEmbedding"),
                      InstanceAccessor<&ViLReF::GetConfig>("config"),
                      InstanceAccessor<&ViLReF::GetDevice>("device"),
                      InstanceAccessor<&ViLReF::GetDtype>("dtype"),
                      InstanceAccessor<&ViLReF::GetPending>("pending"),
                      InstanceMethod<&ViLReF::Dispose>("dispose"),
                  });
  if (!g_modelConstructor) g_modelConstructor = new Napi::FunctionReference(Napi::Persistent(constructor));
  return constructor;
}

// new ViLReF(config, { device: "cpu" | "cuda" | "cuda:N", dtype: "float32" | "bfloat16" | "float16", seed }),
// both complete (lib/model/vilref.ts fills them in); the device is checked here.
ViLReF::ViLReF(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ViLReF>(info) {
  Guard(info.Env(), [&] {
    config_ = ReadConfig(info[0]);
    auto o = ReadOptions(info[1], "options", "an object { device, dtype, seed }");
    const std::string device = ReadString(o, "options", "device"),
                      dtype = ReadEnumName(o, "options", "dtype", FloatDtypeNames());
    const uint64_t seed = ReadSeed(o, "options", "seed");
    try {
      device_ = at::Device(device);
    } catch (const c10::Error&) {
      ThrowRangeError("options.device: \"" + device + "\" is not a device (\"cpu\", \"cuda\", \"cuda:0\", ...)");
    }
    if (!device_.is_cpu() && !device_.is_cuda())
      ThrowRangeError("options.device: only \"cpu\" and \"cuda\" devices are supported");
    if (device_.is_cuda()) {
      if (!torch::cuda::is_available())
        ThrowRangeError("options.device: \"" + device +
                        "\" asked for, but CUDA is not available (no GPU, or a CPU-only LibTorch)");
      if (device_.has_index() && device_.index() >= static_cast<int>(torch::cuda::device_count()))
        ThrowRangeError("options.device: \"" + device + "\" does not exist");
    }
    dtype_ = FloatDtype(dtype);
    if (dtype_ != at::kFloat && device_.is_cpu())
      ThrowRangeError("options.dtype: " + dtype + " runs on CUDA only; use float32 on the CPU");
    {
      std::lock_guard<std::recursive_mutex> rng(GlobalRngMutex());
      torch::manual_seed(seed);
      net_ = std::make_shared<ViLReFNet>(config_);
      net_->InitWeights();
    }
    net_->eval();
    net_->to(device_);
    if (dtype_ != at::kFloat) {
      // weights in the low-precision dtype; LayerNorm runs in float32 regardless, BN statistics stay float32
      for (auto& p : net_->named_parameters())
        if (p.value().defined()) p.value().set_data(p.value().to(dtype_));
    }
    RefreshParams();
    return 0;
  });
}

void ViLReF::RefreshParams() {
  params_.clear();
  for (auto& [name, t] : NamedState(*net_)) params_.push_back({name, Shape(t), t.scalar_type()});
}

Napi::Value ViLReF::EncodeImages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    const int64_t r = config_.imageResolution;
    JsTensor images = ReadTensor(info[0], TensorSpec{"images", {at::kFloat}, {-1, 3, r, r}, false, true});
    bool pre = WantPreProjection(info, 1);
    auto net = net_;
    auto device = device_;
    auto dtype = dtype_;
    return queue_.Submit(env, Value(), EncodeTask([net, device, dtype, images = std::move(images), pre] {
                           return net->visual->forward(images.tensor.to(device, dtype), pre).to(at::kFloat);
                         }));
  });
}

JsTensor ViLReF::ReadTextIds(const Napi::Value& value, const std::string& name, int64_t rows) const {
  JsTensor ids = ReadTensor(value, TensorSpec{name, {at::kLong, at::kInt}, {rows, -1}, false, false});
  const int64_t length = ids.tensor.size(1);
  if (length < 1 || length > config_.text.maxPositions) {
    ThrowRangeError(name + ": context length " + std::to_string(length) + " is outside [1, " +
                    std::to_string(config_.text.maxPositions) + "] (text_max_position_embeddings)");
  }
  if (ids.tensor.scalar_type() == at::kLong)
    CheckIds<int64_t>(ids.tensor, config_.text.vocab, name);
  else
    CheckIds<int32_t>(ids.tensor, config_.text.vocab, name);
  return ids;
}

Napi::Value ViLReF::EncodeTexts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    JsTensor ids = ReadTextIds(info[0], "ids");
    bool pre = WantPreProjection(info, 1);
    auto net = net_;
    auto device = device_;
    return queue_.Submit(env, Value(), EncodeTask([net, device, ids = std::move(ids), pre] {
                           return net->EncodeTexts(ids.tensor.to(device, at::kLong), pre).to(at::kFloat);
                         }));
  });
}

// similarity(imageFeatures [N, E], textFeatures [M, E]) → exp(logit_scale) · normalised image @ normalised text^T
Napi::Value ViLReF::Similarity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    JsTensor image = ReadTensor(info[0], TensorSpec{"imageFeatures", {at::kFloat}, {-1, -1}, false, true});
    JsTensor text =
        ReadTensor(info[1], TensorSpec{"textFeatures", {at::kFloat}, {-1, image.tensor.size(1)}, false, true});
    return queue_.Submit(env, Value(), EncodeTask([net = net_, image = std::move(image), text = std::move(text)] {
                           const at::Tensor &a = image.tensor, &b = text.tensor;
                           at::Tensor na = a / a.norm(2, -1, true), nb = b / b.norm(2, -1, true);
                           return net->logit_scale.detach().to(at::kCPU, at::kFloat).exp() * at::matmul(na, nb.t());
                         }));
  });
}

Napi::Value ViLReF::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    return queue_.Submit(env, Value(), MakeStateDictTask(net_));
  });
}

// loadStateDict({ name: {data, shape[, dtype]} }, { strict = true }) → { missing, unexpected }
Napi::Value ViLReF::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    Napi::Object dict = StateDictArgument(info);
    const bool strict = StrictOption(info, 1);
    std::map<std::string, const ParamInfo*> expected;
    std::vector<std::string> names;
    for (const auto& p : params_) {
      expected[p.name] = &p;
      names.push_back(p.name);
    }
    auto [present, missing, unexpected] = PartitionKeys(dict, names);
    std::vector<std::pair<std::string, JsTensor>> inputs;
    // names first: a checkpoint of another architecture is reported as such, not as a shape
    if (strict && (!missing.empty() || !unexpected.empty())) {
      std::string msg = "the checkpoint does not fit this model:";
      auto list = [](const std::vector<std::string>& v) {
        std::string s;
        for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : " ") + v[i];
        if (v.size() > 20) s += ", ... (" + std::to_string(v.size()) + " in all)";
        return s;
      };
      if (!missing.empty()) msg += " missing" + list(missing) + ";";
      if (!unexpected.empty()) msg += " unexpected" + list(unexpected) + ";";
      ThrowRangeError(msg.substr(0, msg.size() - 1));
    }
    for (const auto& key : present) {
      const ParamInfo& p = *expected.at(key);
      std::vector<at::ScalarType> dtypes =
          c10::isFloatingType(p.dtype) ? std::vector<at::ScalarType>{at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}
                                       : std::vector<at::ScalarType>{at::kLong, at::kInt};
      inputs.emplace_back(key, ReadTensor(dict.Get(key), TensorSpec{"stateDict[\"" + key + "\"]", dtypes, p.shape,
                                                                    false, c10::isFloatingType(p.dtype)}));
    }
    return queue_.Submit(env, Value(),
                         MakeTask([net = net_, inputs = std::move(inputs)] { CopyState(*net, inputs); },
                                  [missing = std::move(missing), unexpected = std::move(unexpected)](
                                      Napi::Env env) -> Napi::Value { return KeyReport(env, missing, unexpected); }));
  });
}

Napi::Value ViLReF::Parameters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Guard(env, [&] {
    disposal_.Check();
    return 0;
  });
  Napi::Array out = Napi::Array::New(env, params_.size());
  for (uint32_t i = 0; i < params_.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", params_[i].name);
    Napi::Array shape = Napi::Array::New(env, params_[i].shape.size());
    for (uint32_t d = 0; d < params_[i].shape.size(); ++d)
      shape.Set(d, Napi::Number::New(env, static_cast<double>(params_[i].shape[d])));
    o.Set("shape", shape);
    o.Set("dtype", std::string(c10::toString(params_[i].dtype)));
    out.Set(i, o);
  }
  return out;
}

Napi::Value ViLReF::ResizePositionalEmbedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    int64_t resolution = ReadInteger(info[0], "resolution", 1, 1 << 14);
    int64_t multiple = config_.IsResNet() ? 32 : config_.visionPatchSize;
    if (resolution % multiple != 0)
      ThrowRangeError("resolution: " + std::to_string(resolution) + " is not a multiple of " +
                      std::to_string(multiple));
    return queue_.Submit(env, Value(),
                         MakeTask([net = net_, resolution] { net->visual->ResizePositions(resolution); },
                                  [this, resolution](Napi::Env env) -> Napi::Value {
                                    config_.imageResolution = resolution;
                                    RefreshParams();
                                    return env.Undefined();
                                  }));
  });
}

Napi::Value ViLReF::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](double v) { return Napi::Number::New(env, v); };
  o.Set("embed_dim", num(config_.embedDim));
  o.Set("image_resolution", num(config_.imageResolution));
  if (config_.IsResNet()) {
    Napi::Array layers = Napi::Array::New(env, 4);
    for (uint32_t i = 0; i < 4; ++i) layers.Set(i, num(config_.visionLayers[i]));
    o.Set("vision_layers", layers);
    o.Set("vision_patch_size", env.Null());
  } else {
    o.Set("vision_layers", num(config_.visionLayers[0]));
    o.Set("vision_patch_size", num(config_.visionPatchSize));
  }
  o.Set("vision_width", num(config_.visionWidth));
  o.Set("vision_head_width", num(config_.visionHeadWidth));
  o.Set("vocab_size", num(config_.text.vocab));
  o.Set("text_hidden_act", "gelu");
  o.Set("text_hidden_size", num(config_.text.hidden));
  o.Set("text_intermediate_size", num(config_.text.intermediate));
  o.Set("text_max_position_embeddings", num(config_.text.maxPositions));
  o.Set("text_num_attention_heads", num(config_.text.heads));
  o.Set("text_num_hidden_layers", num(config_.text.layers));
  o.Set("text_type_vocab_size", num(config_.text.typeVocab));
  return o;
}

Napi::Value ViLReF::GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_.str()); }
Napi::Value ViLReF::GetDtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), FloatDtypeName(dtype_));
}
Napi::Value ViLReF::GetPending(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.Pending()));
}

// dispose(): the weights are freed after the calls already queued (trainers and fine-tuners on this
// model queue theirs here too); later calls reject.
Napi::Value ViLReF::Dispose(const Napi::CallbackInfo& info) {
  return disposal_.Dispose(info.Env(), Value(), queue_, [this] { net_.reset(); });
}

}  // namespace vilref
