#include "logistic.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <string>

#include "async.h"
#include "bridge.h"

namespace vilref {

namespace {

double Dot(const double* a, const double* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

double MaxAbs(const double* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s = std::max(s, std::abs(a[i]));
  return s;
}

// One problem's L-BFGS state; its parameters are a row of the batch's params tensor.
struct Problem {
  std::vector<double> g, d, xNew, gNew;
  std::deque<std::vector<double>> S, Y;
  std::deque<double> rho;
  double fx = 0, fNew = 0, slope = 0, step = 1;
  bool active = true, searching = false;
  ProblemReport report;
};

// L-BFGS with a backtracking (Armijo) line search, the two-loop recursion, a restart along the
// steepest descent when the direction is not one of descent, and these stops: the largest
// gradient component below gradTol (converged); no decrease found (not converged); a relative
// decrease below 1e-12 (converged if the gradient is below √gradTol); maxIter iterations.
class Lbfgs {
 public:
  Lbfgs(BatchObjective& f, at::Tensor& params, const LbfgsOptions& o)
      : f_(f), params_(params), o_(o), B_(params.size(0)), p_(params.size(1)), problems_(B_) {}

  std::vector<ProblemReport> Run() {
    std::vector<int64_t> all(B_);
    for (int64_t i = 0; i < B_; ++i) all[i] = i;
    std::vector<double> values;
    at::Tensor grads;
    f_.Evaluate(params_, all, values, grads);
    for (int64_t i = 0; i < B_; ++i) {
      Problem& pr = problems_[i];
      pr.fx = values[i];
      pr.g.assign(grads[i].data_ptr<double>(), grads[i].data_ptr<double>() + p_);
      pr.d.resize(p_);
      pr.xNew.resize(p_);
    }
    for (int64_t it = 0; it < o_.maxIter; ++it) {
      std::vector<int64_t> active;
      for (int64_t i = 0; i < B_; ++i) {
        Problem& pr = problems_[i];
        if (pr.active && MaxAbs(pr.g.data(), p_) < o_.gradTol)
          Finish(pr, it, true);
        else if (pr.active)
          active.push_back(i);
      }
      if (active.empty()) break;
      for (int64_t i : active) Direction(problems_[i]);
      LineSearch(active);
      for (int64_t i : active) Accept(i, it);
    }
    for (Problem& pr : problems_)
      if (pr.active) Finish(pr, o_.maxIter, MaxAbs(pr.g.data(), p_) < o_.gradTol);
    std::vector<ProblemReport> out;
    for (const Problem& pr : problems_) out.push_back(pr.report);
    return out;
  }

 private:
  double* X(int64_t i) { return params_.data_ptr<double>() + i * p_; }

  void Finish(Problem& pr, int64_t iterations, bool converged) {
    pr.active = false;
    pr.report = {pr.fx, iterations, converged};
  }

  // d = −H·g by the two-loop recursion; slope = gᵀd.
  void Direction(Problem& pr) {
    const int64_t n = p_, h = static_cast<int64_t>(pr.S.size());
    std::vector<double> alpha(h);
    double* d = pr.d.data();
    std::copy(pr.g.begin(), pr.g.end(), d);
    for (int64_t k = h - 1; k >= 0; --k) {
      alpha[k] = pr.rho[k] * Dot(pr.S[k].data(), d, n);
      const double* yk = pr.Y[k].data();
      for (int64_t i = 0; i < n; ++i) d[i] -= alpha[k] * yk[i];
    }
    const double gamma =
        h > 0 ? Dot(pr.S.back().data(), pr.Y.back().data(), n) / Dot(pr.Y.back().data(), pr.Y.back().data(), n)
              : 1 / std::max(1.0, std::sqrt(Dot(pr.g.data(), pr.g.data(), n)));
    for (int64_t i = 0; i < n; ++i) d[i] *= gamma;
    for (int64_t k = 0; k < h; ++k) {
      const double beta = pr.rho[k] * Dot(pr.Y[k].data(), d, n);
      const double* sk = pr.S[k].data();
      for (int64_t i = 0; i < n; ++i) d[i] += sk[i] * (alpha[k] - beta);
    }
    for (int64_t i = 0; i < n; ++i) d[i] = -d[i];
    pr.slope = Dot(pr.g.data(), d, n);
    if (!(pr.slope < 0)) {  // not a descent direction: restart from steepest descent
      pr.S.clear();
      pr.Y.clear();
      pr.rho.clear();
      for (int64_t i = 0; i < n; ++i) d[i] = -pr.g[i];
      pr.slope = -Dot(pr.g.data(), pr.g.data(), n);
    }
    pr.step = 1;
    pr.searching = true;
  }

  // Halves each searching problem's step until its Armijo condition holds (at most 40 tries);
  // every try evaluates the problems still searching in one batch.
  void LineSearch(const std::vector<int64_t>& active) {
    for (int ls = 0; ls < 40; ++ls) {
      std::vector<int64_t> which;
      for (int64_t i : active)
        if (problems_[i].searching) which.push_back(i);
      if (which.empty()) return;
      at::Tensor trial = at::empty({static_cast<int64_t>(which.size()), p_}, params_.options());
      for (size_t j = 0; j < which.size(); ++j) {
        Problem& pr = problems_[which[j]];
        const double* x = X(which[j]);
        for (int64_t i = 0; i < p_; ++i) pr.xNew[i] = x[i] + pr.step * pr.d[i];
        std::copy(pr.xNew.begin(), pr.xNew.end(), trial.data_ptr<double>() + j * p_);
      }
      std::vector<double> values;
      at::Tensor grads;
      f_.Evaluate(trial, which, values, grads);
      for (size_t j = 0; j < which.size(); ++j) {
        Problem& pr = problems_[which[j]];
        pr.fNew = values[j];
        const double* gj = grads.data_ptr<double>() + j * p_;
        pr.gNew.assign(gj, gj + p_);
        if (std::isfinite(pr.fNew) && pr.fNew <= pr.fx + 1e-4 * pr.step * pr.slope)
          pr.searching = false;
        else
          pr.step *= 0.5;
      }
    }
  }

  void Accept(int64_t index, int64_t it) {
    Problem& pr = problems_[index];
    if (!(std::isfinite(pr.fNew) && pr.fNew <= pr.fx)) return Finish(pr, it, false);
    double* x = X(index);
    std::vector<double> s(p_), y(p_);
    for (int64_t i = 0; i < p_; ++i) {
      s[i] = pr.xNew[i] - x[i];
      y[i] = pr.gNew[i] - pr.g[i];
    }
    const double sy = Dot(s.data(), y.data(), p_);
    if (sy > 1e-12) {
      if (static_cast<int64_t>(pr.S.size()) == o_.memory) {
        pr.S.pop_front();
        pr.Y.pop_front();
        pr.rho.pop_front();
      }
      pr.S.push_back(std::move(s));
      pr.Y.push_back(std::move(y));
      pr.rho.push_back(1 / sy);
    }
    const double change = pr.fx - pr.fNew;
    std::copy(pr.xNew.begin(), pr.xNew.end(), x);
    pr.g = pr.gNew;
    pr.fx = pr.fNew;
    if (change <= 1e-12 * std::max(1.0, std::abs(pr.fx)))
      Finish(pr, it + 1, MaxAbs(pr.g.data(), p_) < std::sqrt(o_.gradTol));
  }

  BatchObjective& f_;
  at::Tensor& params_;
  LbfgsOptions o_;
  int64_t B_, p_;
  std::vector<Problem> problems_;
};

at::Tensor IndexTensor(const std::vector<int64_t>& which) {
  return at::tensor(at::ArrayRef<int64_t>(which), at::TensorOptions().dtype(at::kLong));
}

// log(1 + e^z) without overflow: max(z, 0) + log1p(e^−|z|).
at::Tensor Log1pExp(const at::Tensor& z) { return z.clamp_min(0) + at::log1p(at::exp(-z.abs())); }

class SigmoidObjective : public BatchObjective {
 public:
  SigmoidObjective(const at::Tensor& x, const at::Tensor& y, double C) : x_(x) {
    mask_ = y.isnan().logical_not().to(at::kDouble);
    targets_ = y.nan_to_num(0.0) * mask_;
    rows_ = mask_.sum(0).clamp_min(1);
    lambda_ = 1.0 / (C * rows_);
  }

  void Evaluate(const at::Tensor& params, const std::vector<int64_t>& which, std::vector<double>& values,
                at::Tensor& grads) override {
    const int64_t d = x_.size(1);
    const bool all = static_cast<int64_t>(which.size()) == mask_.size(1);
    const at::Tensor idx = IndexTensor(which);
    const at::Tensor mask = all ? mask_ : mask_.index_select(1, idx);
    const at::Tensor t = all ? targets_ : targets_.index_select(1, idx);
    const at::Tensor rows = all ? rows_ : rows_.index_select(0, idx);
    const at::Tensor lambda = all ? lambda_ : lambda_.index_select(0, idx);
    const at::Tensor w = params.narrow(1, 0, d), b = params.select(1, d);
    const at::Tensor z = at::addmm(b.unsqueeze(0), x_, w.t());  // [n, problems]
    const at::Tensor loss = ((Log1pExp(z) - t * z) * mask).sum(0) / rows + 0.5 * lambda * (w * w).sum(1);
    const at::Tensor e = (at::sigmoid(z) - t) * mask / rows;
    grads = at::empty_like(params);
    grads.narrow(1, 0, d).copy_(at::mm(e.t(), x_) + lambda.unsqueeze(1) * w);
    grads.select(1, d).copy_(e.sum(0));
    const at::Tensor lossCpu = loss.contiguous();
    values.assign(lossCpu.data_ptr<double>(), lossCpu.data_ptr<double>() + lossCpu.numel());
  }

 private:
  at::Tensor x_, mask_, targets_, rows_, lambda_;
};

class SoftmaxObjective : public BatchObjective {
 public:
  SoftmaxObjective(const at::Tensor& x, const at::Tensor& t, int64_t K, double C) : x_(x), K_(K) {
    const int64_t n = x.size(0);
    onehot_ = at::zeros({n, K}, x.options()).scatter_(1, t.unsqueeze(1), 1.0);
    rows_ = static_cast<double>(std::max<int64_t>(n, 1));
    lambda_ = 1.0 / (C * rows_);
  }

  void Evaluate(const at::Tensor& params, const std::vector<int64_t>& which, std::vector<double>& values,
                at::Tensor& grads) override {
    const int64_t d = x_.size(1);
    const at::Tensor p = params[0];
    const at::Tensor w = p.narrow(0, 0, K_ * d).view({K_, d}), b = p.narrow(0, K_ * d, K_);
    const at::Tensor z = at::addmm(b.unsqueeze(0), x_, w.t());  // [n, K]
    const at::Tensor lse = at::logsumexp(z, 1, true);
    const double loss =
        ((lse - z) * onehot_).sum().item<double>() / rows_ + 0.5 * lambda_ * (w * w).sum().item<double>();
    const at::Tensor e = (at::exp(z - lse) - onehot_) / rows_;
    grads = at::empty_like(params);
    grads[0].narrow(0, 0, K_ * d).view({K_, d}).copy_(at::mm(e.t(), x_) + lambda_ * w);
    grads[0].narrow(0, K_ * d, K_).copy_(e.sum(0));
    values.assign(1, loss);
  }

 private:
  at::Tensor x_, onehot_;
  int64_t K_;
  double rows_ = 1, lambda_ = 1;
};

}  // namespace

std::vector<ProblemReport> MinimizeBatch(BatchObjective& objective, at::Tensor& params, const LbfgsOptions& options) {
  return Lbfgs(objective, params, options).Run();
}

std::vector<ProblemReport> FitSigmoid(const at::Tensor& x, const at::Tensor& y, double C, at::Tensor& params,
                                      const LbfgsOptions& options) {
  SigmoidObjective objective(x, y, C);
  return MinimizeBatch(objective, params, options);
}

std::vector<ProblemReport> FitSoftmax(const at::Tensor& x, const at::Tensor& t, int64_t K, double C, at::Tensor& params,
                                      const LbfgsOptions& options) {
  SoftmaxObjective objective(x, t, K, C);
  return MinimizeBatch(objective, params, options);
}

namespace {

const std::vector<at::ScalarType> kF64{at::kDouble};

std::string KindOf(const Napi::Object& o, const std::string& name) {
  Napi::Value v = o.Get("kind");
  std::string kind = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (kind != "sigmoid" && kind != "softmax") ThrowTypeError(name + ".kind: expected \"sigmoid\" or \"softmax\"");
  return kind;
}

// The options are complete (lib/eval/probe.ts owns their defaults, LBFGS_DEFAULTS): each is required.
LbfgsOptions ReadLbfgs(const Napi::Object& args) {
  LbfgsOptions o;
  o.maxIter = ReadInteger(args.Get("maxIter"), "args.maxIter", 0, 100000000);
  o.memory = ReadInteger(args.Get("memory"), "args.memory", 1, 1000);
  o.gradTol = ReadNumberValue(args.Get("gradTol"), "args.gradTol", 0, 1e6);
  return o;
}

class FitTask : public Task {
 public:
  FitTask(std::vector<JsTensor> held, bool softmax, int64_t K, double C, LbfgsOptions options)
      : held_(std::move(held)), softmax_(softmax), K_(K), C_(C), options_(options) {}

  void Execute() override {
    const at::Tensor& x = held_[0].tensor;
    const int64_t d = x.size(1);
    at::Tensor params = softmax_ ? at::zeros({1, K_ * d + K_}, x.options()) : at::zeros({K_, d + 1}, x.options());
    if (held_.size() > 2) {  // init: W [K, d], b [K]
      const at::Tensor &W = held_[2].tensor, &b = held_[3].tensor;
      if (softmax_) {
        params[0].narrow(0, 0, K_ * d).copy_(W.reshape({-1}));
        params[0].narrow(0, K_ * d, K_).copy_(b);
      } else {
        params.narrow(1, 0, d).copy_(W);
        params.select(1, d).copy_(b);
      }
    }
    reports_ = softmax_ ? FitSoftmax(x, held_[1].tensor.to(at::kLong), K_, C_, params, options_)
                        : FitSigmoid(x, held_[1].tensor, C_, params, options_);
    if (softmax_) {
      W_ = params[0].narrow(0, 0, K_ * d).reshape({K_, d}).contiguous();
      b_ = params[0].narrow(0, K_ * d, K_).contiguous();
    } else {
      W_ = params.narrow(1, 0, d).contiguous();
      b_ = params.select(1, d).contiguous();
    }
  }

  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("W", WrapTensor(env, W_));
    o.Set("b", WrapTensor(env, b_));
    Napi::Array problems = Napi::Array::New(env, reports_.size());
    for (uint32_t i = 0; i < reports_.size(); ++i) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("value", reports_[i].value);
      r.Set("iterations", static_cast<double>(reports_[i].iterations));
      r.Set("converged", reports_[i].converged);
      problems.Set(i, r);
    }
    o.Set("problems", problems);
    return o;
  }

 private:
  std::vector<JsTensor> held_;
  bool softmax_;
  int64_t K_;
  double C_;
  LbfgsOptions options_;
  std::vector<ProblemReport> reports_;
  at::Tensor W_, b_;
};

// args.y: [n, K] of 1, 0 or NaN (unknown).
void CheckBinaryTargets(const at::Tensor& y) {
  const double* p = y.data_ptr<double>();
  for (int64_t i = 0; i < y.numel(); ++i)
    if (!(p[i] == 0 || p[i] == 1 || std::isnan(p[i])))
      ThrowRangeError("args.y.data[" + std::to_string(i) + "] = " + std::to_string(p[i]) +
                      ": expected 1, 0 or NaN (unknown)");
}

void CheckClasses(const at::Tensor& t, int64_t K) {
  const int32_t* p = t.data_ptr<int32_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (p[i] < 0 || p[i] >= K)
      ThrowRangeError("args.t.data[" + std::to_string(i) + "] = " + std::to_string(p[i]) + " is not a class below " +
                      std::to_string(K));
}

Napi::Value RunFit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) ThrowTypeError("args: expected an object { x, kind, y | t + classes, C, init?, ... }");
    auto args = info[0].As<Napi::Object>();
    std::vector<JsTensor> held;
    held.push_back(ReadTensor(args.Get("x"), TensorSpec{"args.x", kF64, {-1, -1}, false, true}));
    const int64_t n = held[0].tensor.size(0), d = held[0].tensor.size(1);
    const bool softmax = KindOf(args, "args") == "softmax";
    int64_t K;
    if (softmax) {
      K = ReadInteger(args.Get("classes"), "args.classes", 1, 1 << 20);
      held.push_back(ReadTensor(args.Get("t"), TensorSpec{"args.t", {at::kInt}, {n}}));
      CheckClasses(held[1].tensor, K);
    } else {
      held.push_back(ReadTensor(args.Get("y"), TensorSpec{"args.y", kF64, {n, -1}}));
      K = held[1].tensor.size(1);
      CheckBinaryTargets(held[1].tensor);
    }
    Napi::Value Cv = args.Get("C");
    const double C = Cv.IsNumber() ? Cv.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(C > 0 && std::isfinite(C))) ThrowRangeError("args.C: expected a positive finite number");
    Napi::Value init = args.Get("init");
    if (!init.IsUndefined() && !init.IsNull()) {
      if (!init.IsObject()) ThrowTypeError("args.init: expected { W, b }");
      auto o = init.As<Napi::Object>();
      held.push_back(ReadTensor(o.Get("W"), TensorSpec{"args.init.W", kF64, {K, d}, false, true}));
      held.push_back(ReadTensor(o.Get("b"), TensorSpec{"args.init.b", kF64, {K}, false, true}));
    }
    const LbfgsOptions options = ReadLbfgs(args);
    return RunAsync(env, std::make_unique<FitTask>(std::move(held), softmax, K, C, options));
  });
}

class PredictTask : public Task {
 public:
  PredictTask(std::vector<JsTensor> held, bool softmax) : held_(std::move(held)), softmax_(softmax) {}
  void Execute() override {
    const at::Tensor z = at::addmm(held_[2].tensor.unsqueeze(0), held_[0].tensor, held_[1].tensor.t());
    out_ = PrepareForJs(softmax_ ? at::softmax(z, 1) : at::sigmoid(z));
  }
  Napi::Value Resolve(Napi::Env env) override { return WrapTensor(env, out_); }

 private:
  std::vector<JsTensor> held_;
  bool softmax_;
  at::Tensor out_;
};

Napi::Value RunPredict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    std::vector<JsTensor> held;
    held.push_back(ReadTensor(info[0], TensorSpec{"x", kF64, {-1, -1}, false, true}));
    const int64_t d = held[0].tensor.size(1);
    if (!info[1].IsObject()) ThrowTypeError("model: expected { kind, W, b }");
    auto model = info[1].As<Napi::Object>();
    const bool softmax = KindOf(model, "model") == "softmax";
    held.push_back(ReadTensor(model.Get("W"), TensorSpec{"model.W", kF64, {-1, d}, false, true}));
    const int64_t K = held[1].tensor.size(0);
    held.push_back(ReadTensor(model.Get("b"), TensorSpec{"model.b", kF64, {K}, false, true}));
    return RunAsync(env, std::make_unique<PredictTask>(std::move(held), softmax));
  });
}

}  // namespace

void InitLogistic(Napi::Env env, Napi::Object exports) {
  Napi::Object logistic = Napi::Object::New(env);
  logistic.Set("fit", Napi::Function::New(env, RunFit, "fit"));
  logistic.Set("predict", Napi::Function::New(env, RunPredict, "predict"));
  exports.Set("logistic", logistic);
}

}  // namespace vilref
