/**
 * Procedural colour fundus images: an orange-red background with vignetting and low-frequency
 * texture inside a circular field of view, the optic disc and cup, a branching vessel tree from
 * the disc (arteries lighter and thinner than veins), the macula with its foveal reflex, and
 * visible cues for a subset of the taxonomy. Pure JavaScript into an RGB buffer; deterministic
 * from the seed.
 */
import type { Eye } from "../labels/index.js";
import { mulberry32, type Rng } from "../data/rng.js";
import type { SynthFinding } from "./report.js";

export interface FundusSpec {
  size: number;
  seed: number;
  eye: Eye;
  /** Findings to draw (suspected ones are drawn fainter). */
  findings: Partial<Record<SynthFinding, "asserted" | "suspected">>;
  /** Cup-to-disc ratio to draw. */
  cdr: number;
}

export interface Rendered {
  /** RGB, 8-bit, HWC. */
  rgb: Uint8Array;
  size: number;
  /** The field of view: centre and radius in pixels (the circle may be clipped at top and bottom). */
  fov: { cx: number; cy: number; r: number; clipTop: number; clipBottom: number };
  disc: { x: number; y: number; r: number };
  macula: { x: number; y: number };
  /** Media haze: blur sigma to apply after rendering (0: none). */
  blur: number;
}

type Layer = Float32Array; // RGB float, 0..1, HWC

function mix(img: Layer, i: number, r: number, g: number, b: number, a: number): void {
  if (a <= 0) return;
  if (a > 1) a = 1;
  img[i] = img[i]! * (1 - a) + r * a;
  img[i + 1] = img[i + 1]! * (1 - a) + g * a;
  img[i + 2] = img[i + 2]! * (1 - a) + b * a;
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

/** Draws a soft disc of colour (r,g,b) with opacity `alpha`, edge softness `soft` (fraction of radius). */
function blob(
  img: Layer,
  S: number,
  x: number,
  y: number,
  rad: number,
  col: readonly [number, number, number],
  alpha: number,
  soft = 0.35,
  ry = rad,
  rot = 0,
): void {
  const R = Math.max(rad, ry) * 1.05 + 1;
  const x0 = Math.max(0, Math.floor(x - R));
  const x1 = Math.min(S - 1, Math.ceil(x + R));
  const y0 = Math.max(0, Math.floor(y - R));
  const y1 = Math.min(S - 1, Math.ceil(y + R));
  const c = Math.cos(rot);
  const s = Math.sin(rot);
  for (let py = y0; py <= y1; py++)
    for (let px = x0; px <= x1; px++) {
      const dx = px + 0.5 - x;
      const dy = py + 0.5 - y;
      const u = (dx * c + dy * s) / rad;
      const v = (-dx * s + dy * c) / ry;
      const d = Math.sqrt(u * u + v * v);
      const a = alpha * (1 - smoothstep(1 - soft, 1, d));
      if (a > 0) mix(img, 3 * (py * S + px), col[0], col[1], col[2], a);
    }
}

interface Segment {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  w: number;
  artery: boolean;
}

/** A vessel: a wandering path from (x, y) in direction `dir`, branching as it goes. */
function growVessel(
  r: Rng,
  segs: Segment[],
  x: number,
  y: number,
  dir: number,
  w: number,
  len: number,
  artery: boolean,
  curl: number,
  depth: number,
  S: number,
): void {
  const step = S * 0.012;
  let d = dir;
  let cx = x;
  let cy = y;
  let width = w;
  const n = Math.max(2, Math.round(len / step));
  for (let k = 0; k < n; k++) {
    d += curl + r.normal() * 0.08;
    const nx = cx + Math.cos(d) * step;
    const ny = cy + Math.sin(d) * step;
    segs.push({ x0: cx, y0: cy, x1: nx, y1: ny, w: width, artery });
    cx = nx;
    cy = ny;
    width *= 0.992;
    if (depth < 4 && k > 2 && r.chance(0.07)) {
      const side = r.chance(0.5) ? 1 : -1;
      growVessel(
        r,
        segs,
        cx,
        cy,
        d + side * r.uniform(0.5, 1.1),
        width * 0.7,
        len * r.uniform(0.35, 0.6),
        artery,
        curl * 0.5 + r.normal() * 0.01,
        depth + 1,
        S,
      );
      width *= 0.85;
    }
    if (width < S * 0.0012) break;
  }
}

function drawVessels(img: Layer, S: number, segs: Segment[], inside: Uint8Array): void {
  // Darkness per pixel: the strongest vessel covering it.
  const cover = new Float32Array(S * S);
  const kind = new Uint8Array(S * S);
  for (const s of segs) {
    const R = s.w + 1.5;
    const x0 = Math.max(0, Math.floor(Math.min(s.x0, s.x1) - R));
    const x1 = Math.min(S - 1, Math.ceil(Math.max(s.x0, s.x1) + R));
    const y0 = Math.max(0, Math.floor(Math.min(s.y0, s.y1) - R));
    const y1 = Math.min(S - 1, Math.ceil(Math.max(s.y0, s.y1) + R));
    const dx = s.x1 - s.x0;
    const dy = s.y1 - s.y0;
    const L2 = dx * dx + dy * dy || 1;
    for (let py = y0; py <= y1; py++)
      for (let px = x0; px <= x1; px++) {
        const qx = px + 0.5 - s.x0;
        const qy = py + 0.5 - s.y0;
        const t = Math.min(1, Math.max(0, (qx * dx + qy * dy) / L2));
        const ex = qx - t * dx;
        const ey = qy - t * dy;
        const dist = Math.sqrt(ex * ex + ey * ey);
        const a = 1 - smoothstep(s.w * 0.5 - 0.5, s.w * 0.5 + 0.7, dist);
        const i = py * S + px;
        if (a > cover[i]!) {
          cover[i] = a;
          kind[i] = s.artery ? 1 : 2;
        }
      }
  }
  for (let i = 0; i < S * S; i++) {
    const a = cover[i]!;
    if (a <= 0 || !inside[i]) continue;
    if (kind[i] === 1) mix(img, 3 * i, 0.62, 0.12, 0.07, a * 0.8);
    else mix(img, 3 * i, 0.42, 0.05, 0.05, a * 0.9);
  }
}

/** Where things are in the image: the field of view and the eye's landmarks, in pixels. */
interface Geometry {
  S: number;
  /** Field of view: centre, radius, and the rows it is clipped at. */
  R: number;
  cx: number;
  cy: number;
  clipTop: number;
  clipBottom: number;
  /** 1 for a right eye (disc on the right of the image), -1 for a left eye. */
  side: number;
  disc: { x: number; y: number; r: number };
  macula: { x: number; y: number };
}

/** What the drawing steps share: the image, its field-of-view mask, the random stream, the layout. */
interface Canvas {
  img: Layer;
  inside: Uint8Array;
  r: Rng;
  g: Geometry;
}

/**
 * Step 1: the field of view (a circle, sometimes clipped at top and bottom as many cameras do) and
 * the eye's geometry: the disc nasal (right side of the image for a right eye), macula temporal.
 */
function eyeGeometry(S: number, eye: Eye, r: Rng): Geometry {
  const R = S * r.uniform(0.44, 0.485);
  const cx = S / 2 + r.uniform(-0.015, 0.015) * S;
  const cy = S / 2 + r.uniform(-0.015, 0.015) * S;
  const clip = r.chance(0.4) ? R * r.uniform(0.86, 0.95) : R;
  const side = eye === "left" ? -1 : 1;
  const disc = {
    x: cx + side * R * r.uniform(0.36, 0.44),
    y: cy + R * r.uniform(-0.06, 0.06),
    r: R * r.uniform(0.085, 0.1),
  };
  const macula = { x: cx - side * R * r.uniform(0.05, 0.12), y: cy + R * r.uniform(-0.02, 0.06) };
  return { S, R, cx, cy, clipTop: cy - clip, clipBottom: cy + clip, side, disc, macula };
}

/**
 * Step 2: the background colour with a per-image tint, texture from a few random sinusoids,
 * vignetting, the darker macula, the glow around the disc and (tessellation) the choroidal network.
 * Marks the field of view in `inside`.
 */
function paintBackground({ img, inside, r, g }: Canvas, tess: number): void {
  const { S, R, cx, cy, clipTop, clipBottom, disc, macula } = g;
  const base: [number, number, number] = [r.uniform(0.78, 0.92), r.uniform(0.3, 0.42), r.uniform(0.1, 0.18)];
  const waves = Array.from({ length: 6 }, () => ({
    kx: r.normal() * 9,
    ky: r.normal() * 9,
    ph: r.uniform(0, 6.283),
    a: r.uniform(0.01, 0.03),
  }));
  const tw = Array.from({ length: 5 }, () => ({ kx: r.normal() * 20, ky: r.normal() * 20, ph: r.uniform(0, 6.283) }));
  const sigM = R * 0.16;
  for (let py = 0; py < S; py++) {
    const y = py + 0.5;
    for (let px = 0; px < S; px++) {
      const x = px + 0.5;
      const i = py * S + px;
      const dx = x - cx;
      const dy = y - cy;
      const rho = Math.sqrt(dx * dx + dy * dy) / R;
      const edge = (1 - smoothstep(0.985, 1.0, rho)) * (y < clipTop || y > clipBottom ? 0 : 1);
      if (edge <= 0) continue;
      inside[i] = 1;
      const u = x / S;
      const v = y / S;
      let tex = 0;
      for (const w of waves) tex += w.a * Math.sin(w.kx * u + w.ky * v + w.ph);
      const vig = 1 - 0.42 * rho * rho;
      const dm = ((x - macula.x) ** 2 + (y - macula.y) ** 2) / (2 * sigM * sigM);
      const mac = 1 - 0.35 * Math.exp(-dm);
      const dd = ((x - disc.x) ** 2 + (y - disc.y) ** 2) / (2 * (disc.r * 2.2) ** 2);
      const glow = 0.12 * Math.exp(-dd);
      let R0 = (base[0] + tex + glow) * vig * mac;
      let G0 = (base[1] + tex * 0.5 + glow * 0.8) * vig * mac;
      let B0 = (base[2] + glow * 0.5) * vig * mac;
      if (tess > 0) {
        // Choroidal vessels seen through a thin RPE: dark interstitial network between orange bands.
        let t = 0;
        for (const w of tw) t += Math.sin(w.kx * u + w.ky * v + w.ph + 3 * Math.sin(7 * u + 5 * v));
        const band = smoothstep(0.2, 1.2, Math.abs(t) / 2.2);
        const k = 0.55 * tess * (1 - band) * smoothstep(0.1, 0.45, rho);
        R0 *= 1 - 0.45 * k;
        G0 *= 1 - 0.6 * k;
        B0 *= 1 - 0.3 * k;
      }
      img[3 * i] = R0 * edge;
      img[3 * i + 1] = G0 * edge;
      img[3 * i + 2] = B0 * edge;
    }
  }
}

/** Step 3: the foveal reflex, the optic disc, then the cup. A pale disc (optic atrophy) is whitish. */
function paintDisc({ img, r, g }: Canvas, cdr: number, pale: number): void {
  const { S, disc, macula, side } = g;
  blob(img, S, macula.x, macula.y, g.R * 0.012, [0.98, 0.78, 0.55], 0.7, 0.6);
  const discCol: [number, number, number] = [0.98 - 0.02 * pale, 0.72 + 0.18 * pale, 0.45 + 0.4 * pale];
  blob(img, S, disc.x, disc.y, disc.r, discCol, 0.95, 0.25, disc.r * 1.08, r.uniform(-0.3, 0.3));
  const cupR = disc.r * cdr;
  blob(
    img,
    S,
    disc.x + side * disc.r * 0.08,
    disc.y,
    cupR,
    [1, 0.93 + 0.05 * pale, 0.8 + 0.15 * pale],
    0.9,
    0.35,
    cupR * 1.05,
  );
}

/** Step 4: the vessels, four arcades from the disc, arteries and veins side by side. */
function paintVessels({ img, inside, r, g }: Canvas): void {
  const { S, R, disc, macula } = g;
  const segs: Segment[] = [];
  const toward = Math.atan2(macula.y - disc.y, macula.x - disc.x);
  const vw = S * r.uniform(0.011, 0.014);
  for (const up of [-1, 1]) {
    // Temporal arcades curve around the macula.
    growVessel(r, segs, disc.x, disc.y, toward + up * r.uniform(0.9, 1.2), vw, R * 1.3, false, -up * 0.026, 0, S);
    growVessel(
      r,
      segs,
      disc.x,
      disc.y,
      toward + up * r.uniform(0.75, 1.05),
      vw * 0.75,
      R * 1.25,
      true,
      -up * 0.024,
      0,
      S,
    );
    // Nasal branches.
    growVessel(
      r,
      segs,
      disc.x,
      disc.y,
      toward + Math.PI - up * r.uniform(0.5, 0.9),
      vw * 0.8,
      R * 0.6,
      false,
      up * 0.02,
      1,
      S,
    );
    growVessel(
      r,
      segs,
      disc.x,
      disc.y,
      toward + Math.PI - up * r.uniform(0.3, 0.7),
      vw * 0.6,
      R * 0.55,
      true,
      up * 0.02,
      1,
      S,
    );
  }
  drawVessels(img, S, segs, inside);
}

/** Is pixel (x, y) inside the field of view? */
function inFov({ inside, g }: Canvas, x: number, y: number): boolean {
  const px = Math.floor(x);
  const py = Math.floor(y);
  return px >= 0 && py >= 0 && px < g.S && py < g.S && inside[py * g.S + px] === 1;
}

/** A point normally scattered around (x, y). */
function around(r: Rng, x: number, y: number, spread: number): [number, number] {
  return [x + r.normal() * spread, y + r.normal() * spread];
}

/** Draws `count` lesions with `fn` around `centre`, in the field of view and off the disc (8 tries each). */
function place(
  c: Canvas,
  fn: (x: number, y: number) => void,
  count: number,
  centre: [number, number],
  spread: number,
): void {
  const { disc } = c.g;
  for (let k = 0; k < count; k++) {
    for (let tries = 0; tries < 8; tries++) {
      const [x, y] = around(c.r, centre[0], centre[1], spread);
      if (inFov(c, x, y) && Math.hypot(x - disc.x, y - disc.y) > disc.r * 1.4) {
        fn(x, y);
        break;
      }
    }
  }
}

/** An elongated lesion at a random angle: its size `s` in [lo, hi]·R and its aspect in [aspectLo, aspectHi]. */
function streak(
  { img, r, g }: Canvas,
  [lo, hi]: [number, number],
  colour: [number, number, number],
  alpha: number,
  soft: number,
  [aspectLo, aspectHi]: [number, number],
): (x: number, y: number) => void {
  return (x, y) => {
    const s = g.R * r.uniform(lo, hi);
    blob(img, g.S, x, y, s, colour, alpha, soft, s * r.uniform(aspectLo, aspectHi), r.uniform(0, 3.14));
  };
}

/** Step 5a: laser scars, a ring of dark spots with pale centres in the periphery. */
function paintLaserScars(c: Canvas, lasers: number): void {
  const { img, r } = c;
  const { S, R, cx, cy } = c.g;
  for (let k = 0, n = Math.round(r.int(40, 80) * lasers); k < n; k++) {
    const ang = r.uniform(0, 6.283);
    const rad = R * r.uniform(0.55, 0.9);
    const x = cx + Math.cos(ang) * rad;
    const y = cy + Math.sin(ang) * rad;
    if (!inFov(c, x, y)) continue;
    const s = R * r.uniform(0.016, 0.024);
    blob(img, S, x, y, s, [0.25, 0.14, 0.08], 0.85, 0.3);
    blob(img, S, x, y, s * 0.55, [0.95, 0.85, 0.6], 0.8, 0.4);
  }
}

/** Step 5: the lesions of each finding, as strong as it is stated. */
function paintLesions(c: Canvas, strength: (k: SynthFinding) => number): void {
  const { img, r } = c;
  const { S, R, disc, macula, side } = c.g;
  const post: [number, number] = [(macula.x + disc.x) / 2, macula.y];
  const lasers = strength("laser_scars");
  if (lasers > 0) paintLaserScars(c, lasers);
  const hem = strength("hemorrhage");
  if (hem > 0)
    place(c, streak(c, [0.01, 0.03], [0.35, 0.02, 0.02], 0.9 * hem, 0.4, [0.5, 1]), r.int(5, 14), post, R * 0.35);
  const ex = strength("hard_exudate");
  if (ex > 0) {
    const centre = around(r, post[0], post[1], R * 0.12);
    place(
      c,
      (x, y) => blob(img, S, x, y, R * r.uniform(0.006, 0.013), [1, 0.92, 0.45], 0.95 * ex, 0.3),
      r.int(12, 30),
      centre,
      R * 0.12,
    );
  }
  const cws = strength("cotton_wool_spot");
  if (cws > 0)
    place(
      c,
      streak(c, [0.03, 0.05], [0.97, 0.94, 0.86], 0.75 * cws, 0.8, [0.6, 0.9]),
      r.int(2, 5),
      [disc.x - side * R * 0.2, disc.y],
      R * 0.25,
    );
  const dru = strength("drusen");
  if (dru > 0)
    place(
      c,
      (x, y) => blob(img, S, x, y, R * r.uniform(0.007, 0.014), [0.98, 0.85, 0.45], 0.8 * dru, 0.6),
      r.int(15, 40),
      [macula.x, macula.y],
      R * 0.1,
    );
}

/**
 * Step 6: media haze washes the image out towards grey-yellow (the caller then blurs it, with
 * sharp), sensor noise inside the field of view (the border stays black), and 8-bit quantisation.
 */
function finish({ img, inside, r, g }: Canvas, haze: number): Uint8Array {
  const S = g.S;
  const out = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S; i++) {
    for (let c = 0; c < 3; c++) {
      let v = img[3 * i + c]!;
      if (haze > 0 && inside[i]) v = v * (1 - 0.45 * haze) + (c === 2 ? 0.3 : 0.45) * 0.45 * haze;
      if (inside[i]) v += (r.next() - 0.5) * 0.02;
      out[3 * i + c] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
    }
  }
  return out;
}

/** Renders a fundus image. */
export function renderFundus(spec: FundusSpec): Rendered {
  const S = spec.size;
  const r = mulberry32(spec.seed);
  const f = spec.findings;
  const strength = (k: SynthFinding) => (f[k] === "asserted" ? 1 : f[k] === "suspected" ? 0.55 : 0);
  const g = eyeGeometry(S, spec.eye, r);
  const c: Canvas = { img: new Float32Array(S * S * 3), inside: new Uint8Array(S * S), r, g };
  paintBackground(c, strength("tessellation"));
  paintDisc(c, spec.cdr, strength("optic_atrophy"));
  paintVessels(c);
  paintLesions(c, strength);
  const haze = strength("media_opacity");
  return {
    rgb: finish(c, haze),
    size: S,
    fov: { cx: g.cx, cy: g.cy, r: g.R, clipTop: g.clipTop, clipBottom: g.clipBottom },
    disc: g.disc,
    macula: g.macula,
    blur: haze > 0 ? S * 0.006 * haze + 0.8 : 0,
  };
}
