/**
 * `vilref eval adapter --method clip-adapter|tip|tip-f|lora --shots K`: few-shot adaptation
 * (lib/adapt): K images per class drawn from the training split with --seed (and --draws seeds in
 * a row, averaged with a t-interval), hyper-parameters or the epoch chosen on the validation split,
 * the test split scored with bootstrap CIs; --patient max|mean adds per-patient metrics.
 */
import { Option } from "commander";
import type { Command } from "commander";
import { FEATURE_ADAPTERS, fewShotAdapter } from "../adapt/fewshot.js";
import type { FeatureAdapter, FewShotResult } from "../adapt/fewshot.js";
import { loraFewShot } from "../adapt/lora-fewshot.js";
import type { LoraFewShotResult } from "../adapt/lora-fewshot.js";
import { LORA_TARGET_GROUPS } from "../adapt/lora.js";
import type { LoraTargetGroup } from "../adapt/lora.js";
import type { PatientAggregation } from "../adapt/patient.js";
import { formatReport } from "../eval/evaluate.js";
import { textEncoder, tokenizerFor } from "../eval/features.js";
import { writeScoreTable } from "../eval/predictions.js";
import { addCommonOptions, imageOptions, loadEvalData, loadModel, writeOutputs } from "./eval.js";
import type { CommonOptions } from "./eval.js";
import {
  contextLengthOption,
  examples,
  float,
  int,
  list,
  lrOption,
  patientOption,
  UsageError,
  vocabOption,
} from "./options.js";

export const ADAPTER_METHODS = [...FEATURE_ADAPTERS, "lora"] as const;
export type AdapterMethod = FeatureAdapter | "lora";

interface AdapterCliOptions extends CommonOptions {
  method: AdapterMethod;
  shots: number;
  draws: number;
  trainSplit: string;
  valSplit: string;
  testSplit: string;
  prompts?: string;
  vocab?: string;
  contextLength?: number;
  betas?: number[];
  alphas?: number[];
  epochs?: number;
  lr: number;
  ratio?: number;
  rank: number;
  loraAlpha?: number;
  loraTargets: string;
  saveAdapters?: string;
  patient?: PatientAggregation;
  predictions?: string;
}

function addAdapterOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--method <name>", "the adapter").choices(ADAPTER_METHODS).makeOptionMandatory())
    .addOption(
      new Option("--shots <k>", "labelled training images per class").argParser(int({ min: 1 })).makeOptionMandatory(),
    )
    .addOption(
      new Option("--draws <n>", "draws of the shots (seeds seed, seed+1, …), averaged")
        .argParser(int({ min: 1 }))
        .default(1),
    )
    .option("--train-split <name>", "split the shots are drawn from", "train")
    .option("--val-split <name>", "split that chooses β and α (tip, tip-f) or the epoch (lora)", "val")
    .option("--test-split <name>", "split of the reported metrics", "test")
    .option("--prompts <file>", "prompts file (the class text features of tip, tip-f and clip-adapter)")
    .addOption(vocabOption({ description: "the model's vocab.txt (default: found beside the checkpoint)" }))
    .addOption(contextLengthOption(undefined, "token context length (default: min(52, the model's positions))"))
    .option("--betas <list>", "Tip-Adapter affinity sharpness values to try", list(float({ min: 0 })))
    .option("--alphas <list>", "Tip-Adapter residual ratios to try", list(float({ min: 0 })))
    .option("--epochs <n>", "training epochs (tip-f, clip-adapter: 50; lora: 20)", int({ min: 1 }))
    .addOption(lrOption("learning rate of the adapter (and of lora's head and factors)", 1e-3))
    .option(
      "--ratio <r>",
      "CLIP-Adapter's share of the adapted feature (default: chosen on validation from 0.1, 0.2, 0.4, 0.6)",
      float({ min: 0, max: 1 }),
    )
    .option("--rank <r>", "LoRA rank", int({ min: 1 }), 8)
    .option("--lora-alpha <a>", "LoRA alpha (ΔW scaled by alpha / rank; default 2 × rank)", float({ above: 0 }))
    .option(
      "--lora-targets <which>",
      `LoRA target weights: ${LORA_TARGET_GROUPS.join(", ")} or comma-separated names`,
      "attention",
    )
    .option("--save-adapters <file>", "lora: write the first draw's adapters alone as safetensors")
    .addOption(patientOption())
    .option("--predictions <file>", "write the first draw's test scores, one JSON line per image");
}

async function runAdapter(o: AdapterCliOptions): Promise<void> {
  if (o.saveAdapters && o.method !== "lora") throw new UsageError("--save-adapters: only with --method lora");
  const { ds, classes } = loadEvalData(o);
  if (classes) throw new UsageError("--classes: select classes with a manifest's --classes");
  const { model, name } = await loadModel(o);
  const common = {
    shots: o.shots,
    draws: o.draws,
    seed: o.seed,
    resamples: o.bootstrap,
    splits: { train: o.trainSplit, val: o.valSplit, test: o.testSplit },
    lr: o.lr,
    ...(o.epochs ? { epochs: o.epochs } : {}),
    ...(o.patient ? { patient: o.patient } : {}),
  };
  let r: FewShotResult | LoraFewShotResult;
  if (o.method === "lora") {
    const targets = (LORA_TARGET_GROUPS as readonly string[]).includes(o.loraTargets)
      ? (o.loraTargets as LoraTargetGroup)
      : o.loraTargets.split(",").map((s) => s.trim());
    r = await loraFewShot(model, ds, {
      ...common,
      rank: o.rank,
      targets,
      batchSize: o.batchSize,
      ...(o.loraAlpha ? { alpha: o.loraAlpha } : {}),
      ...(o.imageSize ? { imageSize: o.imageSize } : {}),
      ...(o.saveAdapters ? { onAdapters: (l) => l.save(o.saveAdapters!) } : {}),
    });
  } else {
    const { tokenizer } = tokenizerFor(o.model, model.vocabSha256, o.vocab);
    const L = o.contextLength ?? Math.min(52, model.config.text_max_position_embeddings);
    r = await fewShotAdapter(model, textEncoder(model, tokenizer, L), ds, {
      ...common,
      method: o.method,
      ...(o.ratio !== undefined ? { ratio: o.ratio } : {}),
      images: imageOptions(o, `${o.method}: encoding images`),
      ...(o.prompts ? { prompts: o.prompts } : {}),
      ...(o.betas ? { betas: o.betas } : {}),
      ...(o.alphas ? { alphas: o.alphas } : {}),
    });
  }
  printResult(r, ds.name, o);
  const { predictions, ...rest } = r;
  if (o.predictions) {
    await writeScoreTable(o.predictions, predictions);
    console.log(`predictions: ${o.predictions}`);
  }
  // --predictions is written above (the first draw's scores); writeOutputs writes --out and --report.
  const outputs = { ...(o.out ? { out: o.out } : {}), ...(o.report ? { report: o.report } : {}) };
  await writeOutputs(outputs, rest, { model: name, dataset: ds.name, root: ds.root, split: o.testSplit });
}

function printResult(r: FewShotResult | LoraFewShotResult, dataset: string, o: AdapterCliOptions): void {
  console.log(formatReport(r, `${o.method} ${o.shots}-shot on ${dataset} ${o.testSplit} (first draw, seed ${o.seed})`));
  const s = r.overSeeds;
  const ci = Number.isFinite(s.lo) ? ` [${s.lo.toFixed(3)}, ${s.hi.toFixed(3)}] (95% t-interval)` : "";
  console.log(`  mean AUC over ${s.draws} draw${s.draws === 1 ? "" : "s"}: ${s.mean.toFixed(3)}${ci}`);
  if ("zeroShotAuc" in r) console.log(`  zero-shot AUC with the same text features: ${r.zeroShotAuc.toFixed(3)}`);
  if ("trainableParameters" in r)
    console.log(`  trainable parameters: ${r.trainableParameters} (image tower: ${r.backboneParameters})`);
  if (r.patient) console.log(formatReport(r.patient, `per patient (${r.patient.aggregation} over eyes)`));
  if (o.saveAdapters) console.log(`adapters: ${o.saveAdapters}`);
}

/** Adds `vilref eval adapter` to the eval command. */
export function registerAdapter(evalCommand: Command): void {
  const cmd = addAdapterOptions(
    addCommonOptions(
      evalCommand
        .command("adapter")
        .description("few-shot adaptation: Tip-Adapter, Tip-Adapter-F, CLIP-Adapter or LoRA on K images per class"),
    ),
  );
  examples(cmd, [
    [
      "vilref eval adapter --model run/final/model.safetensors --data heldout/manifest.jsonl --method tip " +
        "--shots 16 --draws 5 --out tip.json",
      "Tip-Adapter with 16 images per class, five draws averaged",
    ],
    [
      "vilref eval adapter --model m.safetensors --data ODIR --adapter odir --method lora --shots 8 --rank 8 " +
        "--patient max --save-adapters lora.safetensors",
      "LoRA rank 8 on ODIR, per-eye and per-patient metrics, the adapters saved alone",
    ],
  ]).action((o: AdapterCliOptions) => runAdapter(o));
}
