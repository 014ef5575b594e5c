/**
 * The HTML report of an evaluation: a page with the metrics (and their CIs), ROC curves and
 * confusion matrices drawn as SVG and rendered to PNG with sharp, and any overlays a protocol adds
 * (segmentation: image + mask PNGs) through the `overlays` hook. The page is static: index.html
 * beside its PNGs, openable from disk. A small inline script marks each image loaded or not and
 * shows a banner when one is missing.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { atomicWriteFile, atomicWriteFileSync } from "../io/atomic.js";
import path from "node:path";
import sharp from "sharp";
import type { MetricsReport } from "./evaluate.js";
import type { Estimate } from "./metrics.js";
import type { RetrievalResult } from "./retrieval.js";

export interface Overlay {
  title: string;
  /** A PNG file to copy into the report folder, or its bytes. */
  png: string | Buffer;
  caption?: string;
}

export interface ReportOptions {
  title?: string;
  /** Extra figures, e.g. segmentation overlays. */
  overlays?: Overlay[];
  /** Lines shown under the title (model, dataset, split). */
  context?: Record<string, string | number>;
}

/** A result shown as plain tables (protocols whose metrics are not per-class scores, e.g. segmentation). */
export interface TableReport {
  protocol: string;
  tables: { title: string; columns: string[]; rows: (string | number)[][] }[];
  notes: string[];
}

export type Reportable = (MetricsReport & { protocol: string }) | RetrievalResult | TableReport;

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const safeName = (s: string) => s.replace(/[^A-Za-z0-9_-]+/g, "_");
const fmt = (e: Estimate) =>
  !Number.isFinite(e.value)
    ? "n/a"
    : Number.isFinite(e.lo)
      ? `${e.value.toFixed(3)} <small>[${e.lo.toFixed(3)}, ${e.hi.toFixed(3)}]</small>`
      : e.value.toFixed(3);

const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#7f7f7f",
];

/** An SVG of ROC curves (one or more), with the chance diagonal and a legend. */
export function rocSvg(
  curves: { name: string; fpr: number[]; tpr: number[]; auc: number }[],
  title: string,
  size = 360,
): string {
  const m = 44;
  const w = size - m - 12;
  const X = (v: number) => (m + v * w).toFixed(1);
  const Y = (v: number) => (12 + (1 - v) * w).toFixed(1);
  const parts: string[] = [];
  parts.push(`<rect x="0" y="0" width="${size}" height="${size + 20 + 14 * curves.length}" fill="#ffffff"/>`);
  parts.push(`<rect x="${m}" y="12" width="${w}" height="${w}" fill="none" stroke="#333" stroke-width="1"/>`);
  for (let k = 1; k < 5; k++) {
    const v = k / 5;
    parts.push(
      `<line x1="${X(v)}" y1="${Y(0)}" x2="${X(v)}" y2="${Y(1)}" stroke="#ddd"/><line x1="${X(0)}" ` +
        `y1="${Y(v)}" x2="${X(1)}" y2="${Y(v)}" stroke="#ddd"/>`,
    );
    parts.push(
      `<text x="${X(v)}" y="${size - 18}" font-size="10" text-anchor="middle" font-family="DejaVu Sans, ` +
        `sans-serif">${v.toFixed(1)}</text><text x="${m - 4}" y="${Number(Y(v)) + 3}" font-size="10" ` +
        `text-anchor="end" font-family="DejaVu Sans, sans-serif">${v.toFixed(1)}</text>`,
    );
  }
  parts.push(`<line x1="${X(0)}" y1="${Y(0)}" x2="${X(1)}" y2="${Y(1)}" stroke="#999" stroke-dasharray="4 3"/>`);
  curves.forEach((c, i) => {
    const pts = c.fpr
      .map((f, j) => (Number.isFinite(f) && Number.isFinite(c.tpr[j]!) ? `${X(f)},${Y(c.tpr[j]!)}` : ""))
      .filter((s) => s !== "");
    if (pts.length > 1)
      parts.push(
        `<polyline points="${pts.join(" ")}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="2"/>`,
      );
    parts.push(
      `<rect x="${m}" y="${size + 2 + 14 * i}" width="10" height="10" ` +
        `fill="${PALETTE[i % PALETTE.length]}"/><text x="${m + 14}" y="${size + 11 + 14 * i}" font-size="11" ` +
        `font-family="DejaVu Sans, sans-serif">${esc(c.name)} AUC ` +
        `${Number.isFinite(c.auc) ? c.auc.toFixed(3) : "n/a"}</text>`,
    );
  });
  parts.push(
    `<text x="${m + w / 2}" y="${size - 4}" font-size="11" text-anchor="middle" font-family="DejaVu Sans, ` +
      `sans-serif">false-positive rate — ${esc(title)}</text>`,
  );
  parts.push(
    `<text x="12" y="${12 + w / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ` +
      `${12 + w / 2})" font-family="DejaVu Sans, sans-serif">true-positive rate</text>`,
  );
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" ` +
    `height="${size + 20 + 14 * curves.length}">${parts.join("")}</svg>`
  );
}

/** An SVG of a confusion matrix [true][predicted], cells shaded by the row's fraction. */
export function confusionSvg(matrix: number[][], labels: string[], title: string): string {
  const k = labels.length;
  const cell = Math.max(28, Math.min(64, Math.floor(420 / Math.max(k, 1))));
  const left = 12 + 7 * Math.max(...labels.map((l) => l.length), 4);
  const top = 40;
  const W = left + k * cell + 12;
  const H = top + k * cell + 40;
  const parts = [
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="16" font-size="12" text-anchor="middle" font-family="DejaVu Sans, ` +
      `sans-serif">${esc(title)}</text>`,
  ];
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((v, j) => {
      const f = total > 0 ? v / total : 0;
      const shade = Math.round(255 - 200 * f);
      parts.push(
        `<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" ` +
          `fill="rgb(${shade},${shade},255)" stroke="#fff"/>`,
      );
      parts.push(
        `<text x="${left + j * cell + cell / 2}" y="${top + i * cell + cell / 2 + 4}" font-size="11" ` +
          `text-anchor="middle" fill="${f > 0.5 ? "#fff" : "#000"}" font-family="DejaVu Sans, ` +
          `sans-serif">${v}</text>`,
      );
    });
    parts.push(
      `<text x="${left - 4}" y="${top + i * cell + cell / 2 + 4}" font-size="11" text-anchor="end" ` +
        `font-family="DejaVu Sans, sans-serif">${esc(labels[i]!)}</text>`,
    );
  });
  labels.forEach((l, j) =>
    parts.push(
      `<text x="${left + j * cell + cell / 2}" y="${top - 6}" font-size="10" text-anchor="middle" ` +
        `font-family="DejaVu Sans, sans-serif">${esc(l.slice(0, 8))}</text>`,
    ),
  );
  parts.push(
    `<text x="${left + (k * cell) / 2}" y="${H - 12}" font-size="11" text-anchor="middle" font-family="DejaVu ` +
      `Sans, sans-serif">predicted (rows: true class)</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join("")}</svg>`;
}

/** Renders an SVG to a PNG file with sharp. */
export async function svgToPng(svg: string, file: string): Promise<void> {
  await atomicWriteFile(file, await sharp(Buffer.from(svg), { density: 96 }).png().toBuffer());
}

const SCRIPT = `<script>
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0;
  imgs.forEach(function (im) {
    var good = im.complete && im.naturalWidth > 0;
    im.setAttribute("data-loaded", good ? "yes" : "no");
    im.setAttribute("data-natural-width", String(im.naturalWidth));
    if (good) ok++;
  });
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
  if (ok < imgs.length) {
    var b = document.getElementById("missing");
    b.textContent = (imgs.length - ok) + " of " + imgs.length + " images could not be loaded";
    b.style.display = "block";
  }
});
</script>`;

/** A PNG the page shows, relative to the report's folder. */
interface Figure {
  file: string;
  title: string;
  caption?: string;
}

/** The tables of a result that brings its own (`tables`). */
function tablesHtml(tables: TableReport["tables"], body: string[]): void {
  for (const t of tables) {
    body.push(`<h2>${esc(t.title)}</h2><table><tr>${t.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>`);
    for (const row of t.rows)
      body.push(
        "<tr>" +
          row
            .map((v) => `<td>${esc(typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v)}</td>`)
            .join("") +
          "</tr>",
      );
    body.push(`</table>`);
  }
}

/** Recall@K and median rank in both directions. */
function retrievalHtml(r: RetrievalResult, body: string[]): void {
  const ks = Object.keys(r.imageToText.recall);
  body.push(
    `<h2>Retrieval on ${r.n} pairs</h2><table><tr><th>direction</th>` +
      ks.map((k) => `<th>${k}</th>`).join("") +
      "<th>median rank</th></tr>",
  );
  for (const [name, d] of [
    ["image → text", r.imageToText],
    ["text → image", r.textToImage],
  ] as const)
    body.push(
      `<tr><td>${name}</td>` +
        ks.map((k) => `<td>${fmt(d.recall[k as `R@${number}`]!)}</td>`).join("") +
        `<td>${d.medianRank}</td></tr>`,
    );
  body.push(`</table>`);
}

/** The metrics with their intervals and the per-class table. */
function metricsHtml(r: MetricsReport, body: string[]): void {
  body.push(`<h2>${esc(r.task)} task, ${r.n} cases, ${r.classes.length} classes</h2>`);
  body.push(
    `<table><tr><th>metric</th><th>value [${Math.round(r.bootstrap.level * 100)}% CI]</th></tr>${Object.entries(
      r.metrics,
    )
      .map(([k, e]) => `<tr><td>${esc(k)}</td><td>${fmt(e)}</td></tr>`)
      .join("")}</table>`,
  );
  body.push(
    "<h3>Per class</h3><table><tr><th>class</th><th>AUC</th><th>AP</th><th>F1</th>" +
      "<th>accuracy</th><th>positives</th><th>negatives</th><th>unknown</th></tr>",
  );
  for (const c of r.classes) {
    const p = r.perClass[c]!;
    body.push(
      `<tr><td>${esc(c)}</td><td>${fmt(p.auc)}</td><td>${fmt(p.ap)}</td><td>${fmt(p.f1)}</td>` +
        `<td>${fmt(p.accuracy)}</td><td>${p.positives}</td><td>${p.negatives}</td><td>${p.unknown}</td></tr>`,
    );
  }
  body.push(`</table>`);
}

/** The ROC curves (all classes on one plot, and one small plot per class) and the confusion matrices. */
async function metricsFigures(r: MetricsReport, dir: string, images: Figure[]): Promise<void> {
  const curves = r.classes.map((c) => ({ name: c, ...r.roc[c]!, auc: r.perClass[c]!.auc.value }));
  await svgToPng(rocSvg(curves.slice(0, 10), "all classes"), path.join(dir, "roc-all.png"));
  images.push({ file: "roc-all.png", title: curves.length > 10 ? "ROC curves (first 10 classes)" : "ROC curves" });
  for (const c of curves) {
    const file = `roc-${safeName(c.name)}.png`;
    await svgToPng(rocSvg([c], c.name, 260), path.join(dir, file));
    images.push({ file, title: `ROC: ${c.name}` });
  }
  if (Array.isArray(r.confusion)) {
    await svgToPng(confusionSvg(r.confusion, r.classes, "confusion matrix"), path.join(dir, "confusion.png"));
    images.push({ file: "confusion.png", title: "Confusion matrix" });
  } else {
    for (const [c, m] of Object.entries(r.confusion)) {
      const file = `confusion-${safeName(c)}.png`;
      await svgToPng(confusionSvg(m, ["no", "yes"], c), path.join(dir, file));
      images.push({ file, title: `Confusion: ${c}` });
    }
  }
}

/** The whole page around its body. */
function pageHtml(title: string, body: string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; } \
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
small { color: #666; } .grid { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; } \
figcaption { font-size: 12px; color: #444; }
#missing { display: none; background: #fdd; border: 1px solid #c00; padding: 8px; margin: 8px 0; }
</style></head>
<body><h1>${esc(title)}</h1><div id="missing"></div>
${body.join("\n")}
${SCRIPT}
</body></html>
`;
}

/**
 * Writes `dir/index.html` and its PNGs for a result. Returns the page's path and the PNG files
 * (relative to dir) the page shows.
 */
export async function writeReport(
  dir: string,
  result: Reportable,
  options: ReportOptions = {},
): Promise<{ html: string; images: string[] }> {
  mkdirSync(dir, { recursive: true });
  const images: Figure[] = [];
  const body: string[] = [];
  const title = options.title ?? `vilref eval ${result.protocol}`;
  if (options.context)
    body.push(
      `<table class="ctx">${Object.entries(options.context)
        .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`)
        .join("")}</table>`,
    );

  if ("tables" in result) tablesHtml(result.tables, body);
  else if (result.protocol === "retrieval") retrievalHtml(result as RetrievalResult, body);
  else {
    const r = result as MetricsReport & { protocol: string };
    metricsHtml(r, body);
    await metricsFigures(r, dir, images);
  }
  (options.overlays ?? []).forEach((o, i) => {
    const file = `overlay-${String(i).padStart(3, "0")}.png`;
    atomicWriteFileSync(path.join(dir, file), typeof o.png === "string" ? readFileSync(o.png) : o.png);
    images.push({ file, title: o.title, ...(o.caption !== undefined ? { caption: o.caption } : {}) });
  });
  if (result.notes.length > 0)
    body.push(`<h3>Notes</h3><ul>${result.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>`);
  if (images.length > 0)
    body.push(
      '<h3>Figures</h3><div class="grid">' +
        images
          .map(
            (im) =>
              `<figure><img src="${esc(im.file)}" alt="${esc(im.title)}"><figcaption>` +
              `${esc(im.title)}${im.caption ? ` — ${esc(im.caption)}` : ""}</figcaption></figure>`,
          )
          .join("") +
        "</div>",
    );
  const htmlFile = path.join(dir, "index.html");
  atomicWriteFileSync(htmlFile, pageHtml(title, body));
  return { html: htmlFile, images: images.map((i) => i.file) };
}
