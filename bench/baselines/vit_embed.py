"""Baseline of bench/gpu/vit-embed.ts: the released ViT image tower (bench/baselines/cnclip.py) embedding
images in PyTorch, eager and torch.compile, with random weights (seed 0).

Two ways of feeding it, both timed per call after warm-up (3 input sets in rotation, never zeros):
  host      a pageable float32 CPU batch -> .to(device, dtype) -> forward -> float32 CPU result: what
            vilref's encodeImages does with a Float32Array (the ratio compares these);
  resident  the batch already on the device in `dtype`, the result left there (synchronised): the
            forward alone, for reference.
Prints one JSON line: {"torch", "device", "dtype", "batch", "modes": {"eager": {"host": [s...],
"resident": [s...]}, "compile": {...} | {"error": "..."}}, "gpu"}.

Usage: python3 bench/baselines/vit_embed.py --device cuda --dtype bfloat16 --batch 256 --iters 20
       [--modes eager,compile] [--preset base|toy] [--threads N]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnclip import PRESETS, VisualTransformer, to_low_precision  # noqa: E402


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--preset", default="base")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    c = PRESETS[a.preset]
    dtype = getattr(torch, a.dtype)
    res = c["image_resolution"]
    torch.manual_seed(0)
    model = VisualTransformer(res, c["vision_patch_size"], c["vision_width"], c["vision_layers"],
                              max(1, c["vision_width"] // 64), c["embed_dim"]).eval()
    if dtype != torch.float32:
        to_low_precision(model, dtype)
    model = model.to(a.device)
    inputs = [torch.randn(a.batch, 3, res, res) * 1.5 for _ in range(3)]
    resident = [x.to(a.device, dtype) for x in inputs]
    out = {"torch": torch.__version__, "device": a.device, "dtype": a.dtype, "batch": a.batch, "modes": {},
           "threads": torch.get_num_threads()}
    if a.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()

    for mode in a.modes.split(","):
        if mode == "compile" and not hasattr(torch, "compile"):
            out["modes"][mode] = {"error": f"torch {torch.__version__} has no torch.compile"}
            continue
        try:
            fn = torch.compile(model) if mode == "compile" else model
            times = {"host": [], "resident": []}
            with torch.no_grad():
                t = time.perf_counter()
                for i in range(a.warmup):  # compiles here for torch.compile
                    fn(resident[i % 3])
                sync(a.device)
                times["warmupSeconds"] = time.perf_counter() - t
                for i in range(a.iters):
                    sync(a.device)
                    t = time.perf_counter()
                    fn(resident[i % 3])
                    sync(a.device)
                    times["resident"].append(time.perf_counter() - t)
                for i in range(a.iters):
                    t = time.perf_counter()
                    fn(inputs[i % 3].to(a.device, dtype)).float().cpu()
                    times["host"].append(time.perf_counter() - t)
            out["modes"][mode] = times
        except Exception as e:  # a failed torch.compile is a result, not a crash of the whole baseline
            out["modes"][mode] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
