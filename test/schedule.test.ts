// The learning-rate schedule: linear warmup, then cosine to the floor, as a pure function of the step.
import test from "ava";
import { cosineSchedule } from "../lib/train/schedule.js";

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

test("linear warmup reaches the peak at the last warmup step", (t) => {
  const lr = cosineSchedule({ lr: 1e-3, warmupSteps: 4, totalSteps: 12 });
  t.deepEqual(
    [0, 1, 2, 3].map(lr).map((x) => +x.toExponential(6)),
    [2.5e-4, 5e-4, 7.5e-4, 1e-3],
  );
});

test("cosine decay: peak after warmup, half way at the middle, floor at the end and after", (t) => {
  const lr = cosineSchedule({ lr: 1e-3, warmupSteps: 4, totalSteps: 12, minLr: 1e-4 });
  t.true(close(lr(4), 1e-3));
  t.true(close(lr(8), 1e-4 + 0.5 * (1e-3 - 1e-4)), `${lr(8)}`);
  t.true(close(lr(6), 1e-4 + 0.5 * 9e-4 * (1 + Math.cos(Math.PI / 4))));
  t.is(lr(12), 1e-4);
  t.is(lr(100), 1e-4);
  // monotone after the warmup
  for (let s = 4; s < 12; s++) t.true(lr(s + 1) <= lr(s));
});

test("no warmup starts at the peak; pure (same step, same value)", (t) => {
  const lr = cosineSchedule({ lr: 0.5, warmupSteps: 0, totalSteps: 2 });
  t.is(lr(0), 0.5);
  t.true(close(lr(1), 0.25));
  t.is(lr(1), lr(1));
  t.is(lr(2), 0);
});

test("bad arguments are named", (t) => {
  t.throws(() => cosineSchedule({ lr: -1, warmupSteps: 0, totalSteps: 1 }), { message: /^schedule\.lr:/ });
  t.throws(() => cosineSchedule({ lr: 1, warmupSteps: 1.5, totalSteps: 1 }), { message: /^schedule\.warmupSteps:/ });
  t.throws(() => cosineSchedule({ lr: 1, warmupSteps: 0, totalSteps: 0 }), { message: /^schedule\.totalSteps:/ });
  t.throws(() => cosineSchedule({ lr: 1, warmupSteps: 0, totalSteps: 5, minLr: 2 }), { message: /^schedule\.minLr:/ });
  t.throws(() => cosineSchedule({ lr: 1, warmupSteps: 0, totalSteps: 5 })(-1), { message: /^step:/ });
});
