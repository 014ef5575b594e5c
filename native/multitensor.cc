#include "multitensor.h"

#include <cmath>
#include <map>
#include <memory>

namespace vilref {

void ForeachEma(const std::vector<at::Tensor>& target, const std::vector<at::Tensor>& source, double m) {
  if (target.empty()) return;
  torch::NoGradGuard noGrad;
  at::_foreach_mul_(target, m);
  at::_foreach_add_(target, source, 1.0 - m);
}

double ForeachClipGradNorm(const std::vector<at::Tensor>& params, double maxNorm) {
  torch::NoGradGuard noGrad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
  at::Tensor total = norms.size() == 1 ? norms[0] : at::stack(norms).norm(2);
  // LibTorch multiplies by clamp(maxNorm / (total + 1e-6), max 1) always; a factor of 1 changes nothing
  at::Tensor coef = at::clamp(maxNorm / (total + 1e-6), c10::nullopt, 1.0);
  const double factor = coef.item<double>();
  if (factor < 1.0) at::_foreach_mul_(grads, factor);
  return total.item<double>();
}

namespace {

struct Bucket {  // parameters of one group whose step count is the same after this step
  std::vector<at::Tensor> params, grads, avg, sq;
};

void StepGroup(torch::optim::OptimizerParamGroup& group, OptimizerStates& states) {
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
  const double lr = o.lr(), beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  std::vector<at::Tensor> decayed;
  std::map<int64_t, Bucket> buckets;
  for (auto& p : group.params()) {
    if (!p.grad().defined()) continue;
    TORCH_CHECK(!p.grad().is_sparse(), "AdamW does not support sparse gradients");
    const OptimizerStateKey key = OptimizerKey(p);
    auto it = states.find(key);
    if (it == states.end()) {  // lazy state, as LibTorch's AdamW makes it
      auto st = std::make_unique<torch::optim::AdamWParamState>();
      st->step(0);
      st->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
      st->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
      it = states.emplace(key, std::move(st)).first;
    }
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    st.step(st.step() + 1);
    Bucket& b = buckets[st.step()];
    b.params.push_back(p);
    b.grads.push_back(p.grad());
    b.avg.push_back(st.exp_avg());
    b.sq.push_back(st.exp_avg_sq());
    if (o.weight_decay() != 0) decayed.push_back(p);
  }
  if (!decayed.empty()) at::_foreach_mul_(decayed, 1 - lr * o.weight_decay());
  for (auto& [step, b] : buckets) {
    const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
    at::_foreach_mul_(b.avg, beta1);
    at::_foreach_add_(b.avg, b.grads, 1 - beta1);
    at::_foreach_mul_(b.sq, beta2);
    at::_foreach_addcmul_(b.sq, b.grads, b.grads, 1 - beta2);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(b.sq);
    at::_foreach_div_(denom, std::sqrt(bc2));
    at::_foreach_add_(denom, o.eps());
    at::_foreach_addcdiv_(b.params, b.avg, denom, -lr / bc1);
  }
}

}  // namespace

void ForeachAdamWStep(torch::optim::AdamW& optimizer) {
  for (auto& group : optimizer.param_groups())
    if (static_cast<const torch::optim::AdamWOptions&>(group.options()).amsgrad()) {
      optimizer.step();
      return;
    }
  torch::NoGradGuard noGrad;
  for (auto& group : optimizer.param_groups()) StepGroup(group, optimizer.state());
}

}  // namespace vilref
