import test from "ava";
import sharp from "sharp";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Loader, classifyError, runEpochs, type Batch, type EpochSource } from "../lib/data/loader.js";
import { BatchMemory } from "../lib/data/batch-memory.js";
import { samplesFromFiles, type Sample } from "../lib/data/manifest.js";
import { CLIP_MEAN, CLIP_STD } from "../lib/data/transforms.js";
import { generateCase } from "../lib/synth/index.js";

const dir = mkdtempSync(path.join(tmpdir(), "vilref-loader-"));
let files: string[] = [];

test.before(async () => {
  for (let i = 0; i < 10; i++) {
    const c = await generateCase(3, i, { size: 128, format: i % 2 ? "jpeg" : "png" });
    const f = path.join(dir, `${c.id}.${i % 2 ? "jpg" : "png"}`);
    writeFileSync(f, c.image);
    files.push(f);
  }
});

function fakeSamples(n: number): Sample[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `s${i}`,
    image: `/nonexistent/${i}.png`,
    text: null,
    labels: null,
    split: null,
    patientId: null,
    eye: null,
    target: null,
    source: { file: "x", line: i + 1 },
  }));
}

test("batches are one contiguous Float32Array of shape (N, 3, 224, 224) with normalised values", async (t) => {
  const loader = new Loader(samplesFromFiles(files), {
    batchSize: 4,
    seed: 1,
    transform: { train: true },
    concurrency: 4,
  });
  const batches: Batch[] = [];
  for await (const b of loader.epoch(0)) batches.push(b);
  t.deepEqual(
    batches.map((b) => b.images.shape),
    [
      [4, 3, 224, 224],
      [4, 3, 224, 224],
      [2, 3, 224, 224],
    ],
  );
  for (const b of batches) {
    t.true(b.images.data instanceof Float32Array);
    t.is(
      b.images.data.length,
      b.images.shape.reduce((a, x) => a * x, 1),
    );
    const lo = Math.min(...CLIP_MEAN.map((m, c) => -m / CLIP_STD[c]!));
    const hi = Math.max(...CLIP_MEAN.map((m, c) => (1 - m) / CLIP_STD[c]!));
    let min = Infinity;
    let max = -Infinity;
    for (const v of b.images.data) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    t.true(min >= lo - 1e-5 && max <= hi + 1e-5 && max - min > 1, `range ${min}..${max}`);
    t.is(b.ids.length, b.images.shape[0]!);
  }
  t.is(loader.stats.decoded, 10);
  t.deepEqual(new Set(batches.flatMap((b) => b.ids)).size, 10);
  t.deepEqual(loader.position, { epoch: 1, index: 0 });
});

test("shuffle is deterministic per (seed, epoch); shards cover every sample once per epoch", (t) => {
  const samples = fakeSamples(103);
  const mk = (o: object) => new Loader(samples, { batchSize: 8, seed: 42, ...o });
  t.deepEqual(mk({}).order(3), mk({}).order(3));
  t.notDeepEqual(mk({}).order(3), mk({}).order(4));
  t.notDeepEqual(mk({}).order(3), mk({ seed: 43 }).order(3));
  for (const world of [1, 2, 3, 4, 7]) {
    for (const epoch of [0, 1]) {
      const all: number[] = [];
      const lens: number[] = [];
      for (let r = 0; r < world; r++) {
        const o = mk({ rank: r, worldSize: world }).order(epoch);
        all.push(...o);
        lens.push(o.length);
      }
      t.deepEqual(
        [...all].sort((a, b) => a - b),
        Array.from({ length: 103 }, (_, i) => i),
        `world ${world}`,
      );
      t.true(Math.max(...lens) - Math.min(...lens) <= 1);
      // Padded shards: equal lengths, every sample at least once.
      const padded = Array.from({ length: world }, (_, r) =>
        mk({ rank: r, worldSize: world, evenShards: "pad" }).order(epoch),
      );
      t.true(padded.every((o) => o.length === Math.ceil(103 / world)));
      t.is(new Set(padded.flat()).size, 103);
      const dropped = Array.from({ length: world }, (_, r) =>
        mk({ rank: r, worldSize: world, evenShards: "drop" }).order(epoch),
      );
      t.true(dropped.every((o) => o.length === Math.floor(103 / world)));
      t.is(new Set(dropped.flat()).size, dropped.flat().length);
    }
  }
  t.is(mk({ dropLast: true }).batchCount(0), 12);
  t.is(mk({ dropLast: false }).batchCount(0), 13);
  t.throws(() => mk({ rank: 2, worldSize: 2 }), { message: /rank/ });
  t.throws(() => new Loader(samples, { batchSize: 0 }), { message: /batchSize/ });
});

test("drop-last leaves the partial batch out", async (t) => {
  const loader = new Loader(samplesFromFiles(files), { batchSize: 4, dropLast: true, transform: { size: 32 } });
  const sizes: number[] = [];
  for await (const b of loader.epoch(0)) sizes.push(b.images.shape[0]!);
  t.deepEqual(sizes, [4, 4]);
});

test("a position resumes exactly: same batches, same augmentations", async (t) => {
  const opts = { batchSize: 3, seed: 9, transform: { size: 48, train: true }, prefetch: 1 };
  const full: Batch[] = [];
  const first = new Loader(samplesFromFiles(files), opts);
  for await (const b of first.batches(2)) full.push(b);
  t.is(full.length, 8);
  // Stop after the second batch of epoch 1, then resume from the saved position in a new loader.
  const a = new Loader(samplesFromFiles(files), opts);
  let saved = a.position;
  let k = 0;
  for await (const b of a.batches(2)) {
    void b;
    saved = a.position;
    if (++k === 6) break;
  }
  t.deepEqual(saved, { epoch: 1, index: 6 });
  const rest: Batch[] = [];
  const b2 = new Loader(samplesFromFiles(files), opts);
  for await (const b of b2.batches(2, saved)) rest.push(b);
  t.is(rest.length, 2);
  rest.forEach((b, i) => {
    t.deepEqual(b.ids, full[6 + i]!.ids);
    t.deepEqual(b.images.data, full[6 + i]!.images.data);
  });
  // Epochs differ in order and augmentation.
  t.notDeepEqual(full[0]!.ids.concat(full[1]!.ids), full[4]!.ids.concat(full[5]!.ids));
});

test("missing, corrupt and truncated images are skipped, counted and logged; strict makes them fatal", async (t) => {
  const bad = mkdtempSync(path.join(tmpdir(), "vilref-bad-"));
  const good = readFileSync(files[1]!); // a JPEG
  const truncated = path.join(bad, "truncated.jpg");
  writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
  const garbage = path.join(bad, "garbage.png");
  writeFileSync(garbage, Buffer.from("this is not an image at all, just text"));
  const empty = path.join(bad, "empty.jpg");
  writeFileSync(empty, Buffer.alloc(0));
  const pngBuf = readFileSync(files[0]!);
  const truncPng = path.join(bad, "truncated.png");
  writeFileSync(truncPng, pngBuf.subarray(0, Math.floor(pngBuf.length * 0.6)));
  const missing = path.join(bad, "missing.png");
  const list = [files[0]!, truncated, files[2]!, garbage, missing, files[3]!, empty, truncPng];
  const log = path.join(bad, "run.log");
  const loader = new Loader(samplesFromFiles(list), { batchSize: 4, shuffle: false, transform: { size: 32 }, log });
  const ids: string[] = [];
  const shapes: number[] = [];
  const skippedPaths: string[] = [];
  for await (const b of loader.epoch(0)) {
    ids.push(...b.ids);
    shapes.push(b.images.shape[0]!);
    t.is(b.images.data.length, b.images.shape[0]! * 3 * 32 * 32);
    skippedPaths.push(...b.skipped.map((s) => s.path));
  }
  t.deepEqual(
    ids.map((i) => path.basename(i)),
    [files[0]!, files[2]!, files[3]!].map((f) => path.basename(f)),
  );
  t.deepEqual(shapes, [2, 1]);
  t.is(loader.stats.skipped, 5);
  t.is(loader.stats.decoded, 3);
  t.deepEqual(skippedPaths.sort(), [truncated, garbage, missing, empty, truncPng].sort());
  t.is(loader.stats.byReason.missing, 1);
  t.true(
    (loader.stats.byReason.truncated ?? 0) >= 1,
    JSON.stringify(loader.stats.byReason) + readFileSync(log, "utf8"),
  );
  const text = readFileSync(log, "utf8");
  for (const p of [truncated, garbage, missing, empty, truncPng]) t.true(text.includes(p), `log names ${p}`);
  t.regex(text, /missing\.png.*missing:/);

  const strict = new Loader(samplesFromFiles(list), {
    batchSize: 4,
    shuffle: false,
    transform: { size: 32 },
    strict: true,
  });
  await t.throwsAsync(
    async () => {
      for await (const b of strict.epoch(0)) void b;
    },
    { message: /truncated\.jpg: truncated/ },
  );
});

test("error classification", (t) => {
  t.is(classifyError(new Error("Input file is missing: /x.png")).kind, "missing");
  t.is(classifyError(new Error("VipsJpeg: premature end of JPEG image")).kind, "truncated");
  t.is(classifyError(new Error("Input buffer contains unsupported image format")).kind, "unsupported");
  t.is(classifyError(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" })).kind, "unreadable");
});

test("labels and targets travel with the batch", async (t) => {
  const samples = samplesFromFiles(files.slice(0, 3)).map((s, i) => ({
    ...s,
    labels: i === 1 ? { dr: 1 as const, hemorrhage: 0.5 as const } : {},
    target: i,
  }));
  const loader = new Loader(samples, { batchSize: 3, shuffle: false, transform: { size: 16 } });
  for await (const b of loader.epoch(0)) {
    t.deepEqual(b.labels!.shape, [3, 31]);
    t.is(b.labels!.data[31 + 1], 1); // dr is the second label
    t.is(b.labels!.data[31 + 22], 0.5); // hemorrhage
    t.deepEqual([...b.targets!], [0, 1, 2]);
  }
  t.pass();
});

test("recycleImages: the same batches, arrays reused, and a batch intact while the loop body awaits", async (t) => {
  const bad = mkdtempSync(path.join(tmpdir(), "vilref-recycle-"));
  const garbage = path.join(bad, "garbage.png");
  writeFileSync(garbage, Buffer.from("not an image"));
  // a bad image in the middle: its batch is compacted into a new, smaller array
  const list = [...files, garbage, ...files];
  const opts = {
    batchSize: 3,
    seed: 3,
    prefetch: 1,
    concurrency: 4,
    transform: { size: 32, train: true },
    log: () => {},
  };
  const plain = new Loader(samplesFromFiles(list), opts);
  const recycled = new Loader(samplesFromFiles(list), { ...opts, recycleImages: true });
  const before = new Set<ArrayBufferLike>(); // arrays of the epochs already run
  for (const epoch of [0, 1]) {
    const want: { ids: string[]; data: Float32Array; buffer: ArrayBufferLike }[] = [];
    for await (const b of plain.epoch(epoch))
      want.push({ ids: b.ids, data: b.images.data.slice(), buffer: b.images.data.buffer });
    t.is(new Set(want.map((w) => w.buffer)).size, want.length, "without recycling: a new array per batch");
    const full = new Set<ArrayBufferLike>();
    let fullBatches = 0;
    let k = 0;
    for await (const b of recycled.epoch(epoch)) {
      const w = want[k++]!;
      t.deepEqual(b.ids, w.ids);
      t.deepEqual(b.images.data.slice(), w.data, `epoch ${epoch} batch ${k - 1} when handed out`);
      await new Promise((r) => setTimeout(r, 40)); // the prefetched batch decodes meanwhile
      t.deepEqual(b.images.data.slice(), w.data, `epoch ${epoch} batch ${k - 1} after the body's await`);
      if (b.images.shape[0] === 3) (full.add(b.images.data.buffer), fullBatches++);
    }
    t.is(k, want.length);
    t.true(fullBatches >= 5, `${fullBatches} full batches`);
    // prefetch + 2 arrays at most, whatever the number of batches
    t.true(full.size <= opts.prefetch + 2, `${full.size} arrays for ${fullBatches} full batches`);
    // the arrays were let go when the previous epoch ended: an idle loader holds none
    t.true(
      [...full].every((b) => !before.has(b)),
      `epoch ${epoch} reuses an earlier epoch's array`,
    );
    for (const b of full) before.add(b);
  }
  // so were they when a loop stopped early
  for await (const b of recycled.epoch(2)) {
    before.add(b.images.data.buffer);
    break;
  }
  for await (const b of recycled.epoch(3)) t.false(before.has(b.images.data.buffer));
});

test("recycleImages across a run of epochs (batches()): arrays carry over, let go when it ends", async (t) => {
  const opts = {
    batchSize: 2,
    seed: 5,
    prefetch: 1,
    concurrency: 4,
    transform: { size: 24, train: true },
    log: () => {},
  };
  const want: { epoch: number; ids: string[]; data: Float32Array }[] = [];
  for await (const b of new Loader(samplesFromFiles(files), opts).batches(3))
    want.push({ epoch: b.epoch, ids: b.ids, data: b.images.data.slice() });
  const recycled = new Loader(samplesFromFiles(files), { ...opts, recycleImages: true });
  const arrays = new Set<ArrayBufferLike>();
  let k = 0;
  for await (const b of recycled.batches(3)) {
    const w = want[k++]!;
    t.is(b.epoch, w.epoch);
    t.deepEqual(b.ids, w.ids);
    t.deepEqual(b.images.data.slice(), w.data, `batch ${k - 1} (epoch ${b.epoch})`);
    if (b.images.shape[0] === 2) arrays.add(b.images.data.buffer);
  }
  t.is(k, want.length);
  t.true(new Set(want.map((w) => w.epoch)).size === 3 && k >= 6, `${k} batches over 3 epochs`);
  // one set of arrays for the whole run, not one per epoch
  t.true(arrays.size <= opts.prefetch + 2, `${arrays.size} arrays for ${k} batches over 3 epochs`);
  // and none held once the run is over
  for await (const b of recycled.epoch(3)) t.false(arrays.has(b.images.data.buffer));
});

/** Sources of `n` batches per epoch for runEpochs, logging what the loop asks of them. */
function countingSources(n: number, log: string[], fail?: { epoch: number; at: "open" | number }) {
  return (epoch: number, from: number): EpochSource => {
    log.push(`open ${epoch}@${from}`);
    if (fail?.epoch === epoch && fail.at === "open") throw new Error(`epoch ${epoch} cannot open`);
    let i = from;
    return {
      next: async () => {
        if (i >= n) return null;
        if (fail?.epoch === epoch && fail.at === i) throw new Error(`epoch ${epoch} sample ${i} unreadable`);
        const index = i++;
        log.push(`make ${epoch}.${index}`);
        const batch = {
          epoch,
          ids: [`${epoch}.${index}`],
          images: { data: new Float32Array(4), shape: [1, 1, 2, 2] },
          start: { epoch, index },
          next: { epoch, index: index + 1 },
        } as unknown as Batch;
        return { batch: new Promise<Batch>((r) => setTimeout(() => r(batch), 1)) };
      },
      close: () => void log.push(`close ${epoch}`),
    };
  };
}

test("a run of epochs is one pipeline: the next epoch's batches are made while this one's last are used", async (t) => {
  const log: string[] = [];
  const positions: string[] = [];
  const got: string[] = [];
  const prefetch = 1;
  const run = runEpochs(countingSources(3, log), { epoch: 0, index: 1 }, 3, prefetch, null, (p) =>
    positions.push(`${p.epoch}.${p.index}`),
  );
  for await (const b of run) {
    got.push(b.ids[0]!);
    log.push(`use ${b.ids[0]}`);
  }
  t.deepEqual(got, ["0.1", "0.2", "1.0", "1.1", "1.2", "2.0", "2.1", "2.2"]);
  // epoch 1's first batch is being made before epoch 0's last is handed out
  t.true(log.indexOf("make 1.0") < log.indexOf("use 0.2"), log.join(", "));
  t.true(log.indexOf("close 0") < log.indexOf("use 0.2"));
  // never more than prefetch + 1 batches being made besides the one in use
  let made = 0;
  let used = 0;
  for (const l of log) {
    if (l.startsWith("make")) made++;
    if (l.startsWith("use")) t.true(made - used++ <= prefetch + 2, `${made} made, ${used - 1} used at ${l}`);
  }
  // the position: the start, each batch's end, the next epoch's start once the loop asks past an epoch
  t.deepEqual(positions, ["0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3", "2.0", "2.1", "2.2", "2.3", "3.0"]);
  t.deepEqual(
    log.filter((l) => l.startsWith("open") || l.startsWith("close")),
    ["open 0@1", "close 0", "open 1@0", "close 1", "open 2@0", "close 2"],
  );
});

test("a run of epochs: an error in the next epoch comes after this one's batches; stopping lets go", async (t) => {
  for (const at of ["open", 1] as const) {
    const log: string[] = [];
    let position = "";
    const got: string[] = [];
    const run = runEpochs(countingSources(2, log, { epoch: 1, at }), { epoch: 0, index: 0 }, 3, 2, null, (p) => {
      position = `${p.epoch}.${p.index}`;
    });
    const error = await t.throwsAsync(async () => {
      for await (const b of run) got.push(b.ids[0]!);
    });
    t.regex(error!.message, at === "open" ? /epoch 1 cannot open/ : /epoch 1 sample 1 unreadable/);
    t.deepEqual(got, at === "open" ? ["0.0", "0.1"] : ["0.0", "0.1", "1.0"], `fails at ${at}`);
    t.is(position, at === "open" ? "1.0" : "1.1");
    t.is(
      log.filter((l) => l.startsWith("open")).length,
      log.filter((l) => l.startsWith("close")).length + (at === "open" ? 1 : 0),
    );
  }
  // breaking out: the open epoch's source is closed and the batch memory let go
  const log: string[] = [];
  const memory = new BatchMemory(4, 3);
  let cleared = 0;
  memory.clear = () => void cleared++;
  for await (const b of runEpochs(countingSources(4, log), { epoch: 0, index: 0 }, 5, 1, memory, () => {}))
    if (b.ids[0] === "1.1") break;
  t.is(cleared, 1);
  t.is(log.at(-1), "close 1");
  // a long run of empty epochs stays bounded: one epoch at a time, then done
  const empty: string[] = [];
  let n = 0;
  for await (const _ of runEpochs(countingSources(0, empty), { epoch: 0, index: 0 }, 2000, 1, null, () => {})) n++;
  t.is(n, 0);
  t.is(empty.filter((l) => l.startsWith("open")).length, 2000);
});

test("the default concurrency follows the cores the process may use (its CPU affinity), not the machine's", (t) => {
  const module = pathToFileURL(path.resolve("lib/data/loader.ts")).href;
  const script = `import("${module}").then((m) => console.log(m.defaultConcurrency()))`;
  const run = (pre: string[]) =>
    Number(
      execFileSync(pre[0]!, [...pre.slice(1), process.execPath, "--import=tsx", "-e", script], {
        encoding: "utf8",
      }).trim(),
    );
  t.is(run(["taskset", "-c", "0"]), 2);
  t.is(run(["env"]), Math.max(2, 2 * availableParallelism()));
});
