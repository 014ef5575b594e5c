/**
 * One entry point for "where the samples are": WebDataset shards (a list, a glob, brace notation, a
 * folder of .tar files or a packed set's index.json) or what `resolveImageInputs` reads (a
 * manifest, a folder of images, a glob, an image). Commands that take a manifest take any of these.
 */
import { resolveImageInputs } from "./inputs.js";
import { attachLabels, readLabeledFile, type ManifestOptions, type Sample } from "./manifest.js";
import { isShardSpec, scanShards, type ShardProblem } from "./shards.js";

export interface SourceOptions {
  /** Manifest options (columns, split, requireText, labelsFile); split, requireText and labelsFile
   * apply to shards too. */
  manifest?: ManifestOptions;
  /** Shards: a problem (missing shard, truncated tar, sample without image) is an error naming shard and key. */
  strict?: boolean;
  /** Shards: called per problem (the sample is left out). */
  report?: (p: ShardProblem) => void;
}

export interface SourceResult {
  samples: Sample[];
  /** "shards" when the input named shards (the problems found listing them), else "files". */
  kind: "shards" | "files";
  problems: ShardProblem[];
}

/** The samples of an input; see the module comment. */
export function readSource(input: string | readonly string[], options: SourceOptions = {}): SourceResult {
  const m = options.manifest ?? {};
  if (typeof input !== "string" || isShardSpec(input)) {
    const scan = scanShards(input, {
      ...(options.strict ? { strict: true } : {}),
      ...(options.report ? { report: options.report } : {}),
    });
    let samples = scan.samples;
    if (m.split !== undefined) samples = samples.filter((s) => s.split === m.split);
    if (m.requireText) {
      for (const s of samples)
        if (s.text === null) {
          const p = { shard: s.member!.shard, key: s.member!.name, reason: "missing: no report (txt) in the sample" };
          if (options.strict) throw new Error(`${p.shard} [${p.key}]: ${p.reason}`);
          scan.problems.push(p);
          options.report?.(p);
        }
      samples = samples.filter((s) => s.text !== null);
    }
    if (m.labelsFile) attachLabels(samples, readLabeledFile(m.labelsFile));
    return { samples, kind: "shards", problems: scan.problems };
  }
  return { samples: resolveImageInputs(input, m), kind: "files", problems: [] };
}
