/**
 * Provenance of an embedding output: `<out base>.meta.json` beside `<out>.npy` and `.ids.txt`
 * records what the rows were computed from — the model (its file's sha256, or the preset and
 * seed), the feature kind, the preprocessing, whether rows are L2-normalised, a hash of the input
 * ids, and the vilref version — so a rerun can tell "up to date" from "made by something else".
 *
 * The record has two parts: `key`, which must be equal for an output (or a resumed run's finished
 * chunks) to be reused, and `info` (file paths, rows, time), which is only reported.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { atomicWriteFile } from "../io/atomic.js";
import { parseJsonText } from "../io/json.js";
import { VERSION } from "../version.js";

/** What must match for rows to be reused. */
export interface EmbedKey {
  vilref: string;
  /** "image" | "text" (streamed inputs) or "npy-images" | "npy-ids" (a .npy of inputs). */
  kind: string;
  /** The encoder: the model's provenance (sha256 or preset), features, resolution, tokenizer... */
  encoder: unknown;
  /** The image transform, or the tokenizer settings. */
  preprocessing: unknown;
  normalize: boolean;
  ids: { count: number; sha256: string };
}

export interface EmbedMeta {
  format: 1;
  key: EmbedKey;
  info: Record<string, unknown>;
}

/** `<out>.npy` → `<out>.meta.json`. */
export function metaPathFor(out: string): string {
  return (out.endsWith(".npy") ? out.slice(0, -4) : out) + ".meta.json";
}

export function idsHash(ids: readonly string[]): { count: number; sha256: string } {
  return { count: ids.length, sha256: createHash("sha256").update(ids.join("\n")).digest("hex") };
}

export function makeKey(k: Omit<EmbedKey, "vilref" | "ids"> & { ids: readonly string[] }): EmbedKey {
  return {
    vilref: VERSION,
    kind: k.kind,
    encoder: k.encoder,
    preprocessing: k.preprocessing,
    normalize: k.normalize,
    ids: idsHash(k.ids),
  };
}

/** JSON with object keys sorted (a canonical form for comparing records). */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

function short(v: unknown): string {
  const s = typeof v === "string" ? (/^[0-9a-f]{64}$/.test(v) ? `${v.slice(0, 12)}…` : v) : canonical(v);
  return s === undefined ? "none" : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const WHAT: Record<string, string> = {
  vilref: "the vilref version",
  kind: "the kind of input",
  encoder: "the model",
  preprocessing: "the preprocessing",
  normalize: "--normalize",
  ids: "the input list",
};

/** Where two records differ, in words: `the model changed (encoder.model.sha256: 1f2e… → 9a8b…)`. */
export function keyDifferences(was: unknown, now: EmbedKey): string[] {
  if (!was || typeof was !== "object") return ["no provenance record"];
  const leaves = new Map<string, string[]>();
  const walk = (a: unknown, b: unknown, path: string[]): void => {
    if (canonical(a) === canonical(b)) return;
    const objs = a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b);
    if (objs && path.length < 4) {
      const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
      for (const k of [...keys].sort())
        walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], [...path, k]);
      return;
    }
    const top = path[0] ?? "";
    leaves.set(top, [...(leaves.get(top) ?? []), `${path.join(".")}: ${short(a)} → ${short(b)}`]);
  };
  walk(was, now, []);
  return [...leaves].map(([top, ds]) => `${WHAT[top] ?? (top || "the record")} changed (${ds.join("; ")})`);
}

/** The key of an existing output's record, or null when there is none (or it cannot be read). */
export function readMetaKey(out: string): unknown {
  const f = metaPathFor(out);
  if (!existsSync(f)) return null;
  try {
    return (parseJsonText(readFileSync(f, "utf8")) as EmbedMeta).key ?? null;
  } catch {
    return null;
  }
}

/** One line saying why a record does not match: the first few differences. */
export function mismatchReason(was: unknown, now: EmbedKey, what: string): string | null {
  if (was === null) return `${what} has no provenance record`;
  const d = keyDifferences(was, now);
  if (d.length === 0) return null;
  return `${what}: ${d.slice(0, 3).join("; ")}${d.length > 3 ? `; and ${d.length - 3} more` : ""}`;
}

/** Writes `<out base>.meta.json` (atomically). */
export async function writeMeta(out: string, key: EmbedKey, info: Record<string, unknown>): Promise<string> {
  const meta: EmbedMeta = { format: 1, key, info: { ...info, time: new Date().toISOString() } };
  const file = metaPathFor(out);
  await atomicWriteFile(file, new TextEncoder().encode(JSON.stringify(meta, null, 2) + "\n"));
  return file;
}
