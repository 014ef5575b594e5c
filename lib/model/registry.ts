/**
 * Models by name. The known checkpoints are data (lib/model/registry.json: the released ViLReF
 * ViT-B/16 and RN50, their file names, where they are published, architecture configs, context
 * length and vocabulary); checkpoints a user registers with `vilref models add` are listed in
 * `<home>/models.json`. A name resolves to a file in the model folder (`VILREF_HOME`, default
 * `$XDG_CACHE_HOME/vilref` or `~/.cache/vilref`). Nothing is ever downloaded: a missing file is an
 * error that names the file, where the released weights are published and the folder to put it in.
 *
 * This module only resolves names to files (it builds no model): `ViLReF.fromPretrained` and
 * `modelFromSpec` load what it finds.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { z } from "zod";
import { formatIssues } from "../config/errors.js";
import { readJsonFile } from "../io/json.js";
import { parseModelConfig, presetNames } from "./config.js";
import type { ModelConfig } from "./config.js";

const releasedSchema = z
  .object({
    name: z.string().min(1),
    files: z.array(z.string().min(1)).min(1),
    published: z.string().min(1),
    url: z.string().min(1),
  })
  .strict();

const entrySchema = z
  .object({
    description: z.string(),
    file: z.string().min(1),
    released: releasedSchema.optional(),
    architecture: z.string().optional(),
    config: z.record(z.string(), z.unknown()),
    context_length: z.number().int().min(2).optional(),
    vocab: z
      .object({ name: z.string(), size: z.number().int().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) })
      .strict()
      .optional(),
  })
  .strict();

const registrySchema = z
  .object({
    $comment: z.string().optional(),
    version: z.literal(1),
    models: z.record(z.string(), entrySchema),
    presets: z.record(z.string(), z.string()),
  })
  .strict();

const userEntrySchema = z
  .object({
    file: z.string().min(1),
    source: z.string().optional(),
    sha256: z.string().optional(),
    added: z.string().optional(),
    description: z.string().optional(),
  })
  .strict();

const userRegistrySchema = z.object({ version: z.literal(1), models: z.record(z.string(), userEntrySchema) }).strict();

export type RegistryEntry = z.output<typeof entrySchema>;
export type Registry = z.output<typeof registrySchema>;
export type UserRegistryEntry = z.output<typeof userEntrySchema>;
export type UserRegistry = z.output<typeof userRegistrySchema>;

export const REGISTRY_URL = new URL("./registry.json", import.meta.url);
/** The file in the model folder that lists the checkpoints `vilref models add` registered. */
export const USER_REGISTRY_FILE = "models.json";

/** A name: letters, digits, dot, dash and underscore, not starting with a dot or dash. */
export const MODEL_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** An unknown model name, or a known one whose file is not in the model folder. */
export class ModelNotFoundError extends Error {
  override name = "ModelNotFoundError";
  constructor(
    message: string,
    readonly model: string,
    readonly dir: string,
  ) {
    super(message);
  }
}

let cached: Registry | undefined;

/** The built-in registry (lib/model/registry.json), validated; each config is checked as a model config. */
export function loadRegistry(): Registry {
  if (cached) return cached;
  const where = REGISTRY_URL.pathname;
  const r = registrySchema.safeParse(JSON.parse(readFileSync(REGISTRY_URL, "utf8")));
  if (!r.success) throw new TypeError(`${where}: ${formatIssues(r.error)}`);
  for (const [name, e] of Object.entries(r.data.models)) parseModelConfig(e.config, `${where}: models.${name}.config`);
  cached = r.data;
  return cached;
}

/** The model folder: `dir`, else VILREF_HOME, else $XDG_CACHE_HOME/vilref, else ~/.cache/vilref. */
export function modelHome(dir?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (dir) return path.resolve(dir);
  if (env.VILREF_HOME) return path.resolve(env.VILREF_HOME);
  const cache = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : undefined;
  return path.join(cache ?? path.join(homedir(), ".cache"), "vilref");
}

/** The checkpoints registered in a model folder (`<home>/models.json`; none when it is absent). */
export function readUserRegistry(home: string): UserRegistry {
  const file = path.join(home, USER_REGISTRY_FILE);
  if (!existsSync(file)) return { version: 1, models: {} };
  const raw = readJsonFile(file);
  const r = userRegistrySchema.safeParse(raw);
  if (!r.success) throw new TypeError(`${file}: ${formatIssues(r.error)}`);
  return r.data;
}

const CHECKPOINT_EXT = /\.(safetensors|pt|pth|bin)$/i;

/** A spec that names a file rather than a model: a path separator, a checkpoint extension, or an existing file. */
export function looksLikePath(spec: string): boolean {
  return spec.includes("/") || spec.includes(path.sep) || CHECKPOINT_EXT.test(spec) || existsSync(spec);
}

export interface ResolvedModel {
  /** The checkpoint file. */
  path: string;
  /** The model's name when it was resolved by name. */
  name?: string;
  /** "path": given as a file; "released"/"converted": a known checkpoint's .pt or safetensors;
   * "registered": models add. */
  source: "path" | "released" | "converted" | "registered" | "folder";
  /** The registry entry of a known name. */
  entry?: RegistryEntry;
  /** The architecture a released .pt is loaded with (it carries none). */
  config?: ModelConfig;
  /** The text length the model was trained with, when the registry knows it. */
  contextLength?: number;
  /** The vocabulary's sha256, when the registry knows it. */
  vocabSha256?: string;
}

/** Names known here: the registry's and the folder's registered ones. */
export function knownNames(home: string): string[] {
  return [...new Set([...Object.keys(loadRegistry().models), ...Object.keys(readUserRegistry(home).models)])].sort();
}

/** What to do about a known model whose file is not in the folder. */
export function missingMessage(name: string, entry: RegistryEntry, home: string): string {
  const r = entry.released;
  const files = r ? [entry.file, ...r.files] : [entry.file];
  const where = r
    ? ` The released weights are published from ${r.published} (its README links them as ${r.name}: ${r.url}); ` +
      `put the downloaded file in ${home} as ${r.files[0]}, or convert it once with \`vilref models add ` +
      `${r.files[0]} --name ${name} --vocab vocab.txt\` (which writes ${entry.file} there with the vocabulary ` +
      "inside)."
    : ` Put ${entry.file} in ${home}.`;
  return (
    `model ${name} (${entry.description}): none of ${files.join(", ")} is in the model folder ` +
    `${home}.${where} VILREF_HOME sets the folder; nothing is downloaded.`
  );
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Resolves a model name (or a path, returned as is) to its checkpoint file. Names are looked up in
 * this order: checkpoints registered in the folder (models.json), the registry's known checkpoints
 * (the converted safetensors first, then the released .pt names), then `<home>/<name>.safetensors`.
 */
export function resolveModel(spec: string, options: { dir?: string } = {}): ResolvedModel {
  if (looksLikePath(spec)) return { path: spec, source: "path" };
  const home = modelHome(options.dir);
  if (!MODEL_NAME.test(spec))
    throw new ModelNotFoundError(`model name ${JSON.stringify(spec)} is malformed`, spec, home);
  const user = readUserRegistry(home).models[spec];
  const entry = loadRegistry().models[spec];
  const known = entry
    ? {
        entry,
        ...(entry.context_length !== undefined ? { contextLength: entry.context_length } : {}),
        ...(entry.vocab ? { vocabSha256: entry.vocab.sha256 } : {}),
      }
    : {};
  if (user) {
    const p = path.resolve(home, user.file);
    if (!isFile(p))
      throw new ModelNotFoundError(
        `model ${spec}: registered in ${path.join(home, USER_REGISTRY_FILE)} as ${user.file}, ` +
          `but ${p} is missing; register it again with vilref models add`,
        spec,
        home,
      );
    return { path: p, name: spec, source: "registered", ...known };
  }
  if (entry) {
    const converted = path.join(home, entry.file);
    if (isFile(converted)) return { path: converted, name: spec, source: "converted", ...known };
    for (const f of entry.released?.files ?? []) {
      const p = path.join(home, f);
      if (isFile(p))
        return { path: p, name: spec, source: "released", config: parseModelConfig(entry.config), ...known };
    }
    throw new ModelNotFoundError(missingMessage(spec, entry, home), spec, home);
  }
  const plain = path.join(home, `${spec}.safetensors`);
  if (isFile(plain)) return { path: plain, name: spec, source: "folder" };
  const names = knownNames(home);
  const hint = presetNames().includes(spec) ? `; for random weights of that preset say preset:${spec}` : "";
  throw new ModelNotFoundError(
    `unknown model name ${JSON.stringify(spec)}: no such checkpoint file, ` +
      `and not a known or registered model (known: ${names.join(", ")}; folder ${home}); ` +
      `give a .safetensors/.pt file, a name from \`vilref models list\`, or preset:<name>${hint}`,
    spec,
    home,
  );
}

export interface ModelListing {
  name: string;
  kind: "released" | "registered" | "preset";
  description: string;
  /** The file found in the folder, or null. */
  present: string | null;
  /** What to put in the folder when absent. */
  expected: string[];
}

/** Every known, registered and preset model, with the file present in the folder (if any). */
export function listModels(options: { dir?: string } = {}): { home: string; models: ModelListing[] } {
  const home = modelHome(options.dir);
  const reg = loadRegistry();
  const user = readUserRegistry(home).models;
  const out: ModelListing[] = [];
  for (const [name, e] of Object.entries(reg.models)) {
    if (user[name]) continue;
    const expected = [e.file, ...(e.released?.files ?? [])];
    const present = expected.map((f) => path.join(home, f)).find(isFile) ?? null;
    out.push({ name, kind: "released", description: e.description, present, expected });
  }
  for (const [name, u] of Object.entries(user)) {
    const p = path.resolve(home, u.file);
    out.push({
      name,
      kind: "registered",
      description: u.description ?? (u.source ? `converted from ${u.source}` : "registered checkpoint"),
      present: isFile(p) ? p : null,
      expected: [u.file],
    });
  }
  for (const [name, description] of Object.entries(reg.presets))
    out.push({ name: `preset:${name}`, kind: "preset", description, present: null, expected: [] });
  return { home, models: out };
}
