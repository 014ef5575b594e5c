/**
 * Training curves as a PNG: the metrics JSONL of a run (train lines and eval lines) drawn as three
 * panels — loss (raw and a moving average), the held-out zero-shot mean AUC with image→text R@10,
 * and the learning rate with the logit scale — as SVG rendered by sharp.
 */
import { readFileSync } from "node:fs";
import { svgToPng } from "../eval/report.js";

export interface Series {
  name: string;
  colour: string;
  points: [number, number][];
  /** Draw against the right-hand axis of the panel. */
  right?: boolean;
  dashed?: boolean;
}

export interface Panel {
  title: string;
  series: Series[];
  /** Fixed range of the left axis (default: the data's). */
  yRange?: [number, number];
  /** A horizontal reference line on the left axis (e.g. chance AUC 0.5). */
  reference?: number;
}

const FONT = 'font-family="DejaVu Sans, sans-serif"';
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

function range(values: number[], fixed?: [number, number]): [number, number] {
  if (fixed) return fixed;
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-12) ((lo -= 0.5), (hi += 0.5));
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function fmt(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-2 || a >= 1e4) ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

/** One panel as SVG elements, placed at (x0, y0) with the given size. */
function panelSvg(p: Panel, x0: number, y0: number, W: number, H: number, xMax: number): string {
  const m = { l: 56, r: 56, t: 22, b: 34 };
  const w = W - m.l - m.r;
  const h = H - m.t - m.b;
  const left = p.series.filter((s) => !s.right);
  const right = p.series.filter((s) => s.right);
  const yl = range(
    left.flatMap((s) => s.points.map((q) => q[1])).concat(p.reference !== undefined ? [p.reference] : []),
    p.yRange,
  );
  const yr = range(right.flatMap((s) => s.points.map((q) => q[1])));
  const X = (v: number) => x0 + m.l + (xMax > 0 ? v / xMax : 0) * w;
  const Y = (v: number, r: [number, number]) => y0 + m.t + (1 - (v - r[0]) / (r[1] - r[0])) * h;
  const out: string[] = [];
  out.push(`<rect x="${x0 + m.l}" y="${y0 + m.t}" width="${w}" height="${h}" fill="#fff" stroke="#333"/>`);
  out.push(`<text x="${x0 + m.l}" y="${y0 + 15}" font-size="12" font-weight="bold" ${FONT}>${esc(p.title)}</text>`);
  for (let k = 0; k <= 4; k++) {
    const fx = (xMax * k) / 4;
    const vy = yl[0] + ((yl[1] - yl[0]) * k) / 4;
    out.push(`<line x1="${X(fx)}" y1="${y0 + m.t}" x2="${X(fx)}" y2="${y0 + m.t + h}" stroke="#eee"/>`);
    out.push(`<line x1="${x0 + m.l}" y1="${Y(vy, yl)}" x2="${x0 + m.l + w}" y2="${Y(vy, yl)}" stroke="#eee"/>`);
    out.push(
      `<text x="${X(fx)}" y="${y0 + m.t + h + 14}" font-size="10" text-anchor="middle" ` +
        `${FONT}>${Math.round(fx)}</text>`,
    );
    out.push(
      `<text x="${x0 + m.l - 4}" y="${Y(vy, yl) + 3}" font-size="10" text-anchor="end" ${FONT}>${fmt(vy)}</text>`,
    );
    if (right.length > 0)
      out.push(
        `<text x="${x0 + m.l + w + 4}" y="${Y(yr[0] + ((yr[1] - yr[0]) * k) / 4, yr) + 3}" font-size="10" ` +
          `${FONT}>${fmt(yr[0] + ((yr[1] - yr[0]) * k) / 4)}</text>`,
      );
  }
  out.push(`<text x="${x0 + m.l + w / 2}" y="${y0 + H - 6}" font-size="10" text-anchor="middle" ${FONT}>step</text>`);
  if (p.reference !== undefined)
    out.push(
      `<line x1="${x0 + m.l}" y1="${Y(p.reference, yl)}" x2="${x0 + m.l + w}" y2="${Y(p.reference, yl)}" ` +
        `stroke="#999" stroke-dasharray="4 3"/>`,
    );
  let lx = x0 + m.l + 16 + 8 * p.title.length;
  for (const s of p.series) {
    const r = s.right ? yr : yl;
    const pts = s.points
      .filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]))
      .map((q) => `${X(q[0]).toFixed(1)},${Y(q[1], r).toFixed(1)}`);
    if (pts.length === 1)
      out.push(`<circle cx="${pts[0]!.split(",")[0]}" cy="${pts[0]!.split(",")[1]}" r="3" fill="${s.colour}"/>`);
    else if (pts.length > 1)
      out.push(
        `<polyline points="${pts.join(" ")}" fill="none" stroke="${s.colour}" ` +
          `stroke-width="${s.dashed ? 1 : 1.8}"${s.dashed ? ' stroke-dasharray="3 2"' : ""}/>`,
      );
    out.push(
      `<rect x="${lx}" y="${y0 + 6}" width="10" height="10" fill="${s.colour}"/><text x="${lx + 14}" ` +
        `y="${y0 + 15}" font-size="10" ${FONT}>${esc(s.name)}${s.right ? " (right)" : ""}</text>`,
    );
    lx += 30 + 6.5 * s.name.length + (s.right ? 40 : 0);
  }
  return out.join("");
}

/** Panels stacked vertically into one SVG. */
export function curvesSvg(panels: Panel[], title: string, width = 760, panelHeight = 220): string {
  const xMax = Math.max(1, ...panels.flatMap((p) => p.series.flatMap((s) => s.points.map((q) => q[0]))));
  const H = 28 + panels.length * panelHeight;
  const body = panels.map((p, i) => panelSvg(p, 0, 28 + i * panelHeight, width, panelHeight, xMax)).join("");
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}"><rect width="${width}" height="${H}" ` +
    `fill="#fff"/><text x="${width / 2}" y="18" font-size="14" text-anchor="middle" ` +
    `${FONT}>${esc(title)}</text>${body}</svg>`
  );
}

/** Trailing moving average over `window` points. */
export function movingAverage(points: [number, number][], window: number): [number, number][] {
  const out: [number, number][] = [];
  let sum = 0;
  const q: number[] = [];
  for (const [x, y] of points) {
    if (!Number.isFinite(y)) continue;
    q.push(y);
    sum += y;
    if (q.length > window) sum -= q.shift()!;
    out.push([x, sum / q.length]);
  }
  return out;
}

interface MetricsLine {
  type: "train" | "eval";
  step: number;
  loss?: number | string;
  lr?: number;
  logitScale?: number;
  skipped?: boolean;
  meanAuc?: number | string;
  imageToText?: Record<string, number>;
}

/** The panels of a run's metrics JSONL text. */
export function runPanels(jsonl: string): Panel[] {
  const raw = jsonl.split("\n").filter((l) => l.trim() !== "");
  // a last line torn by a killed run (no newline yet) is left out
  if (raw.length && !jsonl.endsWith("\n")) {
    try {
      JSON.parse(raw.at(-1)!);
    } catch {
      raw.pop();
    }
  }
  const lines = raw.map((l) => JSON.parse(l) as MetricsLine);
  const train = lines.filter((l) => l.type === "train" && !l.skipped);
  const evals = lines.filter((l) => l.type === "eval");
  const loss: [number, number][] = train.map((l) => [l.step, Number(l.loss)]);
  const r10 = (l: MetricsLine) => l.imageToText?.["R@10"] ?? Object.values(l.imageToText ?? {}).at(-1);
  return [
    {
      title: "training loss",
      series: [
        { name: "loss", colour: "#9ecae1", points: loss, dashed: true },
        {
          name: "moving average",
          colour: "#08519c",
          points: movingAverage(loss, Math.max(1, Math.round(loss.length / 20))),
        },
      ],
    },
    {
      title: "held-out evaluation",
      yRange: [0, 1],
      reference: 0.5,
      series: [
        { name: "zero-shot mean AUC", colour: "#d62728", points: evals.map((l) => [l.step, Number(l.meanAuc)]) },
        { name: "image→text R@10", colour: "#2ca02c", points: evals.map((l) => [l.step, Number(r10(l))]) },
      ],
    },
    {
      title: "schedule",
      series: [
        { name: "learning rate", colour: "#ff7f0e", points: train.map((l) => [l.step, l.lr ?? NaN]) },
        {
          name: "logit scale",
          colour: "#9467bd",
          points: train.map((l) => [l.step, l.logitScale ?? NaN]),
          right: true,
        },
      ],
    },
  ];
}

/** Reads a run's metrics.jsonl and writes its curves PNG. */
export async function writeCurves(metricsFile: string, pngFile: string, title = "ViLReF pre-training"): Promise<void> {
  await svgToPng(curvesSvg(runPanels(readFileSync(metricsFile, "utf8")), title), pngFile);
}
