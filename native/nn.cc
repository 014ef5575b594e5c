#include "nn.h"

#include <torch/version.h>

#include <ATen/autocast_mode.h>

#include <atomic>
#include <cmath>

namespace vilref {

at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const c10::optional<at::Tensor>& mask) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, mask);
#else
  // LibTorch 1.13 has no public fused kernel; its private one is the same math path.
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q * scale, k.transpose(-2, -1));
  if (mask.has_value()) scores = scores + *mask;
  return at::matmul(at::softmax(scores, -1), v);
#endif
}

std::vector<std::pair<std::string, at::Tensor>> NamedState(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true))
    if (p.value().defined()) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true))
    if (b.value().defined()) out.emplace_back(b.key(), b.value());
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> StateCopies(const torch::nn::Module& module,
                                                            const std::string& prefix) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, t] : NamedState(module)) out.emplace_back(prefix + name, PrepareForJs(t.detach().clone()));
  return out;
}

std::unique_ptr<Task> MakeStateDictTask(std::shared_ptr<torch::nn::Module> module, std::string prefix) {
  return MakeNamedTask(
      [module = std::move(module), prefix = std::move(prefix)] { return StateCopies(*module, prefix); });
}

namespace {

thread_local bool g_recompute = false;
std::atomic<int64_t> g_recomputes{0};

// autocast state of one device type, across LibTorch 1.13 and 2.x
struct AutocastState {
  bool enabled;
  at::ScalarType dtype;
};
AutocastState GetAutocast(bool cuda) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const at::DeviceType d = cuda ? at::kCUDA : at::kCPU;
  return {at::autocast::is_autocast_enabled(d), at::autocast::get_autocast_dtype(d)};
#else
  if (cuda) return {at::autocast::is_enabled(), at::autocast::get_autocast_gpu_dtype()};
  return {at::autocast::is_cpu_enabled(), at::autocast::get_autocast_cpu_dtype()};
#endif
}
void SetAutocast(bool cuda, AutocastState s) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const at::DeviceType d = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(d, s.dtype);
  at::autocast::set_autocast_enabled(d, s.enabled);
#else
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(s.dtype);
    at::autocast::set_enabled(s.enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(s.dtype);
    at::autocast::set_cpu_enabled(s.enabled);
  }
#endif
}

struct RecomputeHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  AutocastState cpu{false, at::kBFloat16}, cuda{false, at::kHalf};
};

struct RecomputeFunction : torch::autograd::Function<RecomputeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<RecomputeHolder> holder) {
    holder->cpu = GetAutocast(false);
    holder->cuda = GetAutocast(true);
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    torch::NoGradGuard noGrad;
    return holder->fn(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    c10::intrusive_ptr<torch::CustomClassHolder> base = ctx->saved_data["fn"].toCapsule();
    auto* holder = static_cast<RecomputeHolder*>(base.get());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor out;
    {
      const AutocastState cpu = GetAutocast(false), cuda = GetAutocast(true);
      SetAutocast(false, holder->cpu);
      SetAutocast(true, holder->cuda);
      torch::AutoGradMode grad(true);
      out = holder->fn(x);
      SetAutocast(false, cpu);
      SetAutocast(true, cuda);
    }
    torch::autograd::backward({out}, {grads[0]});
    g_recomputes.fetch_add(1);
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

int64_t RecomputeCount() { return g_recomputes.load(); }

RecomputeScope::RecomputeScope(bool on) : previous_(g_recompute) { g_recompute = on; }
RecomputeScope::~RecomputeScope() { g_recompute = previous_; }

at::Tensor MaybeRecompute(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  if (!g_recompute || !torch::GradMode::is_enabled() || !x.requires_grad()) return fn(x);
  auto holder = c10::make_intrusive<RecomputeHolder>();
  holder->fn = std::move(fn);
  return RecomputeFunction::apply(x, holder);
}

AutocastScope::AutocastScope(at::DeviceType device, at::ScalarType dtype) {
  if (dtype == at::kFloat) return;
  cuda_ = device == at::kCUDA;
  AutocastState was = GetAutocast(cuda_);
  wasEnabled_ = was.enabled;
  wasDtype_ = was.dtype;
  SetAutocast(cuda_, {true, dtype});
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  SetAutocast(cuda_, {wasEnabled_, wasDtype_});
  at::autocast::clear_cache();
}

}  // namespace vilref
