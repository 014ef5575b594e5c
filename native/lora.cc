#include "lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "async.h"
#include "bridge.h"
#include "vit.h"

namespace vilref {

namespace {

// Every weight LoRA can adapt, by released name: Linear and Conv2d weights, and the fused
// in_proj_weight of the ViT's attention (its forward reads the block's member, not a Linear).
std::map<std::string, at::Tensor*> AdaptableWeights(ViLReFNet& net) {
  std::map<std::string, at::Tensor*> out;
  for (const auto& item : net.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    torch::nn::Module* m = item.value().get();
    if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(m))
      out[item.key() + ".weight"] = &linear->weight;
    else if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(m))
      out[item.key() + ".weight"] = &conv->weight;
    else if (auto* block = dynamic_cast<ResidualAttentionBlockImpl*>(m))
      out[item.key() + ".attn.in_proj_weight"] = &block->in_proj_weight;
  }
  return out;
}

std::string Candidates(const std::map<std::string, at::Tensor*>& slots) {
  std::string s;
  size_t i = 0;
  for (const auto& [name, slot] : slots) {
    if (i == 12) return s + ", ... (" + std::to_string(slots.size()) + " in all)";
    s += (i++ ? ", " : "") + name;
  }
  return s;
}

LoraOptions ReadLoraOptions(const Napi::Value& value) {
  if (!value.IsObject() || value.IsArray())
    ThrowTypeError("options: expected an object { rank, alpha, targets, seed }");
  auto o = value.As<Napi::Object>();
  LoraOptions out;
  out.rank = ReadInteger(o.Get("rank"), "options.rank", 1, 1 << 14);
  out.alpha = ReadNumber(o, "options", "alpha", 1e-6, 1e6);
  out.seed = ReadSeed(o, "options", "seed");
  Napi::Value targets = o.Get("targets");
  if (!targets.IsArray()) ThrowTypeError("options.targets: expected an array of weight names");
  auto arr = targets.As<Napi::Array>();
  if (arr.Length() == 0) ThrowRangeError("options.targets: no weight to adapt");
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) ThrowTypeError("options.targets[" + std::to_string(i) + "]: expected a weight name");
    out.targets.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace

LoraSet::LoraSet(std::shared_ptr<ViLReFNet> net, const LoraOptions& options, at::Device device)
    : net_(std::move(net)), options_(options) {
  auto slots = AdaptableWeights(*net_);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
  for (size_t i = 0; i < options_.targets.size(); ++i) {
    const std::string& name = options_.targets[i];
    auto it = slots.find(name);
    if (it == slots.end())
      ThrowRangeError("options.targets[" + std::to_string(i) + "]: \"" + name +
                      "\" is not a weight LoRA can adapt (Linear and Conv2d weights, a ViT block's "
                      "attn.in_proj_weight: " +
                      Candidates(slots) + ")");
    for (const auto& t : targets_)
      if (t.name == name) ThrowRangeError("options.targets[" + std::to_string(i) + "]: \"" + name + "\" twice");
    at::Tensor base = *it->second;
    const int64_t out = base.size(0), fanIn = base.numel() / out;
    if (options_.rank > std::min(out, fanIn))
      ThrowRangeError("options.rank: " + std::to_string(options_.rank) + " exceeds the smaller side of " + name + " (" +
                      std::to_string(out) + " × " + std::to_string(fanIn) + ")");
    const double bound = 1.0 / std::sqrt(static_cast<double>(fanIn));
    at::Tensor a = at::empty({options_.rank, fanIn}).uniform_(-bound, bound, gen).to(device).set_requires_grad(true);
    at::Tensor b = at::zeros({out, options_.rank}).to(device).set_requires_grad(true);
    targets_.push_back({name, it->second, base, a, b});
  }
}

at::Tensor LoraSet::Delta(const LoraTarget& t) const {
  return (at::matmul(t.b, t.a) * Scale()).view(t.base.sizes()).to(t.base.scalar_type());
}

NamedTensors LoraSet::Factors() const {
  NamedTensors out;
  for (const auto& t : targets_) {
    out.emplace_back(t.name + ".lora_A", t.a);
    out.emplace_back(t.name + ".lora_B", t.b);
  }
  return out;
}

int64_t LoraSet::ParameterCount() const {
  int64_t n = 0;
  for (const auto& t : targets_)
    if (t.a.defined()) n += t.a.numel() + t.b.numel();
  return n;
}

void LoraSet::Merge() {
  if (merged_) ThrowRangeError("merge: the adapters are merged into the model already");
  torch::NoGradGuard noGrad;
  for (auto& t : targets_) t.base.add_(Delta(t));
  merged_ = true;
}

void LoraSet::Release() {
  released_ = true;
  for (auto& t : targets_) {
    t.a = at::Tensor();
    t.b = at::Tensor();
  }
}

LoraScope::LoraScope(LoraSet& set, bool train) : set_(set) {
  if (set_.merged()) return;
  if (train)
    for (auto& p : set_.net()->parameters()) {
      grads_.emplace_back(p, p.requires_grad());
      p.set_requires_grad(false);
    }
  for (auto& t : set_.targets()) *t.slot = t.base.detach() + set_.Delta(t);
}

LoraScope::~LoraScope() {
  if (set_.merged()) return;
  for (auto& t : set_.targets()) *t.slot = t.base;
  for (auto& [p, flag] : grads_) p.set_requires_grad(flag);
}

at::Tensor LoraImageFeatures(LoraSet& set, const at::Tensor& images, bool preProjection, bool train) {
  LoraScope scope(set, train);
  set.net()->visual->eval();
  return set.net()->visual->forward(images, preProjection).to(at::kFloat);
}

// ---- the JS class ----------------------------------------------------------------------------

namespace {
Napi::FunctionReference* g_loraConstructor = nullptr;

bool ReadPreProjection(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return false;
  if (!info[index].IsObject()) ThrowTypeError("options: expected an object { features?: \"projected\" | \"pre\" }");
  Napi::Value f = info[index].As<Napi::Object>().Get("features");
  if (f.IsUndefined()) return false;
  std::string s = f.IsString() ? f.As<Napi::String>().Utf8Value() : "";
  if (s != "projected" && s != "pre") ThrowRangeError("options.features: expected \"projected\" or \"pre\"");
  return s == "pre";
}
}  // namespace

Napi::Function Lora::Define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, "Lora",
                                           {
                                               InstanceMethod<&Lora::EncodeImages>("encodeImages"),
                                               InstanceMethod<&Lora::StateDict>("stateDict"),
                                               InstanceMethod<&Lora::LoadStateDict>("loadStateDict"),
                                               InstanceMethod<&Lora::Merge>("merge"),
                                               InstanceAccessor<&Lora::GetConfig>("config"),
                                               InstanceAccessor<&Lora::GetMerged>("merged"),
                                               InstanceMethod<&Lora::Dispose>("dispose"),
                                           });
  if (!g_loraConstructor) g_loraConstructor = new Napi::FunctionReference(Napi::Persistent(constructor));
  return constructor;
}

Lora* Lora::From(const Napi::Value& value, const std::string& name) {
  if (!g_loraConstructor || !value.IsObject() || !value.As<Napi::Object>().InstanceOf(g_loraConstructor->Value()))
    ThrowTypeError(name + ": expected a Lora (lib/adapt/lora.ts)");
  return Lora::Unwrap(value.As<Napi::Object>());
}

// new Lora(model, { rank, alpha = rank, targets: string[], seed = 0 })
Lora::Lora(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Lora>(info) {
  Guard(info.Env(), [&] {
    model_ = ViLReF::From(info[0], "model");
    modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    LoraOptions options = ReadLoraOptions(info[1]);
    set_ = std::make_shared<LoraSet>(model_->net(), options, model_->device());
    return 0;
  });
}

// encodeImages(images [N,3,R,R], { features }) → the image tower's features with the adapters applied
Napi::Value Lora::EncodeImages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    const int64_t r = model_->config().imageResolution;
    JsTensor images = ReadTensor(info[0], TensorSpec{"images", {at::kFloat}, {-1, 3, r, r}, false, true});
    const bool pre = ReadPreProjection(info, 1);
    return model_->queue().Submit(
        env, Value(),
        MakeTensorTask(
            [set = set_, device = model_->device(), dtype = model_->dtype(), images = std::move(images), pre] {
              torch::NoGradGuard noGrad;
              return PrepareForJs(LoraImageFeatures(*set, images.tensor.to(device, dtype), pre, false));
            }));
  });
}

// stateDict() → { "<weight>.lora_A": [rank, fan_in], "<weight>.lora_B": [out, rank] } (copies)
Napi::Value Lora::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(), MakeNamedTask([set = set_] {
                                    NamedTensors out;
                                    for (auto& [name, t] : set->Factors())
                                      out.emplace_back(name, PrepareForJs(t.detach().clone()));
                                    return out;
                                  }));
  });
}

// loadStateDict({ "<weight>.lora_A", "<weight>.lora_B" for every target }): all of them, shapes checked first.
Napi::Value Lora::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    Napi::Object dict = StateDictArgument(info);
    if (set_->merged()) ThrowRangeError("loadStateDict: the adapters are merged into the model already");
    std::vector<std::string> names;
    for (auto& [name, t] : set_->Factors()) names.push_back(name);
    auto keys = PartitionKeys(dict, names);
    if (!keys.missing.empty()) ThrowRangeError("stateDict[\"" + keys.missing.front() + "\"]: missing");
    if (!keys.unexpected.empty())
      ThrowRangeError("stateDict[\"" + keys.unexpected.front() + "\"]: not a factor of these adapters");
    std::vector<std::pair<at::Tensor, JsTensor>> inputs;
    for (auto& [name, t] : set_->Factors()) {
      std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
      inputs.emplace_back(
          t, ReadTensor(dict.Get(name), TensorSpec{"stateDict[\"" + name + "\"]", {at::kFloat}, shape, false, true}));
    }
    return model_->queue().Submit(env, Value(), MakeVoidTask([set = set_, inputs = std::move(inputs)] {
                                    torch::NoGradGuard noGrad;
                                    for (auto& [dst, in] : inputs) dst.copy_(in.tensor);
                                  }));
  });
}

// merge(): W += ΔW in the model's weights (for export); the adapters then apply nothing
Napi::Value Lora::Merge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    if (set_->merged()) ThrowRangeError("merge: the adapters are merged into the model already");
    return model_->queue().Submit(env, Value(), MakeVoidTask([set = set_] { set->Merge(); }));
  });
}

Napi::Value Lora::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const LoraOptions& o = set_->options();
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", Napi::Number::New(env, static_cast<double>(o.rank)));
  out.Set("alpha", Napi::Number::New(env, o.alpha));
  out.Set("scale", Napi::Number::New(env, set_->Scale()));
  Napi::Array targets = Napi::Array::New(env, o.targets.size());
  for (uint32_t i = 0; i < o.targets.size(); ++i) targets.Set(i, o.targets[i]);
  out.Set("targets", targets);
  out.Set("parameters", Napi::Number::New(env, static_cast<double>(set_->ParameterCount())));
  return out;
}

Napi::Value Lora::GetMerged(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), set_->merged()); }

// dispose(): the factors are freed after the calls already queued on the model (the model stays;
// merged updates stay in its weights).
Napi::Value Lora::Dispose(const Napi::CallbackInfo& info) {
  std::shared_ptr<LoraSet> set = set_;
  return disposal_.Dispose(info.Env(), Value(), model_->queue(), [set] { set->Release(); });
}

void Lora::CheckAlive() const {
  disposal_.Check();
  model_->CheckAlive();
}

}  // namespace vilref
