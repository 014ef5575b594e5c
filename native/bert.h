// The Chinese BERT / RoBERTa-wwm-ext text tower of the released models, with its parameter names:
// bert.embeddings.{word,position,token_type}_embeddings, bert.embeddings.LayerNorm,
// bert.encoder.layer.N.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
// intermediate.dense, output.{dense,LayerNorm}}. Exact-erf GELU, LayerNorm eps 1e-12, attention
// mask from token id 0 ([PAD]); no pooler (the [CLS] state is the text feature).
#pragma once

#include <torch/torch.h>

namespace vilref {

struct BertConfig {
  int64_t vocab = 21128, hidden = 768, layers = 12, heads = 12, intermediate = 3072, maxPositions = 512, typeVocab = 2;
  double eps = 1e-12;
};

struct BertLayerImpl : torch::nn::Module {
  BertLayerImpl(const BertConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  int64_t heads;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attn_dense{nullptr}, inter_dense{nullptr},
      out_dense{nullptr};
  torch::nn::LayerNorm attn_ln{nullptr}, out_ln{nullptr};
};
TORCH_MODULE(BertLayer);

class BertModelImpl : public torch::nn::Module {
 public:
  explicit BertModelImpl(const BertConfig& c);
  // ids [N, L] int64 → hidden states [N, L, hidden]
  at::Tensor forward(const at::Tensor& ids);
  void InitWeights();
  const BertConfig& config() const { return config_; }

 private:
  BertConfig config_;
  torch::nn::Embedding word{nullptr}, position{nullptr}, token_type{nullptr};
  torch::nn::LayerNorm emb_ln{nullptr};
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(BertModel);

}  // namespace vilref
