/**
 * Process groups for data-parallel pre-training, on LibTorch's c10d (native/dist.cc): Gloo on the
 * CPU, NCCL on CUDA where the LibTorch has it. A worker joins a run through the same environment
 * contract as torchrun, so torchrun-style launchers, SLURM (srun) and Kubernetes PyTorchJob start
 * vilref as they are:
 *
 *   MASTER_ADDR   host of rank 0, which serves the rendezvous store (TCPStore)
 *   MASTER_PORT   its TCP port
 *   WORLD_SIZE    number of processes in the run
 *   RANK          this process's rank, 0 ≤ RANK < WORLD_SIZE
 *   LOCAL_RANK    its rank on this machine (picks the GPU: cuda:LOCAL_RANK); default 0
 *
 * Under SLURM without those variables, SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID stand in for
 * RANK / WORLD_SIZE / LOCAL_RANK (MASTER_ADDR and MASTER_PORT must still be exported).
 */
import { z } from "zod";
import { parseOptions } from "../config/options.js";
import { native } from "../native.js";
import type { NativeDist, TensorData } from "../native.js";

export type DistBackend = "gloo" | "nccl";

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

export const processGroupFields = {
  /** This process's rank, below worldSize. Required. */
  rank: z
    .number()
    .int()
    .min(0)
    .max(1 << 20),
  /** Number of processes in the run. Required. */
  worldSize: z
    .number()
    .int()
    .min(1)
    .max(1 << 20),
  /** Its rank on this machine (which GPU it uses; not read here). Default: 0. */
  localRank: z
    .number()
    .int()
    .min(0)
    .max(1 << 16)
    .default(0),
  /** Host of rank 0, which serves the rendezvous store. Required. */
  masterAddr: z.string().min(1),
  /** Its TCP port. Required. */
  masterPort: z.number().int().min(1).max(65535),
  /** Every collective and the rendezvous wait at most this long. Default: 300000. */
  timeoutMs: z
    .number()
    .min(100)
    .max(7 * 24 * 3600e3)
    .default(300000),
  /** "gloo" (CPU) or "nccl" (CUDA). Default: "gloo". */
  backend: z.enum(["gloo", "nccl"]).default("gloo"),
};
export const processGroupSchema = z
  .object(processGroupFields)
  .strict()
  .superRefine((o, ctx) => {
    if (o.rank >= o.worldSize)
      ctx.addIssue({
        code: "custom",
        path: ["rank"],
        message: `${o.rank} must be below options.worldSize ${o.worldSize}`,
      });
  });
export type ProcessGroupOptions = z.input<typeof processGroupSchema>;

/**
 * A c10d process group (made by initProcessGroup); the trainer takes it as `processGroup`.
 * `dispose()` (or `await using`) leaves it after the collectives already queued: the store
 * connection and the backend close once no trainer holds the group either.
 */
export interface ProcessGroup extends Disposable, AsyncDisposable {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: DistBackend;
  readonly timeoutMs: number;
  /** Sums a tensor over ranks. Not to be called while a trainer step on the same group runs. */
  allReduce<T extends Float32Array | Float64Array | Int32Array | BigInt64Array>(
    t: TensorData<T>,
  ): Promise<TensorData<T>>;
  /** Every rank's rows, concatenated in rank order (row counts may differ between ranks). */
  allGather<T extends Float32Array | Float64Array | Int32Array | BigInt64Array>(
    t: TensorData<T>,
  ): Promise<TensorData<T>>;
  barrier(): Promise<void>;
  dispose(): Promise<void>;
}

function nativeDist(): NativeDist {
  return native().dist;
}

/** Whether this build of the addon has process groups, and if not, why. */
export function distAvailability(): { available: boolean; reason: string | null; backends: DistBackend[] } {
  const d = nativeDist();
  return { available: d.available, reason: d.reason, backends: [...d.backends] };
}

/** The variables of the contract that are set (a process with none of them is not a worker). */
export const DIST_VARIABLES = ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"] as const;

/** True when the environment asks this process to join a distributed run. */
export function isDistWorker(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.WORLD_SIZE !== undefined || env.RANK !== undefined;
}

function intVar(
  env: NodeJS.ProcessEnv,
  name: string,
  min: number,
  max: number,
  fallback?: { name: string; value: string | undefined },
): number {
  let raw = env[name];
  let shown = name;
  if ((raw === undefined || raw === "") && fallback?.value !== undefined && fallback.value !== "") {
    raw = fallback.value;
    shown = fallback.name;
  }
  if (raw === undefined || raw === "")
    throw new RangeError(
      `${name} is not set; a distributed worker needs ${DIST_VARIABLES.join(", ")} (torchrun's environment contract)`,
    );
  if (!/^\d+$/.test(raw.trim())) throw new RangeError(`${shown}="${raw}": expected a whole number`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new RangeError(`${shown}=${n}: expected ${min}..${max}`);
  return n;
}

/**
 * Reads and checks the environment contract; every error names the variable. SLURM's
 * SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID stand in for missing RANK / WORLD_SIZE / LOCAL_RANK.
 */
export function readDistEnv(env: NodeJS.ProcessEnv = process.env): DistEnv {
  const worldSize = intVar(env, "WORLD_SIZE", 1, 1 << 20, { name: "SLURM_NTASKS", value: env.SLURM_NTASKS });
  const rank = intVar(env, "RANK", 0, 1 << 20, { name: "SLURM_PROCID", value: env.SLURM_PROCID });
  if (rank >= worldSize) throw new RangeError(`RANK=${rank} must be below WORLD_SIZE=${worldSize}`);
  const localRank =
    env.LOCAL_RANK === undefined && env.SLURM_LOCALID === undefined
      ? 0
      : intVar(env, "LOCAL_RANK", 0, 1 << 16, { name: "SLURM_LOCALID", value: env.SLURM_LOCALID });
  const masterAddr = env.MASTER_ADDR?.trim();
  if (!masterAddr)
    throw new RangeError(
      `MASTER_ADDR is not set; a distributed worker needs ${DIST_VARIABLES.join(", ")} (torchrun's environment ` +
        "contract)",
    );
  const masterPort = intVar(env, "MASTER_PORT", 1, 65535);
  return { rank, worldSize, localRank, masterAddr, masterPort };
}

/**
 * Joins the run: rank 0 serves the store, every rank waits (at most the timeout) for all others,
 * then the process group connects. Errors name the variable or the rank at fault.
 */
export async function initProcessGroup(options: ProcessGroupOptions): Promise<ProcessGroup> {
  const d = nativeDist();
  if (!d.available) throw new Error(d.reason ?? "dist: not available in this build");
  const { localRank: _, ...o } = parseOptions(processGroupSchema, options);
  if (!d.backends.includes(o.backend))
    throw new Error(`dist: backend "${o.backend}" is not in this build (it has ${d.backends.join(", ") || "none"})`);
  return d.init(o);
}

/** "gloo" for the CPU, "nccl" for CUDA devices (when the build has it). */
export function backendFor(device: string): DistBackend {
  return device.startsWith("cuda") ? "nccl" : "gloo";
}
