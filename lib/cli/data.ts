/**
 * Data commands: `vilref synth` (synthetic fundus dataset), `vilref embed` (images or report
 * texts → .npy + ids), `vilref data check` (read a manifest or shards, decode every image, report
 * the bad), `vilref data pack` (samples → WebDataset shards of resized images).
 */
import { appendFileSync } from "node:fs";
import { Option } from "commander";
import type { Command } from "commander";
import { readReports } from "../labels/index.js";
import { Loader } from "../data/loader.js";
import { packShards } from "../data/pack.js";
import { readSource } from "../data/source.js";
import type { ShardProblem } from "../data/shards.js";
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
import {
  fileSha256,
  modelFromSpec,
  modelProvenance,
  ViLReFImageEncoder,
  ViLReFTextEncoder,
} from "../model/encoders.js";
import { makeKey, writeMeta } from "../embed/meta.js";
import type { ModelSpecOptions } from "../model/encoders.js";
import type { Device, Dtype } from "../model/vilref.js";
import { DEFAULT_CONTEXT_LENGTH } from "../text/index.js";
import { progress } from "../progress.js";
import {
  UsageError,
  addModelOptions,
  applyThreads,
  batchSizeOption,
  contextLengthOption,
  examples,
  fovOption,
  idFieldOption,
  imageColumnOption,
  imageSizeOption,
  int,
  logOption,
  outOption,
  progressOption,
  progressSpec,
  readModelConfig,
  seedOption,
  splitOption,
  textFieldOption,
  unit,
  vocabOption,
} from "./options.js";
import { contextLengthFor, tokenizerFor } from "../eval/features.js";

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
    const { model, name, origin } = await modelFromSpec(spec, o);
    if (o.imageSize !== undefined && o.imageSize !== model.config.image_resolution)
      await model.resizePositionalEmbedding(o.imageSize);
    return new ViLReFImageEncoder(
      model,
      `${name}:${model.config.image_resolution}:${o.features ?? "projected"}`,
      features(o),
      await modelProvenance(origin),
    );
  },
  async text(spec, o) {
    if (spec.startsWith("pool-head")) throw new Error(`--model ${spec}: pool-head has no text side`);
    const { model, name, origin } = await modelFromSpec(spec, o);
    // a vocabulary other than the one the checkpoint records is refused, as eval's are
    const { tokenizer } = tokenizerFor(spec, model, o.vocab);
    return new ViLReFTextEncoder(
      model,
      `${name}:${o.features ?? "projected"}`,
      tokenizer,
      contextLengthFor(model, o.contextLength),
      features(o),
      await modelProvenance(origin),
    );
  },
};

function say(s: string): void {
  process.stdout.write(s + "\n");
}

function summary(r: EmbedResult): string {
  if (r.upToDate)
    return (
      `${r.out}: up to date (${r.rows} rows, made from the same model, inputs and options: ${r.metaFile}); ` +
      "--force recomputes"
    );
  const rate = r.seconds > 0 ? ` in ${r.seconds.toFixed(1)} s` : "";
  const resumed = r.resumedChunks > 0 ? `, ${r.resumedChunks} chunk(s) resumed` : "";
  const sk = r.skipped.length > 0 ? `, ${r.skipped.length} skipped (listed beside the output)` : "";
  return `wrote ${r.out} [${r.rows}, ${r.dim}], ${r.idsFile} and ${r.metaFile}${rate}${resumed}${sk}`;
}

interface EmbedCliOptions {
  images?: string;
  texts?: string;
  npy?: string;
  model: string;
  config?: string;
  device: Device;
  threads?: number;
  dtype: Dtype;
  features: "projected" | "pre";
  vocab?: string;
  contextLength?: number;
  normalize?: boolean;
  out: string;
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
}

function registerEmbed(program: Command, resolvers: EncoderResolvers): void {
  const cmd = program
    .command("embed")
    .description(
      "embed images (a folder, glob or manifest), report texts, " +
        "or a .npy of preprocessed images / token ids into <out>.npy (float32 N×D) and <out>.ids.txt; resumable",
    )
    .option(
      "--images <input>",
      "a folder (searched recursively), a glob such as 'data/**/*.png' (quote it), " +
        "a manifest (.csv/.tsv/.jsonl), or WebDataset shards ('shards/{000000..000099}.tar', a folder of .tar, " +
        "a packed index.json)",
    )
    .option("--texts <file>", "reports to embed instead: .jsonl, .csv, .tsv or .txt (see vilref labels)")
    .option(
      "--npy <file>",
      "a .npy of preprocessed images (float32 N×3×R×R) or token ids (int64/int32 N×L) instead; rows keep their order",
    )
    .addOption(
      outOption("output .npy; ids are written beside it as .ids.txt", { required: true, placeholder: "file.npy" }),
    );
  addModelOptions(cmd, {
    required: true,
    dtype: true,
    description:
      "a ViLReF checkpoint (.safetensors or released .pt; --config for a .pt), preset:<name>[:seed] " +
      "(random weights), or pool-head[:dim[:seed]]",
  })
    .addOption(
      new Option("--features <which>", "the joint embedding, or the tower's features before the projection")
        .choices(["projected", "pre"])
        .default("projected"),
    )
    .addOption(
      vocabOption({
        description: "vocabulary (vocab.txt) for --texts (default: the one inside the checkpoint, else one beside it)",
      }),
    )
    .addOption(
      contextLengthOption(
        undefined,
        `tokens per text for --texts (default: the model's recorded length, else ${DEFAULT_CONTEXT_LENGTH})`,
      ),
    )
    .option("--normalize", "write L2-normalised rows (norm 1), ready for cosine search")
    .addOption(batchSizeOption(32))
    .option("--chunk-size <n>", "inputs per resumable chunk (a multiple of the batch size)", int({ min: 1 }))
    .addOption(imageSizeOption("input size for models that take any"))
    .addOption(fovOption("crop images to the circular field of view first"))
    .option("--concurrency <n>", "images decoding at once", int({ min: 1 }))
    .option("--strict", "stop at the first bad image instead of skipping it")
    .addOption(logOption())
    .option("--force", "recompute even if the output exists")
    .addOption(progressOption())
    .addOption(imageColumnOption())
    .option("--id-column <name>", "manifest column with the id", "id")
    .addOption(textFieldOption("field or column holding the report (with --texts)"))
    .addOption(idFieldOption("field or column holding the id (with --texts)"));
  examples(cmd, [
    [
      "vilref embed --model model.safetensors --images 'fundus/**/*.jpg' --out emb.npy",
      "every JPEG under fundus/ (quoted: vilref expands the glob); rerun to resume",
    ],
    [
      "vilref embed --model vilref-vit-b-16 --images manifest.csv --features pre --out pre.npy",
      "the released ViT-B/16 by name (vilref models list); features before the projection",
    ],
    [
      "vilref embed --model model.safetensors --texts reports.csv --normalize --out text.npy",
      "report texts through the text tower (the vocabulary inside the checkpoint), rows of norm 1",
    ],
  ]).action((o: EmbedCliOptions) => runEmbed(o, resolvers));
}

async function runEmbed(o: EmbedCliOptions, resolvers: EncoderResolvers): Promise<void> {
  if ([o.images, o.texts, o.npy].filter(Boolean).length !== 1)
    throw new UsageError("give exactly one of --images <input>, --texts <file> or --npy <file>");
  applyThreads(o);
  const config = readModelConfig(o.config);
  const resolve: ResolveOptions = {
    ...(config ? { config } : {}),
    device: o.device,
    dtype: o.dtype,
    features: o.features,
    ...(o.vocab ? { vocab: o.vocab } : {}),
    ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
    ...(o.imageSize !== undefined ? { imageSize: o.imageSize } : {}),
  };
  if (o.npy) {
    const { model, origin } = await modelFromSpec(o.model, resolve);
    const bar = progress(progressSpec(o, { label: "embed", unit: "row" }));
    const r = await embedNpy(model, o.npy, o.out, {
      features: o.features,
      batchSize: o.batchSize,
      normalize: !!o.normalize,
      onProgress: (done: number) => bar.tick(done - bar.count),
    });
    bar.done();
    const key = makeKey({
      kind: `npy-${r.kind}`,
      encoder: { model: await modelProvenance(origin), features: o.features, dtype: model.dtype },
      preprocessing: { input: await fileSha256(o.npy) },
      normalize: !!o.normalize,
      ids: [],
    });
    const meta = await writeMeta(o.out, key, { rows: r.rows, dim: r.dim, input: o.npy });
    say(`wrote ${o.out} [${r.rows}, ${r.dim}] from ${r.kind} in ${o.npy}, and ${meta}`);
    return;
  }
  const common = {
    out: o.out,
    normalize: !!o.normalize,
    batchSize: o.batchSize,
    ...(o.chunkSize !== undefined ? { chunkSize: o.chunkSize } : {}),
    force: !!o.force,
    progress: progressSpec(o),
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
}

export function register(program: Command, resolvers: EncoderResolvers = builtinResolvers): void {
  registerSynth(program);
  registerEmbed(program, resolvers);
  registerDataCommands(program);
}

function registerSynth(program: Command): void {
  program
    .command("synth")
    .description("write a synthetic fundus dataset: images, Chinese reports and gold labels (manifest.jsonl)")
    .requiredOption("--n <count>", "number of cases", int({ min: 0 }))
    .addOption(outOption("output folder (images/ and manifest.jsonl)", { required: true, placeholder: "dir" }))
    .addOption(seedOption("random seed (same seed, same data)"))
    .option("--size <px>", "image side in pixels", int({ min: 32 }), 384)
    .addOption(new Option("--format <fmt>", "image format").choices(["png", "jpeg", "webp", "tiff"]).default("png"))
    .option("--normal-fraction <f>", "fraction of cases with nothing to find", unit())
    .addOption(progressOption())
    .action(
      async (o: {
        n: number;
        out: string;
        seed: number;
        size: number;
        format: "png" | "jpeg" | "webp" | "tiff";
        normalFraction?: number;
        progress: boolean;
      }) => {
        const t0 = performance.now();
        const bar = progress(progressSpec(o, { label: "synth", unit: "img", total: o.n }));
        const cases = await writeSynthDataset(o.out, o.n, o.seed, {
          size: o.size,
          format: o.format,
          ...(o.normalFraction !== undefined ? { normalFraction: o.normalFraction } : {}),
          onProgress: () => bar.tick(),
        });
        bar.done();
        const counts = new Map<string, number>();
        for (const c of cases) for (const k of Object.keys(c.labels)) counts.set(k, (counts.get(k) ?? 0) + 1);
        say(
          `wrote ${cases.length} cases to ${o.out} (manifest.jsonl, images/) ` +
            `in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
        );
        say(
          `labels: ${[...counts]
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}`,
        );
      },
    );
}

/** `vilref data` and its subcommands (check, pack). */
function registerDataCommands(program: Command): void {
  const data = program.command("data").description("datasets: check manifests, images and shards; pack shards");
  data
    .command("check")
    .description("read a manifest or shards, decode every image (evaluation transform) and report bad rows and images")
    .argument(
      "<input...>",
      "a .csv, .tsv or .jsonl manifest, or WebDataset shards (paths, a glob, {000..009} braces, index.json)",
    )
    .addOption(imageColumnOption("column with the image path"))
    .option("--text-column <name>", "column with the report", "text")
    .option("--labels-file <file>", "labels from `vilref labels --out`, joined by id")
    .addOption(splitOption("only rows of this split"))
    .addOption(fovOption("also run the field-of-view crop"))
    .addOption(logOption("append bad images (path and reason) to this run log"))
    .option("--strict", "exit at the first bad image or shard problem")
    .addOption(progressOption())
    .action((inputs: string[], o: CheckCliOptions) => runCheck(inputs, o));
  registerPack(data);
}

interface CheckCliOptions {
  imageColumn: string;
  textColumn: string;
  labelsFile?: string;
  split?: string;
  fov?: boolean;
  log?: string;
  strict?: boolean;
  progress: boolean;
}

/** A line writer: appended to --log when given, else above the progress bar (or to stderr). */
function lineLog(file: string | undefined, fallback: (l: string) => void): (l: string) => void {
  return file ? (l: string) => appendFileSync(file, l + "\n") : fallback;
}

async function runCheck(inputs: string[], o: CheckCliOptions): Promise<void> {
  const input = inputs.length === 1 ? inputs[0]! : inputs;
  let bar: ReturnType<typeof progress> | null = null;
  const log = lineLog(o.log, (l) => (bar ? bar.log(l) : process.stderr.write(l + "\n")));
  const { samples, kind, problems } = readSource(input, {
    manifest: {
      columns: { image: o.imageColumn, text: o.textColumn },
      ...(o.labelsFile ? { labelsFile: o.labelsFile } : {}),
      ...(o.split ? { split: o.split } : {}),
    },
    ...(o.strict ? { strict: true } : {}),
    report: (p) => log(`${new Date().toISOString()} skip ${problemLine(p)}`),
  });
  const b = (bar = progress(progressSpec(o, { label: "data check", unit: "img", total: samples.length })));
  const loader = new Loader(samples, {
    batchSize: 16,
    shuffle: false,
    transform: { size: 64, fov: !!o.fov },
    strict: !!o.strict,
    log: o.log ?? ((l: string) => b.log(l)),
    recycleImages: true, // the batches are only counted
  });
  for await (const batch of loader.epoch(0)) b.tick(batch.samples.length + batch.skipped.length);
  b.done();
  const withText = samples.filter((s) => s.text !== null).length;
  const withLabels = samples.filter((s) => s.labels !== null).length;
  const name = typeof input === "string" ? input : `${input.length} shards`;
  const rows =
    kind === "shards" ? `${samples.length} samples (${problems.length} shard problems)` : `${samples.length} rows`;
  const reasons = Object.entries(loader.stats.byReason)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  say(
    `${name}: ${rows}, ${withText} with text, ${withLabels} with labels; ` +
      `images decoded ${loader.stats.decoded}, skipped ` +
      `${loader.stats.skipped}${loader.stats.skipped ? ` (${reasons})` : ""}`,
  );
  if (loader.stats.skipped > 0 || problems.length > 0) process.exitCode = 1;
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

function registerPack(data: Command): void {
  const cmd = data
    .command("pack")
    .description(
      "write WebDataset shards (NNNNNN.tar: KEY.jpg resized once, KEY.txt report, " +
        "KEY.json id/labels/eye/patient/split) and index.json; resumable, byte-identical across runs",
    )
    .argument("<input...>", "a manifest, a folder or glob of images, or shards (anything `data check` reads)")
    .addOption(outOption("output folder", { required: true, placeholder: "dir" }))
    .option("--samples-per-shard <n>", "samples per shard (the last may hold fewer)", int({ min: 1 }), 1000)
    .option(
      "--resolution <px>",
      "the model's input resolution (the stored size defaults to 1.15 × it)",
      int({ min: 8 }),
      224,
    )
    .option("--size <px>", "short side of the stored images (default 1.15 × --resolution)", int({ min: 8 }))
    .option("--quality <q>", "JPEG quality of the stored images", int({ min: 1, max: 100 }), 90)
    .addOption(fovOption("crop to the circular field of view first"))
    .option("--no-shuffle", "keep the input order (default: a permutation from --seed)")
    .addOption(seedOption("seed of the permutation"))
    .addOption(
      new Option("--labels <source>", "labels: the input's, else the expert rules on the report (auto)")
        .choices(["auto", "rules", "manifest", "none"])
        .default("auto"),
    )
    .option("--rules <file>", "expert rules file (default: the packaged rules)")
    .addOption(imageColumnOption())
    .option("--text-column <name>", "manifest column with the report", "text")
    .addOption(splitOption("only rows of this split"))
    .option("--concurrency <n>", "images processed at once (default 2 × cores)", int({ min: 1 }))
    .addOption(logOption())
    .option("--strict", "stop at the first bad image")
    .option("--force", "start over even when finished shards of the same inputs exist")
    .addOption(progressOption());
  examples(cmd, [
    [
      "vilref data pack manifest.csv --out shards/ --resolution 224",
      "shards of 1000 samples, images stored at a short side of 258 px",
    ],
    ["vilref data check 'shards/{000000..000009}.tar'", "decode every image of ten shards"],
  ]).action((inputs: string[], o: PackCliOptions) => runPack(inputs, o));
}

async function runPack(inputs: string[], o: PackCliOptions): Promise<void> {
  const input = inputs.length === 1 ? inputs[0]! : inputs;
  let bar: ReturnType<typeof progress> | null = null;
  const log = lineLog(o.log, (l) => (bar ? bar.log(l) : process.stderr.write(l + "\n")));
  const { samples } = readSource(input, {
    manifest: { columns: { image: o.imageColumn, text: o.textColumn }, ...(o.split ? { split: o.split } : {}) },
    ...(o.strict ? { strict: true } : {}),
    report: (p) => log(`${new Date().toISOString()} skip ${problemLine(p)}`),
  });
  if (samples.length === 0) throw new Error(`data pack: no samples in ${String(input)}`);
  const b = (bar = progress(progressSpec(o, { label: "data pack", unit: "img", total: samples.length })));
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
    onProgress: (p) => {
      b.tick(p.done - b.count);
      b.status(`${p.shards}/${p.shardsTotal} shards`);
    },
  });
  b.done();
  const sk = r.index.skipped.length;
  say(
    r.upToDate
      ? `${r.indexFile}: up to date (${r.index.samples} samples in ${r.index.shards.length} shards); --force repacks`
      : `wrote ${r.index.samples} samples in ${r.index.shards.length} shards (${r.written} written, ` +
          `${r.kept} kept) and ${r.indexFile} in ` +
          `${r.seconds.toFixed(1)} s${sk ? `; ${sk} images skipped (listed in the index)` : ""}`,
  );
  if (r.index.samples === 0) process.exitCode = 1;
}

function problemLine(p: ShardProblem): string {
  return `${p.shard}${p.key !== null ? ` [${p.key}]` : ""}: ${p.reason}`;
}
