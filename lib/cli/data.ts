/**
 * Data commands: `vilref synth` (synthetic fundus dataset), `vilref embed` (images or report
 * texts → .npy + ids), `vilref data check` (read a manifest or shards, decode every image, report
 * the bad), `vilref data pack` (samples → WebDataset shards of resized images).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { readReports } from "../labels/index.js";
import { Loader } from "../data/loader.js";
import { packShards } from "../data/pack.js";
import { readSource } from "../data/source.js";
import type { ShardProblem } from "../data/shards.js";
import { formatDuration } from "../embed/progress.js";
import {
  embedImages,
  embedTexts,
  PooledHeadEncoder,
  type EmbedResult,
  type ImageEncoder,
  type TextEncoder,
} from "../embed/index.js";
import { writeSynthDataset } from "../synth/index.js";
import { embedNpy } from "../model/embed-npy.js";
import { modelFromSpec, ViLReFImageEncoder, ViLReFTextEncoder } from "../model/encoders.js";
import type { ModelSpecOptions } from "../model/encoders.js";
import type { Device, Dtype } from "../model/vilref.js";
import { BertTokenizer, DEFAULT_CONTEXT_LENGTH } from "../text/index.js";
import { appendFileSync, readFileSync } from "node:fs";

export interface ResolveOptions extends ModelSpecOptions {
  imageSize?: number;
  features?: "projected" | "pre";
  vocab?: string;
  contextLength?: number;
}

/** How `embed --model <spec>` becomes an encoder. */
export interface EncoderResolvers {
  image(spec: string, options: ResolveOptions): Promise<ImageEncoder>;
  text(spec: string, options: ResolveOptions): Promise<TextEncoder>;
}

const features = (o: ResolveOptions) => (o.features ? { features: o.features } : {});

/**
 * A ViLReF checkpoint (.safetensors or released .pt), `preset:<name>[:seed]` (random weights), or
 * `pool-head[:dim[:seed]]`: pooled image statistics through a LibTorch Head (a small real encoder
 * for smoke tests; no text side).
 */
export const builtinResolvers: EncoderResolvers = {
  async image(spec, o) {
    const m = /^pool-head(?::(\d+))?(?::(\d+))?$/.exec(spec);
    if (m)
      return new PooledHeadEncoder({
        dim: m[1] ? Number(m[1]) : 64,
        seed: m[2] ? Number(m[2]) : 0,
        imageSize: o.imageSize ?? 224,
      });
    const { model, name } = await modelFromSpec(spec, o);
    if (o.imageSize !== undefined && o.imageSize !== model.config.image_resolution)
      await model.resizePositionalEmbedding(o.imageSize);
    return new ViLReFImageEncoder(
      model,
      `${name}:${model.config.image_resolution}:${o.features ?? "projected"}`,
      features(o),
    );
  },
  async text(spec, o) {
    if (spec.startsWith("pool-head")) throw new Error(`--model ${spec}: pool-head has no text side`);
    if (!o.vocab) throw new Error("embed --texts: give the model's vocabulary with --vocab <vocab.txt>");
    const { model, name } = await modelFromSpec(spec, o);
    return new ViLReFTextEncoder(
      model,
      `${name}:${o.features ?? "projected"}`,
      BertTokenizer.fromFile(o.vocab),
      o.contextLength ?? DEFAULT_CONTEXT_LENGTH,
      features(o),
    );
  },
};

function int(min: number) {
  return (v: string) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) throw new InvalidArgumentError(`expected a whole number ≥ ${min}`);
    return x;
  };
}

function say(s: string): void {
  process.stdout.write(s + "\n");
}

function summary(r: EmbedResult): string {
  if (r.upToDate) return `${r.out}: up to date (${r.rows} rows); --force recomputes`;
  const rate = r.seconds > 0 ? ` in ${r.seconds.toFixed(1)} s` : "";
  const resumed = r.resumedChunks > 0 ? `, ${r.resumedChunks} chunk(s) resumed` : "";
  const sk = r.skipped.length > 0 ? `, ${r.skipped.length} skipped (listed beside the output)` : "";
  return `wrote ${r.out} [${r.rows}, ${r.dim}] and ${r.idsFile}${rate}${resumed}${sk}`;
}

export function register(program: Command, resolvers: EncoderResolvers = builtinResolvers): void {
  program
    .command("synth")
    .description("write a synthetic fundus dataset: images, Chinese reports and gold labels (manifest.jsonl)")
    .requiredOption("--n <count>", "number of cases", int(0))
    .requiredOption("--out <dir>", "output folder (images/ and manifest.jsonl)")
    .option("--seed <seed>", "random seed (same seed, same data)", int(0), 0)
    .option("--size <px>", "image side in pixels", int(32), 384)
    .addOption(new Option("--format <fmt>", "image format").choices(["png", "jpeg", "webp", "tiff"]).default("png"))
    .option("--normal-fraction <f>", "fraction of cases with nothing to find", (v) => {
      const x = Number(v);
      if (!(x >= 0 && x <= 1)) throw new InvalidArgumentError("expected a number between 0 and 1");
      return x;
    })
    .action(
      async (o: {
        n: number;
        out: string;
        seed: number;
        size: number;
        format: "png" | "jpeg" | "webp" | "tiff";
        normalFraction?: number;
      }) => {
        const t0 = performance.now();
        const cases = await writeSynthDataset(o.out, o.n, o.seed, {
          size: o.size,
          format: o.format,
          ...(o.normalFraction !== undefined ? { normalFraction: o.normalFraction } : {}),
        });
        const counts = new Map<string, number>();
        for (const c of cases) for (const k of Object.keys(c.labels)) counts.set(k, (counts.get(k) ?? 0) + 1);
        say(
          `wrote ${cases.length} cases to ${o.out} (manifest.jsonl, images/) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
        say(
          `labels: ${[...counts]
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}`,
        );
      },
    );

  program
    .command("embed")
    .description(
      "embed images (a folder, glob or manifest), report texts, or a .npy of preprocessed images / token ids into <out>.npy (float32 N×D) and <out>.ids.txt; resumable",
    )
    .option(
      "--images <input>",
      "a folder (searched recursively), a glob such as 'data/**/*.png', a manifest (.csv/.tsv/.jsonl), or WebDataset shards ('shards/{000000..000099}.tar', a folder of .tar, a packed index.json)",
    )
    .option("--texts <file>", "reports to embed instead: .jsonl, .csv or .txt (see vilref labels)")
    .option(
      "--npy <file>",
      "a .npy of preprocessed images (float32 N×3×R×R) or token ids (int64/int32 N×L) instead; rows keep their order",
    )
    .requiredOption("--out <file.npy>", "output .npy; ids are written beside it as .ids.txt")
    .requiredOption(
      "--model <spec>",
      "a ViLReF checkpoint (.safetensors or released .pt), preset:<name>[:seed] (random weights), or pool-head[:dim[:seed]]",
    )
    .option("--config <file>", "model config JSON for a released .pt (head widths are not in the weights)")
    .addOption(
      new Option("--features <which>", "the joint embedding, or the tower's features before the projection")
        .choices(["projected", "pre"])
        .default("projected"),
    )
    .option("--vocab <file>", "vocabulary (vocab.txt) for --texts")
    .option("--context-length <n>", "tokens per text for --texts", int(2), DEFAULT_CONTEXT_LENGTH)
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .addOption(
      new Option("--dtype <dtype>", "weights' precision (bfloat16/float16 on CUDA)")
        .choices(["float32", "bfloat16", "float16"])
        .default("float32"),
    )
    .option("--batch-size <n>", "inputs per forward pass", int(1), 32)
    .option("--chunk-size <n>", "inputs per resumable chunk (a multiple of the batch size)", int(1))
    .option("--image-size <px>", "input size for models that take any", int(8))
    .option("--fov", "crop images to the circular field of view first")
    .option("--concurrency <n>", "images decoding at once", int(1))
    .option("--strict", "stop at the first bad image instead of skipping it")
    .option("--log <file>", "append skipped images (path and reason) to this run log")
    .option("--force", "recompute even if the output exists")
    .option("--no-progress", "no progress bar")
    .option("--image-column <name>", "manifest column with the image path", "image")
    .option("--id-column <name>", "manifest column with the id", "id")
    .option("--text-field <name>", "field or column holding the report (with --texts)", "text")
    .option("--id-field <name>", "field or column holding the id (with --texts)", "id")
    .action(
      async (o: {
        images?: string;
        texts?: string;
        npy?: string;
        config?: string;
        features: "projected" | "pre";
        vocab?: string;
        contextLength: number;
        device: string;
        dtype: string;
        out: string;
        model: string;
        batchSize: number;
        chunkSize?: number;
        imageSize?: number;
        fov?: boolean;
        concurrency?: number;
        strict?: boolean;
        log?: string;
        force?: boolean;
        progress: boolean;
        imageColumn: string;
        idColumn: string;
        textField: string;
        idField: string;
      }) => {
        if ([o.images, o.texts, o.npy].filter(Boolean).length !== 1)
          throw new Error("embed: give exactly one of --images <input>, --texts <file> or --npy <file>");
        let config: ModelSpecOptions["config"];
        if (o.config) {
          try {
            config = JSON.parse(readFileSync(o.config, "utf8"));
          } catch (e) {
            throw new Error(`--config ${o.config}: ${(e as Error).message}`);
          }
        }
        const resolve: ResolveOptions = {
          ...(config ? { config } : {}),
          device: o.device as Device,
          dtype: o.dtype as Dtype,
          features: o.features,
          ...(o.vocab ? { vocab: o.vocab } : {}),
          contextLength: o.contextLength,
          ...(o.imageSize !== undefined ? { imageSize: o.imageSize } : {}),
        };
        if (o.npy) {
          const { model } = await modelFromSpec(o.model, resolve);
          const r = await embedNpy(model, o.npy, o.out, {
            features: o.features,
            batchSize: o.batchSize,
            ...(o.progress
              ? { onProgress: (d: number, n: number) => process.stderr.write(`\rvilref embed: ${d}/${n}`) }
              : {}),
          });
          if (o.progress) process.stderr.write("\n");
          say(`wrote ${o.out} [${r.rows}, ${r.dim}] from ${r.kind} in ${o.npy}`);
          return;
        }
        const common = {
          out: o.out,
          batchSize: o.batchSize,
          ...(o.chunkSize !== undefined ? { chunkSize: o.chunkSize } : {}),
          force: !!o.force,
          progress: o.progress ? {} : (false as const),
          info: (l: string) => process.stderr.write(`vilref embed: ${l}\n`),
        };
        if (o.texts) {
          const recs = readReports(o.texts, { textField: o.textField, idField: o.idField });
          const records = recs.map((r) => {
            if (typeof r.text !== "string")
              throw new Error(`${o.texts}:${r.line}: no report text in field ${JSON.stringify(o.textField)}`);
            return { id: r.id ?? String(r.line), text: r.text };
          });
          const enc = await resolvers.text(o.model, resolve);
          say(summary(await embedTexts(records, enc, common)));
          return;
        }
        const { samples } = readSource(o.images!, {
          manifest: { columns: { image: o.imageColumn, id: o.idColumn } },
          ...(o.strict ? { strict: true } : {}),
          report: (p) => process.stderr.write(`vilref embed: skip ${problemLine(p)}\n`),
        });
        const enc = await resolvers.image(o.model, resolve);
        const r = await embedImages(samples, enc, {
          ...common,
          transform: { fov: !!o.fov },
          strict: !!o.strict,
          ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
          log: o.log ?? ((l: string) => process.stderr.write(`vilref embed: ${l}\n`)),
        });
        say(summary(r));
      },
    );

  const data = program.command("data").description("datasets: check manifests, images and shards; pack shards");
  data
    .command("check")
    .description("read a manifest or shards, decode every image (evaluation transform) and report bad rows and images")
    .argument(
      "<input...>",
      "a .csv, .tsv or .jsonl manifest, or WebDataset shards (paths, a glob, {000..009} braces, index.json)",
    )
    .option("--image-column <name>", "column with the image path", "image")
    .option("--text-column <name>", "column with the report", "text")
    .option("--labels-file <file>", "labels from `vilref labels --out`, joined by id")
    .option("--split <name>", "only rows of this split")
    .option("--fov", "also run the field-of-view crop")
    .option("--log <file>", "append bad images (path and reason) to this run log")
    .option("--strict", "exit at the first bad image or shard problem")
    .action(
      async (
        inputs: string[],
        o: {
          imageColumn: string;
          textColumn: string;
          labelsFile?: string;
          split?: string;
          fov?: boolean;
          log?: string;
          strict?: boolean;
        },
      ) => {
        const input = inputs.length === 1 ? inputs[0]! : inputs;
        const log = o.log
          ? (l: string) => appendFileSync(o.log!, l + "\n")
          : (l: string) => process.stderr.write(l + "\n");
        const { samples, kind, problems } = readSource(input, {
          manifest: {
            columns: { image: o.imageColumn, text: o.textColumn },
            ...(o.labelsFile ? { labelsFile: o.labelsFile } : {}),
            ...(o.split ? { split: o.split } : {}),
          },
          ...(o.strict ? { strict: true } : {}),
          report: (p) => log(`${new Date().toISOString()} skip ${problemLine(p)}`),
        });
        const loader = new Loader(samples, {
          batchSize: 16,
          shuffle: false,
          transform: { size: 64, fov: !!o.fov },
          strict: !!o.strict,
          log,
        });
        for await (const _ of loader.epoch(0)) void _;
        const withText = samples.filter((s) => s.text !== null).length;
        const withLabels = samples.filter((s) => s.labels !== null).length;
        const name = typeof input === "string" ? input : `${input.length} shards`;
        const rows =
          kind === "shards"
            ? `${samples.length} samples (${problems.length} shard problems)`
            : `${samples.length} rows`;
        say(
          `${name}: ${rows}, ${withText} with text, ${withLabels} with labels; images decoded ${loader.stats.decoded}, skipped ${loader.stats.skipped}${
            loader.stats.skipped
              ? ` (${Object.entries(loader.stats.byReason)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(", ")})`
              : ""
          }`,
        );
        if (loader.stats.skipped > 0 || problems.length > 0) process.exitCode = 1;
      },
    );

  data
    .command("pack")
    .description(
      "write WebDataset shards (NNNNNN.tar: KEY.jpg resized once, KEY.txt report, KEY.json id/labels/eye/patient/split) and index.json; resumable, byte-identical across runs",
    )
    .argument("<input...>", "a manifest, a folder or glob of images, or shards (anything `data check` reads)")
    .requiredOption("--out <dir>", "output folder")
    .option("--samples-per-shard <n>", "samples per shard (the last may hold fewer)", int(1), 1000)
    .option("--resolution <px>", "the model's input resolution (the stored size defaults to 1.15 × it)", int(8), 224)
    .option("--size <px>", "short side of the stored images (default 1.15 × --resolution)", int(8))
    .option("--quality <q>", "JPEG quality of the stored images", int(1), 90)
    .option("--fov", "crop to the circular field of view first")
    .option("--no-shuffle", "keep the input order (default: a permutation from --seed)")
    .option("--seed <seed>", "seed of the permutation", int(0), 0)
    .addOption(
      new Option("--labels <source>", "labels: the input's, else the expert rules on the report (auto)")
        .choices(["auto", "rules", "manifest", "none"])
        .default("auto"),
    )
    .option("--rules <file>", "expert rules file (default: the packaged rules)")
    .option("--image-column <name>", "manifest column with the image path", "image")
    .option("--text-column <name>", "manifest column with the report", "text")
    .option("--split <name>", "only rows of this split")
    .option("--concurrency <n>", "images processed at once (default 2 × cores)", int(1))
    .option("--log <file>", "append skipped images (path and reason) to this run log")
    .option("--strict", "stop at the first bad image")
    .option("--force", "start over even when finished shards of the same inputs exist")
    .option("--no-progress", "no progress line")
    .action(async (inputs: string[], o: PackCliOptions) => {
      const input = inputs.length === 1 ? inputs[0]! : inputs;
      const log = o.log
        ? (l: string) => appendFileSync(o.log!, l + "\n")
        : (l: string) => process.stderr.write(l + "\n");
      const { samples } = readSource(input, {
        manifest: { columns: { image: o.imageColumn, text: o.textColumn }, ...(o.split ? { split: o.split } : {}) },
        ...(o.strict ? { strict: true } : {}),
        report: (p) => log(`${new Date().toISOString()} skip ${problemLine(p)}`),
      });
      if (samples.length === 0) throw new Error(`data pack: no samples in ${String(input)}`);
      let last = 0;
      const r = await packShards(samples, {
        out: o.out,
        samplesPerShard: o.samplesPerShard,
        resolution: o.resolution,
        ...(o.size !== undefined ? { size: o.size } : {}),
        quality: o.quality,
        fov: !!o.fov,
        shuffle: o.shuffle,
        seed: o.seed,
        labels: o.labels,
        ...(o.rules ? { rules: o.rules } : {}),
        ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
        strict: !!o.strict,
        force: !!o.force,
        log,
        ...(o.progress
          ? {
              onProgress: (p) => {
                const now = performance.now();
                if (now - last < 500 && p.done < p.total) return;
                last = now;
                process.stderr.write(
                  `\rvilref data pack: ${p.done}/${p.total} images, ${p.shards}/${p.shardsTotal} shards, ${p.imagesPerSecond.toFixed(0)} img/s, ETA ${formatDuration(p.etaSeconds)}\x1b[K`,
                );
              },
            }
          : {}),
      });
      if (o.progress) process.stderr.write("\n");
      const sk = r.index.skipped.length;
      say(
        r.upToDate
          ? `${r.indexFile}: up to date (${r.index.samples} samples in ${r.index.shards.length} shards); --force repacks`
          : `wrote ${r.index.samples} samples in ${r.index.shards.length} shards (${r.written} written, ${r.kept} kept) and ${r.indexFile} in ${r.seconds.toFixed(1)} s${sk ? `; ${sk} images skipped (listed in the index)` : ""}`,
      );
      if (r.index.samples === 0) process.exitCode = 1;
    });
}

interface PackCliOptions {
  out: string;
  samplesPerShard: number;
  resolution: number;
  size?: number;
  quality: number;
  fov?: boolean;
  shuffle: boolean;
  seed: number;
  labels: "auto" | "rules" | "manifest" | "none";
  rules?: string;
  imageColumn: string;
  textColumn: string;
  split?: string;
  concurrency?: number;
  log?: string;
  strict?: boolean;
  force?: boolean;
  progress: boolean;
}

function problemLine(p: ShardProblem): string {
  return `${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`;
}
