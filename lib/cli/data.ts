/**
 * Data commands: `vilref synth` (synthetic fundus dataset), `vilref embed` (images or report
 * texts → .npy + ids), `vilref data check` (read a manifest, decode every image, report the bad).
 */
import { Option } from "commander";
import type { Command } from "commander";
import { readReports } from "../labels/index.js";
import { resolveImageInputs } from "../data/inputs.js";
import { Loader } from "../data/loader.js";
import { readManifest } from "../data/manifest.js";
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
import { tokenizerFor } from "../eval/features.js";

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
      // a vocabulary other than the one the checkpoint records is refused, as eval's are
      tokenizerFor(spec, model.vocabSha256, o.vocab).tokenizer,
      o.contextLength ?? DEFAULT_CONTEXT_LENGTH,
      features(o),
    );
  },
};

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
  contextLength: number;
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
      "embed images (a folder, glob or manifest), report texts, or a .npy of preprocessed images / token ids into <out>.npy (float32 N×D) and <out>.ids.txt; resumable",
    )
    .option(
      "--images <input>",
      "a folder (searched recursively), a glob such as 'data/**/*.png' (quote it), or a manifest (.csv/.tsv/.jsonl)",
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
      "a ViLReF checkpoint (.safetensors or released .pt; --config for a .pt), preset:<name>[:seed] (random weights), or pool-head[:dim[:seed]]",
  })
    .addOption(
      new Option("--features <which>", "the joint embedding, or the tower's features before the projection")
        .choices(["projected", "pre"])
        .default("projected"),
    )
    .addOption(vocabOption({ description: "vocabulary (vocab.txt) for --texts" }))
    .addOption(contextLengthOption(DEFAULT_CONTEXT_LENGTH, "tokens per text for --texts"))
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
      "vilref embed --model vilref-vit-b-16.pt --config vit-b-16.json --images manifest.csv --features pre --out pre.npy",
      "a released checkpoint; features before the projection",
    ],
    [
      "vilref embed --model model.safetensors --texts reports.csv --vocab vocab.txt --out text.npy",
      "report texts through the text tower",
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
    contextLength: o.contextLength,
    ...(o.imageSize !== undefined ? { imageSize: o.imageSize } : {}),
  };
  if (o.npy) {
    const { model } = await modelFromSpec(o.model, resolve);
    const bar = progress(progressSpec(o, { label: "embed", unit: "row" }));
    const r = await embedNpy(model, o.npy, o.out, {
      features: o.features,
      batchSize: o.batchSize,
      onProgress: (done: number) => bar.tick(done - bar.count),
    });
    bar.done();
    say(`wrote ${o.out} [${r.rows}, ${r.dim}] from ${r.kind} in ${o.npy}`);
    return;
  }
  const common = {
    out: o.out,
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
  const samples = resolveImageInputs(o.images!, { columns: { image: o.imageColumn, id: o.idColumn } });
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
}

/** `vilref data` and its subcommands (check). */
function registerDataCommands(program: Command): void {
  const data = program.command("data").description("datasets: check manifests and images");
  data
    .command("check")
    .description("read a manifest, decode every image (evaluation transform) and report bad rows and images")
    .argument("<manifest>", "a .csv, .tsv or .jsonl manifest")
    .addOption(imageColumnOption("column with the image path"))
    .option("--text-column <name>", "column with the report", "text")
    .option("--labels-file <file>", "labels from `vilref labels --out`, joined by id")
    .addOption(splitOption("only rows of this split"))
    .addOption(fovOption("also run the field-of-view crop"))
    .addOption(logOption("append bad images (path and reason) to this run log"))
    .option("--strict", "exit at the first bad image")
    .addOption(progressOption())
    .action(
      async (
        file: string,
        o: {
          imageColumn: string;
          textColumn: string;
          labelsFile?: string;
          split?: string;
          fov?: boolean;
          log?: string;
          strict?: boolean;
          progress: boolean;
        },
      ) => {
        const samples = readManifest(file, {
          columns: { image: o.imageColumn, text: o.textColumn },
          ...(o.labelsFile ? { labelsFile: o.labelsFile } : {}),
          ...(o.split ? { split: o.split } : {}),
        });
        const bar = progress(progressSpec(o, { label: "data check", unit: "img", total: samples.length }));
        const loader = new Loader(samples, {
          batchSize: 16,
          shuffle: false,
          transform: { size: 64, fov: !!o.fov },
          strict: !!o.strict,
          log: o.log ?? ((l: string) => bar.log(l)),
        });
        for await (const b of loader.epoch(0)) bar.tick(b.samples.length + b.skipped.length);
        bar.done();
        const withText = samples.filter((s) => s.text !== null).length;
        const withLabels = samples.filter((s) => s.labels !== null).length;
        say(
          `${file}: ${samples.length} rows, ${withText} with text, ${withLabels} with labels; images decoded ${loader.stats.decoded}, skipped ${loader.stats.skipped}${
            loader.stats.skipped
              ? ` (${Object.entries(loader.stats.byReason)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(", ")})`
              : ""
          }`,
        );
        if (loader.stats.skipped > 0) process.exitCode = 1;
      },
    );
}
