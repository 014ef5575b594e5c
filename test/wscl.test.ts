// WSCL (../shared/WSCL.md) against an independent float64 reference, finite differences, CLIP.
import test from "ava";
import { mulberry32 } from "../lib/data/rng.js";
import { losses } from "../lib/train/losses.js";
import type { WsclLossArgs } from "../lib/train/losses.js";

type Mat = number[][];
const f64 = (m: Mat) => ({ data: Float64Array.from(m.flat()), shape: [m.length, m[0]!.length] });

function randomMat(rows: number, cols: number, seed: number, binary = false): Mat {
  const r = mulberry32(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: cols }, () => (binary ? (r.next() < 0.4 ? 1 : r.next() < 0.2 ? 0.5 : 0) : r.next() * 2 - 1)),
  );
}
const normalise = (m: Mat) =>
  m.map((row) => {
    const n = Math.hypot(...row);
    return row.map((x) => x / n);
  });
const dot = (a: number[], b: number[]) => a.reduce((s, x, k) => s + x * b[k]!, 0);
function labelSim(a: number[], b: number[]): number {
  const na = Math.hypot(...a);
  const nb = Math.hypot(...b);
  return na === 0 || nb === 0 ? 0 : dot(a, b) / (na * nb);
}

/** WSCL.md written out with loops, in float64: the reference. */
function reference(args: {
  image: Mat;
  text: Mat;
  labels: Mat;
  queue?: { image: Mat; text: Mat; labels: Mat };
  logitScale: number;
  threshold?: number;
  gamma?: number;
}) {
  const s = Math.exp(args.logitScale);
  const theta = args.threshold ?? 1;
  const gamma = args.gamma ?? 1;
  const u = normalise(args.image);
  const v = normalise(args.text);
  const B = u.length;
  const term = (anchors: Mat, batch: Mat, queue: Mat) => {
    const cands = [...batch, ...queue];
    const candLabels = [...args.labels, ...(args.queue?.labels ?? [])];
    return anchors.map((a, i) => {
      const zpos = s * dot(a, batch[i]!);
      let denom = Math.exp(zpos);
      cands.forEach((c, j) => {
        if (j === i) return;
        const cij = labelSim(args.labels[i]!, candLabels[j]!);
        if (cij >= theta - 1e-6) return; // false negative: removed
        denom += Math.pow(1 - cij, gamma) * Math.exp(s * dot(a, c));
      });
      return -Math.log(Math.exp(zpos) / denom);
    });
  };
  // queue entries are normalised momentum features
  const i2t = term(u, v, normalise(args.queue?.text ?? []));
  const t2i = term(v, u, normalise(args.queue?.image ?? []));
  const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
  return { loss: 0.5 * (mean(i2t) + mean(t2i)), i2t, t2i, B };
}

/** CLIP InfoNCE written independently: cross-entropy of the scaled cosine matrix both ways. */
function clipReference(image: Mat, text: Mat, logitScale: number): number {
  const u = normalise(image);
  const v = normalise(text);
  const s = Math.exp(logitScale);
  const ce = (rows: number[][]) =>
    rows.reduce((acc, row, i) => acc + (Math.log(row.reduce((p, z) => p + Math.exp(z), 0)) - row[i]!), 0) / rows.length;
  const logits = u.map((a) => v.map((b) => s * dot(a, b)));
  const transposed = logits[0]!.map((_, j) => logits.map((row) => row[j]!));
  return 0.5 * (ce(logits) + ce(transposed));
}

function asArgs(a: Parameters<typeof reference>[0]): WsclLossArgs {
  return {
    image: f64(a.image),
    text: f64(a.text),
    labels: f64(a.labels),
    logitScale: a.logitScale,
    ...(a.threshold !== undefined ? { threshold: a.threshold } : {}),
    ...(a.gamma !== undefined ? { gamma: a.gamma } : {}),
    ...(a.queue
      ? {
          queue: {
            image: f64(normalise(a.queue.image)),
            text: f64(normalise(a.queue.text)),
            labels: f64(a.queue.labels),
          },
        }
      : {}),
  };
}

const B = 6;
const D = 5;
const C = 4;
function sample(seed: number, withQueue: boolean) {
  const labels = randomMat(B, C, seed + 3, true);
  labels[1] = [...labels[0]!]; // a guaranteed false negative pair
  labels[4] = [0, 0, 0, 0]; // an all-zero label vector: similarity 0 with everything
  return {
    image: randomMat(B, D, seed),
    text: randomMat(B, D, seed + 1),
    labels,
    logitScale: Math.log(1 / 0.07) - 1.5,
    ...(withQueue
      ? {
          queue: {
            image: randomMat(7, D, seed + 5),
            text: randomMat(7, D, seed + 6),
            labels: [labels[2]!, ...randomMat(6, C, seed + 7, true)],
          },
        }
      : {}),
  };
}

for (const [label, opts] of [
  ["defaults", {}],
  ["θ 0.5, γ 2", { threshold: 0.5, gamma: 2 }],
  ["no elimination (θ 2), γ 0.5", { threshold: 2, gamma: 0.5 }],
] as const) {
  for (const withQueue of [false, true]) {
    test(`loss and per-anchor terms equal the reference: ${label}, ${withQueue ? "with" : "no"} queue`, async (t) => {
      const a = { ...sample(11, withQueue), ...opts };
      const ref = reference(a);
      const got = await losses.wscl(asArgs(a));
      t.true(Math.abs(got.loss - ref.loss) < 1e-12, `${got.loss} vs ${ref.loss}`);
      ref.i2t.forEach((x, i) => t.true(Math.abs(got.lossI2T.data[i]! - x) < 1e-12));
      ref.t2i.forEach((x, i) => t.true(Math.abs(got.lossT2I.data[i]! - x) < 1e-12));
    });
  }
}

test("gradients match central finite differences in float64", async (t) => {
  const a = { ...sample(21, true), threshold: 0.8, gamma: 1.5 };
  const base = asArgs(a);
  const got = await losses.wscl(base);
  const h = 1e-6;
  const check = async (which: "image" | "text", grad: Float64Array) => {
    for (let k = 0; k < B * D; k++) {
      const plus = Float64Array.from(base[which].data);
      const minus = Float64Array.from(base[which].data);
      plus[k]! += h;
      minus[k]! -= h;
      const lp = (await losses.wscl({ ...base, [which]: { data: plus, shape: [B, D] } })).loss;
      const lm = (await losses.wscl({ ...base, [which]: { data: minus, shape: [B, D] } })).loss;
      const fd = (lp - lm) / (2 * h);
      t.true(Math.abs(fd - grad[k]!) <= 1e-6 * Math.max(1, Math.abs(fd)), `${which}[${k}]: fd ${fd} vs ${grad[k]}`);
    }
  };
  await check("image", got.gradImage.data as Float64Array);
  await check("text", got.gradText.data as Float64Array);
  const lp = (await losses.wscl({ ...base, logitScale: base.logitScale + h })).loss;
  const lm = (await losses.wscl({ ...base, logitScale: base.logitScale - h })).loss;
  t.true(Math.abs((lp - lm) / (2 * h) - got.gradLogitScale) < 1e-6);
});

test("γ = 0, θ > 1 and no queue is CLIP: equal to an independent CLIP loss and to losses.clip", async (t) => {
  const a = sample(31, false);
  const wscl = await losses.wscl({ ...asArgs(a), gamma: 0, threshold: 1.5 });
  const clip = await losses.clip({ image: f64(a.image), text: f64(a.text), logitScale: a.logitScale });
  const ref = clipReference(a.image, a.text, a.logitScale);
  t.true(Math.abs(wscl.loss - ref) < 1e-12, `${wscl.loss} vs ${ref}`);
  t.true(Math.abs(clip.loss - ref) < 1e-12);
  (wscl.gradImage.data as Float64Array).forEach((g, k) => t.true(Math.abs(g - clip.gradImage.data[k]!) < 1e-12));
});

test("eliminated pairs contribute exactly nothing", async (t) => {
  // samples 0 and 1 share their labels: for anchor 0, text 1 is a false negative
  const a = sample(41, false);
  const before = await losses.wscl(asArgs(a));
  const moved = { ...a, text: a.text.map((row, i) => (i === 1 ? row.map((x) => -3 * x + 0.7) : row)) };
  const after = await losses.wscl(asArgs(moved));
  t.is(after.lossI2T.data[0], before.lossI2T.data[0], "anchor image 0 does not see text 1");
  t.not(after.lossI2T.data[2], before.lossI2T.data[2], "anchor image 2 does");
  // and the gradient of image 0 carries nothing from text 1: with text 1 gone, image 0's i2t term is the same
  const noElim = await losses.wscl({ ...asArgs(a), threshold: 2, gamma: 0 });
  t.true(noElim.lossI2T.data[0]! > before.lossI2T.data[0]!, "without elimination the pair is pushed apart");
});

test("queue entries are extra negatives: weighted by label dissimilarity, removed when same-label", async (t) => {
  const a = sample(51, false);
  a.labels[2] = [1, 0, 0.5, 0]; // a label set no other sample has
  a.labels[3] = [0, 1, 0, 0];
  const queue = {
    image: randomMat(2, D, 99),
    text: randomMat(2, D, 98),
    labels: [a.labels[2]!, a.labels[2]!.map((x) => 1 - x)],
  };
  const without = await losses.wscl(asArgs(a));
  const withQueue = await losses.wscl(asArgs({ ...a, queue }));
  const ref = reference({ ...a, queue });
  t.true(Math.abs(withQueue.loss - ref.loss) < 1e-12);
  t.true(withQueue.loss > without.loss, "more negatives, more loss");
  // anchor 2 has queue entry 0 with its own labels (eliminated); entry 1 counts for it with weight (1 − c)
  const onlySame = await losses.wscl(
    asArgs({ ...a, queue: { image: [queue.image[0]!], text: [queue.text[0]!], labels: [queue.labels[0]!] } }),
  );
  t.is(onlySame.lossI2T.data[2], without.lossI2T.data[2], "a same-label queue entry is removed for that anchor");
  t.true(onlySame.lossI2T.data[3]! >= without.lossI2T.data[3]!);
});

test("bad arguments are named", async (t) => {
  const a = asArgs(sample(61, true));
  await t.throwsAsync(losses.wscl({ ...a, text: { data: new Float64Array(B * 4), shape: [B, 4] } }), {
    instanceOf: RangeError,
    message: /^args\.text: expected shape \[6, 5\]/,
  });
  await t.throwsAsync(losses.wscl({ ...a, text: { data: new Float32Array(B * D), shape: [B, D] } }), {
    instanceOf: TypeError,
    message: /^args\.text\.data: expected Float64Array, got Float32Array$/,
  });
  await t.throwsAsync(losses.wscl({ ...a, labels: { data: new Float64Array(5 * C), shape: [5, C] } }), {
    instanceOf: RangeError,
    message: /^args\.labels: expected shape \[6, \*\]/,
  });
  await t.throwsAsync(losses.wscl({ ...a, labels: { data: new Float64Array(B * C).fill(2), shape: [B, C] } }), {
    instanceOf: RangeError,
    message: "args.labels: values must lie in [0, 1]",
  });
  await t.throwsAsync(
    losses.wscl({ ...a, queue: { ...a.queue!, labels: { data: new Float64Array(7 * 3), shape: [7, 3] } } }),
    { instanceOf: RangeError, message: /^args\.queue\.labels: expected shape \[7, 4\]/ },
  );
  await t.throwsAsync(losses.wscl({ ...a, gamma: -1 }), { instanceOf: RangeError, message: /^args\.gamma:/ });
  await t.throwsAsync(losses.wscl({ ...a, logitScale: Number.NaN }), {
    instanceOf: RangeError,
    message: /^args\.logitScale:/,
  });
  const zero = Float64Array.from(a.image.data);
  zero.fill(0, D, 2 * D);
  await t.throwsAsync(losses.wscl({ ...a, image: { data: zero, shape: [B, D] } }), {
    instanceOf: RangeError,
    message: "args.image: row 1 is all zero and cannot be normalised",
  });
  const nan = Float64Array.from(a.image.data);
  nan[3] = Number.NaN;
  await t.throwsAsync(losses.clip({ ...a, image: { data: nan, shape: [B, D] } }), {
    instanceOf: RangeError,
    message: /^args\.image\.data\[3\] is NaN/,
  });
});
