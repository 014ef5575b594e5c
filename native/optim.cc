#include "optim.h"

#include <stdexcept>

namespace vilref {

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
