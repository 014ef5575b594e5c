#include "head.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

namespace vilref {

namespace {

const std::vector<std::string> kActivations{"gelu", "quick_gelu", "relu", "tanh"};

at::Tensor Activate(const at::Tensor& x, const std::string& activation) {
  if (activation == "gelu") return at::gelu(x);  // exact erf form
  if (activation == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (activation == "relu") return at::relu(x);
  return at::tanh(x);
}

std::string ParamName(size_t i) { return "layers." + std::to_string(i / 2) + (i % 2 ? ".bias" : ".weight"); }

at::Tensor RunLayers(const at::Tensor& input, const std::vector<at::Tensor>& params, const std::string& activation) {
  at::NoGradGuard noGrad;
  at::Tensor x = input;
  const size_t layers = params.size() / 2;
  for (size_t i = 0; i < layers; ++i) {
    x = at::linear(x, params[2 * i], params[2 * i + 1]);
    if (i + 1 < layers) x = Activate(x, activation);
  }
  return PrepareForJs(x);
}

}  // namespace

Napi::Function Head::Define(Napi::Env env) {
  return DefineClass(env, "Head",
                     {
                         InstanceMethod<&Head::Forward>("forward"),
                         InstanceMethod<&Head::StateDict>("stateDict"),
                         InstanceMethod<&Head::LoadStateDict>("loadStateDict"),
                         InstanceAccessor<&Head::GetConfig>("config"),
                         InstanceAccessor<&Head::GetPending>("pending"),
                         InstanceMethod<&Head::Dispose>("dispose"),
                     });
}

// new Head({ inFeatures, hidden: number[], outFeatures, activation, seed }), complete (lib/head.ts)
Head::Head(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Head>(info) {
  Napi::Env env = info.Env();
  Guard(env, [&] {
    auto config = ReadOptions(info[0], "config", "an object { inFeatures, hidden, outFeatures, activation, seed }");
    widths_.push_back(ReadInt(config, "config", "inFeatures", 1, 1 << 20));
    for (int64_t w : ReadIntArray(config, "config", "hidden", 1, 1 << 20)) widths_.push_back(w);
    widths_.push_back(ReadInt(config, "config", "outFeatures", 1, 1 << 20));
    activation_ = ReadEnumName(config, "config", "activation", kActivations);
    const uint64_t seed = ReadSeed(config, "config", "seed");

    // torch.nn.Linear's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (size_t i = 0; i + 1 < widths_.size(); ++i) {
      double bound = 1.0 / std::sqrt(static_cast<double>(widths_[i]));
      params_.push_back(at::empty({widths_[i + 1], widths_[i]}).uniform_(-bound, bound, gen));
      params_.push_back(at::empty({widths_[i + 1]}).uniform_(-bound, bound, gen));
    }
    return 0;
  });
}

Napi::Value Head::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    JsTensor input = ReadTensor(info[0], TensorSpec{"input", {at::kFloat}, {-1, widths_.front()}, false, true});
    return queue_.Submit(env, Value(), MakeTensorTask([input = std::move(input), params = &params_, act = activation_] {
                           return RunLayers(input.tensor, *params, act);
                         }));
  });
}

Napi::Value Head::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    return queue_.Submit(env, Value(), MakeNamedTask([params = &params_] {
                           std::vector<std::pair<std::string, at::Tensor>> out;
                           for (size_t i = 0; i < params->size(); ++i)
                             out.emplace_back(ParamName(i), PrepareForJs((*params)[i].detach().clone()));
                           return out;
                         }));
  });
}

// loadStateDict({ "layers.0.weight": {data, shape}, ... }): every parameter, exact shapes, finite.
Napi::Value Head::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    Napi::Object dict = StateDictArgument(info);
    const size_t count = 2 * (widths_.size() - 1);
    std::map<std::string, size_t> expected;
    for (size_t i = 0; i < count; ++i) expected[ParamName(i)] = i;
    Napi::Array keys = dict.GetPropertyNames();
    for (uint32_t k = 0; k < keys.Length(); ++k) {
      std::string key = keys.Get(k).ToString().Utf8Value();
      if (!expected.count(key)) ThrowRangeError("stateDict[\"" + key + "\"]: not a parameter of this head");
    }
    std::vector<JsTensor> inputs;
    for (size_t i = 0; i < count; ++i) {
      std::string name = ParamName(i);
      if (!dict.Has(name)) ThrowRangeError("stateDict[\"" + name + "\"]: missing");
      size_t layer = i / 2;
      std::vector<int64_t> dims =
          i % 2 ? std::vector<int64_t>{widths_[layer + 1]} : std::vector<int64_t>{widths_[layer + 1], widths_[layer]};
      inputs.push_back(
          ReadTensor(dict.Get(name), TensorSpec{"stateDict[\"" + name + "\"]", {at::kFloat}, dims, false, true}));
    }
    return queue_.Submit(env, Value(), MakeVoidTask([inputs = std::move(inputs), params = &params_] {
                           std::vector<at::Tensor> next;
                           for (auto& in : inputs) next.push_back(in.tensor.clone());  // the head keeps its own copy
                           *params = std::move(next);
                         }));
  });
}

Napi::Value Head::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("inFeatures", Napi::Number::New(env, static_cast<double>(widths_.front())));
  Napi::Array hidden = Napi::Array::New(env);
  for (size_t i = 1; i + 1 < widths_.size(); ++i)
    hidden.Set(static_cast<uint32_t>(i - 1), Napi::Number::New(env, static_cast<double>(widths_[i])));
  out.Set("hidden", hidden);
  out.Set("outFeatures", Napi::Number::New(env, static_cast<double>(widths_.back())));
  out.Set("activation", activation_);
  return out;
}

Napi::Value Head::GetPending(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.Pending()));
}

// dispose(): the parameters are freed after the calls already queued.
Napi::Value Head::Dispose(const Napi::CallbackInfo& info) {
  return disposal_.Dispose(info.Env(), Value(), queue_, [this] { std::vector<at::Tensor>().swap(params_); });
}

}  // namespace vilref
