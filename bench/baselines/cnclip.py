"""The released Chinese-CLIP model layout (cn_clip/clip/model.py and modeling_bert.py, which ViLReF
trains), written out for the baselines of bench/gpu: the ViT image tower (CLIP's VisualTransformer
with nn.MultiheadAttention, QuickGELU and the float32 LayerNorm subclass), the Chinese BERT text
tower (explicit softmax attention with the -10000 padding mask, erf GELU, post-LN) and the CLIP
wrapper (text feature = [CLS] of the last layer @ text_projection; logit_scale = ln(1/0.07)).
Parameter names and shapes follow the released ones, as vilref's do. Device-safe (no tensor is
made on the CPU inside forward), and it runs on PyTorch 1.13 (Debian) as on 2.x.
"""
import math
from collections import OrderedDict

import torch
from torch import nn

# vilref's presets in the released config names (lib/model/presets), plus the benchmark sizes
PRESETS = {
    # ViT-B/16 + RoBERTa-wwm-ext-base-chinese (ViLReF's released size)
    "base": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                 vocab_size=21128, text_hidden_size=768, text_intermediate_size=3072, text_max_position_embeddings=512,
                 text_num_attention_heads=12, text_num_hidden_layers=12, text_type_vocab_size=2),
    # the CPU twin of issue 20: ViT 6x384 at 224 + BERT 2x256
    "small": dict(embed_dim=256, image_resolution=224, vision_layers=6, vision_width=384, vision_patch_size=16,
                  vocab_size=21128, text_hidden_size=256, text_intermediate_size=1024, text_max_position_embeddings=128,
                  text_num_attention_heads=4, text_num_hidden_layers=2, text_type_vocab_size=2),
    # the dry run's: seconds on a CPU
    "toy": dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
                vocab_size=21128, text_hidden_size=64, text_intermediate_size=128, text_max_position_embeddings=64,
                text_num_attention_heads=2, text_num_hidden_layers=2, text_type_vocab_size=2),
}


class LayerNorm(nn.LayerNorm):
    """The released subclass: computes in float32 whatever the input's dtype."""

    def forward(self, x):
        orig = x.dtype
        return super().forward(x.type(torch.float32)).type(orig)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisualTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer.resblocks(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj.to(x.dtype)


def gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class BertLayer(nn.Module):
    """bert.encoder.layer.N: attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
    intermediate.dense, output.{dense,LayerNorm}."""

    def __init__(self, hidden, heads, intermediate):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(hidden, hidden))
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(intermediate, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    def split(self, x):
        n, length, d = x.shape
        return x.view(n, length, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        s = self.attention.self
        q, k, v = self.split(s.query(x)), self.split(s.key(x)), self.split(s.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(x.shape[0], x.shape[1], -1)
        h = self.attention.output.LayerNorm(self.attention.output.dense(ctx) + x)
        inter = gelu(self.intermediate.dense(h))
        return self.output.LayerNorm(self.output.dense(inter) + h)


class BertModel(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, intermediate, max_positions, type_vocab):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, hidden, padding_idx=0)
        self.embeddings.position_embeddings = nn.Embedding(max_positions, hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([BertLayer(hidden, heads, intermediate) for _ in range(layers)])
        for m in self.modules():  # the released _init_weights
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0.0, 0.02)
            if isinstance(m, nn.LayerNorm):
                m.weight.data.fill_(1.0)
                m.bias.data.zero_()
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.data.zero_()

    def forward(self, ids, attention_mask):
        e = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = e.word_embeddings(ids) + e.position_embeddings(positions) + e.token_type_embeddings(torch.zeros_like(ids))
        x = e.LayerNorm(x)
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


class CLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, vocab_size,
                 text_hidden_size, text_intermediate_size, text_max_position_embeddings, text_num_attention_heads,
                 text_num_hidden_layers, text_type_vocab_size):
        super().__init__()
        self.visual = VisualTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                        vision_width // 64 if vision_width >= 64 else 1, embed_dim)
        self.bert = BertModel(vocab_size, text_hidden_size, text_num_hidden_layers, text_num_attention_heads,
                              text_intermediate_size, text_max_position_embeddings, text_type_vocab_size)
        self.text_projection = nn.Parameter(torch.empty(text_hidden_size, embed_dim))
        nn.init.normal_(self.text_projection, std=text_hidden_size ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, images):
        return self.visual(images.type(self.visual.conv1.weight.dtype))

    def encode_text(self, ids):
        x = self.bert(ids, attention_mask=ids.ne(0))
        return x[:, 0, :] @ self.text_projection.to(x.dtype)


def to_low_precision(model, dtype):
    """The released convert_weights, for bf16: conv, linear, attention and projection weights in
    `dtype`, LayerNorm (and BERT's embeddings' LayerNorm) in float32."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = m.weight.data.to(dtype)
            if m.bias is not None:
                m.bias.data = m.bias.data.to(dtype)
        if isinstance(m, nn.MultiheadAttention):
            for name in ("in_proj_weight", "in_proj_bias"):
                getattr(m, name).data = getattr(m, name).data.to(dtype)
    for name in ("class_embedding", "positional_embedding", "proj"):
        p = getattr(model, name, None)
        if p is not None:
            p.data = p.data.to(dtype)
    return model
