#include "optim.h"

#include <stdexcept>

#include "bridge.h"

namespace vilref {

AdamWSettings ReadAdamWSettings(const Napi::Object& o, const std::string& prefix) {
  AdamWSettings s;
  Napi::Value betas = o.Get("betas");
  if (!betas.IsArray() || betas.As<Napi::Array>().Length() != 2)
    ThrowTypeError(prefix + ".betas: expected [beta1, beta2]");
  auto pair = betas.As<Napi::Array>();
  s.beta1 = ReadNumberValue(pair.Get(0u), prefix + ".betas[0]", 0, 1);
  s.beta2 = ReadNumberValue(pair.Get(1u), prefix + ".betas[1]", 0, 1);
  s.eps = ReadNumber(o, prefix, "eps", 0, 1);
  s.weightDecay = ReadNumber(o, prefix, "weightDecay", 0, 10);
  s.decayEmbeddings = ReadBool(o, prefix, "decayEmbeddings");
  return s;
}

void WriteAdamWSettings(Napi::Env env, Napi::Object& o, const AdamWSettings& s) {
  Napi::Array betas = Napi::Array::New(env, 2);
  betas.Set(0u, Napi::Number::New(env, s.beta1));
  betas.Set(1u, Napi::Number::New(env, s.beta2));
  o.Set("betas", betas);
  o.Set("eps", Napi::Number::New(env, s.eps));
  o.Set("weightDecay", Napi::Number::New(env, s.weightDecay));
  o.Set("decayEmbeddings", Napi::Boolean::New(env, s.decayEmbeddings));
}

bool TakesWeightDecay(const std::string& name, const at::Tensor& param, bool decayEmbeddings) {
  return param.dim() >= 2 && (decayEmbeddings || name.find("embedding") == std::string::npos);
}

NamedAdamW::NamedAdamW(AdamWSettings settings) : settings_(settings) {}

void NamedAdamW::AddGroup(const std::string& name, double lr, const NamedTensors& params) {
  if (optimizer_) throw std::logic_error("NamedAdamW::AddGroup after Build");
  std::vector<at::Tensor> decay, noDecay;
  for (const auto& [key, p] : params)
    (TakesWeightDecay(key, p, settings_.decayEmbeddings) ? decay : noDecay).push_back(p);
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(lr).betas({settings_.beta1, settings_.beta2}).eps(settings_.eps).weight_decay(wd));
  };
  pending_.emplace_back(decay, options(settings_.weightDecay));
  names_.push_back(name);
  pending_.emplace_back(noDecay, options(0.0));
  names_.push_back(name + ".no_decay");
}

void NamedAdamW::Build() {
  if (optimizer_) throw std::logic_error("NamedAdamW::Build twice");
  optimizer_ = std::make_unique<torch::optim::AdamW>(pending_, torch::optim::AdamWOptions(0.0));
  pending_.clear();
}

void NamedAdamW::SetLr(const std::string& name, double lr) {
  bool found = false;
  auto& groups = optimizer_->param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    if (names_[i] != name && names_[i] != name + ".no_decay") continue;
    static_cast<torch::optim::AdamWOptions&>(groups[i].options()).lr(lr);
    found = true;
  }
  if (!found) throw std::logic_error("NamedAdamW: no parameter group \"" + name + "\"");
}

void NamedAdamW::SetLr(double lr) {
  for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

}  // namespace vilref
