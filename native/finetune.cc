#include "finetune.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "async.h"
#include "bridge.h"
#include "nn.h"

namespace vilref {

namespace {

bool Decays(const std::string& name, const at::Tensor& p) {
  return p.dim() >= 2 && name.find("bn") == std::string::npos && name.find("ln") == std::string::npos &&
         name.find("bias") == std::string::npos && name.find("embedding") == std::string::npos;
}

// Pre-projection features [N, width] in float32; with `frozen`, no gradient and eval mode.
at::Tensor Features(ViLReFNet& net, const at::Tensor& images, bool frozen, bool training) {
  if (frozen || !training) {
    torch::NoGradGuard noGrad;
    net.visual->eval();
    return net.visual->forward(images, true).to(at::kFloat);
  }
  net.visual->train();
  at::Tensor f = net.visual->forward(images, true).to(at::kFloat);
  return f;
}

class FtStepTask : public Task {
 public:
  FtStepTask(std::shared_ptr<ViLReFNet> net, std::shared_ptr<FinetunerState> state, at::Device device,
             at::ScalarType dtype, bool frozen, JsTensor images, JsTensor labels)
      : net_(std::move(net)),
        state_(std::move(state)),
        device_(device),
        dtype_(dtype),
        frozen_(frozen),
        images_(std::move(images)),
        labels_(std::move(labels)) {}
  void Execute() override {
    auto& s = *state_;
    at::Tensor x = images_.tensor.to(device_, dtype_), y = labels_.tensor.to(device_);
    at::Tensor logits = at::linear(Features(*net_, x, frozen_, true), s.weight, s.bias);
    at::Tensor loss = (at::clamp_min(logits, 0) - logits * y + at::log1p(at::exp(-logits.abs()))).mean();
    s.optimizer->zero_grad();
    loss.backward();
    s.optimizer->step();
    net_->visual->eval();
    ++s.steps;
    loss_ = loss.item<double>();
  }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", Napi::Number::New(env, loss_));
    return o;
  }

 private:
  std::shared_ptr<ViLReFNet> net_;
  std::shared_ptr<FinetunerState> state_;
  at::Device device_;
  at::ScalarType dtype_;
  bool frozen_;
  JsTensor images_, labels_;
  double loss_ = 0;
};

class FtPredictTask : public Task {
 public:
  FtPredictTask(std::shared_ptr<ViLReFNet> net, std::shared_ptr<FinetunerState> state, at::Device device,
                at::ScalarType dtype, JsTensor images)
      : net_(std::move(net)), state_(std::move(state)), device_(device), dtype_(dtype), images_(std::move(images)) {}
  void Execute() override {
    torch::NoGradGuard noGrad;
    at::Tensor f = Features(*net_, images_.tensor.to(device_, dtype_), true, false);
    output_ = PrepareForJs(at::sigmoid(at::linear(f, state_->weight, state_->bias)));
  }
  Napi::Value Resolve(Napi::Env env) override { return WrapTensor(env, output_); }

 private:
  std::shared_ptr<ViLReFNet> net_;
  std::shared_ptr<FinetunerState> state_;
  at::Device device_;
  at::ScalarType dtype_;
  JsTensor images_;
  at::Tensor output_;
};

class FtStateDictTask : public Task {
 public:
  FtStateDictTask(std::shared_ptr<ViLReFNet> net, std::shared_ptr<FinetunerState> state, bool withBackbone)
      : net_(std::move(net)), state_(std::move(state)), withBackbone_(withBackbone) {}
  void Execute() override {
    out_.emplace_back("head.weight", PrepareForJs(state_->weight.detach().clone()));
    out_.emplace_back("head.bias", PrepareForJs(state_->bias.detach().clone()));
    if (withBackbone_)
      for (auto& [name, t] : NamedState(*net_->visual))
        out_.emplace_back("visual." + name, PrepareForJs(t.detach().clone()));
  }
  Napi::Value Resolve(Napi::Env env) override { return WrapNamed(env, out_); }

 private:
  std::shared_ptr<ViLReFNet> net_;
  std::shared_ptr<FinetunerState> state_;
  bool withBackbone_;
  std::vector<std::pair<std::string, at::Tensor>> out_;
};

class FtLoadTask : public Task {
 public:
  FtLoadTask(std::shared_ptr<ViLReFNet> net, std::shared_ptr<FinetunerState> state,
             std::vector<std::pair<std::string, JsTensor>> inputs)
      : net_(std::move(net)), state_(std::move(state)), inputs_(std::move(inputs)) {}
  void Execute() override {
    torch::NoGradGuard noGrad;
    std::map<std::string, at::Tensor> targets;
    targets["head.weight"] = state_->weight;
    targets["head.bias"] = state_->bias;
    for (auto& [name, t] : NamedState(*net_->visual)) targets["visual." + name] = t;
    for (auto& [name, in] : inputs_) {
      at::Tensor& dst = targets.at(name);
      if (dst.sizes() != in.tensor.sizes())
        ThrowRangeError("stateDict[\"" + name + "\"]: shape does not fit (the model was resized)");
    }
    for (auto& [name, in] : inputs_) targets.at(name).copy_(in.tensor);
  }
  Napi::Value Resolve(Napi::Env env) override { return env.Undefined(); }

 private:
  std::shared_ptr<ViLReFNet> net_;
  std::shared_ptr<FinetunerState> state_;
  std::vector<std::pair<std::string, JsTensor>> inputs_;
};

}  // namespace

Napi::Function Finetuner::Define(Napi::Env env) {
  return DefineClass(env, "Finetuner",
                     {
                         InstanceMethod<&Finetuner::Step>("step"),
                         InstanceMethod<&Finetuner::Predict>("predict"),
                         InstanceMethod<&Finetuner::StateDict>("stateDict"),
                         InstanceMethod<&Finetuner::LoadStateDict>("loadStateDict"),
                         InstanceAccessor<&Finetuner::GetConfig>("config"),
                         InstanceAccessor<&Finetuner::GetSteps>("steps"),
                         InstanceMethod<&Finetuner::Dispose>("dispose"),
                     });
}

// new Finetuner(model, { classes, lr = 1e-3, backboneLr = 1e-6, weightDecay = 0.001, frozen = false, seed = 0 })
Finetuner::Finetuner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Finetuner>(info) {
  Guard(info.Env(), [&] {
    model_ = ViLReF::From(info[0], "model");
    modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    if (!info[1].IsObject())
      ThrowTypeError("options: expected an object { classes, lr, backboneLr, weightDecay, frozen, seed }");
    auto o = info[1].As<Napi::Object>();
    options_.classes = ReadInteger(o.Get("classes"), "options.classes", 1, 1 << 16);
    options_.lr = ReadNumber(o, "options", "lr", options_.lr, 0, 10);
    options_.backboneLr = ReadNumber(o, "options", "backboneLr", options_.backboneLr, 0, 10);
    options_.weightDecay = ReadNumber(o, "options", "weightDecay", options_.weightDecay, 0, 10);
    Napi::Value frozen = o.Get("frozen");
    if (!frozen.IsUndefined() && !frozen.IsBoolean()) ThrowTypeError("options.frozen: expected a boolean");
    options_.frozen = frozen.IsBoolean() && frozen.As<Napi::Boolean>().Value();
    const uint64_t seed =
        o.Get("seed").IsUndefined()
            ? 0
            : static_cast<uint64_t>(ReadInteger(o.Get("seed"), "options.seed", 0, 9007199254740991LL));

    auto net = model_->net();
    width_ = net->visual->FeatureWidth();
    // torch.nn.Linear's initialisation, from a seeded generator of its own
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(width_));
    state_ = std::make_shared<FinetunerState>();
    state_->weight =
        at::empty({options_.classes, width_}).uniform_(-bound, bound, gen).to(model_->device()).set_requires_grad(true);
    state_->bias =
        at::empty({options_.classes}).uniform_(-bound, bound, gen).to(model_->device()).set_requires_grad(true);
    auto make = [&](double lr, double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({options_.beta1, options_.beta2}).eps(options_.eps).weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<at::Tensor>{state_->weight}, make(options_.lr, options_.weightDecay));
    groups.emplace_back(std::vector<at::Tensor>{state_->bias}, make(options_.lr, 0.0));
    if (!options_.frozen) {
      std::vector<at::Tensor> decay, noDecay;
      for (auto& p : net->visual->named_parameters()) {
        if (!p.value().defined()) continue;
        (Decays(p.key(), p.value()) ? decay : noDecay).push_back(p.value());
      }
      groups.emplace_back(decay, make(options_.backboneLr, options_.weightDecay));
      groups.emplace_back(noDecay, make(options_.backboneLr, 0.0));
    }
    state_->optimizer = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(options_.lr));
    return 0;
  });
}

// step({ images [N,3,R,R], labels [N,classes] in [0,1] }) → { loss }
Napi::Value Finetuner::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    if (!info[0].IsObject()) ThrowTypeError("batch: expected { images, labels }");
    auto b = info[0].As<Napi::Object>();
    const int64_t r = model_->config().imageResolution;
    JsTensor images = ReadTensor(b.Get("images"), TensorSpec{"batch.images", {at::kFloat}, {-1, 3, r, r}, false, true});
    const int64_t n = images.tensor.size(0);
    if (n < 1) ThrowRangeError("batch.images: empty batch");
    JsTensor labels =
        ReadTensor(b.Get("labels"), TensorSpec{"batch.labels", {at::kFloat}, {n, options_.classes}, false, true});
    if (((labels.tensor < 0) | (labels.tensor > 1)).any().item<bool>())
      ThrowRangeError("batch.labels: values must lie in [0, 1]");
    return model_->queue().Submit(env, Value(),
                                  std::make_unique<FtStepTask>(model_->net(), state_, model_->device(), model_->dtype(),
                                                               options_.frozen, std::move(images), std::move(labels)));
  });
}

// predict(images [N,3,R,R]) → probabilities [N, classes]
Napi::Value Finetuner::Predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    const int64_t r = model_->config().imageResolution;
    JsTensor images = ReadTensor(info[0], TensorSpec{"images", {at::kFloat}, {-1, 3, r, r}, false, true});
    return model_->queue().Submit(
        env, Value(),
        std::make_unique<FtPredictTask>(model_->net(), state_, model_->device(), model_->dtype(), std::move(images)));
  });
}

// stateDict() → { "head.weight", "head.bias", and "visual.*" unless frozen }
Napi::Value Finetuner::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(),
                                  std::make_unique<FtStateDictTask>(model_->net(), state_, !options_.frozen));
  });
}

// loadStateDict({ "head.weight", "head.bias", "visual.*"? }): the head always, backbone tensors when given.
Napi::Value Finetuner::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    if (!info[0].IsObject() || info[0].IsArray()) ThrowTypeError("stateDict: expected an object of named tensors");
    auto dict = info[0].As<Napi::Object>();
    std::map<std::string, std::pair<std::vector<int64_t>, bool>> expected;  // shape, floating
    expected["head.weight"] = {{options_.classes, width_}, true};
    expected["head.bias"] = {{options_.classes}, true};
    for (auto& [name, t] : NamedState(*model_->net()->visual))
      expected["visual." + name] = {std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                                    c10::isFloatingType(t.scalar_type())};
    for (const char* required : {"head.weight", "head.bias"})
      if (!dict.Has(required)) ThrowRangeError(std::string("stateDict[\"") + required + "\"]: missing");
    std::vector<std::pair<std::string, JsTensor>> inputs;
    Napi::Array keys = dict.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string key = keys.Get(i).ToString().Utf8Value();
      auto it = expected.find(key);
      if (it == expected.end())
        ThrowRangeError("stateDict[\"" + key + "\"]: not a tensor of this finetuner (head.* or visual.*)");
      const bool floating = it->second.second;
      inputs.emplace_back(
          key, ReadTensor(dict.Get(key), TensorSpec{"stateDict[\"" + key + "\"]",
                                                    floating ? std::vector<at::ScalarType>{at::kFloat}
                                                             : std::vector<at::ScalarType>{at::kLong, at::kInt},
                                                    it->second.first, false, floating}));
    }
    return model_->queue().Submit(env, Value(), std::make_unique<FtLoadTask>(model_->net(), state_, std::move(inputs)));
  });
}

Napi::Value Finetuner::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("classes", Napi::Number::New(env, static_cast<double>(options_.classes)));
  o.Set("width", Napi::Number::New(env, static_cast<double>(width_)));
  o.Set("lr", Napi::Number::New(env, options_.lr));
  o.Set("backboneLr", Napi::Number::New(env, options_.backboneLr));
  o.Set("weightDecay", Napi::Number::New(env, options_.weightDecay));
  o.Set("frozen", Napi::Boolean::New(env, options_.frozen));
  return o;
}

Napi::Value Finetuner::GetSteps(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(state_->steps));
}

// dispose(): the head and its optimizer state are freed after the calls already queued on the model
// (the model itself stays).
Napi::Value Finetuner::Dispose(const Napi::CallbackInfo& info) {
  std::shared_ptr<FinetunerState> state = state_;
  return disposal_.Dispose(info.Env(), Value(), model_->queue(), [state] {
    state->optimizer.reset();
    state->weight = at::Tensor();
    state->bias = at::Tensor();
  });
}

void Finetuner::CheckAlive() const {
  disposal_.Check();
  model_->CheckAlive();
}

}  // namespace vilref
