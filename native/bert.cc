#include "bert.h"

#include "nn.h"

namespace vilref {

namespace {
torch::nn::LayerNorm Norm(const BertConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden}).eps(c.eps));
}
}  // namespace

BertLayerImpl::BertLayerImpl(const BertConfig& c) : heads(c.heads) {
  auto attention = std::make_shared<torch::nn::Module>();
  auto self = std::make_shared<torch::nn::Module>();
  query = self->register_module("query", torch::nn::Linear(c.hidden, c.hidden));
  key = self->register_module("key", torch::nn::Linear(c.hidden, c.hidden));
  value = self->register_module("value", torch::nn::Linear(c.hidden, c.hidden));
  attention->register_module("self", self);
  auto attnOut = std::make_shared<torch::nn::Module>();
  attn_dense = attnOut->register_module("dense", torch::nn::Linear(c.hidden, c.hidden));
  attn_ln = attnOut->register_module("LayerNorm", Norm(c));
  attention->register_module("output", attnOut);
  register_module("attention", attention);
  auto intermediate = std::make_shared<torch::nn::Module>();
  inter_dense = intermediate->register_module("dense", torch::nn::Linear(c.hidden, c.intermediate));
  register_module("intermediate", intermediate);
  auto output = std::make_shared<torch::nn::Module>();
  out_dense = output->register_module("dense", torch::nn::Linear(c.intermediate, c.hidden));
  out_ln = output->register_module("LayerNorm", Norm(c));
  register_module("output", output);
}

at::Tensor BertLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  at::Tensor ctx =
      MergeHeads(Attend(SplitHeads(query(x), heads), SplitHeads(key(x), heads), SplitHeads(value(x), heads), mask));
  at::Tensor h = LayerNormF32(attn_dense(ctx) + x, attn_ln);
  at::Tensor inter = at::gelu(inter_dense(h));  // exact erf GELU
  return LayerNormF32(out_dense(inter) + h, out_ln);
}

BertModelImpl::BertModelImpl(const BertConfig& c) : config_(c) {
  auto embeddings = std::make_shared<torch::nn::Module>();
  word = embeddings->register_module("word_embeddings", torch::nn::Embedding(c.vocab, c.hidden));
  position = embeddings->register_module("position_embeddings", torch::nn::Embedding(c.maxPositions, c.hidden));
  token_type = embeddings->register_module("token_type_embeddings", torch::nn::Embedding(c.typeVocab, c.hidden));
  emb_ln = embeddings->register_module("LayerNorm", Norm(c));
  register_module("embeddings", embeddings);
  auto encoder = std::make_shared<torch::nn::Module>();
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.layers; ++i) layer->push_back(BertLayer(c));
  register_module("encoder", encoder);
}

at::Tensor BertModelImpl::forward(const at::Tensor& ids) {
  const int64_t length = ids.size(1);
  at::Tensor positions = at::arange(length, ids.options().dtype(at::kLong));
  at::Tensor x = word(ids) + position(positions).unsqueeze(0) + token_type->weight.select(0, 0);
  x = LayerNormF32(x, emb_ln);
  // (1 - mask) * -10000 over key positions, as the released BertModel; [PAD] is id 0.
  at::Tensor mask = (1.0 - ids.ne(0).to(x.scalar_type())).mul(-10000.0).view({ids.size(0), 1, 1, length});
  for (const auto& l : *layer) {
    std::shared_ptr<torch::nn::Module> m = l;
    x = MaybeRecompute([m, mask](const at::Tensor& t) { return m->as<BertLayer>()->forward(t, mask); }, x);
  }
  return x;
}

void BertModelImpl::InitWeights() {
  torch::NoGradGuard noGrad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.find("LayerNorm") != std::string::npos) {
      if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0)
        p.value().fill_(1.0);
      else
        p.value().zero_();
    } else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      p.value().zero_();
    } else {
      p.value().normal_(0, 0.02);  // initializer_range
    }
  }
}

}  // namespace vilref
