/**
 * Head: a multilayer perceptron over feature vectors (Linear, activation, ..., Linear), the
 * classifier or projection head on top of a tower. Computation runs in LibTorch, off the event
 * loop; calls on one head run in the order they were made.
 */
import { z } from "zod";
import { formatIssues } from "./config/errors.js";
import { NativeResource } from "./dispose.js";
import { native } from "./native.js";
import type { HeadConfig, NativeHead, TensorData } from "./native.js";

const width = z
  .number()
  .int()
  .min(1)
  .max(1 << 20);

export const headConfigSchema = z
  .object({
    inFeatures: width,
    hidden: z.array(width).default([]),
    outFeatures: width,
    activation: z.enum(["gelu", "quick_gelu", "relu", "tanh"]).default("gelu"),
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  })
  .strict();

/** Owns its parameters: `dispose()` frees them. */
export class Head extends NativeResource {
  readonly #native: NativeHead;

  constructor(config: HeadConfig) {
    super();
    const parsed = headConfigSchema.safeParse(config);
    if (!parsed.success) throw new TypeError(`Head config: ${formatIssues(parsed.error)}`);
    this.#native = new (native().Head)(parsed.data);
  }

  protected get nativeResource(): NativeHead {
    return this.#native;
  }

  get config() {
    return this.#native.config;
  }

  /** Calls queued or running on this head. */
  get pending(): number {
    return this.#native.pending;
  }

  /** input: [N, inFeatures] float32 → [N, outFeatures]. */
  forward(input: TensorData<Float32Array>): Promise<TensorData<Float32Array>> {
    return this.#native.forward(input);
  }

  /** Copies of the parameters, named `layers.<i>.weight` / `layers.<i>.bias`. */
  stateDict(): Promise<Record<string, TensorData<Float32Array>>> {
    return this.#native.stateDict();
  }

  /** Replaces every parameter (copied); calls made after this one see the new values. */
  loadStateDict(state: Record<string, TensorData<Float32Array>>): Promise<void> {
    return this.#native.loadStateDict(state);
  }
}

/** erf to about 1e-12: Taylor series for |x| < 2.5, continued fraction for erfc beyond. */
export function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  return sign * (1 - Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI)));
}

const activations: Record<NonNullable<HeadConfig["activation"]>, (v: number) => number> = {
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  quick_gelu: (v) => v / (1 + Math.exp(-1.702 * v)),
  relu: (v) => Math.max(0, v),
  tanh: (v) => Math.tanh(v),
};

/**
 * The head's forward pass in plain JavaScript (float64), from its state dict: the reference
 * that tests and the demo check LibTorch against. x is row-major [n, inFeatures].
 */
export function referenceForward(
  config: Pick<HeadConfig, "activation">,
  state: Record<string, TensorData<Float32Array>>,
  x: Float32Array,
  n: number,
): Float64Array {
  const act = activations[config.activation ?? "gelu"];
  const layers = Object.keys(state).filter((k) => k.endsWith(".weight")).length;
  let cur = Float64Array.from(x);
  let width = cur.length / n;
  for (let l = 0; l < layers; l++) {
    const w = state[`layers.${l}.weight`];
    const b = state[`layers.${l}.bias`];
    if (!w || !b) throw new RangeError(`state: layers.${l} is missing`);
    const out = w.shape[0]!;
    const next = new Float64Array(n * out);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < out; o++) {
        let s = b.data[o]!;
        for (let k = 0; k < width; k++) s += cur[i * width + k]! * w.data[o * width + k]!;
        next[i * out + o] = l + 1 < layers ? act(s) : s;
      }
    }
    cur = next;
    width = out;
  }
  return cur;
}
