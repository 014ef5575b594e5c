"""Decode + preprocess throughput with PIL + torchvision, the same transforms as lib/data/transforms.ts.

eval:  Resize((224, 224), bicubic) -> ToTensor -> Normalize(CLIP)
train: RandomResizedCrop(224, scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic) -> RandomHorizontalFlip
       -> ColorJitter(0.1, 0.1, 0.1) -> ToTensor -> Normalize(CLIP)

Decode:
  full    Image.open + convert("RGB"): the whole JPEG at full size (torchvision's usual pipeline)
  scaled  JPEGs decode at 1/2, 1/4 or 1/8 scale through PIL's Image.draft, with the factor sharp
          picks for the same output (its JPEG shrink-on-load rule), then the same transforms; the
          training crop is taken at the drafted scale (crop box scaled, `resize(box=...)`).

Usage: preprocess_baseline.py LISTFILE MODE WORKERS [--decode full|scaled] [--min-seconds S]
                              [--dump FILE K]
Prints one JSON line: images, seconds, images_per_s, passes, cpu_seconds (this process and its
workers: the workers' share read after they exit, so it includes their warm-up).

Timing is fair to both sides: workers are started and warmed up (each decodes a few images) before
the clock starts, then whole passes over the list run until at least S seconds have passed. One
thread per worker (torch.set_num_threads(1), OMP_NUM_THREADS=1); workers return only the tensor's
first dimension, so unlike the vilref loader no batch is assembled or sent back (in the baseline's
favour).
"""
import argparse, json, math, os, resource, time
import multiprocessing as mp

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

SIZE = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = T.InterpolationMode.BICUBIC
SCALE = (0.9, 1.0)
RATIO = (3 / 4, 4 / 3)


def sharp_jpeg_shrink(shrink):
    """sharp's JPEG shrink-on-load factor for a common shrink (fastShrinkOnLoad: true)."""
    f = 8 if shrink >= 8 else 4 if shrink >= 4 else 2 if shrink >= 2 else 1
    if f > 1 and int(shrink) == f:  # sharp lowers it for libjpeg's rounding errors
        f //= 2
    return f


def draft(im, shrink):
    f = sharp_jpeg_shrink(shrink)
    if f > 1 and im.format == "JPEG":
        W, H = im.size
        im.draft("RGB", (W // f, H // f))
    return im


class Pipeline:
    def __init__(self, mode, decode):
        self.mode, self.decode = mode, decode
        post = [T.ToTensor(), T.Normalize(MEAN, STD)]
        if mode == "train":
            self.full = T.Compose([T.RandomResizedCrop(SIZE, scale=SCALE, ratio=RATIO, interpolation=BICUBIC),
                                   T.RandomHorizontalFlip(), T.ColorJitter(0.1, 0.1, 0.1)] + post)
            self.after_crop = T.Compose([T.RandomHorizontalFlip(), T.ColorJitter(0.1, 0.1, 0.1)] + post)
        else:
            self.full = T.Compose([T.Resize((SIZE, SIZE), interpolation=BICUBIC)] + post)

    def __call__(self, path):
        with Image.open(path) as im:
            if self.decode == "full" or im.format != "JPEG":
                return self.full(im.convert("RGB"))
            W, H = im.size
            if self.mode == "eval":
                return self.full(draft(im, min(W / SIZE, H / SIZE)).convert("RGB"))
            # RandomResizedCrop on the full-size geometry, decoded at the scale sharp would use for
            # "resize the whole image so the crop becomes 224, then cut it out".
            top, left, h, w = T.RandomResizedCrop.get_params(im, SCALE, RATIO)
            RW, RH = max(SIZE, round(W * SIZE / w)), max(SIZE, round(H * SIZE / h))
            draft(im, min(W / RW, H / RH))
            rgb = im.convert("RGB")
            sx, sy = W / rgb.size[0], H / rgb.size[1]
            box = (left / sx, top / sy, (left + w) / sx, (top + h) / sy)
            return self.after_crop(rgb.resize((SIZE, SIZE), Image.BICUBIC, box=box))


_pipe = None


def init(mode, decode):
    global _pipe
    torch.set_num_threads(1)
    _pipe = Pipeline(mode, decode)


def work(path):
    return _pipe(path).shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("list")
    ap.add_argument("mode", choices=["eval", "train"])
    ap.add_argument("workers", type=int)
    ap.add_argument("--decode", choices=["full", "scaled"], default="full")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--dump", nargs=2, metavar=("FILE", "K"))
    a = ap.parse_args()
    files = [l.strip() for l in open(a.list) if l.strip()]
    if a.dump:
        init(a.mode, a.decode)
        k = int(a.dump[1])
        np.save(a.dump[0], np.stack([_pipe(f).numpy() for f in files[:k]]).astype(np.float32))
    warm = files[: max(2, 2 * a.workers)]
    if a.workers <= 1:
        init(a.mode, a.decode)
        for f in warm:
            work(f)
        run = lambda: sum(work(f) > 0 for f in files)
        pool = None
    else:
        pool = mp.get_context("fork").Pool(a.workers, initializer=init, initargs=(a.mode, a.decode))
        pool.map(work, warm, chunksize=1)
        run = lambda: sum(r > 0 for r in pool.imap_unordered(work, files, chunksize=1))
    n, passes = 0, 0
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = time.process_time()
    t0 = time.perf_counter()
    while True:
        n += run()
        passes += 1
        dt = time.perf_counter() - t0
        if dt >= a.min_seconds:
            break
    cpu = time.process_time() - c0
    if pool is not None:
        pool.close()
        pool.join()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    print(json.dumps({"images": n, "seconds": dt, "images_per_s": n / dt, "passes": passes, "cpu_seconds": cpu}))


if __name__ == "__main__":
    main()
