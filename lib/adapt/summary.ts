/** The mean of a statistic over few-shot draws, with a two-sided 95% Student t-interval. */

export interface SeedSummary {
  mean: number;
  /** Sample standard deviation (NaN for one draw). */
  sd: number;
  /** mean ± t(0.975, k − 1) · sd / √k; NaN for one draw. */
  lo: number;
  hi: number;
  draws: number;
}

// t quantiles at 0.975 for 1…30 degrees of freedom (then the normal's 1.96 is within 2 %).
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export function seedSummary(values: readonly number[]): SeedSummary {
  const xs = values.filter(Number.isFinite);
  const k = xs.length;
  const mean = k ? xs.reduce((a, b) => a + b, 0) / k : Number.NaN;
  if (k < 2) return { mean, sd: Number.NaN, lo: Number.NaN, hi: Number.NaN, draws: k };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (k - 1));
  const h = (T975[k - 2] ?? 1.96) * (sd / Math.sqrt(k));
  return { mean, sd, lo: mean - h, hi: mean + h, draws: k };
}
