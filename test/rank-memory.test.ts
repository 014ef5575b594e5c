// Ranking and top-k search hold one block of scores, never queries × index: 2,000 queries against
// 200,000 index rows would be 1.6 GB of float32 scores; the process's peak RSS grows by far less.
// (A file of its own: the peak RSS is the process's, and ava runs each file in its own process.)
import test from "ava";
import { mulberry32 } from "../lib/data/rng.js";
import { normalizeRows } from "../lib/eval/features.js";
import { featureMatrix, targetRanks, topK } from "../lib/eval/rank.js";
import { setThreads } from "../lib/native.js";

const peakMiB = () => process.resourceUsage().maxRSS / 1024;

test.serial("2,000 queries × 200,000 index rows: ranks and top-k in bounded memory", async (t) => {
  setThreads(2);
  const n = 2000;
  const m = 200_000;
  const d = 32;
  const r = mulberry32(9);
  const index = normalizeRows(
    Float32Array.from({ length: m * d }, () => r.normal()),
    m,
    d,
  );
  const targets = Int32Array.from({ length: n }, (_, i) => i * 97);
  // queries: noisy copies of their targets
  const query = new Float32Array(n * d);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < d; k++) query[i * d + k] = index[targets[i]! * d + k]! + 0.04 * r.normal();
  const Q = featureMatrix(normalizeRows(query, n, d), n, d);
  const X = featureMatrix(index, m, d);
  await targetRanks(
    featureMatrix(Q.data.subarray(0, d), 1, d),
    featureMatrix(index.subarray(0, d), 1, d),
    Int32Array.of(0),
  ); // load
  const before = peakMiB();
  const ranks = await targetRanks(Q, X, targets);
  const top = await topK(Q, X, 5);
  const grown = peakMiB() - before;
  const full = (n * m * 4) / 2 ** 20;
  t.log(`peak RSS grew by ${grown.toFixed(0)} MiB (all scores at once: ${full.toFixed(0)} MiB)`);
  t.true(grown < full / 8, `peak RSS grew by ${grown.toFixed(0)} MiB`);
  // and the answers are sensible: most targets first, and the top-1 is then the target itself
  const first = ranks.filter((x) => x === 0).length;
  t.true(first > 0.9 * n, `${first} of ${n} targets ranked first`);
  let agree = 0;
  for (let i = 0; i < n; i++) if ((ranks[i] === 0) === (top.indices.data[i * 5] === targets[i])) agree++;
  t.is(agree, n);
});
