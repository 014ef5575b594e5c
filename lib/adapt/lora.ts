/**
 * LoRA adapters on a ViLReF model's image tower (native/lora.h): for each target weight W two
 * factors A [rank, fan_in] and B [out, rank] (B zero at start, so the adapted model computes what
 * the base model does), ΔW = (alpha / rank) · B·A. The base weights are never written while the
 * adapters train (a Finetuner given `lora` trains the factors and its head only); `merge()` adds
 * ΔW into them for export, and `save()` writes the factors alone as safetensors (small).
 *
 * Targets are released weight names, or the groups of `loraTargets`: "attention" (a ViT block's
 * fused attn.in_proj_weight and its out_proj, the ResNet's attention-pool projections), "mlp" (a ViT
 * block's c_fc and c_proj) and "all" (both).
 */
import { readSafetensors, writeSafetensors } from "../checkpoint/safetensors.js";
import type { StTensor } from "../checkpoint/safetensors.js";
import { NativeResource } from "../dispose.js";
import type { ViLReF } from "../model/vilref.js";
import { native } from "../native.js";
import type { LoraOptions as NativeLoraOptions, NativeLora, TensorData } from "../native.js";

export type LoraTargetGroup = "attention" | "mlp" | "all";
export const LORA_TARGET_GROUPS: readonly LoraTargetGroup[] = ["attention", "mlp", "all"];

const ATTENTION =
  /^visual\.(transformer\.resblocks\.\d+\.attn\.(in_proj_weight|out_proj\.weight)|attnpool\.[qkvc]_proj\.weight)$/;
const MLP = /^visual\.transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)\.weight$/;

/** The image tower's weights of a target group, by released name (an empty group is an error). */
export function loraTargets(model: ViLReF, group: LoraTargetGroup): string[] {
  if (!LORA_TARGET_GROUPS.includes(group))
    throw new RangeError(`targets: expected ${LORA_TARGET_GROUPS.join(", ")} or weight names, got ${String(group)}`);
  const names = model.parameters().map((p) => p.name);
  const out = names.filter((n) => (group !== "mlp" && ATTENTION.test(n)) || (group !== "attention" && MLP.test(n)));
  if (out.length === 0) throw new RangeError(`targets: the model has no ${group} weights LoRA can adapt`);
  return out;
}

export interface LoraOptions extends Omit<NativeLoraOptions, "targets" | "alpha" | "seed"> {
  /** ΔW = (alpha / rank) · B·A. Default: the rank. */
  alpha?: number;
  /** Seed of A's initialisation. Default: 0. */
  seed?: number;
  /** Weight names, or a group (default "attention"). */
  targets?: string[] | LoraTargetGroup;
}

/** Owns the factors: `dispose()` frees them (a Finetuner using them then refuses to run); the
 * model's dispose() disposes it. */
export class Lora extends NativeResource {
  readonly #native: NativeLora;
  readonly model: ViLReF;

  constructor(model: ViLReF, options: LoraOptions) {
    super();
    const t = options.targets ?? "attention";
    this.model = model;
    // Complete options for the addon (which reads them strictly): alpha defaults to the rank, seed to 0.
    this.#native = new (native().Lora)(model.nativeHandle, {
      rank: options.rank,
      alpha: options.alpha ?? options.rank,
      seed: options.seed ?? 0,
      targets: typeof t === "string" ? loraTargets(model, t) : t,
    });
    NativeResource.attach(model, this);
  }

  protected get nativeResource(): NativeLora {
    return this.#native;
  }

  /** The object a Finetuner's `lora` option hands the addon. */
  get nativeHandle(): NativeLora {
    return this.#native;
  }
  get config() {
    return this.#native.config;
  }
  get merged(): boolean {
    return this.#native.merged;
  }

  /** Image features with the adapters applied. */
  encodeImages(images: TensorData<Float32Array>, options?: { features?: "projected" | "pre" }): Promise<TensorData> {
    return this.#native.encodeImages(images, options);
  }
  stateDict(): Promise<Record<string, TensorData<Float32Array>>> {
    return this.#native.stateDict();
  }
  loadStateDict(state: Record<string, TensorData<Float32Array>>): Promise<void> {
    return this.#native.loadStateDict(state);
  }
  /** W += ΔW in the model's weights, once; the adapters then apply nothing. */
  merge(): Promise<void> {
    return this.#native.merge();
  }

  /** Writes the factors alone as safetensors, with rank, alpha and targets in the metadata. */
  async save(file: string): Promise<void> {
    const state = await this.stateDict();
    const tensors: Record<string, StTensor> = {};
    for (const [k, v] of Object.entries(state)) tensors[k] = { dtype: "F32", shape: v.shape, data: v.data };
    const c = this.config;
    await writeSafetensors(file, tensors, {
      format: "vilref-lora",
      rank: String(c.rank),
      alpha: String(c.alpha),
      targets: JSON.stringify(c.targets),
    });
  }

  /** Adapters on `model` read from what `save` wrote (rank, alpha and targets from its metadata). */
  static async load(model: ViLReF, file: string): Promise<Lora> {
    const { tensors, metadata } = await readSafetensors(file);
    if (metadata.format !== "vilref-lora") throw new TypeError(`${file}: not a vilref LoRA file (metadata.format)`);
    const targets = JSON.parse(metadata.targets ?? "null") as unknown;
    if (!Array.isArray(targets) || targets.some((t) => typeof t !== "string"))
      throw new TypeError(`${file}: metadata.targets: expected a JSON list of weight names`);
    const lora = new Lora(model, { rank: Number(metadata.rank), alpha: Number(metadata.alpha), targets });
    const state: Record<string, TensorData<Float32Array>> = {};
    for (const [k, t] of tensors) {
      if (t.dtype !== "F32") throw new TypeError(`${file}: ${k}: expected F32, got ${t.dtype}`);
      state[k] = { data: t.data as Float32Array, shape: t.shape };
    }
    await lora.loadStateDict(state);
    return lora;
  }
}
