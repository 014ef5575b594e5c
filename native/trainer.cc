#include "trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/string_utils.h>

#include <cmath>
#include <map>
#include <tuple>

#include "async.h"
#include "bridge.h"
#include "multitensor.h"
#include "nn.h"
#include "runtime.h"

namespace vilref {

namespace {

const std::vector<std::pair<std::string, at::ScalarType>> kPrecisions{
    {"float32", at::kFloat}, {"bfloat16", at::kBFloat16}, {"float16", at::kHalf}};

// The complete options object (strict readers; the schema checked the values). The checks that
// need the model's device and dtype stay here.
TrainerOptions ReadTrainerOptions(const Napi::Object& o, const ViLReF& model) {
  TrainerOptions t;
  t.lr = ReadNumber(o, "options", "lr", 0, 10);
  t.adamw = ReadAdamWSettings(o, "options");
  t.momentum = ReadNumber(o, "options", "momentum", 0, 1);
  t.gradClip = ReadNumber(o, "options", "gradClip", 0, 1e9);
  t.queueSize = ReadInt(o, "options", "queueSize", 0, 1 << 24);
  t.labelDim = ReadInt(o, "options", "labelDim", 1, 1 << 16);
  t.wscl = ReadEnumName(o, "options", "loss", {"wscl", "clip"}) == "wscl";
  t.loss.threshold = ReadNumber(o, "options", "threshold", 0, 1e9);
  t.loss.gamma = ReadNumber(o, "options", "gamma", 0, 1e3);
  Napi::Value freeze = o.Get("freeze");
  if (!freeze.IsArray()) ThrowTypeError("options.freeze: expected an array of \"visual\" and/or \"text\"");
  auto towers = freeze.As<Napi::Array>();
  for (uint32_t i = 0; i < towers.Length(); ++i) {
    const std::string name = "options.freeze[" + std::to_string(i) + "]";
    (ReadEnumValue(towers.Get(i), name, {"visual", "text"}) == "visual" ? t.freezeVisual : t.freezeText) = true;
  }
  t.gradientCheckpointing = ReadBool(o, "options", "gradientCheckpointing");
  t.precision = ReadEnum(o, "options", "precision", kPrecisions);
  if (t.precision == at::kHalf && !model.device().is_cuda())
    ThrowRangeError("options.precision: float16 (with loss scaling) needs a CUDA device; on the CPU use \"bfloat16\"");
  if (t.precision != at::kFloat && model.dtype() != at::kFloat)
    ThrowRangeError("options.precision: mixed precision keeps float32 master weights, but the model is " +
                    std::string(c10::toString(model.dtype())) + " (create or load it with dtype float32)");
  return t;
}

at::Tensor Normalise(const at::Tensor& x) { return x / x.norm(2, -1, true); }

// The frozen towers' parameters need no gradient for the length of a step; the model's flags are
// restored afterwards (the model may be used by other trainers or for fine-tuning later).
class NoGradFor {
 public:
  explicit NoGradFor(const std::vector<std::pair<std::string, at::Tensor>>& params) {
    for (auto& [name, p] : params) {
      params_.emplace_back(p, p.requires_grad());
      p.set_requires_grad(false);
    }
  }
  ~NoGradFor() {
    for (auto& [p, was] : params_) p.set_requires_grad(was);
  }

 private:
  std::vector<std::pair<at::Tensor, bool>> params_;
};

struct Batch {
  JsTensor images, ids, labels;
};

class StepTask : public Task {
 public:
  StepTask(std::shared_ptr<ViLReFNet> net, at::Device device, TrainerOptions options,
           std::shared_ptr<TrainerState> state, Batch batch, double lr)
      : net_(std::move(net)),
        device_(device),
        options_(options),
        state_(std::move(state)),
        batch_(std::move(batch)),
        lr_(lr) {}

  void Execute() override;
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", Napi::Number::New(env, loss_));
    o.Set("skipped", Napi::Boolean::New(env, skipped_));
    o.Set("gradNorm", Napi::Number::New(env, gradNorm_));
    o.Set("logitScale", Napi::Number::New(env, logitScale_));
    o.Set("queueValid", Napi::Number::New(env, static_cast<double>(queueValid_)));
    o.Set("allGatherSeconds", Napi::Number::New(env, gatherSeconds_));
    o.Set("allReduceSeconds", Napi::Number::New(env, reduceSeconds_));
    o.Set("lossScale", Napi::Number::New(env, lossScale_));
    o.Set("overflow", Napi::Boolean::New(env, overflow_));
    o.Set("recomputedBlocks", Napi::Number::New(env, static_cast<double>(recomputed_)));
    return o;
  }

 private:
  // The batch's features in float32: image and text rows (this rank's, or the global batch's in
  // loader order), labels, and the momentum towers' features (undefined while the queue is off).
  struct Features {
    at::Tensor U, V, Y, MU, MV;
  };
  void SyncStart(Communicator* comm);
  void UpdateMomentum();
  Features Forward(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& labels);
  Features GatherGlobal(Communicator* comm, const Features& local);
  void BackwardAndUpdate(const at::Tensor& loss, Communicator* comm);

  std::shared_ptr<ViLReFNet> net_;
  at::Device device_;
  TrainerOptions options_;
  std::shared_ptr<TrainerState> state_;
  Batch batch_;
  double lr_;
  double loss_ = 0, gradNorm_ = 0, logitScale_ = 0, gatherSeconds_ = 0, reduceSeconds_ = 0;
  double lossScale_ = 1;
  bool skipped_ = false, overflow_ = false;
  int64_t recomputed_ = 0;  // blocks re-run in this step's backward (gradient checkpointing)
  int64_t queueValid_ = 0;
};

}  // namespace

bool LossScaler::Update(bool finite) {
  if (!finite) {
    scale /= 2;
    goodSteps = 0;
    return false;
  }
  if (++goodSteps >= interval) {
    scale *= 2;
    goodSteps = 0;
  }
  return true;
}

// Multi-process: numbers the step for the communicator's diagnostics, and before the first step
// every rank takes rank 0's weights (online and momentum).
void StepTask::SyncStart(Communicator* comm) {
  TrainerState& s = *state_;
  comm->MarkStep(s.steps + s.skipped + 1);
  if (s.synced) return;
  torch::NoGradGuard noGrad;
  std::vector<at::Tensor> all;
  for (auto& [name, t] : NamedState(*net_)) all.push_back(t);
  for (auto& [name, t] : NamedState(*s.momentum)) all.push_back(t);
  comm->Broadcast(all, 0, "broadcast of the initial parameters");
  s.synced = true;
}

// 1. EMA of the momentum towers (from the online weights before this step's update); a frozen
// tower's momentum copy is the tower itself, exactly
void StepTask::UpdateMomentum() {
  TrainerState& s = *state_;
  EmaUpdate(*s.momentum, *net_, options_.momentum);
  if (!s.frozen.empty()) {
    torch::NoGradGuard noGrad;
    auto dst = s.momentum->named_parameters(true);
    for (auto& [name, p] : s.frozen) dst[name].copy_(p);
  }
}

// 2. momentum features of the batch, no gradient (with a queue); 3. the online towers' features,
// with gradient (and recomputation when gradient checkpointing is on)
StepTask::Features StepTask::Forward(const at::Tensor& images, const at::Tensor& ids, const at::Tensor& labels) {
  TrainerState& s = *state_;
  Features f;
  f.Y = labels;
  if (s.queue->size() > 0) {
    torch::NoGradGuard noGrad;
    AutocastScope autocast(device_.type(), options_.precision);
    s.momentum->eval();
    f.MU = Normalise(s.momentum->visual->forward(images, false).to(at::kFloat));
    f.MV = Normalise(s.momentum->EncodeTexts(ids, false).to(at::kFloat));
  }
  net_->train();
  if (options_.freezeVisual) net_->visual->eval();  // a frozen ResNet's BatchNorm statistics stay too
  RecomputeScope recompute(options_.gradientCheckpointing);
  AutocastScope autocast(device_.type(), options_.precision);
  f.U = Normalise(net_->visual->forward(images, false).to(at::kFloat));
  f.V = Normalise(net_->EncodeTexts(ids, false).to(at::kFloat));
  return f;
}

// The global batch in rank order: copies of the other ranks' rows, this rank's own (with gradient).
StepTask::Features StepTask::GatherGlobal(Communicator* comm, const Features& local) {
  const at::Tensor &u = local.U, &v = local.V, &labels = local.Y, &mu = local.MU, &mv = local.MV;
  Features f = local;
  const int64_t n = u.size(0), D = u.size(1), C = labels.size(1);
  std::vector<at::Tensor> parts{u.detach(), v.detach(), labels};
  if (mu.defined()) parts.insert(parts.end(), {mu, mv});
  Gathered g = comm->AllGatherRows(at::cat(parts, 1), "all_gather of the batch features");
  const int64_t off = g.offsets[comm->rank()], N = g.rows.size(0);
  auto cols = [&](int64_t a, int64_t b) { return g.rows.slice(1, a, b).contiguous(); };
  auto withLocal = [&](const at::Tensor& all, const at::Tensor& mine) {
    return at::cat({all.slice(0, 0, off), mine, all.slice(0, off + n, N)}, 0);
  };
  f.U = withLocal(cols(0, D), u);
  f.V = withLocal(cols(D, 2 * D), v);
  f.Y = cols(2 * D, 2 * D + C);
  if (mu.defined()) {
    f.MU = cols(2 * D + C, 3 * D + C);
    f.MV = cols(3 * D + C, 4 * D + C);
  }
  // The loader gives rank r the samples r, r+W, r+2W, ... of the epoch's order, so with equal
  // shares the global batch in loader order has sample j of rank r at row j·W + r: interleave,
  // so that the queue fills (and wraps) exactly as in one process with the global batch.
  const int64_t W = comm->size();
  bool equal = true;
  for (int64_t r = 0; r < W; ++r) equal = equal && g.offsets[r + 1] - g.offsets[r] == n;
  if (equal && W > 1) {
    at::Tensor order = at::arange(N, at::TensorOptions().dtype(at::kLong)).view({W, n}).t().reshape({-1}).to(device_);
    f.U = f.U.index_select(0, order);
    f.V = f.V.index_select(0, order);
    f.Y = f.Y.index_select(0, order);
    if (mu.defined()) {
      f.MU = f.MU.index_select(0, order);
      f.MV = f.MV.index_select(0, order);
    }
  }
  return f;
}

// A finite loss: backward (scaled for float16), the gradients summed over the ranks, unscaled,
// clipped, then AdamW and the logit scale's clamp, unless a float16 gradient overflowed.
void StepTask::BackwardAndUpdate(const at::Tensor& loss, Communicator* comm) {
  TrainerState& s = *state_;
  const bool scaled = options_.precision == at::kHalf;
  lossScale_ = scaled ? s.scaler.scale : 1.0;
  const int64_t recomputedBefore = RecomputeCount();
  (scaled ? loss * s.scaler.scale : loss).backward();
  recomputed_ = RecomputeCount() - recomputedBefore;
  std::vector<at::Tensor> params;
  for (auto& p : net_->parameters())
    if (p.defined() && p.grad().defined()) params.push_back(p);
  if (comm) {
    // each rank's gradient is the global loss's gradient through its own samples: their sum is
    // the global gradient. logit_scale enters every rank's loss directly: average it instead.
    std::vector<at::Tensor> grads;
    for (auto& p : params) grads.push_back(p.grad());
    comm->AllReduceSum(grads, "all_reduce of the gradients");
    if (net_->logit_scale.grad().defined()) net_->logit_scale.mutable_grad().div_(comm->size());
  }
  if (scaled) {
    torch::NoGradGuard noGrad;
    std::vector<at::Tensor> grads;
    for (auto& p : params) grads.push_back(p.grad());
    at::_foreach_div_(grads, lossScale_);  // one launch on CUDA
  }
  gradNorm_ =
      ForeachClipGradNorm(params, options_.gradClip > 0 ? options_.gradClip : std::numeric_limits<double>::infinity());
  // float16: an overflowed gradient halves the scale and skips the update (the batch is still enqueued)
  overflow_ = scaled && !s.scaler.Update(std::isfinite(gradNorm_));
  if (!overflow_) {
    s.optimizer->SetLr(lr_);
    s.optimizer->Step();
    {
      torch::NoGradGuard noGrad;
      net_->logit_scale.clamp_(0.0, std::log(100.0));
    }
    ++s.steps;
  }
}

void StepTask::Execute() {
  TrainerState& s = *state_;
  Communicator* comm = s.comm.get();
  at::Tensor images = batch_.images.tensor.to(device_), ids = batch_.ids.tensor.to(device_, at::kLong);
  at::Tensor labels = batch_.labels.tensor.to(device_, at::kFloat);
  if (comm) SyncStart(comm);
  if (s.queue->size() > 0) UpdateMomentum();
  NoGradFor frozen(s.frozen);
  // 2.-3. features; then the loss over batch + queue (in float32), backward, clip, AdamW, clamp
  Features f = Forward(images, ids, labels);
  if (comm) f = GatherGlobal(comm, f);
  // the queue lives on the model's device: no copy to or from the host in a step
  LossTerms terms = options_.wscl ? Wscl(f.U, f.V, f.Y, s.queue->Image(), s.queue->Text(), s.queue->Labels(),
                                         net_->logit_scale.to(at::kFloat), options_.loss)
                                  : Clip(f.U, f.V, net_->logit_scale.to(at::kFloat));
  s.lossDevice = terms.loss.device().str();
  loss_ = terms.loss.item<double>();  // the global batch's loss: the same on every rank
  s.optimizer->ZeroGrad();
  if (!std::isfinite(loss_)) {
    skipped_ = true;
    ++s.skipped;
  } else {
    BackwardAndUpdate(terms.loss, comm);
  }
  net_->eval();
  logitScale_ = net_->logit_scale.item<double>();
  // 4. enqueue the (global) batch's momentum features and labels
  if (s.queue->size() > 0 && !skipped_) s.queue->Enqueue(f.MU, f.MV, f.Y);
  queueValid_ = s.queue->valid();
  if (comm) std::tie(gatherSeconds_, reduceSeconds_) = comm->TakeSeconds();
}

Napi::Function Trainer::Define(Napi::Env env) {
  return DefineClass(env, "Trainer",
                     {
                         InstanceMethod<&Trainer::Step>("step"),
                         InstanceMethod<&Trainer::QueueState>("queueState"),
                         InstanceMethod<&Trainer::MomentumStateDict>("momentumStateDict"),
                         InstanceMethod<&Trainer::ExportState>("exportState"),
                         InstanceMethod<&Trainer::ImportState>("importState"),
                         InstanceAccessor<&Trainer::GetOptions>("options"),
                         InstanceMethod<&Trainer::Devices>("devices"),
                         InstanceAccessor<&Trainer::GetSkipped>("skipped"),
                         InstanceMethod<&Trainer::Dispose>("dispose"),
                         StaticMethod<&Trainer::LossScalerUpdate>("lossScalerUpdate"),
                     });
}

// new Trainer(model, { labelDim, lr, betas, eps, weightDecay, decayEmbeddings, momentum, gradClip, queueSize, loss,
// threshold, gamma, freeze, gradientCheckpointing, precision, processGroup? }), complete (lib/train/trainer.ts)
Trainer::Trainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Trainer>(info) {
  Guard(info.Env(), [&] {
    model_ = ViLReF::From(info[0], "model");
    modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    auto o = ReadOptions(info[1], "options", "an object");
    options_ = ReadTrainerOptions(o, *model_);

    auto net = model_->net();
    auto momentum = std::make_shared<ViLReFNet>(model_->config());
    momentum->to(model_->device());
    {
      torch::NoGradGuard noGrad;
      auto src = NamedState(*net);
      auto dst = NamedState(*momentum);
      for (size_t i = 0; i < dst.size(); ++i) dst[i].second.set_data(src[i].second.detach().clone());
    }
    for (auto& p : momentum->parameters()) p.set_requires_grad(false);
    // frozen towers: visual.* but the ViT's projection visual.proj (a ResNet's projection is its
    // attention pool, frozen with it), bert.*; text_projection and logit_scale stay trainable
    std::vector<std::pair<std::string, at::Tensor>> frozenParams;
    auto isFrozen = [&](const std::string& name) {
      return (options_.freezeVisual && name.rfind("visual.", 0) == 0 && name != "visual.proj") ||
             (options_.freezeText && name.rfind("bert.", 0) == 0);
    };
    NamedTensors trainable;
    for (auto& p : net->named_parameters()) {
      if (!p.value().defined() || !p.value().requires_grad()) continue;
      if (isFrozen(p.key()))
        frozenParams.emplace_back(p.key(), p.value());
      else
        trainable.emplace_back(p.key(), p.value());
    }
    auto optimizer = std::make_unique<NamedAdamW>(options_.adamw);
    optimizer->AddGroup("model", options_.lr, trainable);
    optimizer->Build();
    auto queue = std::make_unique<FeatureQueue>(options_.queueSize, model_->config().embedDim, options_.labelDim,
                                                model_->device());
    state_ = std::make_shared<TrainerState>();
    state_->momentum = momentum;
    state_->optimizer = std::move(optimizer);
    state_->queue = std::move(queue);
    state_->frozen = std::move(frozenParams);
    Napi::Value group = o.Get("processGroup");
    if (!group.IsUndefined() && !group.IsNull()) {
      state_->comm = ProcessGroup::From(group, "options.processGroup")->communicator();
      groupRef_ = Napi::Persistent(group.As<Napi::Object>());
    }
    return 0;
  });
}

Napi::Value Trainer::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    if (!info[0].IsObject()) ThrowTypeError("batch: expected { images, ids, labels }");
    auto b = info[0].As<Napi::Object>();
    const auto& c = model_->config();
    Batch batch;
    batch.images = ReadTensor(
        b.Get("images"),
        TensorSpec{"batch.images", {at::kFloat}, {-1, 3, c.imageResolution, c.imageResolution}, false, true});
    const int64_t n = batch.images.tensor.size(0);
    // with a process group the contrastive batch is the global one: one local pair is enough
    const int64_t least = state_->comm ? 1 : 2;
    if (n < least)
      ThrowRangeError("batch.images: a contrastive step needs at least " + std::to_string(least) +
                      (least == 1 ? " pair" : " pairs") + ", got " + std::to_string(n));
    batch.ids = model_->ReadTextIds(b.Get("ids"), "batch.ids", n);
    batch.labels =
        ReadTensor(b.Get("labels"), TensorSpec{"batch.labels", {at::kFloat}, {n, options_.labelDim}, false, true});
    const double lr = ReadNumber(ReadOptions(info[1], "options", "an object { lr }"), "options", "lr", 0, 10);
    return model_->queue().Submit(
        env, Value(),
        std::make_unique<StepTask>(model_->net(), model_->device(), options_, state_, std::move(batch), lr));
  });
}

namespace {

// The queue's valid entries and ring position, copied on the worker (QueueState).
struct QueueSnapshot {
  int64_t valid = 0, pointer = 0, steps = 0;
  at::Tensor image, text, labels;
};

QueueSnapshot SnapshotQueue(const TrainerState& s) {
  return {s.queue->valid(),
          s.queue->pointer(),
          s.steps,
          PrepareForJs(s.queue->Image().clone()),
          PrepareForJs(s.queue->Text().clone()),
          PrepareForJs(s.queue->Labels().clone())};
}

Napi::Value ResolveQueue(Napi::Env env, const QueueSnapshot& q) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("valid", Napi::Number::New(env, static_cast<double>(q.valid)));
  o.Set("pointer", Napi::Number::New(env, static_cast<double>(q.pointer)));
  o.Set("steps", Napi::Number::New(env, static_cast<double>(q.steps)));
  o.Set("image", WrapTensor(env, q.image));
  o.Set("text", WrapTensor(env, q.text));
  o.Set("labels", WrapTensor(env, q.labels));
  return o;
}

OptimizerStateKey OptimKey(const at::Tensor& p) { return OptimizerKey(p); }

// Everything a resumed run needs besides the model's weights, as named tensors:
// momentum.<name>, optim.<name>.{exp_avg,exp_avg_sq,step}, queue.{image,text,labels,position},
// trainer.counters (steps, skipped), rng.cpu.
NamedTensors ExportTrainerState(ViLReFNet& net, TrainerState& s) {
  NamedTensors out;
  auto put = [&](const std::string& name, const at::Tensor& t) {
    out.emplace_back(name, PrepareForJs(t.detach().cpu().clone()));
  };
  for (auto& [name, t] : NamedState(*s.momentum)) put("momentum." + name, t);
  auto& states = s.optimizer->Torch().state();
  for (auto& p : net.named_parameters()) {
    auto it = states.find(OptimKey(p.value()));
    if (it == states.end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    put("optim." + p.key() + ".exp_avg", st.exp_avg());
    put("optim." + p.key() + ".exp_avg_sq", st.exp_avg_sq());
    put("optim." + p.key() + ".step", torch::tensor({st.step()}, torch::kLong));
  }
  put("queue.image", s.queue->image());
  put("queue.text", s.queue->text());
  put("queue.labels", s.queue->labels());
  put("queue.position", torch::tensor({s.queue->valid(), s.queue->pointer()}, torch::kLong));
  put("trainer.counters", torch::tensor({s.steps, s.skipped}, torch::kLong));
  put("trainer.scaler",
      torch::tensor({static_cast<float>(s.scaler.scale), static_cast<float>(s.scaler.goodSteps)}, torch::kFloat));
  {
    std::lock_guard<std::recursive_mutex> rng(GlobalRngMutex());
    put("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  }
  return out;
}

// Replaces momentum weights, optimiser moments, queue and counters by an exportState record;
// everything is checked first, so a bad record leaves the trainer as it was.
void ImportTrainerState(ViLReFNet& net, TrainerState& s, const std::map<std::string, JsTensor>& in) {
  torch::NoGradGuard noGrad;
  auto get = [&](const std::string& name) -> at::Tensor {
    auto it = in.find(name);
    if (it == in.end()) ThrowRangeError("state[\"" + name + "\"]: missing");
    return it->second.tensor;
  };
  // check everything first: a bad record leaves the trainer as it was
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (target, source)
  auto plan = [&](const std::string& name, const at::Tensor& target) {
    at::Tensor src = get(name);
    if (src.sizes() != target.sizes()) ThrowRangeError("state[\"" + name + "\"]: shape does not fit");
    copies.emplace_back(target, src);
  };
  for (auto& [name, t] : NamedState(*s.momentum)) plan("momentum." + name, t);
  plan("queue.image", s.queue->image());
  plan("queue.text", s.queue->text());
  plan("queue.labels", s.queue->labels());
  std::vector<std::pair<OptimizerStateKey, std::unique_ptr<torch::optim::AdamWParamState>>> optim;
  for (auto& p : net.named_parameters()) {
    const std::string base = "optim." + p.key();
    if (!in.count(base + ".step")) continue;  // never stepped (e.g. frozen)
    at::Tensor avg = get(base + ".exp_avg"), sq = get(base + ".exp_avg_sq");
    if (avg.sizes() != p.value().sizes() || sq.sizes() != p.value().sizes())
      ThrowRangeError("state[\"" + base + "\"]: shape does not fit");
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(get(base + ".step").item<int64_t>());
    st->exp_avg(avg.to(p.value().device(), p.value().scalar_type()).clone());
    st->exp_avg_sq(sq.to(p.value().device(), p.value().scalar_type()).clone());
    optim.emplace_back(OptimKey(p.value()), std::move(st));
  }
  at::Tensor pos = get("queue.position"), counters = get("trainer.counters");
  if (pos.numel() != 2 || counters.numel() != 2)
    ThrowRangeError("state: queue.position and trainer.counters hold two numbers each");
  if (in.count("trainer.scaler")) {
    at::Tensor sc = in.at("trainer.scaler").tensor;
    if (sc.numel() != 2 || !(sc.to(at::kDouble)[0].item<double>() > 0))
      ThrowRangeError("state[\"trainer.scaler\"]: expected [scale > 0, good steps]");
  }
  const int64_t valid = pos[0].item<int64_t>(), pointer = pos[1].item<int64_t>();
  if (valid < 0 || valid > s.queue->size() || pointer < 0 || (s.queue->size() > 0 && pointer >= s.queue->size()))
    ThrowRangeError("state[\"queue.position\"]: out of range for this queue");
  // then apply
  for (auto& [target, src] : copies) target.copy_(src);
  auto& states = s.optimizer->Torch().state();
  states.clear();
  for (auto& [key, st] : optim) states[key] = std::move(st);
  s.queue->SetPosition(valid, pointer);
  if (in.count("trainer.scaler")) {  // absent in records of older versions
    at::Tensor sc = in.at("trainer.scaler").tensor.to(at::kDouble);
    s.scaler.scale = sc[0].item<double>();
    s.scaler.goodSteps = sc[1].item<int64_t>();
  }
  s.steps = counters[0].item<int64_t>();
  s.skipped = counters[1].item<int64_t>();
  if (in.count("rng.cpu")) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle on the process's generator
    std::lock_guard<std::recursive_mutex> rng(GlobalRngMutex());
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(in.at("rng.cpu").tensor.clone());
  }
}

}  // namespace

Napi::Value Trainer::ExportState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(), MakeNamedTask([net = model_->net(), state = state_] {
                                    return ExportTrainerState(*net, *state);
                                  }));
  });
}

// importState(record from exportState): replaces momentum weights, optimizer moments, queue and counters.
Napi::Value Trainer::ImportState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    if (!info[0].IsObject() || info[0].IsArray()) ThrowTypeError("state: expected the object exportState() returned");
    auto dict = info[0].As<Napi::Object>();
    std::map<std::string, JsTensor> in;
    Napi::Array keys = dict.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string key = keys.Get(i).ToString().Utf8Value();
      in.emplace(key, ReadTensor(dict.Get(key), TensorSpec{"state[\"" + key + "\"]",
                                                           {at::kFloat, at::kDouble, at::kLong, at::kInt, at::kByte},
                                                           {},
                                                           true,
                                                           false}));
    }
    return model_->queue().Submit(env, Value(), MakeVoidTask([net = model_->net(), state = state_, in = std::move(in)] {
                                    ImportTrainerState(*net, *state, in);
                                  }));
  });
}

Napi::Value Trainer::QueueState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(),
                                  MakeTask([state = state_] { return SnapshotQueue(*state); }, ResolveQueue));
  });
}

Napi::Value Trainer::MomentumStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(), MakeStateDictTask(state_->momentum));
  });
}

Napi::Value Trainer::LossScalerUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    LossScaler scaler;
    if (!info[0].IsNumber() || !(info[0].As<Napi::Number>().DoubleValue() > 0))
      ThrowRangeError("scale: expected a number > 0");
    scaler.scale = info[0].As<Napi::Number>().DoubleValue();
    scaler.goodSteps = ReadInteger(info[1], "goodSteps", 0, int64_t(1) << 40);
    if (!info[2].IsArray()) ThrowTypeError("finite: expected an array of booleans");
    scaler.interval = ReadInteger(info[3], "interval", 1, int64_t(1) << 40);
    auto finite = info[2].As<Napi::Array>();
    Napi::Array applied = Napi::Array::New(env, finite.Length());
    for (uint32_t i = 0; i < finite.Length(); ++i) {
      Napi::Value f = finite.Get(i);
      if (!f.IsBoolean()) ThrowTypeError("finite[" + std::to_string(i) + "]: expected a boolean");
      applied.Set(i, Napi::Boolean::New(env, scaler.Update(f.As<Napi::Boolean>().Value())));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("scale", Napi::Number::New(env, scaler.scale));
    o.Set("goodSteps", Napi::Number::New(env, static_cast<double>(scaler.goodSteps)));
    o.Set("applied", applied);
    return o;
  });
}

Napi::Value Trainer::GetOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const TrainerOptions& t = options_;
  Napi::Object o = Napi::Object::New(env);
  o.Set("labelDim", Napi::Number::New(env, static_cast<double>(t.labelDim)));
  o.Set("lr", Napi::Number::New(env, t.lr));
  WriteAdamWSettings(env, o, t.adamw);
  o.Set("momentum", Napi::Number::New(env, t.momentum));
  o.Set("gradClip", Napi::Number::New(env, t.gradClip));
  o.Set("queueSize", Napi::Number::New(env, static_cast<double>(t.queueSize)));
  o.Set("loss", t.wscl ? "wscl" : "clip");
  o.Set("threshold", Napi::Number::New(env, t.loss.threshold));
  o.Set("gamma", Napi::Number::New(env, t.loss.gamma));
  Napi::Array freeze = Napi::Array::New(env);
  if (t.freezeVisual) freeze.Set(freeze.Length(), "visual");
  if (t.freezeText) freeze.Set(freeze.Length(), "text");
  o.Set("freeze", freeze);
  o.Set("gradientCheckpointing", Napi::Boolean::New(env, t.gradientCheckpointing));
  o.Set("precision", FloatDtypeName(t.precision));
  return o;
}

namespace {

// The device all tensors of a list share, "mixed" when they differ, "" for none.
std::string CommonDevice(const std::vector<at::Tensor>& tensors) {
  std::string out;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    std::string d = t.device().str();
    if (out.empty())
      out = d;
    else if (out != d)
      return "mixed";
  }
  return out;
}

class DevicesTask : public Task {
 public:
  DevicesTask(std::shared_ptr<ViLReFNet> net, std::shared_ptr<TrainerState> state)
      : net_(std::move(net)), state_(std::move(state)) {}
  void Execute() override {
    auto& s = *state_;
    parameters_ = CommonDevice(net_->parameters());
    momentum_ = CommonDevice(s.momentum->parameters());
    queue_ = CommonDevice({s.queue->image(), s.queue->text(), s.queue->labels()});
    std::vector<at::Tensor> moments;
    for (auto& [key, st] : s.optimizer->Torch().state()) {
      auto& a = static_cast<torch::optim::AdamWParamState&>(*st);
      moments.push_back(a.exp_avg());
      moments.push_back(a.exp_avg_sq());
    }
    optimizer_ = CommonDevice(moments);
    loss_ = s.lossDevice;
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    auto orNull = [&](const std::string& d) -> Napi::Value {
      return d.empty() ? env.Null() : Napi::String::New(env, d);
    };
    o.Set("parameters", parameters_);
    o.Set("momentum", momentum_);
    o.Set("queue", queue_);
    o.Set("optimizer", orNull(optimizer_));
    o.Set("loss", orNull(loss_));
    return o;
  }

 private:
  std::shared_ptr<ViLReFNet> net_;
  std::shared_ptr<TrainerState> state_;
  std::string parameters_, momentum_, queue_, optimizer_, loss_;
};

}  // namespace

Napi::Value Trainer::Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(), std::make_unique<DevicesTask>(model_->net(), state_));
  });
}

Napi::Value Trainer::GetSkipped(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(state_->skipped));
}

// dispose(): momentum encoders, optimizer moments, queue and the process group reference are freed
// after the calls already queued on the model (the model itself stays).
Napi::Value Trainer::Dispose(const Napi::CallbackInfo& info) {
  std::shared_ptr<TrainerState> state = state_;
  return disposal_.Dispose(info.Env(), Value(), model_->queue(), [state] {
    state->momentum.reset();
    state->optimizer.reset();
    state->queue.reset();
    state->frozen.clear();
    state->comm.reset();
  });
}

void Trainer::CheckAlive() const {
  disposal_.Check();
  model_->CheckAlive();
}

}  // namespace vilref
