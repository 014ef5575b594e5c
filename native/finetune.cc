#include "finetune.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "async.h"
#include "binary_loss.h"
#include "bridge.h"
#include "nn.h"

namespace vilref {

namespace {

// Pre-projection features [N, width] in float32; with `frozen`, no gradient and eval mode; with
// LoRA adapters, the adapted tower in eval mode, differentiable in the factors only when training.
at::Tensor Features(ViLReFNet& net, FinetunerState& s, const at::Tensor& images, bool frozen, bool training) {
  if (s.lora) {
    if (!training) {
      torch::NoGradGuard noGrad;
      return LoraImageFeatures(*s.lora, images, true, false);
    }
    return LoraImageFeatures(*s.lora, images, true, true);
  }
  if (frozen || !training) {
    torch::NoGradGuard noGrad;
    net.visual->eval();
    return net.visual->forward(images, true).to(at::kFloat);
  }
  net.visual->train();
  at::Tensor f = net.visual->forward(images, true).to(at::kFloat);
  return f;
}

// One AdamW step on the head (and the backbone unless frozen); returns the batch's BCE.
double FinetuneStep(ViLReFNet& net, FinetunerState& s, const at::Tensor& images, const at::Tensor& labels,
                    bool frozen) {
  at::Tensor logits = at::linear(Features(net, s, images, frozen, true), s.weight, s.bias);
  at::Tensor loss = BceWithLogits(logits, labels).mean();
  s.optimizer->ZeroGrad();
  loss.backward();
  s.optimizer->Step();
  net.visual->eval();
  ++s.steps;
  return loss.item<double>();
}

// Copies `inputs` into the head and backbone tensors of the same names, all shapes checked first.
void CopyState(ViLReFNet& net, FinetunerState& s, const std::vector<std::pair<std::string, JsTensor>>& inputs) {
  torch::NoGradGuard noGrad;
  std::map<std::string, at::Tensor> targets;
  targets["head.weight"] = s.weight;
  targets["head.bias"] = s.bias;
  for (auto& [name, t] : NamedState(*net.visual)) targets["visual." + name] = t;
  if (s.lora)
    for (auto& [name, t] : s.lora->Factors()) targets["lora." + name] = t;
  for (auto& [name, in] : inputs) {
    at::Tensor& dst = targets.at(name);
    if (dst.sizes() != in.tensor.sizes())
      ThrowRangeError("stateDict[\"" + name + "\"]: shape does not fit (the model was resized)");
  }
  for (auto& [name, in] : inputs) targets.at(name).copy_(in.tensor);
}

// The `lora` option: undefined, or a Lora on this finetuner's model whose adapters are not merged.
std::shared_ptr<LoraSet> ReadLora(const Napi::Object& o, ViLReF* model) {
  Napi::Value v = o.Get("lora");
  if (v.IsUndefined()) return nullptr;
  Lora* lora = Lora::From(v, "options.lora");
  if (lora->model() != model) ThrowRangeError("options.lora: the adapters belong to another model");
  if (lora->set()->released()) ThrowRangeError("options.lora: the adapters were disposed");
  if (lora->set()->merged()) ThrowRangeError("options.lora: the adapters are merged into the model already");
  return lora->set();
}

}  // namespace

Napi::Function Finetuner::Define(Napi::Env env) {
  return DefineClass(env, "Finetuner",
                     {
                         InstanceMethod<&Finetuner::Step>("step"),
                         InstanceMethod<&Finetuner::Predict>("predict"),
                         InstanceMethod<&Finetuner::StateDict>("stateDict"),
                         InstanceMethod<&Finetuner::LoadStateDict>("loadStateDict"),
                         InstanceAccessor<&Finetuner::GetConfig>("config"),
                         InstanceAccessor<&Finetuner::GetOptions>("options"),
                         InstanceAccessor<&Finetuner::GetSteps>("steps"),
                         InstanceMethod<&Finetuner::Dispose>("dispose"),
                     });
}

// new Finetuner(model, { classes, lr, backboneLr, betas, eps, weightDecay, decayEmbeddings, frozen, seed }), complete
// (lib/finetune/finetuner.ts fills in the defaults)
Finetuner::Finetuner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Finetuner>(info) {
  Guard(info.Env(), [&] {
    model_ = ViLReF::From(info[0], "model");
    modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    auto o = ReadOptions(info[1], "options",
                         "an object { classes, lr, backboneLr, loraLr, weightDecay, frozen, seed, lora?, ... }");
    options_.classes = ReadInt(o, "options", "classes", 1, 1 << 16);
    options_.lr = ReadNumber(o, "options", "lr", 0, 10);
    options_.backboneLr = ReadNumber(o, "options", "backboneLr", 0, 10);
    options_.loraLr = ReadNumber(o, "options", "loraLr", 0, 10);
    options_.adamw = ReadAdamWSettings(o, "options");
    options_.frozen = ReadBool(o, "options", "frozen");
    options_.seed = ReadSeed(o, "options", "seed");
    std::shared_ptr<LoraSet> lora = ReadLora(o, model_);
    if (lora) {
      loraRef_ = Napi::Persistent(o.Get("lora").As<Napi::Object>());
      options_.frozen = true;  // the base weights never train beside adapters
    }

    auto net = model_->net();
    width_ = net->visual->FeatureWidth();
    // torch.nn.Linear's initialisation, from a seeded generator of its own
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(width_));
    state_ = std::make_shared<FinetunerState>();
    state_->weight =
        at::empty({options_.classes, width_}).uniform_(-bound, bound, gen).to(model_->device()).set_requires_grad(true);
    state_->bias =
        at::empty({options_.classes}).uniform_(-bound, bound, gen).to(model_->device()).set_requires_grad(true);
    state_->optimizer = std::make_unique<NamedAdamW>(options_.adamw);
    state_->optimizer->AddGroup("head", options_.lr, {{"head.weight", state_->weight}, {"head.bias", state_->bias}});
    state_->lora = lora;
    if (lora) state_->optimizer->AddGroup("lora", options_.loraLr, lora->Factors());
    if (!options_.frozen) {
      NamedTensors backbone;
      for (auto& p : net->visual->named_parameters())
        if (p.value().defined()) backbone.emplace_back(p.key(), p.value());
      state_->optimizer->AddGroup("backbone", options_.backboneLr, backbone);
    }
    state_->optimizer->Build();
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
    if (state_->lora && state_->lora->merged())
      ThrowRangeError("step: the finetuner's LoRA adapters were merged into the model; nothing left to train");
    auto run = [net = model_->net(), state = state_, device = model_->device(), dtype = model_->dtype(),
                frozen = options_.frozen, images = std::move(images), labels = std::move(labels)] {
      return FinetuneStep(*net, *state, images.tensor.to(device, dtype), labels.tensor.to(device), frozen);
    };
    return model_->queue().Submit(env, Value(), MakeTask(std::move(run), [](Napi::Env env, double loss) -> Napi::Value {
                                    Napi::Object o = Napi::Object::New(env);
                                    o.Set("loss", Napi::Number::New(env, loss));
                                    return o;
                                  }));
  });
}

// predict(images [N,3,R,R]) → probabilities [N, classes]
Napi::Value Finetuner::Predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    const int64_t r = model_->config().imageResolution;
    JsTensor images = ReadTensor(info[0], TensorSpec{"images", {at::kFloat}, {-1, 3, r, r}, false, true});
    return model_->queue().Submit(env, Value(),
                                  MakeTensorTask([net = model_->net(), state = state_, device = model_->device(),
                                                  dtype = model_->dtype(), images = std::move(images)] {
                                    torch::NoGradGuard noGrad;
                                    at::Tensor f = Features(*net, *state, images.tensor.to(device, dtype), true, false);
                                    return PrepareForJs(at::sigmoid(at::linear(f, state->weight, state->bias)));
                                  }));
  });
}

// stateDict() → { "head.weight", "head.bias", "visual.*" unless frozen, "lora.*" with adapters }
Napi::Value Finetuner::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    return model_->queue().Submit(env, Value(),
                                  MakeNamedTask([net = model_->net(), state = state_, withBackbone = !options_.frozen] {
                                    std::vector<std::pair<std::string, at::Tensor>> out;
                                    out.emplace_back("head.weight", PrepareForJs(state->weight.detach().clone()));
                                    out.emplace_back("head.bias", PrepareForJs(state->bias.detach().clone()));
                                    if (withBackbone)
                                      for (auto& copy : StateCopies(*net->visual, "visual."))
                                        out.push_back(std::move(copy));
                                    if (state->lora)
                                      for (auto& [name, t] : state->lora->Factors())
                                        out.emplace_back("lora." + name, PrepareForJs(t.detach().clone()));
                                    return out;
                                  }));
  });
}

// loadStateDict({ "head.weight", "head.bias", "visual.*"? }): the head always, backbone tensors when given.
Napi::Value Finetuner::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PromiseGuard(env, [&]() -> Napi::Value {
    CheckAlive();
    Napi::Object dict = StateDictArgument(info);
    std::map<std::string, std::pair<std::vector<int64_t>, bool>> expected;  // shape, floating
    expected["head.weight"] = {{options_.classes, width_}, true};
    expected["head.bias"] = {{options_.classes}, true};
    for (auto& [name, t] : NamedState(*model_->net()->visual))
      expected["visual." + name] = {std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                                    c10::isFloatingType(t.scalar_type())};
    if (state_->lora)
      for (auto& [name, t] : state_->lora->Factors())
        expected["lora." + name] = {std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), true};
    for (const char* required : {"head.weight", "head.bias"})
      if (!dict.Has(required)) ThrowRangeError(std::string("stateDict[\"") + required + "\"]: missing");
    std::vector<std::pair<std::string, JsTensor>> inputs;
    Napi::Array keys = dict.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string key = keys.Get(i).ToString().Utf8Value();
      auto it = expected.find(key);
      if (it == expected.end())
        ThrowRangeError("stateDict[\"" + key + "\"]: not a tensor of this finetuner (head.*, visual.* or lora.*)");
      const bool floating = it->second.second;
      inputs.emplace_back(
          key, ReadTensor(dict.Get(key), TensorSpec{"stateDict[\"" + key + "\"]",
                                                    floating ? std::vector<at::ScalarType>{at::kFloat}
                                                             : std::vector<at::ScalarType>{at::kLong, at::kInt},
                                                    it->second.first, false, floating}));
    }
    return model_->queue().Submit(env, Value(),
                                  MakeVoidTask([net = model_->net(), state = state_, inputs = std::move(inputs)] {
                                    CopyState(*net, *state, inputs);
                                  }));
  });
}

Napi::Value Finetuner::GetConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("classes", Napi::Number::New(env, static_cast<double>(options_.classes)));
  o.Set("width", Napi::Number::New(env, static_cast<double>(width_)));
  o.Set("lr", Napi::Number::New(env, options_.lr));
  o.Set("backboneLr", Napi::Number::New(env, options_.backboneLr));
  o.Set("weightDecay", Napi::Number::New(env, options_.adamw.weightDecay));
  o.Set("frozen", Napi::Boolean::New(env, options_.frozen));
  o.Set("loraLr", Napi::Number::New(env, options_.loraLr));
  o.Set("lora", Napi::Boolean::New(env, static_cast<bool>(state_->lora)));
  int64_t trainable = state_->weight.numel() + state_->bias.numel();
  if (state_->lora) trainable += state_->lora->ParameterCount();
  if (!options_.frozen)
    for (auto& p : model_->net()->visual->parameters()) trainable += p.numel();
  o.Set("trainableParameters", Napi::Number::New(env, static_cast<double>(trainable)));
  return o;
}

Napi::Value Finetuner::GetOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("classes", Napi::Number::New(env, static_cast<double>(options_.classes)));
  o.Set("lr", Napi::Number::New(env, options_.lr));
  o.Set("backboneLr", Napi::Number::New(env, options_.backboneLr));
  WriteAdamWSettings(env, o, options_.adamw);
  o.Set("frozen", Napi::Boolean::New(env, options_.frozen));
  o.Set("seed", Napi::Number::New(env, static_cast<double>(options_.seed)));
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
    state->lora.reset();
    state->weight = at::Tensor();
    state->bias = at::Tensor();
  });
}

void Finetuner::CheckAlive() const {
  disposal_.Check();
  model_->CheckAlive();
  if (state_->lora && state_->lora->released())
    throw BoundaryError(ErrorKind::Error, "Finetuner: its LoRA adapters (options.lora) were disposed");
}

}  // namespace vilref
