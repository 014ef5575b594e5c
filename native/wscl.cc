#include "wscl.h"

#include <cmath>
#include <limits>

#include "async.h"
#include "bridge.h"

namespace vilref {

at::Tensor LabelSimilarity(const at::Tensor& y, const at::Tensor& candidates) {
  at::Tensor ny = y.norm(2, 1, true), nc = candidates.norm(2, 1, true);
  at::Tensor denom = at::matmul(ny, nc.t());
  at::Tensor dot = at::matmul(y, candidates.t());
  return at::where(denom > 0, dot / denom.clamp_min(std::numeric_limits<double>::min()), at::zeros_like(dot))
      .clamp(0.0, 1.0);
}

namespace {

// One direction: anchors a [B, D] against candidates cat(b [B, D], q [K, D]); sim [B, B+K].
at::Tensor Direction(const at::Tensor& a, const at::Tensor& b, const at::Tensor& q, const at::Tensor& sim,
                     const at::Tensor& scale, const WsclOptions& o) {
  const int64_t B = a.size(0);
  at::Tensor candidates = q.defined() && q.size(0) > 0 ? at::cat({b, q.to(b.scalar_type())}, 0) : b;
  at::Tensor z = scale * at::matmul(a, candidates.t());  // [B, M]
  at::Tensor positive = at::zeros({B, candidates.size(0)}, z.options().dtype(at::kBool));
  positive.slice(1, 0, B).fill_diagonal_(true);
  const double negInf = -std::numeric_limits<double>::infinity();
  at::Tensor eliminated = sim.ge(o.threshold - 1e-6).logical_and(positive.logical_not());
  // log w: 0 for the positive, gamma·log(1 − c) for kept negatives (0 when gamma = 0: (1−c)^0 = 1)
  at::Tensor logw = o.gamma == 0.0 ? at::zeros_like(sim) : o.gamma * at::log1p(-sim);
  logw = at::where(positive, at::zeros_like(logw), logw);
  logw = logw.masked_fill(eliminated, negInf);
  at::Tensor logits = z + logw.to(z.scalar_type());
  at::Tensor diag = z.slice(1, 0, B).diagonal();
  return at::logsumexp(logits, 1) - diag;  // −log softmax of the positive
}

}  // namespace

LossTerms Wscl(const at::Tensor& u, const at::Tensor& v, const at::Tensor& y, const at::Tensor& qu,
               const at::Tensor& qv, const at::Tensor& qy, const at::Tensor& logitScale, const WsclOptions& options) {
  at::Tensor labels = qy.defined() && qy.size(0) > 0 ? at::cat({y, qy.to(y.scalar_type())}, 0) : y;
  at::Tensor sim = LabelSimilarity(y, labels);  // symmetric in the roles of image and text
  at::Tensor scale = logitScale.exp();
  at::Tensor i2t = Direction(u, v, qv, sim, scale, options);
  at::Tensor t2i = Direction(v, u, qu, sim, scale, options);
  return {0.5 * (i2t.mean() + t2i.mean()), i2t, t2i};
}

LossTerms Clip(const at::Tensor& u, const at::Tensor& v, const at::Tensor& logitScale) {
  at::Tensor logits = logitScale.exp() * at::matmul(u, v.t());
  at::Tensor i2t = at::logsumexp(logits, 1) - logits.diagonal();
  at::Tensor t2i = at::logsumexp(logits.t(), 1) - logits.diagonal();
  return {0.5 * (i2t.mean() + t2i.mean()), i2t, t2i};
}

namespace {

struct LossOutput {
  double loss = 0, gradScale = 0;
  at::Tensor i2t, t2i, gradImage, gradText;
};

// The loss of the inputs (image, text[, labels[, queue image, text, labels]]) and its gradients
// with respect to the raw features and the logit scale.
LossOutput RunLossOn(bool wscl, const std::vector<JsTensor>& inputs, double logitScale, const WsclOptions& options) {
  at::Tensor image = inputs[0].tensor, text = inputs[1].tensor;
  auto dtype = image.scalar_type();
  at::Tensor rawU = image.detach().clone().requires_grad_(true), rawV = text.detach().clone().requires_grad_(true);
  at::Tensor scale = at::full({}, logitScale, image.options()).requires_grad_(true);
  at::Tensor u = rawU / rawU.norm(2, 1, true), v = rawV / rawV.norm(2, 1, true);
  LossTerms terms;
  if (wscl) {
    at::Tensor qu, qv, qy;
    if (inputs.size() > 3) {
      qu = inputs[3].tensor.to(dtype);
      qv = inputs[4].tensor.to(dtype);
      qy = inputs[5].tensor.to(dtype);
    }
    terms = Wscl(u, v, inputs[2].tensor.to(dtype), qu, qv, qy, scale, options);
  } else {
    terms = Clip(u, v, scale);
  }
  terms.loss.backward();
  return {terms.loss.item<double>(),        scale.grad().item<double>(), PrepareForJs(terms.i2t.detach()),
          PrepareForJs(terms.t2i.detach()), PrepareForJs(rawU.grad()),   PrepareForJs(rawV.grad())};
}

Napi::Value ResolveLoss(Napi::Env env, const LossOutput& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("loss", Napi::Number::New(env, r.loss));
  o.Set("lossI2T", WrapTensor(env, r.i2t));
  o.Set("lossT2I", WrapTensor(env, r.t2i));
  o.Set("gradImage", WrapTensor(env, r.gradImage));
  o.Set("gradText", WrapTensor(env, r.gradText));
  o.Set("gradLogitScale", Napi::Number::New(env, r.gradScale));
  return o;
}

Napi::Value RunLoss(const Napi::CallbackInfo& info, bool wscl) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject())
      ThrowTypeError("args: expected an object { image, text, labels, queue?, logitScale, threshold?, gamma? }");
    auto args = info[0].As<Napi::Object>();
    const std::vector<at::ScalarType> floats{at::kFloat, at::kDouble};
    std::vector<JsTensor> inputs;
    inputs.push_back(ReadTensor(args.Get("image"), TensorSpec{"args.image", floats, {-1, -1}, false, true}));
    const at::Tensor image = inputs[0].tensor;  // a handle: `inputs` grows below
    const int64_t B = image.size(0), D = image.size(1);
    if (B < 1 || D < 1) ThrowRangeError("args.image: needs at least one row and one column");
    inputs.push_back(ReadTensor(args.Get("text"), TensorSpec{"args.text", {image.scalar_type()}, {B, D}, false, true}));
    for (const auto& [name, t] :
         {std::pair<const char*, at::Tensor>{"args.image", image}, {"args.text", inputs[1].tensor}}) {
      at::Tensor zeroRows = t.abs().amax(1).eq(0).nonzero();
      if (zeroRows.numel() > 0)
        ThrowRangeError(std::string(name) + ": row " + std::to_string(zeroRows[0][0].item<int64_t>()) +
                        " is all zero and cannot be normalised");
    }
    WsclOptions options;
    const double logitScale = ReadNumber(args, "args", "logitScale", -50, 50);
    if (wscl) {
      inputs.push_back(ReadTensor(args.Get("labels"), TensorSpec{"args.labels", floats, {B, -1}, false, true}));
      const int64_t C = inputs[2].tensor.size(1);
      at::Tensor labels = inputs[2].tensor;
      if (labels.lt(0).any().item<bool>() || labels.gt(1).any().item<bool>())
        ThrowRangeError("args.labels: values must lie in [0, 1]");
      options.threshold = ReadNumber(args, "args", "threshold", 0.0, 1e9);
      options.gamma = ReadNumber(args, "args", "gamma", 0.0, 1e3);
      Napi::Value queue = args.Get("queue");
      if (!queue.IsUndefined() && !queue.IsNull()) {
        if (!queue.IsObject()) ThrowTypeError("args.queue: expected { image, text, labels }");
        auto q = queue.As<Napi::Object>();
        inputs.push_back(ReadTensor(q.Get("image"), TensorSpec{"args.queue.image", floats, {-1, D}, false, true}));
        const int64_t K = inputs[3].tensor.size(0);
        inputs.push_back(ReadTensor(q.Get("text"), TensorSpec{"args.queue.text", floats, {K, D}, false, true}));
        inputs.push_back(ReadTensor(q.Get("labels"), TensorSpec{"args.queue.labels", floats, {K, C}, false, true}));
      }
    }
    return RunAsync(env, MakeTask([wscl, inputs = std::move(inputs), logitScale,
                                   options] { return RunLossOn(wscl, inputs, logitScale, options); },
                                  ResolveLoss));
  });
}

}  // namespace

void InitLosses(Napi::Env env, Napi::Object exports) {
  Napi::Object losses = Napi::Object::New(env);
  losses.Set("wscl", Napi::Function::New(
                         env, [](const Napi::CallbackInfo& info) { return RunLoss(info, true); }, "wscl"));
  losses.Set("clip", Napi::Function::New(
                         env, [](const Napi::CallbackInfo& info) { return RunLoss(info, false); }, "clip"));
  exports.Set("losses", losses);
}

}  // namespace vilref
