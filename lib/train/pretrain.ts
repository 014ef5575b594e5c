/**
 * The pre-training loop (issue 6): manifest → loader → tokenizer → labels → `Trainer.step` with the
 * scheduled learning rate; metrics as JSON Lines; zero-shot AUC per label and image↔text retrieval
 * on a held-out split every N steps; atomic checkpoints every N steps (last k kept) that `resume`
 * continues from exactly; a run of non-finite losses stops the run with a final checkpoint.
 *
 * Output folder:
 *   metrics.jsonl          {"type":"train",step,loss,lr,...} and {"type":"eval",step,auc,...} lines
 *   vocab.txt              the vocabulary (built from the training reports, or a copy)
 *   skipped.log            images the loader skipped
 *   checkpoints/step-NNNNNNNN/{model.safetensors, trainer.safetensors, state.json}
 *   final/model.safetensors
 *   .vilref-run.lock      the run that owns the folder (pid, host); a second run is refused
 *
 * The folder has one owner (lib/io/lock.ts): a run into a folder that holds another run is refused
 * unless it resumes it or overwrites it; every file is written atomically (lib/io/atomic.ts) and the
 * temporary files a killed run leaves are removed at the next start; a resumed run whose last
 * checkpoint is the final step writes the final model and curves before it reports "done".
 *
 * Data-parallel (options.processGroup, see lib/train/dist.ts): `batchSize` is the global batch,
 * each of the W ranks takes batchSize/W samples of its shard (rank r: every W-th sample of the
 * epoch's order), the trainer gathers features and sums gradients so that a step equals one process
 * taking the global batch; rank 0 alone writes metrics, vocabulary and checkpoints. A checkpoint's
 * position counts global samples, so a run resumes with the same or a different number of ranks.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  appendFileSync,
} from "node:fs";
import path from "node:path";
import { readSafetensors, writeSafetensors } from "../checkpoint/safetensors.js";
import type { StDtype, StTensor } from "../checkpoint/safetensors.js";
import { Loader } from "../data/loader.js";
import type { Batch, Position } from "../data/loader.js";
import { readLabeledFile, readManifest } from "../data/manifest.js";
import { ShardLoader } from "../data/shard-loader.js";
import { isShardSpec } from "../data/shards.js";
import { readSource } from "../data/source.js";
import type { Sample } from "../data/manifest.js";
import { normalizeRows as normalizeRowsOf, textEncoder } from "../eval/features.js";
import { columnAucs, finiteMean } from "../eval/metrics.js";
import { featureMatrix } from "../eval/rank.js";
import { namedRecall, pairedRanks } from "../eval/retrieval.js";
import {
  buildPrompts,
  DEFAULT_PROMPTS_URL,
  encodeClassPrompts,
  loadPromptBank,
  multiLabelScores,
} from "../eval/zeroshot.js";
import type { MultiLabelScoring } from "../eval/zeroshot.js";
import type { ClassPrompts } from "../eval/zeroshot.js";
import { atomicWriteFileSync, cleanTempFiles, describeWriteError, OutputError } from "../io/atomic.js";
import { parseJson } from "../io/json.js";
import { acquireLock, type RunLock } from "../io/lock.js";
import { LABEL_IDS, Labeler, loadRules } from "../labels/index.js";
import type { LabelId } from "../labels/index.js";
import { readCheckpoint, sha256Hex, ViLReF } from "../model/vilref.js";
import type { Device, Dtype } from "../model/vilref.js";
import { setThreads } from "../native.js";
import type { TensorData } from "../native.js";
import { BertTokenizer, buildVocab, Vocab } from "../text/index.js";
import { parseConfig, trainerOptionsFromConfig } from "./config.js";
import type { TransformOptions } from "../data/transforms.js";
import type { PretrainConfig, PretrainConfigInput } from "./config.js";
import { writeCurves } from "./curves.js";
import { cosineSchedule } from "./schedule.js";
import { Trainer } from "./trainer.js";
import type { TrainerStateRecord } from "./trainer.js";
import type { ProcessGroup } from "./dist.js";

// ---- events and results --------------------------------------------------------------------

export interface TrainMetrics {
  type: "train";
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  logitScale: number;
  gradNorm: number;
  queueValid: number;
  skipped: boolean;
  imagesPerSecond: number;
  /** Multi-process runs only: seconds of this step in all-gather and in all-reduce/broadcast. */
  allGatherSeconds?: number;
  allReduceSeconds?: number;
}

export interface EvalMetrics {
  type: "eval";
  step: number;
  /** Zero-shot AUC per label with both classes in the held-out set. */
  auc: Partial<Record<LabelId, number>>;
  meanAuc: number;
  /** Positives / negatives per evaluated label. */
  counts: Partial<Record<LabelId, [number, number]>>;
  imageToText: Record<string, number>;
  textToImage: Record<string, number>;
  samples: number;
  seconds: number;
}

export type ProgressEvent =
  | {
      kind: "start";
      step: number;
      totalSteps: number;
      resumedFrom: string | null;
      trainSamples: number;
      heldOutSamples: number;
    }
  | (TrainMetrics & { kind: "step"; totalSteps: number; etaSeconds: number })
  | (EvalMetrics & { kind: "eval" })
  | { kind: "checkpoint"; step: number; path: string }
  | { kind: "notice"; message: string }
  | { kind: "done"; step: number; seconds: number };

export interface PretrainOptions {
  onProgress?: (e: ProgressEvent) => void;
  /** Continue from the latest checkpoint in the output folder (an empty folder: start fresh). */
  resume?: boolean;
  /** Replace the run the output folder holds (its checkpoints, final model, metrics, vocabulary). */
  overwrite?: boolean;
  /** Where relative paths of an unparsed config point from (default: the working directory). */
  baseDir?: string;
  /** Stop (with a checkpoint) after this many steps of this call: for tests and time-boxed runs. */
  stopAfter?: number;
  /** Train data-parallel in this process group (every rank calls pretrain with the same config). */
  processGroup?: ProcessGroup;
}

export interface PretrainResult {
  step: number;
  totalSteps: number;
  /** Losses of the steps this call ran, in order (NaN for skipped steps). */
  losses: number[];
  lastEval: EvalMetrics | null;
  checkpoint: string | null;
  model: ViLReF;
  output: string;
  seconds: number;
}

/** Thrown after `maxNonFinite` non-finite losses in a row (a final checkpoint is written first). */
export class NonFiniteLossError extends Error {
  constructor(
    message: string,
    readonly step: number,
    readonly batch: { epoch: number; index: number; ids: string[] },
    readonly checkpoint: string,
  ) {
    super(message);
    this.name = "NonFiniteLossError";
  }
}

// ---- the trainer's checkpointable state (native exportState/importState) -------------------

function stDtype(name: string, t: { data: ArrayBufferView; dtype?: string }): StDtype {
  if (t.dtype === "bfloat16") return "BF16";
  if (t.dtype === "float16") return "F16";
  const d = t.data;
  if (d instanceof Float32Array) return "F32";
  if (d instanceof Float64Array) return "F64";
  if (d instanceof BigInt64Array) return "I64";
  if (d instanceof Int32Array) return "I32";
  if (d instanceof Int16Array) return "I16";
  if (d instanceof Int8Array) return "I8";
  if (d instanceof Uint8Array) return t.dtype === "bool" ? "BOOL" : "U8";
  throw new TypeError(`trainer state "${name}": unsupported array type ${d.constructor.name}`);
}

async function exportTrainerState(
  trainer: Trainer,
): Promise<{ tensors: Record<string, StTensor>; dtypes: Record<string, string> }> {
  const state = await trainer.exportState();
  const tensors: Record<string, StTensor> = {};
  const dtypes: Record<string, string> = {};
  for (const [k, t] of Object.entries(state)) {
    const v = t as { data: ArrayBufferView; shape: number[]; dtype?: string };
    tensors[k] = { dtype: stDtype(k, v), shape: v.shape, data: v.data as StTensor["data"] };
    if (v.dtype !== undefined) dtypes[k] = v.dtype;
  }
  return { tensors, dtypes };
}

async function importTrainerState(trainer: Trainer, file: string): Promise<void> {
  const { tensors, metadata } = await readSafetensors(file);
  const dtypes = parseJson(metadata.dtypes ?? "{}", `${file}: its "dtypes" metadata`) as Record<string, string>;
  const record: Record<string, { data: StTensor["data"]; shape: number[]; dtype?: string }> = {};
  for (const [k, v] of tensors)
    record[k] = { data: v.data, shape: v.shape, ...(dtypes[k] !== undefined ? { dtype: dtypes[k] } : {}) };
  await trainer.importState(record as unknown as TrainerStateRecord);
}

// ---- checkpoints ---------------------------------------------------------------------------

/** What state.json of a checkpoint holds. */
export interface CheckpointState {
  format: 1;
  step: number;
  totalSteps: number;
  /** Where the loader continues: the position after the last batch trained on, in samples of the
   * epoch's global order (all ranks together), so that any number of ranks can resume from it. */
  position: Position;
  /** Ranks of the run that wrote it (absent: 1). */
  worldSize?: number;
  /** Seeds: the loader's order and augmentations derive from `seed`; the native RNG state is in trainer.safetensors. */
  seeds: { data: number; model: number };
  consecutiveNonFinite: number;
  vocabSha256: string;
  config: PretrainConfig;
  time: string;
}

const CKPT_RE = /^step-(\d{8})$/;

function fsyncPath(p: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(p, "r");
    fsyncSync(fd);
  } catch {
    // directories cannot be fsynced on every platform
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Checkpoint folders of an output folder, oldest first. */
export function listCheckpoints(output: string): { step: number; path: string }[] {
  const dir = path.join(output, "checkpoints");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((name) => {
      const m = CKPT_RE.exec(name);
      const p = path.join(dir, name);
      return m && existsSync(path.join(p, "state.json")) ? [{ step: Number(m[1]), path: p }] : [];
    })
    .sort((a, b) => a.step - b.step);
}

async function writeCheckpoint(
  output: string,
  keep: number,
  model: ViLReF,
  trainer: Trainer,
  state: CheckpointState,
  meta: { labels: string[]; vocabSha256: string },
): Promise<string> {
  const dir = path.join(output, "checkpoints");
  mkdirSync(dir, { recursive: true });
  const name = `step-${String(state.step).padStart(8, "0")}`;
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp);
    await model.save(path.join(tmp, "model.safetensors"), meta);
    const { tensors, dtypes } = await exportTrainerState(trainer);
    await writeSafetensors(path.join(tmp, "trainer.safetensors"), tensors, {
      dtypes: JSON.stringify(dtypes),
      step: String(state.step),
    });
    const json = path.join(tmp, "state.json");
    try {
      writeFileSync(json, JSON.stringify(state, null, 2) + "\n");
    } catch (e) {
      throw describeWriteError(e, json);
    }
    fsyncPath(json);
    fsyncPath(tmp);
    // the folder appears complete or not at all
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true }); // a full disk leaves no half checkpoint behind
    if (e instanceof OutputError) throw new OutputError(e.message.split(tmp).join(final), final, e.code, { cause: e });
    throw e;
  }
  fsyncPath(dir);
  const all = listCheckpoints(output);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) rmSync(old.path, { recursive: true, force: true });
  return final;
}

// ---- prompts and evaluation ------------------------------------------------------------------

// Prompts and zero-shot scoring live in lib/eval/zeroshot.ts (one implementation); these names stay for callers.
export { DEFAULT_PROMPTS_URL, loadPromptBank as loadPrompts, buildPrompts } from "../eval/zeroshot.js";

const normalizeRows = (t: TensorData): Float32Array =>
  normalizeRowsOf(t.data as Float32Array, t.shape[0]!, t.shape[1]!);

interface Evaluator {
  run(model: ViLReF, step: number): Promise<EvalMetrics>;
}

function makeEvaluator(
  samples: Sample[],
  loaderOptions: ConstructorParameters<typeof Loader>[1],
  tokenizer: BertTokenizer,
  contextLength: number,
  prompts: Map<string, ClassPrompts>,
  ks: number[],
  scoring: MultiLabelScoring,
): Evaluator {
  const loader = new Loader(samples, loaderOptions);
  return {
    async run(model, step) {
      const t0 = performance.now();
      const imgs: Float32Array[] = [];
      const txts: Float32Array[] = [];
      const used: Sample[] = [];
      for await (const b of loader.epoch(0)) {
        if (b.samples.length === 0) continue;
        imgs.push(normalizeRows(await model.encodeImages(b.images)));
        const ids = tokenizer.encodeBatch(
          b.texts.map((x) => x ?? ""),
          contextLength,
        );
        txts.push(normalizeRows(await model.encodeTexts(ids)));
        used.push(...b.samples);
      }
      const d = model.config.embed_dim;
      const n = used.length;
      const I = new Float32Array(n * d);
      const T = new Float32Array(n * d);
      let o = 0;
      for (const a of imgs) (I.set(a, o), (o += a.length));
      o = 0;
      for (const a of txts) (T.set(a, o), (o += a.length));
      // retrieval (lib/eval/retrieval.ts, the ranks of `eval retrieval`, block by block in LibTorch)
      const ranks = await pairedRanks(featureMatrix(I, n, d), featureMatrix(T, n, d));
      // zero-shot (lib/eval/zeroshot.ts): one ensembled feature per label and side, scored as config.eval.scoring says
      const feats = await encodeClassPrompts(textEncoder(model, tokenizer, contextLength), prompts, d);
      const S = multiLabelScores(I, n, feats, scoring);
      const C = feats.classes.length;
      // gold: 1 positive, 0.5 uncertain (neither class), anything else negative
      const gold = new Float64Array(n * C);
      for (let i = 0; i < n; i++)
        feats.classes.forEach((name, c) => {
          const v = used[i]!.labels?.[name as LabelId] ?? 0;
          gold[i * C + c] = v === 0.5 ? Number.NaN : v === 1 ? 1 : 0;
        });
      const auc: Partial<Record<LabelId, number>> = {};
      const counts: Partial<Record<LabelId, [number, number]>> = {};
      columnAucs(S, gold, n, C).forEach((r, c) => {
        if (r.positives === 0 || r.negatives === 0) return;
        const id = feats.classes[c] as LabelId;
        auc[id] = r.auc;
        counts[id] = [r.positives, r.negatives];
      });
      return {
        type: "eval",
        step,
        auc,
        meanAuc: finiteMean(Object.values(auc)),
        counts,
        imageToText: namedRecall(ranks.imageToText, ks),
        textToImage: namedRecall(ranks.textToImage, ks),
        samples: n,
        seconds: (performance.now() - t0) / 1000,
      };
    },
  };
}

// ---- the loop ----------------------------------------------------------------------------------

function readSamples(
  file: string | string[],
  split: string | undefined,
  config: PretrainConfig,
  labeler: Labeler | null,
): Sample[] {
  const manifest = {
    requireText: true,
    ...(split !== undefined ? { split } : {}),
    ...(config.data.columns ? { columns: config.data.columns } : {}),
    ...(config.labels.source === "file" && config.labels.file ? { labelsFile: config.labels.file } : {}),
  };
  const samples =
    typeof file === "string" && !isShardSpec(file)
      ? readManifest(file, manifest)
      : readSource(file, { manifest }).samples;
  for (const s of samples) {
    if (labeler)
      s.labels = labeler.label(s.text ?? "", { uncertainty: config.labels.uncertainty, evidence: false }).labels;
    else if (s.labels === null)
      throw new Error(
        `${s.source.file}:${s.source.line}: sample ${s.id} has no labels (labels.source is "${config.labels.source}")`,
      );
  }
  return samples;
}

/** Labels for samples streamed from shards, as readSamples gives a manifest's (a sample it cannot label is skipped). */
function labelStreamed(config: PretrainConfig, labeler: Labeler | null): (s: Sample) => void {
  const joined = config.labels.source === "file" && config.labels.file ? readLabeledFile(config.labels.file) : null;
  return (s) => {
    if (s.text === null) throw new Error("no report (txt) in the sample");
    if (labeler) s.labels = labeler.label(s.text, { uncertainty: config.labels.uncertainty, evidence: false }).labels;
    else if (joined) {
      const e = joined.get(s.id);
      if (!e) throw new Error(`id ${JSON.stringify(s.id)} is not in ${config.labels.file}`);
      s.labels = e.labels;
    } else if (s.labels === null) throw new Error(`no labels in its json (labels.source is "${config.labels.source}")`);
  };
}

function appendJsonl(file: string, value: unknown): void {
  try {
    appendFileSync(
      file,
      JSON.stringify(value, (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)) + "\n",
    );
  } catch (e) {
    throw describeWriteError(e, file, "cannot append");
  }
}

/** The lines of metrics.jsonl up to `step`; a last line torn by a kill (no newline, not JSON) is dropped. */
function metricsUpTo(file: string, step: number): string[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const last = lines.pop()!; // "" after a final newline
  const kept: string[] = [];
  lines.forEach((l, i) => {
    if (l.trim() !== "" && (parseJson(l, `${file}:${i + 1}`) as { step: number }).step <= step) kept.push(l);
  });
  if (last.trim() !== "") {
    try {
      if ((JSON.parse(last) as { step: number }).step <= step) kept.push(last);
    } catch {
      /* torn */
    }
  }
  return kept;
}

// ---- the output folder: one owner, no stale temporaries, no run replaced by accident -------------

/** What a folder holds of an earlier run (empty: nothing). */
function runContents(out: string): string[] {
  const found: string[] = [];
  const ckpts = listCheckpoints(out);
  if (ckpts.length) found.push(`${ckpts.length} checkpoint(s) up to step ${ckpts.at(-1)!.step}`);
  if (existsSync(path.join(out, "final", "model.safetensors"))) found.push("a final model");
  const metrics = path.join(out, "metrics.jsonl");
  if (existsSync(metrics) && statSync(metrics).size > 0) found.push("metrics.jsonl");
  return found;
}

/**
 * Takes the folder's lock (rank 0), removes what killed runs left half-written, and refuses to
 * start over a run it holds unless asked to resume or overwrite it.
 */
function claimOutput(out: string, options: PretrainOptions, emit: (e: ProgressEvent) => void): RunLock {
  if (options.resume && options.overwrite) throw new RangeError("resume and overwrite: give one, not both");
  const lock = acquireLock(path.join(out, ".vilref-run.lock"), { what: `output ${out}`, command: "vilref pretrain" });
  try {
    if (lock.stale)
      emit({
        kind: "notice",
        message:
          `took over ${lock.file} from ` +
          `${lock.replaced ? `pid ${lock.replaced.pid} (gone)` : "a run that is gone"}`,
      });
    const cleaned = [out, path.join(out, "checkpoints"), path.join(out, "final")].flatMap((d) =>
      cleanTempFiles(d, { all: true }),
    );
    if (cleaned.length)
      emit({
        kind: "notice",
        message: `removed ${cleaned.length} unfinished file(s) of an interrupted run: ${cleaned.join(", ")}`,
      });
    const held = runContents(out);
    if (held.length && options.overwrite) {
      for (const f of ["checkpoints", "final", "metrics.jsonl", "curves.png", "vocab.txt", "skipped.log"])
        rmSync(path.join(out, f), { recursive: true, force: true });
      emit({ kind: "notice", message: `overwriting the run in ${out} (${held.join(", ")})` });
    } else if (held.length && !options.resume)
      throw new Error(
        `output ${out} holds a run (${held.join(", ")}): --resume continues it, --overwrite replaces it, ` +
          "or choose another output",
      );
    else if (held.length && options.resume && listCheckpoints(out).length === 0) {
      if (existsSync(path.join(out, "final", "model.safetensors")))
        throw new Error(
          `output ${out}: nothing to resume from (no checkpoint, but ${held.join(", ")}): --overwrite starts it again`,
        );
      // Killed before its first checkpoint: resuming it is starting it again (what it logged goes).
      for (const f of ["metrics.jsonl", "curves.png", "skipped.log"]) rmSync(path.join(out, f), { force: true });
      emit({
        kind: "notice",
        message: `no checkpoint in ${out} yet (${held.join(", ")}): the run starts again at step 0`,
      });
    }
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

/**
 * Runs (or resumes) a pre-training experiment. The output folder is locked for the run (rank 0
 * holds the lock); a folder holding another run needs `resume` or `overwrite`.
 */
export async function pretrain(
  input: PretrainConfig | PretrainConfigInput,
  options: PretrainOptions = {},
): Promise<PretrainResult> {
  const t0 = performance.now();
  const config = parseConfig(input, options.baseDir !== undefined ? { baseDir: options.baseDir } : {});
  const world = options.processGroup?.worldSize ?? 1;
  if (config.batchSize % world !== 0)
    throw new RangeError(
      `batchSize: the global batch of ${config.batchSize} does not split evenly over WORLD_SIZE=${world} ranks`,
    );
  try {
    mkdirSync(config.output, { recursive: true });
  } catch (e) {
    throw describeWriteError(e, config.output, "cannot create the output folder");
  }
  const emit = options.onProgress ?? (() => {});
  const lock = (options.processGroup?.rank ?? 0) === 0 ? claimOutput(config.output, options, emit) : null;
  try {
    return await pretrainOwned(config, options, t0);
  } finally {
    lock?.release();
  }
}

/** Where the run resumes from: the latest checkpoint and its state.json (none: a fresh start). */
interface ResumePoint {
  latest: { step: number; path: string } | undefined;
  resumed: CheckpointState | null;
}

/** Step 1: the latest checkpoint of the output folder when resuming. */
function readResumePoint(out: string, resume: boolean | undefined): ResumePoint {
  const latest = resume ? listCheckpoints(out).at(-1) : undefined;
  const resumed: CheckpointState | null = latest
    ? (parseJson(
        readFileSync(path.join(latest.path, "state.json"), "utf8"),
        path.join(latest.path, "state.json"),
      ) as CheckpointState)
    : null;
  return { latest, resumed };
}

/** The labeled samples of a run: the training set (null: streamed from shards) and the held-out set. */
interface RunData {
  rules: ReturnType<typeof loadRules>;
  labeler: Labeler | null;
  train: Sample[] | null;
  heldOut: Sample[];
}

/** Step 2: labels and data. Shards stream (bounded memory); a manifest is read whole. */
function readRunData(config: PretrainConfig): RunData {
  const rules = loadRules(config.labels.rules ?? undefined);
  const labeler = config.labels.source === "rules" ? new Labeler(rules) : null;
  const trainShards = isShardSpec(config.data.train);
  if (trainShards && config.data.trainSplit !== undefined)
    throw new RangeError(
      "data.trainSplit: shards are streamed whole; pack the split to train on (vilref data pack --split)",
    );
  const train = trainShards ? null : readSamples(config.data.train, config.data.trainSplit, config, labeler);
  if (train && train.length < config.batchSize)
    throw new RangeError(`data.train: ${train.length} samples, fewer than one batch of ${config.batchSize}`);
  const heldOutFile = config.data.heldOut ?? (config.data.heldOutSplit !== undefined ? config.data.train : undefined);
  let heldOut = heldOutFile ? readSamples(heldOutFile, config.data.heldOutSplit, config, labeler) : [];
  if (config.data.evalLimit !== undefined) heldOut = heldOut.slice(0, config.data.evalLimit);
  return { rules, labeler, train, heldOut };
}

interface RunVocabulary {
  vocab: Vocab;
  vocabText: string;
  vocabSha256: string;
}

/** Step 3: the vocabulary, built once, kept in the output folder (rank 0 writes it), the same on resume. */
function runVocabulary(
  config: PretrainConfig,
  train: Sample[] | null,
  { latest, resumed }: ResumePoint,
  resume: boolean | undefined,
  lead: boolean,
): RunVocabulary {
  const vocabFile = path.join(config.output, "vocab.txt");
  let vocab: Vocab;
  if (resumed || (config.text.vocab === "build" && existsSync(vocabFile) && resume)) vocab = Vocab.fromFile(vocabFile);
  else if (config.text.vocab === "build")
    vocab = buildVocab(
      (train ?? readSource(config.data.train, { manifest: { requireText: true } }).samples).map((s) => s.text ?? ""),
      { size: config.text.vocabSize },
    );
  else vocab = Vocab.fromFile(config.text.vocab);
  const vocabText = vocab.toText();
  const vocabSha256 = sha256Hex(vocabText);
  if (resumed && resumed.vocabSha256 !== vocabSha256)
    throw new Error(`${vocabFile}: not the vocabulary of checkpoint ${latest!.path}`);
  if (!resumed && lead) atomicWriteFileSync(vocabFile, vocabText);
  return { vocab, vocabText, vocabSha256 };
}

/**
 * Step 4: the model (created, or loaded from config.model.checkpoint), checked against the
 * vocabulary and context length, then the checkpoint's weights and trainer state on resume.
 */
async function buildModel(
  config: PretrainConfig,
  { vocab, vocabSha256 }: RunVocabulary,
  latest: ResumePoint["latest"],
  group: ProcessGroup | undefined,
): Promise<{ model: ViLReF; trainer: Trainer }> {
  // precision is the step's autocast: the weights stay float32 (master weights)
  const modelOptions = { device: config.device as Device, dtype: "float32" as Dtype };
  let model: ViLReF;
  if (config.model.checkpoint) model = await ViLReF.load(config.model.checkpoint, modelOptions);
  else
    model = ViLReF.create(config.model.preset ?? config.model.config!, {
      ...modelOptions,
      seed: config.model.seed ?? config.seed,
    });
  if (vocab.size > model.config.vocab_size)
    throw new RangeError(`text.vocab: ${vocab.size} tokens, but the model's vocab_size is ${model.config.vocab_size}`);
  if (config.text.contextLength > model.config.text_max_position_embeddings)
    throw new RangeError(
      `text.contextLength: ${config.text.contextLength} is longer than the model's ` +
        `${model.config.text_max_position_embeddings} positions (text_max_position_embeddings)`,
    );
  if (config.model.checkpoint && model.vocabSha256 && model.vocabSha256 !== vocabSha256)
    throw new Error(
      `text.vocab: sha256 ${vocabSha256.slice(0, 12)}… is not the vocabulary ${config.model.checkpoint} was ` +
        `trained with (${model.vocabSha256.slice(0, 12)}…); give that vocabulary`,
    );
  if (latest) {
    const { tensors } = await readCheckpoint(path.join(latest.path, "model.safetensors"));
    await model.loadStateDict(tensors, { strict: true });
  }
  const trainer = new Trainer(model, trainerOptionsFromConfig(config, LABEL_IDS.length, group));
  if (latest) await importTrainerState(trainer, path.join(latest.path, "trainer.safetensors"));
  return { model, trainer };
}

/** Who this process is in the run: rank 0 (the lead) writes metrics, vocabulary and checkpoints. */
interface RunPlace {
  group: ProcessGroup | undefined;
  world: number;
  rank: number;
  lead: boolean;
}

/** Step 5: this rank's training loader (over the samples, or streaming the shards) and the samples it covers. */
async function openTrainLoader(
  config: PretrainConfig,
  { train, labeler }: RunData,
  { world, rank, lead }: RunPlace,
  { latest, resumed }: ResumePoint,
  size: number,
): Promise<{ loader: Loader | ShardLoader; trainCount: number }> {
  const augment: TransformOptions = config.data.augment ?? {};
  const loaderOptions = {
    batchSize: config.batchSize / world,
    rank,
    worldSize: world,
    // every rank takes the same number of steps; floor(floor(n/W)/b) = floor(n/B): the steps of one process
    evenShards: world > 1 ? ("drop" as const) : (false as const),
    seed: config.seed,
    shuffle: true,
    dropLast: true,
    transform: { ...augment, train: true, size },
    log: path.join(config.output, lead ? "skipped.log" : `skipped.rank-${rank}.log`),
    recycleImages: true, // trainSteps finishes each step before asking for the next batch
    ...(config.data.concurrency ? { concurrency: config.data.concurrency } : {}),
  };
  const loader = train
    ? new Loader(train, loaderOptions)
    : await ShardLoader.open(config.data.train, {
        ...loaderOptions,
        bufferSize: config.data.shuffleBuffer,
        prepare: labelStreamed(config, labeler),
      });
  const trainCount = train ? train.length : (loader as ShardLoader).size;
  if (!train && trainCount < config.batchSize)
    throw new RangeError(
      `data.train: ${trainCount} samples in the shards, fewer than one batch of ${config.batchSize}`,
    );
  if (!train && resumed && (resumed.worldSize ?? 1) !== world)
    throw new RangeError(
      `${latest!.path}: written by ${resumed.worldSize ?? 1} rank(s); ` +
        `a run over shards resumes with the same number (each rank reads its own shards), not ${world}`,
    );
  return { loader, trainCount };
}

/**
 * Step 6: the held-out evaluation, on rank 0 only (the others wait in the next step's collective:
 * the timeout must cover it).
 */
function runEvaluator(
  config: PretrainConfig,
  { heldOut, rules }: RunData,
  lead: boolean,
  tokenizer: BertTokenizer,
  size: number,
): Evaluator | null {
  if (!(heldOut.length >= 2 && lead)) return null;
  const { fov, mean, std, shrinkOnLoad } = config.data.augment ?? {};
  const evalTransform: TransformOptions = { size, train: false, fov, mean, std, shrinkOnLoad };
  return makeEvaluator(
    heldOut,
    {
      batchSize: config.eval.batchSize,
      shuffle: false,
      transform: evalTransform,
      log: path.join(config.output, "skipped.log"),
      recycleImages: true, // the evaluator encodes each batch before asking for the next
    },
    tokenizer,
    config.text.contextLength,
    buildPrompts(loadPromptBank(config.eval.prompts ?? DEFAULT_PROMPTS_URL, rules)),
    config.eval.ks,
    config.eval.scoring,
  );
}

/** Step 7: metrics.jsonl (rank 0): on resume, drop lines after the checkpoint (they will be written again). */
function resetMetrics(metricsFile: string, lead: boolean, resumed: CheckpointState | null): void {
  if (!lead) {
    // rank 0 keeps the metrics
  } else if (resumed && existsSync(metricsFile)) {
    atomicWriteFileSync(
      metricsFile,
      metricsUpTo(metricsFile, resumed.step)
        .map((l) => l + "\n")
        .join(""),
    );
  } else if (!resumed) atomicWriteFileSync(metricsFile, "");
}

/** Everything the training loop reads: set up once before the first step. */
interface PretrainRun extends RunPlace, RunVocabulary {
  config: PretrainConfig;
  options: PretrainOptions;
  emit: (e: ProgressEvent) => void;
  out: string;
  latest: ResumePoint["latest"];
  model: ViLReF;
  trainer: Trainer;
  tokenizer: BertTokenizer;
  loader: Loader | ShardLoader;
  evaluator: Evaluator | null;
  metricsFile: string;
  epochs: number;
  totalSteps: number;
  lrAt: (step: number) => number;
  /** When pretrain was called (performance.now()). */
  t0: number;
}

/** What the training loop changes as it goes. */
interface RunProgress {
  step: number;
  /** This rank's loader position (its own samples). */
  position: Position;
  consecutive: number;
  lastCheckpoint: string | null;
  lastEval: EvalMetrics | null;
  losses: number[];
  /** Steps this call ran. */
  ran: number;
  runStart: number;
  tPrev: number;
}

/** Checkpoints count global samples; this rank's loader counts its own. */
function toLocalPosition(p: Position, world: number, checkpoint: string): Position {
  if (p.index % world !== 0)
    throw new RangeError(
      `${checkpoint}: its position (${p.index} samples into epoch ${p.epoch}) ` +
        `does not split over WORLD_SIZE=${world} ranks; resume with a world size that divides it`,
    );
  return { epoch: p.epoch, index: p.index / world };
}

function stateAt(run: PretrainRun, p: RunProgress): CheckpointState {
  const { config, world } = run;
  return {
    format: 1,
    step: p.step,
    totalSteps: run.totalSteps,
    position: { epoch: p.position.epoch, index: p.position.index * world },
    worldSize: world,
    seeds: { data: config.seed, model: config.model.seed ?? config.seed },
    consecutiveNonFinite: p.consecutive,
    vocabSha256: run.vocabSha256,
    config,
    time: new Date().toISOString(),
  };
}

/** A checkpoint at the current step (rank 0 writes it; the others note its path). */
async function checkpoint(run: PretrainRun, p: RunProgress): Promise<void> {
  if (!run.lead) {
    p.lastCheckpoint = path.join(run.out, "checkpoints", `step-${String(p.step).padStart(8, "0")}`); // rank 0 writes it
    return;
  }
  p.lastCheckpoint = await writeCheckpoint(
    run.out,
    run.config.checkpoint.keep,
    run.model,
    run.trainer,
    stateAt(run, p),
    {
      labels: [...LABEL_IDS],
      vocabSha256: run.vocabSha256,
    },
  );
  run.emit({ kind: "checkpoint", step: p.step, path: p.lastCheckpoint });
}

/** The held-out evaluation at the current step, appended to the metrics and drawn in curves.png. */
async function evaluate(run: PretrainRun, p: RunProgress): Promise<void> {
  if (!run.evaluator) return;
  p.lastEval = await run.evaluator.run(run.model, p.step);
  appendJsonl(run.metricsFile, p.lastEval);
  run.emit({ kind: "eval", ...p.lastEval });
  await writeCurves(run.metricsFile, path.join(run.out, "curves.png"));
}

/** One training step on batch `b`: its metrics logged and emitted; too many non-finite losses in a row stop the run. */
async function trainBatch(run: PretrainRun, p: RunProgress, b: Batch): Promise<void> {
  const { config, group, world } = run;
  const ids = run.tokenizer.encodeBatch(
    b.texts.map((x) => x ?? ""),
    config.text.contextLength,
  );
  const lr = run.lrAt(p.step);
  const r = await run.trainer.step({ images: b.images, ids, labels: b.labels! }, { lr });
  p.step++;
  p.ran++;
  p.losses.push(r.loss);
  const now = performance.now();
  const m: TrainMetrics = {
    type: "train",
    step: p.step,
    epoch: b.epoch,
    loss: r.loss,
    lr,
    logitScale: r.logitScale,
    gradNorm: r.gradNorm,
    queueValid: r.queueValid,
    skipped: r.skipped,
    imagesPerSecond: (b.samples.length * world * 1000) / Math.max(now - p.tPrev, 1e-3),
    ...(group ? { allGatherSeconds: r.allGatherSeconds, allReduceSeconds: r.allReduceSeconds } : {}),
  };
  p.tPrev = now;
  if (run.lead && (p.step % config.logEvery === 0 || r.skipped)) appendJsonl(run.metricsFile, m);
  const rate = p.ran / ((now - p.runStart) / 1000);
  run.emit({ kind: "step", ...m, totalSteps: run.totalSteps, etaSeconds: (run.totalSteps - p.step) / rate });
  if (r.skipped || !Number.isFinite(r.loss)) {
    p.consecutive++;
    if (p.consecutive >= config.maxNonFinite) {
      await checkpoint(run, p);
      const step = p.step;
      const shown = b.ids.slice(0, 8).join(", ") + (b.ids.length > 8 ? ", ..." : "");
      throw new NonFiniteLossError(
        `stopped at step ${step}: ${p.consecutive} non-finite losses in a row; ` +
          `the last was batch ${step} (epoch ${b.start.epoch}, samples ` +
          `${b.start.index}-${b.next.index - 1} of the epoch order; ids ${shown}); ` +
          `checkpoint ${p.lastCheckpoint}`,
        step,
        { epoch: b.start.epoch, index: b.start.index, ids: b.ids },
        p.lastCheckpoint!,
      );
    }
  } else p.consecutive = 0;
}

function resultOf(run: PretrainRun, p: RunProgress, seconds: number): PretrainResult {
  const { step, losses, lastEval, lastCheckpoint } = p;
  return {
    step,
    totalSteps: run.totalSteps,
    losses,
    lastEval,
    checkpoint: lastCheckpoint,
    model: run.model,
    output: run.out,
    seconds,
  };
}

/**
 * The training loop to the last step, evaluating and checkpointing every N steps, then once at
 * the end. Returns a result early when options.stopAfter steps ran (after a checkpoint), else null.
 */
async function trainSteps(run: PretrainRun, p: RunProgress): Promise<PretrainResult | null> {
  const { config, options, group, rank } = run;
  for await (const batch of run.loader.batches(run.epochs, p.position)) {
    const b: Batch = batch;
    p.position = b.next;
    if (b.samples.length < (group ? 1 : 2)) {
      // every image of the batch was skipped (but one): with ranks, the others would wait for this one
      if (group)
        throw new Error(
          `rank ${rank}: every image of batch ${p.step + 1} was skipped (see ` +
            `${path.join(run.out, `skipped.rank-${rank}.log`)}); the ranks cannot continue in step`,
        );
      continue;
    }
    await trainBatch(run, p, b);
    const step = p.step;
    const last = step >= run.totalSteps;
    if (config.eval.every > 0 && step % config.eval.every === 0 && !last) await evaluate(run, p);
    if (config.checkpoint.every > 0 && step % config.checkpoint.every === 0 && !last) await checkpoint(run, p);
    if (last) break;
    if (options.stopAfter !== undefined && p.ran >= options.stopAfter) {
      if (p.lastCheckpoint === null || !p.lastCheckpoint.endsWith(`step-${String(step).padStart(8, "0")}`))
        await checkpoint(run, p);
      return resultOf(run, p, (performance.now() - run.t0) / 1000);
    }
  }
  await evaluate(run, p);
  await checkpoint(run, p);
  return null;
}

/** The final model (rank 0): one file, its vocabulary and context length travel inside it; and the curves. */
async function writeFinal(run: PretrainRun): Promise<void> {
  const { out, config } = run;
  mkdirSync(path.join(out, "final"), { recursive: true });
  await run.model.save(path.join(out, "final", "model.safetensors"), {
    labels: [...LABEL_IDS],
    vocabSha256: run.vocabSha256,
    vocab: run.vocabText,
    contextLength: config.text.contextLength,
  });
  if (existsSync(run.metricsFile)) await writeCurves(run.metricsFile, path.join(out, "curves.png"));
}

/** Steps 1-7 (resume point, data, vocabulary, model, loaders, schedule, evaluator, metrics), then the loop. */
async function pretrainOwned(config: PretrainConfig, options: PretrainOptions, t0: number): Promise<PretrainResult> {
  const out = config.output;
  const group = options.processGroup;
  const world = group?.worldSize ?? 1;
  const rank = group?.rank ?? 0;
  const place: RunPlace = { group, world, rank, lead: rank === 0 };
  if (config.threads !== undefined) setThreads(config.threads);
  const emit = options.onProgress ?? (() => {});
  const resume = readResumePoint(out, options.resume);
  const { latest, resumed } = resume;
  const data = readRunData(config);
  const vocabulary = runVocabulary(config, data.train, resume, options.resume, place.lead);
  const tokenizer = new BertTokenizer(vocabulary.vocab);
  const { model, trainer } = await buildModel(config, vocabulary, latest, group);
  const size = model.config.image_resolution;
  const { loader, trainCount } = await openTrainLoader(config, data, place, resume, size);
  const perEpoch = loader.batchCount(0);
  const epochs = config.epochs ?? Math.ceil((config.steps ?? 1) / perEpoch);
  const totalSteps = Math.min(config.steps ?? Infinity, epochs * perEpoch);
  const lrAt = cosineSchedule({
    lr: config.schedule.lr,
    warmupSteps: Math.min(config.schedule.warmupSteps, totalSteps),
    totalSteps,
    minLr: config.schedule.minLr,
  });
  const evaluator = runEvaluator(config, data, place.lead, tokenizer, size);
  const metricsFile = path.join(out, "metrics.jsonl");
  resetMetrics(metricsFile, place.lead, resumed);
  const run: PretrainRun = {
    ...place,
    ...vocabulary,
    config,
    options,
    emit,
    out,
    latest,
    model,
    trainer,
    tokenizer,
    loader,
    evaluator,
    metricsFile,
    epochs,
    totalSteps,
    lrAt,
    t0,
  };
  const now = performance.now();
  const p: RunProgress = {
    step: resumed?.step ?? 0,
    position: resumed ? toLocalPosition(resumed.position, world, latest!.path) : { epoch: 0, index: 0 },
    consecutive: resumed?.consecutiveNonFinite ?? 0,
    lastCheckpoint: latest?.path ?? null,
    lastEval: null,
    losses: [],
    ran: 0,
    runStart: now,
    tPrev: now,
  };
  emit({
    kind: "start",
    step: p.step,
    totalSteps,
    resumedFrom: latest?.path ?? null,
    trainSamples: trainCount,
    heldOutSamples: data.heldOut.length,
  });
  p.runStart = p.tPrev = performance.now();
  if (p.step < totalSteps) {
    const early = await trainSteps(run, p);
    if (early) return early;
  } else if (resumed)
    emit({ kind: "notice", message: `the run was already at its last step (${p.step}); writing its final model` });
  // a run resumed at its last step (killed after the final checkpoint) is finished here too
  if (place.lead) await writeFinal(run);
  const seconds = (performance.now() - t0) / 1000;
  emit({ kind: "done", step: p.step, seconds });
  return resultOf(run, p, seconds);
}
