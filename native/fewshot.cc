#include "fewshot.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "async.h"
#include "binary_loss.h"
#include "bridge.h"
#include "optim.h"

namespace vilref {

namespace {

constexpr double kPi = 3.14159265358979323846;

Napi::Object Args(const Napi::CallbackInfo& info, const std::string& fields) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray())
    ThrowTypeError("args: expected an object { " + fields + " }");
  return info[0].As<Napi::Object>();
}

// args[key]: float32 [rows, cols] (-1: any), finite.
JsTensor Matrix(const Napi::Object& o, const char* key, int64_t rows, int64_t cols) {
  return ReadTensor(o.Get(key), TensorSpec{std::string("args.") + key, {at::kFloat}, {rows, cols}, false, true});
}

double Required(const Napi::Object& o, const char* key, double lo, double hi) {
  return ReadNumber(o, "args", key, lo, hi);
}

bool Flag(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) ThrowTypeError(std::string("args.") + key + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::vector<double> Numbers(const Napi::Object& o, const char* key, double lo, double hi) {
  Napi::Value v = o.Get(key);
  const std::string name = std::string("args.") + key;
  if (!v.IsArray()) ThrowTypeError(name + ": expected an array of numbers");
  auto arr = v.As<Napi::Array>();
  if (arr.Length() == 0) ThrowRangeError(name + ": empty");
  std::vector<double> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value x = arr.Get(i);
    const std::string at = name + "[" + std::to_string(i) + "]";
    if (!x.IsNumber()) ThrowTypeError(at + ": expected a number");
    const double d = x.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < lo || d > hi)
      ThrowRangeError(at + ": " + std::to_string(d) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                      "]");
    out.push_back(d);
  }
  return out;
}

// args.task: "multilabel" (true) or "single" (false).
bool MultiLabel(const Napi::Object& o) {
  Napi::Value v = o.Get("task");
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "multilabel") return true;
  if (s != "single") ThrowRangeError("args.task: expected \"multilabel\" or \"single\"");
  return false;
}

// args.targets: multi-label float32 [n, C] of 0, 1 or NaN (unknown); single-label int32 [n] in [0, C).
JsTensor Targets(const Napi::Object& o, bool multi, int64_t n, int64_t classes) {
  if (multi) {
    JsTensor t = ReadTensor(o.Get("targets"), TensorSpec{"args.targets", {at::kFloat}, {n, classes}, false, false});
    const at::Tensor& y = t.tensor;
    if ((~y.isnan() & y.ne(0) & y.ne(1)).any().item<bool>())
      ThrowRangeError("args.targets: multi-label targets are 0, 1 or NaN (unknown)");
    return t;
  }
  JsTensor t = ReadTensor(o.Get("targets"), TensorSpec{"args.targets", {at::kInt}, {n}, false, false});
  if ((t.tensor.lt(0) | t.tensor.ge(classes)).any().item<bool>())
    ThrowRangeError("args.targets: class indices must lie in [0, " + std::to_string(classes) + ")");
  return t;
}

// Cross-entropy (single-label) or BCE over the known labels (multi-label).
at::Tensor Loss(const at::Tensor& logits, const at::Tensor& y, bool multi) {
  if (!multi) return at::nll_loss(at::log_softmax(logits, 1), y.to(at::kLong));
  at::Tensor known = ~y.isnan();
  at::Tensor bce = BceWithLogits(logits, at::nan_to_num(y, 0.0)) * known;
  return bce.sum() / known.sum().clamp_min(1);
}

at::Tensor Affinity(const at::Tensor& features, const at::Tensor& keys, double beta) {
  return at::exp(-beta * (1 - at::matmul(features, keys.t())));
}

at::Tensor Cache(const at::Tensor& affinity, const at::Tensor& values, bool normalize) {
  at::Tensor c = at::matmul(affinity, values);
  return normalize ? c / affinity.sum(1, true).clamp_min(1e-30) : c;
}

struct TrainSettings {
  int64_t epochs = 20, batch = 64;
  double lr = 1e-3, weightDecay = 0.0;
  uint64_t seed = 0;
};

TrainSettings ReadTrain(const Napi::Object& o) {
  TrainSettings s;
  s.epochs = ReadInteger(o.Get("epochs"), "args.epochs", 1, 100000);
  s.batch = ReadInteger(o.Get("batchSize"), "args.batchSize", 1, 1 << 20);
  s.lr = Required(o, "lr", 0, 10);
  s.weightDecay = ReadNumber(o, "args", "weightDecay", 0, 10);
  s.seed = ReadSeed(o, "args", "seed");
  return s;
}

// AdamW (native/optim.h) over `params`, learning rate decayed by a cosine over all steps, batches
// of rows in a seeded order each epoch; `batchLoss(rows)` is the loss of a batch. Returns the mean
// loss of each epoch.
template <typename BatchLoss>
std::vector<double> Train(const NamedTensors& params, int64_t n, const TrainSettings& s, BatchLoss batchLoss) {
  NamedAdamW optimizer(AdamWSettings{0.9, 0.999, 1e-8, s.weightDecay, false});
  optimizer.AddGroup("adapter", s.lr, params);
  optimizer.Build();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed);
  const int64_t perEpoch = (n + s.batch - 1) / s.batch, total = perEpoch * s.epochs;
  std::vector<double> losses;
  int64_t step = 0;
  for (int64_t e = 0; e < s.epochs; ++e) {
    at::Tensor order = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    double sum = 0;
    for (int64_t b = 0; b < perEpoch; ++b, ++step) {
      at::Tensor rows = order.slice(0, b * s.batch, std::min(n, (b + 1) * s.batch));
      optimizer.SetLr(s.lr * 0.5 * (1 + std::cos(kPi * static_cast<double>(step) / static_cast<double>(total))));
      optimizer.ZeroGrad();
      at::Tensor loss = batchLoss(rows);
      loss.backward();
      optimizer.Step();
      sum += loss.item<double>() * static_cast<double>(rows.size(0));
    }
    losses.push_back(sum / static_cast<double>(n));
  }
  return losses;
}

using Named = std::vector<std::pair<std::string, at::Tensor>>;

// A task resolving to { name: {data, shape}, ..., losses: number[] }.
template <typename Exec>
std::unique_ptr<Task> MakeTrainTask(Exec execute) {
  return MakeTask(std::move(execute), [](Napi::Env env, const std::pair<Named, std::vector<double>>& r) {
    Napi::Object out = WrapNamed(env, r.first);
    Napi::Array losses = Napi::Array::New(env, r.second.size());
    for (uint32_t i = 0; i < r.second.size(); ++i) losses.Set(i, Napi::Number::New(env, r.second[i]));
    out.Set("losses", losses);
    return static_cast<Napi::Value>(out);
  });
}

// ---- Tip-Adapter ------------------------------------------------------------------------------

struct TipInputs {
  JsTensor features, keys, values, zeroShot;
  int64_t n = 0, d = 0, m = 0, classes = 0;
};

TipInputs ReadTip(const Napi::Object& o) {
  TipInputs t;
  t.features = Matrix(o, "features", -1, -1);
  t.n = t.features.tensor.size(0);
  t.d = t.features.tensor.size(1);
  t.keys = Matrix(o, "keys", -1, t.d);
  t.m = t.keys.tensor.size(0);
  if (t.m < 1) ThrowRangeError("args.keys: the cache is empty");
  t.values = Matrix(o, "values", t.m, -1);
  t.classes = t.values.tensor.size(1);
  t.zeroShot = Matrix(o, "zeroShot", t.n, t.classes);
  return t;
}

// tipLogits({ features [n,d], keys [m,d], values [m,C], zeroShot [n,C], beta, alpha, normalize?, bias? [C] }) → [n,C]
Napi::Value TipLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    auto o = Args(info, "features, keys, values, zeroShot, beta, alpha, normalize, bias");
    TipInputs t = ReadTip(o);
    const double beta = Required(o, "beta", 0, 1e4), alpha = Required(o, "alpha", -1e6, 1e6);
    const bool normalize = Flag(o, "normalize");
    c10::optional<JsTensor> bias;
    if (!o.Get("bias").IsUndefined())
      bias = ReadTensor(o.Get("bias"), TensorSpec{"args.bias", {at::kFloat}, {t.classes}, false, true});
    return RunAsync(env, MakeTensorTask([t = std::move(t), bias = std::move(bias), beta, alpha, normalize] {
                      torch::NoGradGuard noGrad;
                      at::Tensor cache =
                          Cache(Affinity(t.features.tensor, t.keys.tensor, beta), t.values.tensor, normalize);
                      at::Tensor logits = t.zeroShot.tensor + alpha * cache;
                      if (bias) logits = logits + bias->tensor;
                      return PrepareForJs(logits);
                    }));
  });
}

// tipGrid({ features, keys, values, zeroShot, betas: number[], alphas: number[], normalize? }) → [B, A, n, C]
Napi::Value TipGrid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    auto o = Args(info, "features, keys, values, zeroShot, betas, alphas, normalize");
    TipInputs t = ReadTip(o);
    std::vector<double> betas = Numbers(o, "betas", 0, 1e4), alphas = Numbers(o, "alphas", -1e6, 1e6);
    const bool normalize = Flag(o, "normalize");
    return RunAsync(env, MakeTensorTask([t = std::move(t), betas, alphas, normalize] {
                      torch::NoGradGuard noGrad;
                      std::vector<at::Tensor> rows;
                      for (double beta : betas) {
                        at::Tensor cache =
                            Cache(Affinity(t.features.tensor, t.keys.tensor, beta), t.values.tensor, normalize);
                        for (double alpha : alphas) rows.push_back(t.zeroShot.tensor + alpha * cache);
                      }
                      const auto B = static_cast<int64_t>(betas.size()), A = static_cast<int64_t>(alphas.size());
                      return PrepareForJs(at::stack(rows).view({B, A, t.n, t.classes}));
                    }));
  });
}

// trainTipF({ features [n,d], targets, task, zeroShot [n,C], keys [m,d], values [m,C], cacheIndex int32 [n]
//   (the cache row of each training image, −1 none: its own affinity is masked), beta, alpha, normalize?,
//   epochs, batchSize, lr, weightDecay?, seed? }) → { keys [m,d], bias [C], losses }
Napi::Value TrainTipF(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    auto o = Args(info, "features, targets, task, zeroShot, keys, values, cacheIndex, beta, alpha, epochs, ...");
    TipInputs t = ReadTip(o);
    const bool multi = MultiLabel(o), normalize = Flag(o, "normalize");
    JsTensor targets = Targets(o, multi, t.n, t.classes);
    JsTensor index = ReadTensor(o.Get("cacheIndex"), TensorSpec{"args.cacheIndex", {at::kInt}, {t.n}, false, false});
    if ((index.tensor.lt(-1) | index.tensor.ge(t.m)).any().item<bool>())
      ThrowRangeError("args.cacheIndex: entries must be −1 or a cache row in [0, " + std::to_string(t.m) + ")");
    const double beta = Required(o, "beta", 0, 1e4), alpha = Required(o, "alpha", -1e6, 1e6);
    const TrainSettings s = ReadTrain(o);
    if (t.n < 1) ThrowRangeError("args.features: no training rows");
    return RunAsync(
        env, MakeTrainTask([t = std::move(t), targets = std::move(targets), index = std::move(index), beta, alpha,
                            normalize, multi, s] {
          at::Tensor keys = t.keys.tensor.clone().set_requires_grad(true);
          at::Tensor bias = at::zeros({t.classes}).set_requires_grad(multi);
          at::Tensor mask = at::ones({t.n, t.m});
          at::Tensor own = index.tensor.to(at::kLong), has = own.ge(0);
          mask.index_put_({at::arange(t.n).masked_select(has), own.masked_select(has)}, at::zeros({}));
          NamedTensors params{{"keys", keys}};
          if (multi) params.emplace_back("bias", bias);
          auto losses = Train(params, t.n, s, [&](const at::Tensor& rows) {
            at::Tensor a = Affinity(t.features.tensor.index_select(0, rows), keys, beta) * mask.index_select(0, rows);
            at::Tensor logits = t.zeroShot.tensor.index_select(0, rows) + alpha * Cache(a, t.values.tensor, normalize);
            if (multi) logits = logits + bias;
            return Loss(logits, targets.tensor.index_select(0, rows), multi);
          });
          Named out{{"keys", PrepareForJs(keys.detach().clone())}, {"bias", PrepareForJs(bias.detach().clone())}};
          return std::make_pair(out, losses);
        }));
  });
}

// ---- CLIP-Adapter -----------------------------------------------------------------------------

struct AdapterWeights {
  at::Tensor fc1, fc2, bias;
};

at::Tensor ClipAdapterForward(const at::Tensor& x, const AdapterWeights& w, const at::Tensor& text, double ratio,
                              double scale, bool multi) {
  at::Tensor h = at::relu(at::matmul(at::relu(at::matmul(x, w.fc1.t())), w.fc2.t()));
  at::Tensor y = ratio * h + (1 - ratio) * x;
  y = y / y.norm(2, 1, true).clamp_min(1e-12);
  at::Tensor cos = at::matmul(y, text.t());
  if (!multi) return scale * cos;
  return scale * (cos - cos.mean(1, true)) + w.bias;
}

struct ClipAdapterInputs {
  JsTensor features, text;
  int64_t n = 0, d = 0, classes = 0;
  double ratio = 0.2, scale = 100;
  bool multi = true;
};

ClipAdapterInputs ReadClipAdapter(const Napi::Object& o) {
  ClipAdapterInputs c;
  c.features = Matrix(o, "features", -1, -1);
  c.n = c.features.tensor.size(0);
  c.d = c.features.tensor.size(1);
  c.text = Matrix(o, "text", -1, c.d);
  c.classes = c.text.tensor.size(0);
  if (c.classes < 1) ThrowRangeError("args.text: no classes");
  c.ratio = Required(o, "ratio", 0, 1);
  c.scale = Required(o, "scale", 0, 1e4);
  c.multi = MultiLabel(o);
  return c;
}

// trainClipAdapter({ features [n,d], text [C,d], targets, task, ratio, scale, hidden, epochs, batchSize, lr,
//   weightDecay?, seed? }) → { fc1 [hidden,d], fc2 [d,hidden], bias [C], losses }
Napi::Value TrainClipAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    auto o = Args(info, "features, text, targets, task, ratio, scale, hidden, epochs, batchSize, lr, seed");
    ClipAdapterInputs c = ReadClipAdapter(o);
    if (c.n < 1) ThrowRangeError("args.features: no training rows");
    JsTensor targets = Targets(o, c.multi, c.n, c.classes);
    const int64_t hidden = ReadInteger(o.Get("hidden"), "args.hidden", 1, 1 << 16);
    const TrainSettings s = ReadTrain(o);
    return RunAsync(env, MakeTrainTask([c = std::move(c), targets = std::move(targets), hidden, s] {
                      // torch.nn.Linear's initialisation (no bias), from a seeded generator of its own
                      auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed);
                      const double b1 = 1 / std::sqrt(static_cast<double>(c.d)),
                                   b2 = 1 / std::sqrt(static_cast<double>(hidden));
                      AdapterWeights w{at::empty({hidden, c.d}).uniform_(-b1, b1, gen).set_requires_grad(true),
                                       at::empty({c.d, hidden}).uniform_(-b2, b2, gen).set_requires_grad(true),
                                       at::zeros({c.classes}).set_requires_grad(c.multi)};
                      NamedTensors params{{"fc1", w.fc1}, {"fc2", w.fc2}};
                      if (c.multi) params.emplace_back("bias", w.bias);
                      auto losses = Train(params, c.n, s, [&](const at::Tensor& rows) {
                        at::Tensor logits = ClipAdapterForward(c.features.tensor.index_select(0, rows), w,
                                                               c.text.tensor, c.ratio, c.scale, c.multi);
                        return Loss(logits, targets.tensor.index_select(0, rows), c.multi);
                      });
                      Named out{{"fc1", PrepareForJs(w.fc1.detach().clone())},
                                {"fc2", PrepareForJs(w.fc2.detach().clone())},
                                {"bias", PrepareForJs(w.bias.detach().clone())}};
                      return std::make_pair(out, losses);
                    }));
  });
}

// clipAdapterLogits({ features [n,d], text [C,d], task, ratio, scale, fc1 [h,d], fc2 [d,h], bias [C] }) → [n,C]
Napi::Value ClipAdapterLogits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    auto o = Args(info, "features, text, task, ratio, scale, fc1, fc2, bias");
    ClipAdapterInputs c = ReadClipAdapter(o);
    JsTensor fc1 = Matrix(o, "fc1", -1, c.d);
    JsTensor fc2 = Matrix(o, "fc2", c.d, fc1.tensor.size(0));
    JsTensor bias = ReadTensor(o.Get("bias"), TensorSpec{"args.bias", {at::kFloat}, {c.classes}, false, true});
    return RunAsync(
        env, MakeTensorTask([c = std::move(c), fc1 = std::move(fc1), fc2 = std::move(fc2), bias = std::move(bias)] {
          torch::NoGradGuard noGrad;
          AdapterWeights w{fc1.tensor, fc2.tensor, bias.tensor};
          return PrepareForJs(ClipAdapterForward(c.features.tensor, w, c.text.tensor, c.ratio, c.scale, c.multi));
        }));
  });
}

}  // namespace

void InitFewShot(Napi::Env env, Napi::Object exports) {
  Napi::Object ns = Napi::Object::New(env);
  ns.Set("tipLogits", Napi::Function::New(env, TipLogits, "tipLogits"));
  ns.Set("tipGrid", Napi::Function::New(env, TipGrid, "tipGrid"));
  ns.Set("trainTipF", Napi::Function::New(env, TrainTipF, "trainTipF"));
  ns.Set("trainClipAdapter", Napi::Function::New(env, TrainClipAdapter, "trainClipAdapter"));
  ns.Set("clipAdapterLogits", Napi::Function::New(env, ClipAdapterLogits, "clipAdapterLogits"));
  exports.Set("fewshot", ns);
}

}  // namespace vilref
