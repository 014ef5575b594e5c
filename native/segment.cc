#include "segment.h"

#include <cmath>
#include <map>
#include <set>

#include "bridge.h"
#include "nn.h"

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

bool Decays(const std::string& name, const at::Tensor& p) {
  return p.dim() >= 2 && name.find("ln_") == std::string::npos && name.find("bias") == std::string::npos &&
         name.find("embedding") == std::string::npos;
}

std::string ShapeText(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

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

std::array<at::Tensor, 3> DiceBceLoss(const at::Tensor& logits, const at::Tensor& targets,
                                      const c10::optional<at::Tensor>& weights, double diceWeight, double bceWeight) {
  // BCE with logits, the stable form: max(x, 0) − x·y + log(1 + e^−|x|)
  at::Tensor bce = at::clamp_min(logits, 0) - logits * targets + at::log1p(at::exp(-logits.abs()));
  at::Tensor p = at::sigmoid(logits), y = targets;
  at::Tensor bceMean;
  if (weights.has_value()) {
    bceMean = (bce * *weights).sum() / weights->sum().clamp_min(1.0);
    p = p * *weights;
    y = y * *weights;
  } else {
    bceMean = bce.mean();
  }
  at::Tensor dice = 1.0 - (2.0 * (p * y).sum() + 1.0) / (p.sum() + y.sum() + 1.0);
  return {bceWeight * bceMean + diceWeight * dice, bceMean, dice};
}

namespace {

SegmenterConfig ReadSegmenterConfig(const Napi::Value& value) {
  if (!value.IsObject())
    ThrowTypeError(
        "config: expected an object { tile, patch, width, layers, heads, taps?, stemChannels?, decoderChannels? }");
  auto o = value.As<Napi::Object>();
  SegmenterConfig c;
  auto integer = [&](const char* key, int64_t fallback, int64_t lo, int64_t hi) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? fallback : ReadInteger(v, std::string("config.") + key, lo, hi);
  };
  c.patch = integer("patch", c.patch, 2, 64);
  if ((c.patch & (c.patch - 1)) != 0)
    ThrowRangeError("config.patch: " + std::to_string(c.patch) +
                    " is not a power of two (the decoder doubles the resolution per stage)");
  c.tile = integer("tile", c.tile, c.patch, 4096);
  if (c.tile % c.patch != 0)
    ThrowRangeError("config.tile: " + std::to_string(c.tile) + " is not a multiple of config.patch " +
                    std::to_string(c.patch));
  c.width = integer("width", c.width, 1, 1 << 14);
  c.layers = integer("layers", c.layers, 1, 256);
  c.heads = integer("heads", c.heads, 1, 256);
  if (c.width % c.heads != 0)
    ThrowRangeError("config.heads: width " + std::to_string(c.width) + " does not split into " +
                    std::to_string(c.heads) + " heads");
  c.stemChannels = integer("stemChannels", c.stemChannels, 1, 1024);
  c.decoderChannels = integer("decoderChannels", c.decoderChannels, 1, 4096);
  Napi::Value taps = o.Get("taps");
  if (taps.IsUndefined()) {
    std::set<int64_t> quarters;
    for (int64_t q = 1; q <= 4; ++q) quarters.insert(std::max<int64_t>(1, (c.layers * q + 3) / 4));
    c.taps.assign(quarters.begin(), quarters.end());
  } else {
    if (!taps.IsArray() || taps.As<Napi::Array>().Length() == 0)
      ThrowTypeError("config.taps: expected a non-empty array of block numbers");
    auto arr = taps.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      c.taps.push_back(ReadInteger(arr.Get(i), "config.taps[" + std::to_string(i) + "]", 1, c.layers));
      if (i > 0 && c.taps[i] <= c.taps[i - 1]) ThrowRangeError("config.taps: block numbers must ascend");
    }
  }
  return c;
}

class SegStepTask : public Task {
 public:
  SegStepTask(std::shared_ptr<SegmenterState> state, SegmenterOptions options, JsTensor images, JsTensor targets,
              c10::optional<JsTensor> weights, double lr, double backboneLr)
      : state_(std::move(state)),
        options_(options),
        images_(std::move(images)),
        targets_(std::move(targets)),
        weights_(std::move(weights)),
        lr_(lr),
        backboneLr_(backboneLr) {}
  void Execute() override {
    auto& s = *state_;
    s.net->train();
    at::Tensor logits = s.net->forward(images_.tensor);
    c10::optional<at::Tensor> w;
    if (weights_.has_value()) w = weights_->tensor;
    auto terms = DiceBceLoss(logits, targets_.tensor, w, options_.diceWeight, options_.bceWeight);
    s.optimizer->zero_grad();
    terms[0].backward();
    auto& groups = s.optimizer->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) {
      // groups 0, 1: backbone (decay, no decay); 2, 3: stem, decoder, head
      static_cast<torch::optim::AdamWOptions&>(groups[i].options()).lr(i < 2 ? backboneLr_ : lr_);
    }
    s.optimizer->step();
    s.net->eval();
    ++s.steps;
    loss_ = terms[0].item<double>();
    bce_ = terms[1].item<double>();
    dice_ = terms[2].item<double>();
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", Napi::Number::New(env, loss_));
    o.Set("bce", Napi::Number::New(env, bce_));
    o.Set("dice", Napi::Number::New(env, dice_));
    return o;
  }

 private:
  std::shared_ptr<SegmenterState> state_;
  SegmenterOptions options_;
  JsTensor images_, targets_;
  c10::optional<JsTensor> weights_;
  double lr_, backboneLr_;
  double loss_ = 0, bce_ = 0, dice_ = 0;
};

class SegPredictTask : public Task {
 public:
  SegPredictTask(std::shared_ptr<SegmenterState> state, JsTensor images)
      : state_(std::move(state)), images_(std::move(images)) {}
  void Execute() override {
    torch::NoGradGuard noGrad;
    state_->net->eval();
    output_ = PrepareForJs(at::sigmoid(state_->net->forward(images_.tensor)));
  }
  Napi::Value Resolve(Napi::Env env) override { return WrapTensor(env, output_); }

 private:
  std::shared_ptr<SegmenterState> state_;
  JsTensor images_;
  at::Tensor output_;
};

class SegStateDictTask : public Task {
 public:
  explicit SegStateDictTask(std::shared_ptr<SegmenterState> state) : state_(std::move(state)) {}
  void Execute() override {
    for (auto& [name, t] : NamedState(*state_->net)) out_.emplace_back(name, PrepareForJs(t.detach().clone()));
  }
  Napi::Value Resolve(Napi::Env env) override { return WrapNamed(env, out_); }

 private:
  std::shared_ptr<SegmenterState> state_;
  std::vector<std::pair<std::string, at::Tensor>> out_;
};

class SegLoadTask : public Task {
 public:
  SegLoadTask(std::shared_ptr<SegmenterState> state, std::vector<std::pair<std::string, JsTensor>> inputs,
              std::vector<std::string> missing, std::vector<std::string> unexpected, int64_t grid)
      : state_(std::move(state)),
        inputs_(std::move(inputs)),
        missing_(std::move(missing)),
        unexpected_(std::move(unexpected)),
        grid_(grid) {}
  void Execute() override {
    torch::NoGradGuard noGrad;
    std::map<std::string, at::Tensor> targets;
    for (auto& [name, t] : NamedState(*state_->net)) targets[name] = t;
    std::vector<std::pair<at::Tensor, at::Tensor>> plan;
    for (auto& [name, in] : inputs_) {
      at::Tensor src = in.tensor;
      at::Tensor& dst = targets.at(name);
      if (name == "visual.positional_embedding" && src.sizes() != dst.sizes())
        src = ResizeGridEmbedding(src.to(at::kFloat), grid_);
      plan.emplace_back(dst, src);
    }
    for (auto& [dst, src] : plan) dst.copy_(src);
  }
  Napi::Value Resolve(Napi::Env env) override { return KeyReport(env, missing_, unexpected_); }

 private:
  std::shared_ptr<SegmenterState> state_;
  std::vector<std::pair<std::string, JsTensor>> inputs_;
  std::vector<std::string> missing_, unexpected_;
  int64_t grid_;
};

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
                         InstanceAccessor<&Segmenter::GetSteps>("steps"),
                         InstanceAccessor<&Segmenter::GetPending>("pending"),
                         InstanceMethod<&Segmenter::Dispose>("dispose"),
                     });
}

// new Segmenter(config, { seed, lr, backboneLr, weightDecay, freezeBackbone, diceWeight, bceWeight })
Segmenter::Segmenter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Segmenter>(info) {
  Guard(info.Env(), [&] {
    config_ = ReadSegmenterConfig(info[0]);
    Napi::Object o =
        info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsObject())
      ThrowTypeError("options: expected an object { seed, lr, backboneLr, weightDecay, freezeBackbone }");
    options_.lr = ReadNumber(o, "options", "lr", options_.lr, 0, 10);
    options_.backboneLr = ReadNumber(o, "options", "backboneLr", options_.lr, 0, 10);
    options_.weightDecay = ReadNumber(o, "options", "weightDecay", options_.weightDecay, 0, 10);
    options_.diceWeight = ReadNumber(o, "options", "diceWeight", 1.0, 0, 1e3);
    options_.bceWeight = ReadNumber(o, "options", "bceWeight", 1.0, 0, 1e3);
    const bool frozen = o.Get("freezeBackbone").ToBoolean();
    const uint64_t seed =
        o.Get("seed").IsUndefined()
            ? 0
            : static_cast<uint64_t>(ReadInteger(o.Get("seed"), "options.seed", 0, 9007199254740991LL));
    torch::manual_seed(seed);
    auto net = std::make_shared<SegmenterNet>(config_);
    net->visual->InitWeights();
    net->eval();
    std::vector<at::Tensor> groups[4];
    for (auto& p : net->named_parameters()) {
      if (!p.value().defined()) continue;
      const bool backbone = IsBackbone(p.key());
      if (backbone && frozen) {
        p.value().set_requires_grad(false);
        continue;
      }
      groups[(backbone ? 0 : 2) + (Decays(p.key(), p.value()) ? 0 : 1)].push_back(p.value());
    }
    std::vector<torch::optim::OptimizerParamGroup> list;
    for (int i = 0; i < 4; ++i) {
      auto opts = std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(i < 2 ? options_.backboneLr : options_.lr)
              .betas({options_.beta1, options_.beta2})
              .eps(options_.eps)
              .weight_decay(i % 2 == 0 ? options_.weightDecay : 0.0));
      list.emplace_back(groups[i], std::move(opts));
    }
    state_ = std::make_shared<SegmenterState>();
    state_->net = net;
    state_->optimizer = std::make_unique<torch::optim::AdamW>(list, torch::optim::AdamWOptions(options_.lr));
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
    double lr = options_.lr, backboneLr = options_.backboneLr;
    if (info.Length() > 1 && info[1].IsObject()) {
      auto o = info[1].As<Napi::Object>();
      lr = ReadNumber(o, "options", "lr", lr, 0, 10);
      backboneLr = ReadNumber(o, "options", "backboneLr", backboneLr, 0, 10);
    }
    return queue_.Submit(env, Value(),
                         std::make_unique<SegStepTask>(state_, options_, std::move(images), std::move(targets),
                                                       std::move(weights), lr, backboneLr));
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
    return queue_.Submit(env, Value(), std::make_unique<SegPredictTask>(state_, std::move(images)));
  });
}

Napi::Value Segmenter::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    return queue_.Submit(env, Value(), std::make_unique<SegStateDictTask>(state_));
  });
}

// loadStateDict({ name: {data, shape} }, { strict = true }) → { missing, unexpected }. A
// `visual.positional_embedding` of another grid (a ViLReF model's) is resized to the tile's.
Napi::Value Segmenter::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    disposal_.Check();
    if (!info[0].IsObject() || info[0].IsArray()) ThrowTypeError("stateDict: expected an object of named tensors");
    const bool strict = StrictOption(info, 1);
    auto dict = info[0].As<Napi::Object>();
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
                         std::make_unique<SegLoadTask>(state_, std::move(inputs), std::move(missing),
                                                       std::move(unexpected), config_.tile / config_.patch));
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
