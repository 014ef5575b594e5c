/**
 * `vilref/train`: pre-training — the losses, the Trainer (one step in LibTorch), `pretrain` (the
 * whole run from one config), schedules, and multi-process runs on c10d process groups.
 */
export { losses } from "./losses.js";
export type { ClipLossArgs, WsclLossArgs, LossResult } from "./losses.js";
export { Trainer, trainerOptionsSchema } from "./trainer.js";
export type {
  TrainerOptions,
  ResolvedTrainerOptions,
  EffectiveTrainerOptions,
  TrainerStepOptions,
  TrainBatch,
  StepResult,
  QueueState,
  TrainerStateRecord,
} from "./trainer.js";
export type { TrainerDevices } from "../native.js";
export { pretrain, NonFiniteLossError, listCheckpoints } from "./pretrain.js";
export type {
  PretrainOptions,
  PretrainResult,
  ProgressEvent,
  EvalMetrics,
  TrainMetrics,
  CheckpointState,
} from "./pretrain.js";
export {
  parseConfig as parsePretrainConfig,
  loadConfig as loadPretrainConfig,
  pretrainConfigSchema,
} from "./config.js";
export type { PretrainConfig, PretrainConfigInput } from "./config.js";
export { cosineSchedule } from "./schedule.js";
export type { Schedule, ScheduleOptions } from "./schedule.js";
export { distAvailability, initProcessGroup, readDistEnv, isDistWorker, backendFor, DIST_VARIABLES } from "./dist.js";
export type { DistBackend, DistEnv, ProcessGroup, ProcessGroupOptions } from "./dist.js";
export { launch, freePort } from "./launch.js";
export type { LaunchOptions, LaunchResult } from "./launch.js";
export { writeCurves } from "./curves.js";
