// The probe's logistic regression (native/logistic.h through lib/eval/probe.ts fitLinear) against
// scikit-learn: test/fixtures/probe/sklearn.json, made by make_fixture.py beside it (binary,
// multinomial, and one-vs-rest with unknown labels). Coefficients, intercepts and probabilities
// agree within 1e-4 (in practice ~1e-7: both solve the same strictly convex problem tightly).
import test from "ava";
import { readFileSync } from "node:fs";
import { fitLinear, predictProba } from "../lib/eval/probe.js";
import type { ProbeTargets } from "../lib/eval/probe.js";

interface Problem {
  name: string;
  kind: "sigmoid" | "softmax";
  n: number;
  d: number;
  K: number;
  C: number;
  X: number[];
  y?: (number | null)[];
  t?: number[];
  coef: number[];
  intercept: number[];
  proba: number[];
}

const fixture = JSON.parse(readFileSync(new URL("./fixtures/probe/sklearn.json", import.meta.url), "utf8")) as {
  sklearn: string;
  problems: Problem[];
};

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return a.length === b.length ? m : Number.POSITIVE_INFINITY;
};
const centred = (xs: ArrayLike<number>) => {
  const mean = Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;
  return Array.from(xs, (x) => x - mean);
};

for (const p of fixture.problems) {
  test(`scikit-learn ${fixture.sklearn} parity: ${p.name}`, async (t) => {
    const X = Float64Array.from(p.X);
    const targets: ProbeTargets =
      p.kind === "softmax"
        ? { kind: "single", K: p.K, t: Int32Array.from(p.t!) }
        : { kind: "multilabel", K: p.K, y: Float32Array.from(p.y!, (v) => (v === null ? Number.NaN : v)) };
    const m = await fitLinear({ X, n: p.n, d: p.d }, targets, p.C, { gradTol: 1e-10, maxIter: 5000 });
    t.is(m.kind, p.kind);
    t.true(m.problems.length > 0 && m.problems.every((r) => r.converged), "every problem converged");
    const P = await predictProba(m, X, p.n);
    const dW = maxDiff(m.W, p.coef);
    // a softmax's intercepts are defined up to a common shift (unpenalised): compare them centred
    const db = p.kind === "softmax" ? maxDiff(centred(m.b), centred(p.intercept)) : maxDiff(m.b, p.intercept);
    const dP = maxDiff(P, p.proba);
    t.log(`${p.name}: max |ΔW| ${dW.toExponential(2)}, |Δb| ${db.toExponential(2)}, |Δp| ${dP.toExponential(2)}`);
    t.true(dW < 1e-4, `coefficients differ by ${dW}`);
    t.true(db < 1e-4, `intercepts differ by ${db}`);
    t.true(dP < 1e-4, `probabilities differ by ${dP}`);
  });
}

test("the fixture's one-vs-rest problem has unknown labels, so the masking is what is compared", (t) => {
  const ovr = fixture.problems.find((p) => p.name === "ovr")!;
  const unknown = ovr.y!.filter((v) => v === null).length;
  t.true(unknown > 10 && unknown < ovr.y!.length / 2, `${unknown} unknown labels`);
});
