/**
 * The fuzz harness's vocabulary: a target makes cases from a seeded generator and runs them; a case
 * is malformed by construction (`mustFail`: success is a "silent success") or a mutation that may or
 * may not still be valid (either outcome is fine, but a success must pass `check`). Every error must
 * name the culprit (`culprit`: at least the file's name).
 */
import type { Rng } from "../../lib/data/rng.js";

export interface FuzzCase {
  /** What the generator did, e.g. "pt/bad-view/offset". */
  kind: string;
  /** Malformed by construction: an Error is the only right outcome. */
  mustFail: boolean;
  /** The input handed to the code under test (written to `file` in a scratch folder first). */
  bytes: Uint8Array;
  /** File name (the worker writes the bytes there; errors must name it). */
  file: string;
  /** What an error message must match besides the file's name (the tensor, entry, line, field). */
  culprit?: RegExp;
  /** For a success: "" when the result is right, else what is wrong. */
  check?: (result: unknown) => string;
  /** Extra data a target's run needs (e.g. which reader). */
  extra?: Record<string, unknown>;
}

export type Outcome =
  | { status: "ok" }
  | { status: "error"; message: string }
  | { status: "silent"; detail: string }
  | { status: "wrong-result"; detail: string }
  | { status: "bad-error"; message: string; detail: string };

export interface Target {
  name: string;
  /** Once per worker. */
  setup(scratch: string): Promise<void>;
  generate(rng: Rng): FuzzCase;
  /** Runs the case on the file at `path`; resolves with the result or throws the error. */
  run(c: FuzzCase, path: string): Promise<unknown>;
}

/** Judges one run: the case's expectation against what happened. */
export async function judge(target: Target, c: FuzzCase, path: string): Promise<Outcome> {
  let result: unknown;
  try {
    result = await target.run(c, path);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof Error)) return { status: "bad-error", message, detail: "a thrown non-Error" };
    if (!message.includes(c.file)) return { status: "bad-error", message, detail: `does not name ${c.file}` };
    if (c.culprit && !c.culprit.test(message))
      return { status: "bad-error", message, detail: `does not match ${String(c.culprit)}` };
    if (/Maximum call stack|INTERNAL ASSERT|report a bug to PyTorch|frame #\d/.test(message))
      return { status: "bad-error", message, detail: "an internal error reached the user" };
    return { status: "error", message };
  }
  if (c.mustFail) return { status: "silent", detail: "a malformed input was accepted" };
  const problem = c.check ? c.check(result) : "";
  return problem ? { status: "wrong-result", detail: problem } : { status: "ok" };
}

// ---- byte mutations ----------------------------------------------------------------------------

export function flipBits(bytes: Uint8Array, rng: Rng, from = 0, to = bytes.length, count = rng.int(1, 4)): Uint8Array {
  const out = Uint8Array.from(bytes);
  if (to <= from) return out;
  // distinct bits, so that two flips never cancel
  const bits = new Set<number>();
  while (bits.size < Math.min(count, 8 * (to - from))) bits.add(8 * rng.int(from, to - 1) + rng.int(0, 7));
  for (const b of bits) out[b >> 3]! ^= 1 << (b & 7);
  return out;
}

export function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, 255);
  return out;
}

/** Overwrites, inserts, deletes or duplicates a few spans (an AFL-like havoc step). */
export function havoc(bytes: Uint8Array, rng: Rng, interesting: readonly number[] = []): Uint8Array {
  let out = Array.from(bytes);
  const steps = rng.int(1, 6);
  for (let s = 0; s < steps; s++) {
    const at = out.length === 0 ? 0 : rng.int(0, out.length - 1);
    switch (rng.int(0, 6)) {
      case 0:
        if (out.length) out[at] = rng.int(0, 255);
        break;
      case 1:
        out.splice(at, rng.int(1, 8));
        break;
      case 2:
        out.splice(at, 0, ...Array.from(randomBytes(rng, rng.int(1, 8))));
        break;
      case 3: {
        const len = rng.int(1, 32);
        out.splice(rng.int(0, out.length), 0, ...out.slice(at, at + len));
        break;
      }
      case 4:
        if (out.length) out[at] = interesting.length ? rng.pick(interesting) : 0xff;
        break;
      case 5:
        if (out.length) out[at] = rng.pick([0, 1, 0x7f, 0x80, 0xff]);
        break;
      default:
        out = out.slice(0, rng.int(0, out.length));
    }
  }
  return Uint8Array.from(out);
}

/** Replaces the `count`-byte little-endian integer at `at` with an edge value. */
export function edgeInt(bytes: Uint8Array, rng: Rng, at: number, count: 2 | 4 | 8): Uint8Array {
  const out = Uint8Array.from(bytes);
  const view = new DataView(out.buffer);
  const edges = [0n, 1n, 2n ** BigInt(8 * count) - 1n, 2n ** BigInt(8 * count - 1), BigInt(rng.int(0, 1 << 20))];
  const v = rng.pick(edges);
  if (at + count > out.length) return out;
  if (count === 2) view.setUint16(at, Number(v & 0xffffn), true);
  else if (count === 4) view.setUint32(at, Number(v & 0xffffffffn), true);
  else view.setBigUint64(at, v, true);
  return out;
}
