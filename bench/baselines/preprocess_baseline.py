"""Decode + preprocess throughput with PIL + torchvision, the same transforms as lib/data/transforms.ts.

eval:  Resize((224, 224), bicubic) -> ToTensor -> Normalize(CLIP)
train: RandomResizedCrop(224, scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic) -> RandomHorizontalFlip
       -> ColorJitter(0.1, 0.1, 0.1) -> ToTensor -> Normalize(CLIP)
Usage: preprocess_baseline.py LISTFILE MODE WORKERS  (prints JSON: images, seconds, images_per_s)
"""
import json, sys, time
from multiprocessing import Pool

import torch
from PIL import Image
from torchvision import transforms as T

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = T.InterpolationMode.BICUBIC


def build(mode):
    if mode == "train":
        return T.Compose([T.RandomResizedCrop(224, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), interpolation=BICUBIC),
                          T.RandomHorizontalFlip(), T.ColorJitter(0.1, 0.1, 0.1), T.ToTensor(), T.Normalize(MEAN, STD)])
    return T.Compose([T.Resize((224, 224), interpolation=BICUBIC), T.ToTensor(), T.Normalize(MEAN, STD)])


_tf = None


def init(mode):
    global _tf
    torch.set_num_threads(1)
    _tf = build(mode)


def work(path):
    with Image.open(path) as im:
        x = _tf(im.convert("RGB"))
    return x.shape[0]


def main():
    files = [l.strip() for l in open(sys.argv[1]) if l.strip()]
    mode, workers = sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    if workers <= 1:
        init(mode)
        n = sum(work(f) > 0 for f in files)
    else:
        with Pool(workers, initializer=init, initargs=(mode,)) as p:
            n = sum(r > 0 for r in p.imap(work, files, chunksize=2))
    dt = time.perf_counter() - t0
    print(json.dumps({"images": n, "seconds": dt, "images_per_s": n / dt}))


if __name__ == "__main__":
    main()
