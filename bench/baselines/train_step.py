"""Baseline of bench/gpu/train-step.ts: one ViLReF pre-training step written in PyTorch, the way the
released Chinese-CLIP code trains, with what ../shared/WSCL.md adds:

  1. EMA of the momentum copy (copy.deepcopy of the model): theta_m <- m theta_m + (1 - m) theta
     (torch._foreach_lerp_ where PyTorch has it, else a loop over the parameters);
  2. momentum features of the batch, no gradient (autocast as the forward);
  3. online features, WSCL over the batch + the valid queue entries (false negatives removed,
     negatives weighted (1 - c)^gamma, positive weight 1, log-softmax with -inf), backward, the global
     gradient norm (clip_grad_norm_ with an infinite bound: vilref reports it every step), AdamW
     with the released groups (no weight decay on tensors of rank < 2 and on bn/ln/bias/logit_scale
     names; lr 5e-5, betas 0.9/0.98, eps 1e-6, weight decay 0.001; fused on CUDA where PyTorch has
     it), logit_scale clamped to [0, ln 100];
  4. enqueue of the momentum features and labels (ring buffer on the device).
Mixed precision: --precision bfloat16 autocasts the forward (float32 weights and loss), as vilref's
Trainer does. The batch starts on the host as float32 images and int64 ids, as vilref's does.

Prints one JSON line: {"torch", "device", "precision", "preset", "batch", "stepSeconds": [...],
"losses": [...], "peakBytes", "peakKind", "parameters"}.

Usage: python3 bench/baselines/train_step.py --device cuda --preset base --batch 256 --precision bfloat16
       [--context 52] [--queue 16384] [--labels 15] [--steps 8] [--warmup 2] [--threads N] [--seed 0]
"""
import argparse
import copy
import json
import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnclip import CLIP, PRESETS  # noqa: E402


def label_similarity(y, c):
    """c(y, y') = y.y' / (|y||y'|), 0 where either is all zero; [B, C] x [M, C] -> [B, M]."""
    denom = y.norm(dim=1, keepdim=True) @ c.norm(dim=1, keepdim=True).t()
    dot = y @ c.t()
    return torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(dot.dtype).tiny), torch.zeros_like(dot)).clamp(0, 1)


def wscl_direction(a, b, q, sim, scale, threshold, gamma):
    """-log softmax of the positive for anchors a against cat(b, q), WSCL weights; [B]."""
    n = a.shape[0]
    cand = torch.cat([b, q.to(b.dtype)], 0) if q is not None and q.shape[0] > 0 else b
    z = scale * a @ cand.t()
    positive = torch.zeros_like(z, dtype=torch.bool)
    positive[:, :n].fill_diagonal_(True)
    eliminated = sim.ge(threshold - 1e-6) & ~positive
    logw = torch.zeros_like(sim) if gamma == 0 else gamma * torch.log1p(-sim)
    logw = torch.where(positive, torch.zeros_like(logw), logw).masked_fill(eliminated, float("-inf"))
    return torch.logsumexp(z + logw.to(z.dtype), 1) - z[:, :n].diagonal()


def wscl(u, v, y, qu, qv, qy, logit_scale, threshold=1.0, gamma=1.0):
    labels = torch.cat([y, qy], 0) if qy is not None and qy.shape[0] > 0 else y
    sim = label_similarity(y, labels)
    scale = logit_scale.exp()
    i2t = wscl_direction(u, v, qv, sim, scale, threshold, gamma)
    t2i = wscl_direction(v, u, qu, sim, scale, threshold, gamma)
    return 0.5 * (i2t.mean() + t2i.mean())


def normalise(x):
    return x / x.norm(dim=-1, keepdim=True)


class Queue:
    def __init__(self, size, dim, labels, device):
        self.size, self.valid, self.pointer = size, 0, 0
        self.image = torch.zeros(size, dim, device=device)
        self.text = torch.zeros(size, dim, device=device)
        self.labels = torch.zeros(size, labels, device=device)

    def views(self):
        return self.image[: self.valid], self.text[: self.valid], self.labels[: self.valid]

    @torch.no_grad()
    def enqueue(self, u, v, y):
        b = min(u.shape[0], self.size)
        u, v, y = u[-b:], v[-b:], y[-b:]
        done = 0
        while done < b:
            n = min(b - done, self.size - self.pointer)
            s = slice(self.pointer, self.pointer + n)
            self.image[s], self.text[s], self.labels[s] = u[done:done + n], v[done:done + n], y[done:done + n]
            self.pointer = (self.pointer + n) % self.size
            done += n
        self.valid = min(self.size, self.valid + b)


def decays(name, p):
    return p.ndim >= 2 and not any(k in name for k in ("bn", "ln", "LayerNorm", "bias", "logit_scale"))


def make_batches(n, batch, res, context, labels, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images = torch.randn(batch, 3, res, res, generator=g) * 1.5
        ids = torch.randint(200, min(vocab, 20000), (batch, context), generator=g)
        lengths = torch.randint(8, context + 1, (batch,), generator=g)
        pos = torch.arange(context).unsqueeze(0)
        ids = torch.where(pos < lengths.unsqueeze(1), ids, torch.zeros_like(ids))
        ids[:, 0] = 101
        ids[torch.arange(batch), lengths - 1] = 102
        y = (torch.rand(batch, labels, generator=g) < 0.3).float()
        out.append((images, ids, y))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=52)
    p.add_argument("--queue", type=int, default=16384)
    p.add_argument("--labels", type=int, default=15)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--momentum", type=float, default=0.995)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    c = PRESETS[a.preset]
    torch.manual_seed(a.seed)
    model = CLIP(**c).to(a.device)
    momentum = copy.deepcopy(model)
    for q in momentum.parameters():
        q.requires_grad_(False)
    named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    params = [q for _, q in named]
    groups = [
        {"params": [q for n, q in named if decays(n, q)], "weight_decay": 0.001},
        {"params": [q for n, q in named if not decays(n, q)], "weight_decay": 0.0},
    ]
    extra = {}
    if cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
        extra["fused"] = True
    opt = torch.optim.AdamW(groups, lr=5e-5, betas=(0.9, 0.98), eps=1e-6, **extra)
    queue = Queue(a.queue, c["embed_dim"], a.labels, a.device)
    online, moving = list(model.parameters()), list(momentum.parameters())
    lerp = getattr(torch, "_foreach_lerp_", None)
    low = None if a.precision == "float32" else getattr(torch, a.precision)
    device_type = "cuda" if cuda else "cpu"

    def autocast():
        if low is None:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=low)

    batches = make_batches(3, a.batch, c["image_resolution"], a.context, a.labels, c["vocab_size"], a.seed + 7)
    scaler = torch.cuda.amp.GradScaler(init_scale=65536.0) if a.precision == "float16" else None

    def step(images, ids, y):
        images, ids, y = images.to(a.device), ids.to(a.device), y.to(a.device)
        if queue.size > 0:
            with torch.no_grad():
                if lerp is not None:
                    lerp(moving, online, 1.0 - a.momentum)
                else:
                    for m, q in zip(moving, online):
                        m.mul_(a.momentum).add_(q.detach(), alpha=1.0 - a.momentum)
                with autocast():
                    mu = normalise(momentum.encode_image(images).float())
                    mv = normalise(momentum.encode_text(ids).float())
        with autocast():
            u = normalise(model.encode_image(images).float())
            v = normalise(model.encode_text(ids).float())
        qu, qv, qy = queue.views()
        loss = wscl(u, v, y, qu, qv, qy, model.logit_scale.float())
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, float("inf"))
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if queue.size > 0:
            queue.enqueue(mu, mv, y)
        return loss.item()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for i in range(a.warmup + a.steps):
        b = batches[i % len(batches)]
        t = time.perf_counter()
        loss = step(*b)
        if cuda:
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
        losses.append(loss)
    out = {
        "torch": torch.__version__, "device": a.device, "precision": a.precision, "preset": a.preset,
        "batch": a.batch, "context": a.context, "queue": a.queue, "stepSeconds": times, "losses": losses,
        "parameters": sum(q.numel() for q in params), "threads": torch.get_num_threads(),
        "fusedAdamW": bool(extra.get("fused")), "foreachLerp": lerp is not None,
    }
    if cuda:
        out["peakBytes"], out["peakKind"] = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["peakBytes"], out["peakKind"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "max RSS"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
