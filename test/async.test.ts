// Heavy calls run off the event loop; calls on one object settle in submission order; finalizers
// release result memory, so long loops of calls keep resident memory flat.
import test from "ava";
import { Head } from "../lib/head.js";
import { native } from "../lib/native.js";
import type { TensorData } from "../lib/native.js";

const addon = native();

function randomInput(n: number, d: number, seed: number): TensorData {
  let s = seed;
  const data = Float32Array.from({ length: n * d }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
  return { data, shape: [n, d] };
}

test("calls on one object complete in submission order, big ones first notwithstanding", async (t) => {
  const head = new Head({ inFeatures: 256, hidden: [512], outFeatures: 8, seed: 3 });
  const big = randomInput(4096, 256, 1);
  const small = randomInput(1, 256, 2);
  const order: number[] = [];
  const calls = Array.from({ length: 40 }, (_, i) => head.forward(i % 2 === 0 ? big : small).then(() => order.push(i)));
  t.true(head.pending >= 39, `queued: ${head.pending}`);
  await Promise.all(calls);
  t.deepEqual(
    order,
    Array.from({ length: 40 }, (_, i) => i),
  );
  t.is(head.pending, 0);
});

test("a call sees exactly the state left by the calls queued before it", async (t) => {
  const a = new Head({ inFeatures: 8, hidden: [16], outFeatures: 4, seed: 1 });
  const b = new Head({ inFeatures: 8, hidden: [16], outFeatures: 4, seed: 2 });
  const stateB = await b.stateDict();
  const input = randomInput(32, 8, 9);
  const before = a.forward(input);
  const load = a.loadStateDict(stateB);
  const after = a.forward(input);
  const [ya, , yb, ref] = await Promise.all([before, load, after, b.forward(input)]);
  t.notDeepEqual(Array.from(ya.data), Array.from(ref.data));
  t.deepEqual(Array.from(yb.data), Array.from(ref.data));
});

test("work runs off the event loop: timers fire while a forward pass runs", async (t) => {
  const head = new Head({ inFeatures: 512, hidden: [2048], outFeatures: 512, seed: 5 });
  const input = randomInput(8192, 512, 3);
  let turns = 0;
  let settled = false;
  const spin = () => {
    if (settled) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  await head.forward(input);
  settled = true;
  t.true(turns >= 3, `event loop turned ${turns} times during the call`);
});

test.serial("10,000 async calls in a loop keep resident memory flat (results are freed by finalizers)", async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const input = randomInput(64, 256, 4); // 64 KiB in, 64 KiB out per call
  const settle = async () => {
    gc?.();
    await new Promise((r) => setImmediate(r));
    gc?.();
  };
  let rssWarm = 0;
  let sum = 0;
  for (let i = 0; i < 10_000; i++) {
    const r = await addon.debug.echo(input);
    sum += r.output.data[i % r.output.data.length]!;
    if (i === 999) {
      await settle();
      rssWarm = process.memoryUsage().rss;
    }
  }
  await settle();
  const growth = process.memoryUsage().rss - rssWarm;
  t.true(Number.isFinite(sum));
  // Without finalizers the 9,000 results after warm-up alone would hold 9000 × 64 KiB = 562 MiB.
  t.true(growth < 48 * 2 ** 20, `RSS grew ${(growth / 2 ** 20).toFixed(1)} MiB over 9,000 calls`);
});

test.serial("10,000 queued calls on one object in bursts keep memory flat too", async (t) => {
  const head = new Head({ inFeatures: 128, outFeatures: 128, seed: 8 });
  const input = randomInput(128, 128, 6); // 64 KiB out per call
  let rssWarm = 0;
  for (let burst = 0; burst < 100; burst++) {
    const results = await Promise.all(Array.from({ length: 100 }, () => head.forward(input)));
    t.is(results.length, 100);
    if (burst === 9) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((r) => setImmediate(r));
      rssWarm = process.memoryUsage().rss;
    }
  }
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setImmediate(r));
  const growth = process.memoryUsage().rss - rssWarm;
  t.true(growth < 48 * 2 ** 20, `RSS grew ${(growth / 2 ** 20).toFixed(1)} MiB over 9,000 calls`);
  t.is(head.pending, 0);
});

test("the thread count is a setting, defaulting to the machine's cores", (t) => {
  const before = addon.getNumThreads();
  addon.setNumThreads(1);
  t.is(addon.getNumThreads(), 1);
  addon.setNumThreads(before);
  t.is(addon.getNumThreads(), before);
});

// Serial (like the memory tests above): ava runs serial tests before the concurrent ones, so no other test's
// native work frees a block between emptying the cache and reading its size.
test.serial("the CPU block cache reuses freed tensors of 1 MiB and more, and empties on request", async (t) => {
  const head = new Head({ inFeatures: 512, outFeatures: 1024, seed: 1 });
  const input = randomInput(512, 512, 7); // output 2 MiB
  const before = addon.cpuCache();
  t.true(before.enabled);
  const gc = (globalThis as { gc?: () => void }).gc;
  t.truthy(gc, "the tests run with --expose-gc");
  // Each output is dropped and collected before the next call, so its block is back in the cache. Node runs the
  // finalizer a turn or two after the collection that found the buffer dead: wait until the cache holds a block.
  const collect = async () => {
    for (let turn = 0; turn < 20 && addon.cpuCache().cachedBytes === 0; turn++) {
      gc!();
      await new Promise((r) => setImmediate(r));
    }
  };
  for (let i = 0; i < 20; i++) {
    await head.forward(input);
    await collect();
  }
  const after = addon.cpuCache();
  t.true(after.hits - before.hits >= 10, `hits ${after.hits - before.hits}, misses ${after.misses - before.misses}`);
  t.true(after.cachedBytes > 0);
  addon.emptyCpuCache();
  t.is(addon.cpuCache().cachedBytes, 0);
});
