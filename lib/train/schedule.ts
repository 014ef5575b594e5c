/**
 * Learning-rate schedules as pure functions of the step: linear warmup from 0 to the peak, then a
 * cosine decay to `minLr` at `totalSteps` (cn_clip's `cosine_lr`, with a floor). Steps count from 0:
 * the lr of step s is the one the (s+1)-th optimiser update uses.
 */
export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of the warmup. */
  lr: number;
  /** Steps of linear warmup (0: start at the peak). */
  warmupSteps: number;
  /** Total steps of the run; the cosine reaches `minLr` there and stays. */
  totalSteps: number;
  /** Floor of the decay (default 0). */
  minLr?: number;
}

export type Schedule = (step: number) => number;

export function cosineSchedule(options: ScheduleOptions): Schedule {
  const { lr, warmupSteps, totalSteps } = options;
  const minLr = options.minLr ?? 0;
  if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`schedule.lr: expected a finite number ≥ 0, got ${lr}`);
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0))
    throw new RangeError(`schedule.warmupSteps: expected a whole number ≥ 0, got ${warmupSteps}`);
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1))
    throw new RangeError(`schedule.totalSteps: expected a whole number ≥ 1, got ${totalSteps}`);
  if (!(Number.isFinite(minLr) && minLr >= 0 && minLr <= lr))
    throw new RangeError(`schedule.minLr: expected a number in [0, lr], got ${minLr}`);
  return (step: number): number => {
    if (!(Number.isInteger(step) && step >= 0)) throw new RangeError(`step: expected a whole number ≥ 0, got ${step}`);
    if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
    const decay = totalSteps - warmupSteps;
    if (decay <= 0 || step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / decay;
    return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
  };
}
