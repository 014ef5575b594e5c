/** The fuzz targets and how often each is drawn (a case's target follows from its seed and index). */
import { hashSeed, mulberry32 } from "../../../lib/data/rng.js";
import type { Rng } from "../../../lib/data/rng.js";
import type { FuzzCase, Target } from "../case.js";
import { configTarget, imageTarget, manifestTarget, safetensorsTarget } from "./others.js";
import { ptTarget } from "./pt.js";

export const TARGETS: Array<[Target, number]> = [
  [ptTarget, 55],
  [safetensorsTarget, 15],
  [imageTarget, 10],
  [manifestTarget, 10],
  [configTarget, 10],
];

export function targetNamed(name: string): Target {
  const t = TARGETS.find(([x]) => x.name === name);
  if (!t) throw new RangeError(`unknown fuzz target "${name}" (${TARGETS.map(([x]) => x.name).join(", ")})`);
  return t[0];
}

/** Case `index` of run `seed`, restricted to `only` targets when given: the same on every machine. */
export function caseAt(seed: number, index: number, only?: readonly string[]): { target: Target; case: FuzzCase } {
  const rng: Rng = mulberry32(hashSeed(seed, index));
  const pool = TARGETS.filter(([t]) => !only || only.includes(t.name));
  const total = pool.reduce((a, [, w]) => a + w, 0);
  let x = rng.int(0, total - 1);
  let target = pool[0]![0];
  for (const [t, w] of pool) {
    if (x < w) {
      target = t;
      break;
    }
    x -= w;
  }
  return { target, case: target.generate(rng) };
}
