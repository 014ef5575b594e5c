#include "segment.h"

#include <cmath>
#include <map>

#include "binary_loss.h"
#include "bridge.h"
#include "nn.h"
#include "runtime.h"

namespace vilref {

namespace {

namespace F = torch::nn::functional;

torch::nn::Sequential ConvBlock(int64_t in, int64_t out, int convs) {
  torch::nn::Sequential s;
  for (int i = 0; i < convs; ++i) {
    s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(i == 0 ? in : out, out, 3).padding(1).bias(false)));
    s->push_back(torch::nn::BatchNorm2d(out));
    s->push_back(torch::nn::ReLU());
  }
  return s;
}

int64_t Levels(int64_t patch) {
  int64_t k = 0;
  while ((int64_t{1} << k) < patch) ++k;
  return k;
}

int64_t StemWidth(const SegmenterConfig& c, int64_t level) { return c.stemChannels << std::min<int64_t>(level, 2); }

bool IsBackbone(const std::string& name) { return name.rfind("visual.", 0) == 0; }

}  // namespace

SegmenterNet::SegmenterNet(const SegmenterConfig& c) : config(c) {
  const int64_t heads = c.heads;
  visual = register_module<VisualTransformer>(
      "visual", std::make_shared<VisualTransformer>(c.tile, c.patch, c.width, c.layers, heads, c.width));
  const int64_t levels = Levels(c.patch);
  auto stemList = std::make_shared<torch::nn::Module>();
  auto decoderList = std::make_shared<torch::nn::Module>();
  for (int64_t k = 0; k < levels; ++k) {
    const int64_t in = k == 0 ? 3 : StemWidth(c, k - 1);
    stem.push_back(stemList->register_module(std::to_string(k), ConvBlock(in, StemWidth(c, k), 2)));
  }
  for (int64_t k = 0; k < levels; ++k) {
    const int64_t below = k == levels - 1 ? c.decoderChannels : StemWidth(c, k + 1);
    decoder.push_back(
        decoderList->register_module(std::to_string(k), ConvBlock(below + StemWidth(c, k), StemWidth(c, k), 2)));
  }
  register_module("stem", stemList);
  bottleneck = register_module(
      "bottleneck",
      torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(c.width * static_cast<int64_t>(c.taps.size()),
                                                                       c.decoderChannels, 1)
                                                  .bias(false)),
                            torch::nn::BatchNorm2d(c.decoderChannels), torch::nn::ReLU()));
  register_module("decoder", decoderList);
  head = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(StemWidth(c, 0), 1, 1)));
}

at::Tensor SegmenterNet::forward(const at::Tensor& images) {
  const int64_t n = images.size(0), levels = static_cast<int64_t>(stem.size());
  std::vector<at::Tensor> skips;
  at::Tensor s = images;
  for (int64_t k = 0; k < levels; ++k) {
    if (k > 0) s = at::max_pool2d(s, {2, 2});
    s = stem[k]->forward(s);
    skips.push_back(s);
  }
  const int64_t g = config.tile / config.patch;
  std::vector<at::Tensor> grids;
  for (auto& t : visual->PatchTokens(images, config.taps))
    grids.push_back(t.transpose(1, 2).reshape({n, config.width, g, g}));
  at::Tensor x = bottleneck->forward(at::cat(grids, 1));
  for (int64_t k = levels - 1; k >= 0; --k) {
    const auto& skip = skips[k];
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
                              .mode(torch::kBilinear)
                              .align_corners(false));
    x = decoder[k]->forward(at::cat({x, skip}, 1));
  }
  return head->forward(x);
}

namespace {

// The architecture, complete and validated by lib/segment/segmenter.ts (segmenterConfigSchema):
// read strictly, with guards only.
SegmenterConfig ReadSegmenterConfig(const Napi::Value& value) {
  auto o = ReadOptions(value, "config",
                       "an object { tile, patch, width, layers, heads, taps, stemChannels, decoderChannels }");
  SegmenterConfig c;
  c.patch = ReadInt(o, "config", "patch", 2, 64);
  c.tile = ReadInt(o, "config", "tile", c.patch, 4096);
  if (c.tile % c.patch != 0) ThrowRangeError("config.tile: not a multiple of config.patch");  // a guard: reshape
  c.width = ReadInt(o, "config", "width", 1, 1 << 14);
  c.layers = ReadInt(o, "config", "layers", 1, 256);
  c.heads = ReadInt(o, "config", "heads", 1, 256);
  c.taps = ReadIntArray(o, "config", "taps", 1, c.layers);
  if (c.taps.empty()) ThrowRangeError("config.taps: empty");
  c.stemChannels = ReadInt(o, "config", "stemChannels", 1, 1024);
  c.decoderChannels = ReadInt(o, "config", "decoderChannels", 1, 4096);
  return c;
}

SegmenterOptions ReadSegmenterOptions(const Napi::Value& value) {
  auto o = ReadOptions(value, "options", "an object { seed, lr, backboneLr, weightDecay, freezeBackbone, ... }");
  SegmenterOptions t;
  t.seed = ReadSeed(o, "options", "seed");
  t.lr = ReadNumber(o, "options", "lr", 0, 10);
  t.backboneLr = ReadNumber(o, "options", "backboneLr", 0, 10);
  t.adamw = ReadAdamWSettings(o, "options");
  t.freezeBackbone = ReadBool(o, "options", "freezeBackbone");
  t.diceWeight = ReadNumber(o, "options", "diceWeight", 0, 1e3);
  t.bceWeight = ReadNumber(o, "options", "bceWeight", 0, 1e3);
  return t;
}

struct StepLosses {
  double loss, bce, dice;
};

// One AdamW step on Dice + BCE at the given learning rates of the "backbone" and "decoder" groups.
StepLosses SegmentStep(SegmenterState& s, const SegmenterOptions& options, const at::Tensor& images,
                       const at::Tensor& targets, const c10::optional<at::Tensor>& weights, double lr,
                       double backboneLr) {
  s.net->train();
  at::Tensor logits = s.net->forward(images);
  auto terms = DiceBceLoss(logits, targets, weights, options.diceWeight, options.bceWeight);
  s.optimizer->ZeroGrad();
  terms[0].backward();
  s.optimizer->SetLr("backbone", backboneLr);
  s.optimizer->SetLr("decoder", lr);
  s.optimizer->Step();
  s.net->eval();
  ++s.steps;
  return {terms[0].item<double>(), terms[1].item<double>(), terms[2].item<double>()};
}

// Copies `inputs` into the network's tensors of the same names; a positional embedding of another
// grid is resized to `grid` first.
void CopyState(SegmenterNet& net, const std::vector<std::pair<std::string, JsTensor>>& inputs, int64_t grid) {
  torch::NoGradGuard noGrad;
  std::map<std::string, at::Tensor> targets;
  for (auto& [name, t] : NamedState(net)) targets[name] = t;
  std::vector<std::pair<at::Tensor, at::Tensor>> plan;
  for (auto& [name, in] : inputs) {
    at::Tensor src = in.tensor;
    at::Tensor& dst = targets.at(name);
    if (name == "visual.positional_embedding" && src.sizes() != dst.sizes())
      src = ResizeGridEmbedding(src.to(at::kFloat), grid);
    plan.emplace_back(dst, src);
  }
  for (auto& [dst, src] : plan) dst.copy_(src);
}

void CheckUnit(const at::Tensor& t, const std::string& name) {
  if (t.numel() > 0 && ((t < 0) | (t > 1)).any().item<bool>()) ThrowRangeError(name + ": values must lie in [0, 1]");
}

}  // namespace

Napi::Function Segmenter::Define(Napi::Env env) {
  return DefineClass(env, "Segmenter",
                     {
                         InstanceMethod<&Segmenter::Step>("step"),
                         InstanceMethod<&Segmenter::Predict>("predict"),
                         InstanceMethod<&Segmenter::StateDict>("stateDict"),
                         InstanceMethod<&Segmenter::LoadStateDict>("loadStateDict"),
                         InstanceAccessor<&Segmenter::GetConfig>("config"),
                         InstanceAccessor<&Segmenter::GetOptions>("options"),
                         InstanceAccessor<&Segmenter::GetSteps>("steps"),
                         InstanceAccessor<&Segmenter::GetPending>("pending"),
                         InstanceMethod<&Segmenter::Dispose>("dispose"),
                     });
}

// new Segmenter(config, { seed, lr, backboneLr, betas, eps, weightDecay, decayEmbeddings, freezeBackbone, diceWeight,
// bceWeight }), both complete (lib/segment/segmenter.ts fills in the defaults)
Segmenter::Segmenter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Segmenter>(info) {
  Guard(info.Env(), [&] {
    config_ = ReadSegmenterConfig(info[0]);
    options_ = ReadSegmenterOptions(info[1]);
    const bool frozen = options_.freezeBackbone;
    std::unique_lock<std::recursive_mutex> rng(GlobalRngMutex());
    torch::manual_seed(options_.seed);
    auto net = std::make_shared<SegmenterNet>(config_);
    net->visual->InitWeights();
    rng.unlock();
    net->eval();
    NamedTensors backbone, decoder;
    for (auto& p : net->named_parameters()) {
      if (!p.value().defined()) continue;
      const bool isBackbone = IsBackbone(p.key());
      if (isBackbone && frozen) {
        p.value().set_requires_grad(false);
        continue;
      }
      (isBackbone ? backbone : decoder).emplace_back(p.key(), p.value());
    }
    state_ = std::make_shared<SegmenterState>();
    state_->net = net;
    state_->optimizer = std::make_unique<NamedAdamW>(options_.adamw);
    state_->optimizer->AddGroup("backbone", options_.backboneLr, backbone);
    state_->optimizer->AddGroup("decoder", options_.lr, decoder);
    state_->optimizer->Build();
    for (auto& [name, t] : NamedState(*net))
      shapes_.emplace_back(name, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
    return 0;
  });
}

// step({ images [N,3,T,T], targets [N,1,T,T] in [0,1], weights? [N,1,T,T] in [0,1] }, { lr?, backboneLr? }) → { loss,
// bce, dice }
Napi::Value Segmenter::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    if (!info[0].IsObject()) ThrowTypeError("batch: expected { images, targets, weights? }");
    auto b = info[0].As<Napi::Object>();
    const int64_t t = config_.tile;
    JsTensor images = ReadTensor(b.Get("images"), TensorSpec{"batch.images", {at::kFloat}, {-1, 3, t, t}, false, true});
    const int64_t n = images.tensor.size(0);
    if (n < 1) ThrowRangeError("batch.images: empty batch");
    JsTensor targets =
        ReadTensor(b.Get("targets"), TensorSpec{"batch.targets", {at::kFloat}, {n, 1, t, t}, false, true});
    CheckUnit(targets.tensor, "batch.targets");
    c10::optional<JsTensor> weights;
    if (!b.Get("weights").IsUndefined()) {
      weights = ReadTensor(b.Get("weights"), TensorSpec{"batch.weights", {at::kFloat}, {n, 1, t, t}, false, true});
      CheckUnit(weights->tensor, "batch.weights");
    }
    auto o = ReadOptions(info[1], "options", "an object { lr, backboneLr }");
    const double lr = ReadNumber(o, "options", "lr", 0, 10), backboneLr = ReadNumber(o, "options", "backboneLr", 0, 10);
    auto run = [state = state_, options = options_, images = std::move(images), targets = std::move(targets),
                weights = std::move(weights), lr, backboneLr] {
      c10::optional<at::Tensor> w;
      if (weights.has_value()) w = weights->tensor;
      return SegmentStep(*state, options, images.tensor, targets.tensor, w, lr, backboneLr);
    };
    return queue_.Submit(env, Value(), MakeTask(std::move(run), [](Napi::Env env, const StepLosses& r) -> Napi::Value {
                           Napi::Object o = Napi::Object::New(env);
                           o.Set("loss", Napi::Number::New(env, r.loss));
                           o.Set("bce", Napi::Number::New(env, r.bce));
                           o.Set("dice", Napi::Number::New(env, r.dice));
                           return o;
                         }));
  });
}

// predict(images [N,3,T,T]) → probabilities [N,1,T,T]
Napi::Value Segmenter::Predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    const int64_t t = config_.tile;
    JsTensor images = ReadTensor(info[0], TensorSpec{"images", {at::kFloat}, {-1, 3, t, t}, false, true});
    if (images.tensor.size(0) < 1) ThrowRangeError("images: empty batch");
    return queue_.Submit(env, Value(), MakeTensorTask([state = state_, images = std::move(images)] {
                           torch::NoGradGuard noGrad;
                           state->net->eval();
                           return PrepareForJs(at::sigmoid(state->net->forward(images.tensor)));
                         }));
  });
}

Napi::Value Segmenter::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    return queue_.Submit(env, Value(), MakeStateDictTask(state_->net));
  });
}

// loadStateDict({ name: {data, shape} }, { strict = true }) → { missing, unexpected }. A
// `visual.positional_embedding` of another grid (a ViLReF model's) is resized to the tile's.
Napi::Value Segmenter::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    Napi::Object dict = StateDictArgument(info);
    const bool strict = StrictOption(info, 1);
    std::map<std::string, const std::vector<int64_t>*> expected;
    std::vector<std::string> names;
    for (const auto& [name, shape] : shapes_) {
      expected[name] = &shape;
      names.push_back(name);
    }
    auto [present, missing, unexpected] = PartitionKeys(dict, names);
    if (strict && (!missing.empty() || !unexpected.empty())) {
      std::string msg = "stateDict: does not fit this segmenter:";
      if (!missing.empty())
        msg += " missing " + missing.front() +
               (missing.size() > 1 ? " and " + std::to_string(missing.size() - 1) + " more" : "") + ";";
      if (!unexpected.empty())
        msg += " unexpected " + unexpected.front() +
               (unexpected.size() > 1 ? " and " + std::to_string(unexpected.size() - 1) + " more" : "") + ";";
      ThrowRangeError(msg.substr(0, msg.size() - 1));
    }
    std::vector<std::pair<std::string, JsTensor>> inputs;
    for (const auto& key : present) {
      std::vector<int64_t> dims = *expected.at(key);
      const bool integral = key.find("num_batches_tracked") != std::string::npos;
      if (key == "visual.positional_embedding") dims[0] = -1;  // another grid is resized
      inputs.emplace_back(
          key, ReadTensor(dict.Get(key), TensorSpec{"stateDict[\"" + key + "\"]",
                                                    integral ? std::vector<at::ScalarType>{at::kLong, at::kInt}
                                                             : std::vector<at::ScalarType>{at::kFloat, at::kDouble},
                                                    dims, false, !integral}));
      if (key == "visual.positional_embedding") {
        const int64_t tokens = inputs.back().second.tensor.size(0) - 1;
        const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
        if (tokens < 1 || g * g != tokens)
          ThrowRangeError("stateDict[\"visual.positional_embedding\"]: shape " +
                          ShapeText(inputs.back().second.tensor.sizes()) + " is not 1 + a square grid of tokens");
      }
    }
    return queue_.Submit(env, Value(),
                         MakeTask([state = state_, inputs = std::move(inputs),
                                   grid = config_.tile / config_.patch] { CopyState(*state->net, inputs, grid); },
                                  [missing = std::move(missing), unexpected = std::move(unexpected)](
                                      Napi::Env env) -> Napi::Value { return KeyReport(env, missing, unexpected); }));
  });
}

Napi::Value Segmenter::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](int64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  o.Set("tile", num(config_.tile));
  o.Set("patch", num(config_.patch));
  o.Set("width", num(config_.width));
  o.Set("layers", num(config_.layers));
  o.Set("heads", num(config_.heads));
  Napi::Array taps = Napi::Array::New(env, config_.taps.size());
  for (uint32_t i = 0; i < config_.taps.size(); ++i) taps.Set(i, num(config_.taps[i]));
  o.Set("taps", taps);
  o.Set("stemChannels", num(config_.stemChannels));
  o.Set("decoderChannels", num(config_.decoderChannels));
  return o;
}

Napi::Value Segmenter::GetOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("seed", Napi::Number::New(env, static_cast<double>(options_.seed)));
  o.Set("lr", Napi::Number::New(env, options_.lr));
  o.Set("backboneLr", Napi::Number::New(env, options_.backboneLr));
  WriteAdamWSettings(env, o, options_.adamw);
  o.Set("freezeBackbone", Napi::Boolean::New(env, options_.freezeBackbone));
  o.Set("diceWeight", Napi::Number::New(env, options_.diceWeight));
  o.Set("bceWeight", Napi::Number::New(env, options_.bceWeight));
  return o;
}

Napi::Value Segmenter::GetSteps(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(state_->steps));
}
Napi::Value Segmenter::GetPending(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.Pending()));
}

// dispose(): network and optimizer state are freed after the calls already queued.
Napi::Value Segmenter::Dispose(const Napi::CallbackInfo& info) {
  std::shared_ptr<SegmenterState> state = state_;
  return disposal_.Dispose(info.Env(), Value(), queue_, [state] {
    state->optimizer.reset();
    state->net.reset();
  });
}

}  // namespace vilref
