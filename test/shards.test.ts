// WebDataset shards: the packer's round trip and determinism, the streaming loader's order, ranks,
// resume and memory, shards written by plain `tar`, and damaged input.
import test from "ava";
import sharp from "sharp";
import tarStream from "tar-stream";
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { readManifest, type Sample } from "../lib/data/manifest.js";
import { packShards } from "../lib/data/pack.js";
import { ShardLoader, type ShardLoaderOptions } from "../lib/data/shard-loader.js";
import { braceExpand, expandShards, isShardSpec, readMember, scanShards, splitKey } from "../lib/data/shards.js";
import { TarReader, walkTarSync } from "../lib/data/tar.js";
import { readSource } from "../lib/data/source.js";
import { writeSynthDataset } from "../lib/synth/index.js";

const root = mkdtempSync(path.join(tmpdir(), "vilref-shards-"));
const synth = path.join(root, "synth");
let source: Sample[] = [];
const packed = path.join(root, "packed");

test.before(async () => {
  await writeSynthDataset(synth, 36, 5, { size: 160, format: "jpeg" });
  // a few PNGs among the JPEGs: the packer re-encodes them through sharp
  await writeSynthDataset(path.join(synth, "png"), 4, 6, { size: 120, format: "png" });
  const m = readManifest(path.join(synth, "manifest.jsonl"));
  const p = readManifest(path.join(synth, "png", "manifest.jsonl")).map((s) => ({ ...s, id: `png-${s.id}` }));
  source = [...m, ...p];
  await packShards(source, { out: packed, samplesPerShard: 5, resolution: 64 });
});

const opts = (o: Partial<ShardLoaderOptions> = {}): ShardLoaderOptions => ({
  batchSize: 4,
  bufferSize: 7,
  seed: 11,
  transform: { size: 32, train: true },
  ...o,
});

async function ids(loader: ShardLoader, epoch: number, from = 0): Promise<string[]> {
  const out: string[] = [];
  for await (const b of loader.epoch(epoch, from)) out.push(...b.ids, ...b.skipped.map((s) => `skipped:${s.id}`));
  return out;
}

test("shard specs: braces, lists, folders, index.json; WebDataset keys", (t) => {
  t.deepEqual(braceExpand("s/{000..003}.tar"), ["s/000.tar", "s/001.tar", "s/002.tar", "s/003.tar"]);
  t.deepEqual(braceExpand("{a,b}-{1..2}"), ["a-1", "a-2", "b-1", "b-2"]);
  t.deepEqual(braceExpand("x{y}z"), ["x{y}z"]);
  t.deepEqual(splitKey("dir/abc.seg.png"), { key: "dir/abc", ext: "seg.png" });
  t.deepEqual(splitKey("abc.JPEG"), { key: "abc", ext: "jpeg" });
  t.is(splitKey("README"), null);
  t.is(splitKey("__key__.txt"), null);
  const fromIndex = expandShards(path.join(packed, "index.json"));
  t.is(fromIndex.shards.length, 8);
  t.truthy(fromIndex.index);
  t.deepEqual(expandShards(packed).shards, fromIndex.shards);
  t.deepEqual(expandShards(path.join(packed, "{000000..000007}.tar")).shards, fromIndex.shards);
  t.deepEqual(expandShards(path.join(packed, "*.tar")).shards, fromIndex.shards);
  t.true(isShardSpec(packed) && isShardSpec(path.join(packed, "index.json")) && isShardSpec("a/{0..9}.tar"));
  t.false(isShardSpec(path.join(synth, "manifest.jsonl")) || isShardSpec(path.join(synth, "images")));
});

test("a packed set round-trips: reports, labels and metadata equal the source; \
images at the stored size", async (t) => {
  const { samples, problems } = scanShards(path.join(packed, "index.json"));
  t.deepEqual(problems, []);
  t.is(samples.length, source.length);
  const byId = new Map(source.map((s) => [s.id, s]));
  for (const s of samples) {
    const src = byId.get(s.id)!;
    t.truthy(src, s.id);
    t.is(s.text, src.text);
    t.deepEqual(s.labels, src.labels);
    t.is(s.eye, src.eye);
    t.is(s.patientId, src.patientId);
    t.is(s.split, src.split);
    const meta = await sharp(await readMember(s.member!)).metadata();
    t.is(meta.format, "jpeg");
    t.is(Math.min(meta.width!, meta.height!), Math.round(1.15 * 64), `${s.id}: ${meta.width}×${meta.height}`);
  }
  const index = JSON.parse(readFileSync(path.join(packed, "index.json"), "utf8"));
  t.is(index.samples, 40);
  t.deepEqual(
    index.shards.map((x: { samples: number }) => x.samples),
    [5, 5, 5, 5, 5, 5, 5, 5],
  );
});

test("packing twice gives byte-identical shards and index; \
an interrupted pack resumes to the same bytes", async (t) => {
  const again = path.join(root, "packed-again");
  await packShards(source, { out: again, samplesPerShard: 5, resolution: 64 });
  const files = readdirSync(packed).sort();
  t.deepEqual(readdirSync(again).sort(), files);
  for (const f of files) t.true(readFileSync(path.join(packed, f)).equals(readFileSync(path.join(again, f))), f);
  // interrupted after the third shard: a rerun keeps those and writes the rest
  const cut = path.join(root, "packed-cut");
  await t.throwsAsync(
    packShards(source, {
      out: cut,
      samplesPerShard: 5,
      resolution: 64,
      onProgress: (p) => {
        if (p.shards === 3) throw new Error("interrupted");
      },
    }),
    { message: "interrupted" },
  );
  // a pack killed mid-write leaves temporary files of its atomic writes: the next pack removes them
  const tmp = [
    path.join(cut, ".000003.tar.99999.0123456789ab.tmp"),
    path.join(cut, ".pack", ".x.json.99999.ba9876543210.tmp"),
  ];
  for (const f of tmp) writeFileSync(f, "partial");
  const r = await packShards(source, { out: cut, samplesPerShard: 5, resolution: 64 });
  for (const f of tmp) t.false(existsSync(f), f);
  t.is(r.kept, 3);
  t.is(r.written, 5);
  for (const f of files) t.true(readFileSync(path.join(packed, f)).equals(readFileSync(path.join(cut, f))), f);
  const rerun = await packShards(source, { out: cut, samplesPerShard: 5, resolution: 64 });
  t.true(rerun.upToDate);
});

test("a pack skips and lists bad images (strict: an error naming the file); CMYK goes via sharp", async (t) => {
  const dir = path.join(root, "bad-input");
  mkdirSync(dir, { recursive: true });
  const good = readFileSync(source[0]!.image);
  const at = (name: string, bytes?: Buffer | string) => {
    const f = path.join(dir, name);
    if (bytes !== undefined) writeFileSync(f, bytes);
    return f;
  };
  const cmyk = await sharp(good).toColourspace("cmyk").jpeg().toBuffer();
  const bad: Sample[] = [
    { ...source[1]!, id: "gone", image: at("gone.jpg") },
    { ...source[2]!, id: "text", image: at("text.jpg", "plain text, not an image") },
    { ...source[3]!, id: "cut", image: at("cut.jpg", good.subarray(0, Math.floor(good.length * 0.6))) },
    { ...source[4]!, id: "cmyk", image: at("cmyk.jpg", cmyk) },
  ];
  const input = [...source.slice(5, 8), ...bad];
  const lines: string[] = [];
  const out = path.join(root, "packed-bad");
  const { index } = await packShards(input, { out, samplesPerShard: 4, resolution: 64, log: (l) => lines.push(l) });
  const reasons = Object.fromEntries(index.skipped.map((x) => [x.id, x.reason]));
  t.deepEqual(Object.keys(reasons).sort(), ["cut", "gone", "text"]);
  t.regex(reasons.gone!, /^missing: .*ENOENT.*gone\.jpg/);
  t.regex(reasons.cut!, /^(corrupt|truncated): /);
  t.is(index.samples, 4);
  t.is(lines.length, 3);
  // the CMYK JPEG was packed (through sharp), at the stored size
  const { samples } = scanShards(path.join(out, "index.json"));
  const stored = samples.find((x) => x.id === "cmyk")!;
  const m = await sharp(await readMember(stored.member!)).metadata();
  t.is(Math.min(m.width!, m.height!), index.image.shortSide as number);
  t.is(m.channels, 3);
  await t.throwsAsync(packShards(input, { out: path.join(root, "packed-bad-strict"), resolution: 64, strict: true }), {
    message: /gone\.jpg: missing/,
  });
});

test("one pack per folder: a second pack into it is refused while the first runs; the lock goes with it", async (t) => {
  const out = path.join(root, "packed-locked");
  const first = packShards(source.slice(0, 10), { out, samplesPerShard: 5, resolution: 64 });
  await t.throwsAsync(packShards(source.slice(0, 10), { out, samplesPerShard: 5, resolution: 64 }), {
    name: "LockError",
    message: /shards .*packed-locked is in use by/,
  });
  t.is((await first).index.samples, 10);
  t.false(existsSync(path.join(out, "pack.lock")));
  t.true((await packShards(source.slice(0, 10), { out, samplesPerShard: 5, resolution: 64 })).upToDate);
});

test("the loader: same seed and epoch, same order; another epoch, another order; every sample once", async (t) => {
  const spec = path.join(packed, "index.json");
  const a = await ids(await ShardLoader.open(spec, opts()), 2);
  const b = await ids(await ShardLoader.open(spec, opts()), 2);
  const c = await ids(await ShardLoader.open(spec, opts()), 3);
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  t.is(a.length, 40);
  t.deepEqual([...a].sort(), source.map((s) => s.id).sort());
  t.deepEqual([...c].sort(), [...a].sort());
  // without shuffling: the shards in order, the samples in archive order
  const plain = await ids(await ShardLoader.open(spec, opts({ shuffle: false })), 0);
  t.deepEqual(
    plain,
    scanShards(spec).samples.map((s) => s.id),
  );
});

test("ranks read disjoint shards that together cover the epoch; 'drop' evens them out", async (t) => {
  const spec = path.join(packed, "index.json");
  for (const epoch of [0, 1]) {
    const parts = await Promise.all(
      [0, 1, 2].map(async (rank) => ids(await ShardLoader.open(spec, opts({ rank, worldSize: 3 })), epoch)),
    );
    const all = parts.flat();
    t.is(new Set(all).size, all.length, "disjoint");
    t.deepEqual([...all].sort(), source.map((s) => s.id).sort(), "covering");
    const even = await Promise.all(
      [0, 1, 2].map(async (rank) => {
        const l = await ShardLoader.open(spec, opts({ rank, worldSize: 3, evenShards: "drop", dropLast: true }));
        return { n: (await ids(l, epoch)).length, batches: l.batchCount(epoch) };
      }),
    );
    t.deepEqual(
      even.map((e) => e.n),
      [8, 8, 8],
    ); // 2 shards of 5 each, in batches of 4
    t.deepEqual(
      even.map((e) => e.batches),
      [2, 2, 2],
    );
  }
  await t.throwsAsync(ShardLoader.open(spec, opts({ rank: 0, worldSize: 9 })), { message: /8 shard\(s\) for 9 ranks/ });
});

test("a resume mid-epoch continues exactly (same samples, same pixels); memory stays within the buffer", async (t) => {
  const spec = path.join(packed, "index.json");
  const full: { ids: string[]; data: Float32Array }[] = [];
  const whole = await ShardLoader.open(spec, opts({ bufferSize: 6, prefetch: 1 }));
  for await (const b of whole.epoch(4)) full.push({ ids: b.ids, data: Float32Array.from(b.images.data) });
  for (const at of [1, 3, 6]) {
    const resumed = await ShardLoader.open(spec, opts({ bufferSize: 6, prefetch: 1 }));
    const rest: { ids: string[]; data: Float32Array }[] = [];
    for await (const b of resumed.epoch(4, at * 4)) rest.push({ ids: b.ids, data: Float32Array.from(b.images.data) });
    t.deepEqual(
      rest.map((r) => r.ids),
      full.slice(at).map((r) => r.ids),
      `resume at batch ${at}`,
    );
    rest.forEach((r, k) => t.deepEqual(r.data, full[at + k]!.data, `batch ${at + k} pixels`));
  }
  // at most bufferSize + (prefetch + 2) × batchSize encoded samples were held at once (the buffer,
  // the prefetch + 1 batches being made and the one awaited: reachable when decoding lags the loop)
  t.true(whole.stats.peakHeld <= 6 + 3 * 4, `peak ${whole.stats.peakHeld}`);
  t.true(whole.stats.peakHeld < 40);
  t.is(whole.stats.held, 0);
  const big = await ShardLoader.open(spec, opts({ bufferSize: 100 }));
  await ids(big, 0);
  t.is(big.stats.peakHeld, 40, "a buffer larger than the set holds the set");
});

test("recycleImages over shards: the same batches and pixels, with the batch arrays reused", async (t) => {
  const spec = path.join(packed, "index.json");
  const want: { ids: string[]; data: Float32Array }[] = [];
  for await (const b of (await ShardLoader.open(spec, opts({ prefetch: 1 }))).epoch(1))
    want.push({ ids: b.ids, data: b.images.data.slice() });
  const recycled = await ShardLoader.open(spec, opts({ prefetch: 1, recycleImages: true }));
  const arrays = new Set<ArrayBufferLike>();
  let k = 0;
  for await (const b of recycled.epoch(1)) {
    await new Promise((r) => setTimeout(r, 20)); // the prefetched batch decodes meanwhile
    t.deepEqual(b.ids, want[k]!.ids);
    t.deepEqual(b.images.data.slice(), want[k]!.data, `batch ${k}`);
    arrays.add(b.images.data.buffer);
    k++;
  }
  t.is(k, 10);
  t.true(arrays.size <= 3, `${arrays.size} arrays for ${k} batches`); // prefetch + 2
});

test("recycleImages over shards across a run of epochs: one set of arrays, the same pixels", async (t) => {
  const spec = path.join(packed, "index.json");
  const want: { ids: string[]; data: Float32Array }[] = [];
  const run = await ShardLoader.open(spec, opts({ prefetch: 1 }));
  for await (const b of run.batches(2)) want.push({ ids: b.ids, data: b.images.data.slice() });
  // one pipeline across the epochs, the same batches as epoch by epoch, within the same memory bound
  const byEpoch = await ShardLoader.open(spec, opts({ prefetch: 1 }));
  t.deepEqual(
    want.flatMap((w) => w.ids),
    [...(await ids(byEpoch, 0)), ...(await ids(byEpoch, 1))],
  );
  t.true(run.stats.peakHeld <= 7 + 3 * 4, `peak ${run.stats.peakHeld}`);
  t.is(run.stats.held, 0);
  const recycled = await ShardLoader.open(spec, opts({ prefetch: 1, recycleImages: true }));
  const arrays = new Set<ArrayBufferLike>();
  let k = 0;
  for await (const b of recycled.batches(2)) {
    t.deepEqual(b.ids, want[k]!.ids);
    t.deepEqual(b.images.data.slice(), want[k]!.data, `batch ${k} (epoch ${b.epoch})`);
    arrays.add(b.images.data.buffer);
    k++;
  }
  t.is(k, 20);
  t.true(arrays.size <= 3, `${arrays.size} arrays for ${k} batches over 2 epochs`); // prefetch + 2
  for await (const b of recycled.epoch(2)) t.false(arrays.has(b.images.data.buffer), "released when the run ended");
});

test("shards written by plain tar with .jpeg and .cls keys (and a sub-folder) are read", async (t) => {
  const dir = path.join(root, "foreign");
  mkdirSync(path.join(dir, "src", "part"), { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < 6; i++) {
    const key = `part/img_${i}`;
    const rgb = Buffer.alloc(40 * 30 * 3, 30 * i);
    writeFileSync(
      path.join(dir, "src", `${key}.jpeg`),
      await sharp(rgb, { raw: { width: 40, height: 30, channels: 3 } })
        .jpeg()
        .toBuffer(),
    );
    writeFileSync(path.join(dir, "src", `${key}.cls`), `${i % 3}\n`);
    names.push(`${key}.jpeg`, `${key}.cls`);
  }
  const tarFile = path.join(dir, "foreign-0.tar");
  execFileSync("tar", ["-cf", tarFile, "-C", path.join(dir, "src"), ...names]);
  const { samples, problems } = scanShards(tarFile);
  t.deepEqual(problems, []);
  t.deepEqual(
    samples.map((s) => [s.id, s.target]),
    Array.from({ length: 6 }, (_, i) => [`part/img_${i}`, i % 3]),
  );
  const loader = await ShardLoader.open([tarFile], opts({ shuffle: false, transform: { size: 16 } }));
  const got: number[] = [];
  for await (const b of loader.epoch(0)) got.push(...b.targets!);
  t.deepEqual(got, [0, 1, 2, 0, 1, 2]);
  // a GNU long name (over 100 characters) and tar-stream's pax header read alike
  const long = `${"d".repeat(60)}/${"e".repeat(60)}`;
  mkdirSync(path.join(dir, "src", long), { recursive: true });
  cpSync(path.join(dir, "src", "part", "img_1.jpeg"), path.join(dir, "src", long, "k.jpeg"));
  const gnu = path.join(dir, "gnu.tar");
  execFileSync("tar", ["--format=gnu", "-cf", gnu, "-C", path.join(dir, "src"), `${long}/k.jpeg`]);
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  pack.entry({ name: `${long}/k.jpeg` }, readFileSync(path.join(dir, "src", long, "k.jpeg")));
  pack.finalize();
  await new Promise<void>((r) => pack.on("end", () => r()));
  const pax = path.join(dir, "pax.tar");
  writeFileSync(pax, Buffer.concat(chunks));
  for (const f of [gnu, pax]) {
    const names2: string[] = [];
    walkTarSync(f, (m) => names2.push(m.name));
    t.deepEqual(names2, [`${long}/k.jpeg`], f);
    const r = await TarReader.open(f);
    const first = await r.next();
    await r.close();
    t.is(first!.member.name, `${long}/k.jpeg`);
    t.true(first!.data!.equals(readFileSync(path.join(dir, "src", long, "k.jpeg"))));
  }
});

/** Rewrites a shard through `edit` (null drops a member; `keys` are the shard's sample keys in order). */
async function rewrite(
  file: string,
  edit: (m: { name: string; data: Buffer }, keys: string[]) => Buffer | null,
): Promise<void> {
  const members: { name: string; data: Buffer }[] = [];
  const r = await TarReader.open(file);
  for (let e = await r.next(); e; e = await r.next()) members.push({ name: e.member.name, data: e.data! });
  await r.close();
  const keys = [...new Set(members.map((m) => m.name.split(".")[0]!))];
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  for (const m of members) {
    const data = edit(m, keys);
    if (data) pack.entry({ name: m.name }, data);
  }
  pack.finalize();
  await new Promise<void>((res) => pack.on("end", () => res()));
  writeFileSync(file, Buffer.concat(chunks));
}

/** A copy of the packed shards with damage: a truncated shard, a sample without image, a corrupt JPEG. */
async function damaged(): Promise<{ dir: string; shards: string[] }> {
  const dir = mkdtempSync(path.join(root, "damaged-"));
  for (const f of readdirSync(packed)) if (f.endsWith(".tar")) cpSync(path.join(packed, f), path.join(dir, f));
  // 000001.tar cut in the middle of its third sample's image
  const s1 = path.join(dir, "000001.tar");
  const third: number[] = [];
  walkTarSync(s1, (m) => third.push(m.offset));
  truncateSync(s1, third[6]! + 100);
  // 000002.tar rewritten without its second sample's image, 000003.tar with a corrupt fourth JPEG
  await rewrite(path.join(dir, "000002.tar"), (m, k) => (m.name === `${k[1]}.jpg` ? null : m.data));
  await rewrite(path.join(dir, "000003.tar"), (m, k) => {
    if (m.name !== `${k[3]}.jpg`) return m.data;
    // entropy-coded data with a piece missing: libjpeg meets the end-of-image marker too early
    const mid = m.data.length >> 1;
    return Buffer.concat([m.data.subarray(0, mid), m.data.subarray(mid + 200)]);
  });
  const shards = readdirSync(dir)
    .filter((f) => f.endsWith(".tar"))
    .sort()
    .map((f) => path.join(dir, f));
  return { dir, shards: [...shards, path.join(dir, "000099.tar")] };
}

test("damaged input: a truncated tar, a sample without image, a corrupt JPEG, \
a missing shard — skipped and reported", async (t) => {
  const { shards } = await damaged();
  const lines: string[] = [];
  const scan = scanShards(shards, { report: (p) => lines.push(`${path.basename(p.shard)} ${p.key} ${p.reason}`) });
  // 40 samples − 3 lost in the truncated shard − 1 without image; the corrupt JPEG is listed (found when decoded)
  t.is(scan.samples.length, 36);
  t.is(scan.problems.length, 3);
  t.regex(lines.join("\n"), /000001\.tar \d+ truncated: .*incomplete and left out/);
  t.regex(lines.join("\n"), /000002\.tar \d+ missing: no image/);
  t.regex(lines.join("\n"), /000099\.tar null missing: ENOENT/);
  const log: string[] = [];
  const loader = await ShardLoader.open(shards, opts({ log: (l) => log.push(l) }));
  const got = await ids(loader, 0);
  t.is(got.length, 36);
  t.is(got.filter((x) => x.startsWith("skipped:")).length, 1);
  t.is(loader.stats.byReason.corrupt, 1);
  t.is(loader.stats.problems, 3);
  t.regex(log.join("\n"), /000003\.tar#\d+\.jpg.*corrupt: corrupt JPEG/);
  // reported once, not once per epoch
  await ids(loader, 1);
  t.is(loader.stats.problems, 3);
  // strict: an error naming shard and key
  await t.throwsAsync(ShardLoader.open(shards, opts({ strict: true })), { message: /000001\.tar \[\d+\]: truncated/ });
  t.throws(() => scanShards(shards.slice(2), { strict: true }), { message: /000002\.tar \[\d+\]: missing: no image/ });
  t.throws(() => scanShards(shards.slice(-1), { strict: true }), { message: /000099\.tar: missing/ });
  const corrupt = await ShardLoader.open(shards.slice(3, 4), opts({ strict: true, shuffle: false }));
  await t.throwsAsync(ids(corrupt, 0), { message: /000003\.tar#\d+\.jpg: corrupt: corrupt JPEG/ });
  const notTar = path.join(root, "not-a.tar");
  writeFileSync(notTar, Buffer.alloc(2048, 7));
  t.regex(scanShards(notTar).problems[0]!.reason, /corrupt: .*bad header checksum/);
});

test("data sources: shards through readSource, with split and requireText filters", (t) => {
  const all = readSource(path.join(packed, "index.json"));
  t.is(all.kind, "shards");
  t.is(all.samples.length, 40);
  const val = readSource(path.join(packed, "index.json"), { manifest: { split: "val" } });
  t.true(val.samples.length > 0 && val.samples.every((s) => s.split === "val"));
  t.is(readSource(path.join(synth, "manifest.jsonl")).kind, "files");
  rmSync(path.join(root, "unused"), { recursive: true, force: true });
});
