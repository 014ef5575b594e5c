// The HTML report opens in headless Chromium and shows its images: every <img> has loaded with a
// natural width (read back from the DOM after the page's load handler ran), the screenshot has the
// curves' colours, and a missing PNG is caught. Skips only when no Chromium is installed.
import test from "ava";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { evaluateScores } from "../lib/eval/evaluate.js";
import { writeReport } from "../lib/eval/report.js";

function findChromium(): string | null {
  const candidates = [
    process.env.CHROMIUM,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  return null;
}
const chromium = findChromium();
if (!chromium)
  console.warn(
    "eval-report: no Chromium found (/usr/bin/chromium; set CHROMIUM=...); " +
      "the browser test is skipped. Debian: apt-get install -y --no-install-recommends chromium",
  );

const root = mkdtempSync(path.join(tmpdir(), "vilref-report-"));

function browser(args: string[]): string {
  const profile = mkdtempSync(path.join(root, "profile-"));
  try {
    return execFileSync(
      chromium!,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=5000",
        ...args,
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 90_000 },
    );
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** <img> elements of the DOM Chromium dumps after the page's scripts ran. */
function loadedImages(html: string): {
  body: string;
  imgs: { src: string; loaded: string; width: number }[];
  banner: string;
} {
  const dom = browser(["--dump-dom", `file://${html}`]);
  const imgs = [...dom.matchAll(/<img [^>]*>/g)].map(([tag]) => ({
    src: /src="([^"]*)"/.exec(tag)?.[1] ?? "",
    loaded: /data-loaded="([^"]*)"/.exec(tag)?.[1] ?? "(script did not run)",
    width: Number(/data-natural-width="(\d+)"/.exec(tag)?.[1] ?? -1),
  }));
  return {
    body: /<body[^>]*data-images-loaded="([^"]*)"/.exec(dom)?.[1] ?? "",
    imgs,
    banner: /<div id="missing"[^>]*>([^<]*)</.exec(dom)?.[1] ?? "",
  };
}

/** Pixels of a screenshot within `tol` of an RGB colour. */
async function countColour(png: string, rgb: [number, number, number], tol = 40): Promise<number> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let k = 0;
  for (let i = 0; i < info.width * info.height; i++)
    if (
      Math.abs(data[3 * i]! - rgb[0]) + Math.abs(data[3 * i + 1]! - rgb[1]) + Math.abs(data[3 * i + 2]! - rgb[2]) <
      tol
    )
      k++;
  return k;
}

async function makeReport(dir: string): Promise<{ html: string; images: string[] }> {
  // three classes, 30 cases: scores that mostly rank the true class first
  const n = 30;
  const scores = new Float64Array(n * 3);
  const targets = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    targets[i] = i % 3;
    for (let c = 0; c < 3; c++) scores[i * 3 + c] = (c === i % 3 ? 1 : 0) + ((i * 7 + c * 3) % 10) / 12;
  }
  const r = evaluateScores({ task: "graded", classes: ["0", "1", "2"], scores, n, targets }, { resamples: 50 });
  const overlay = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 30, b: 30 } } })
    .png()
    .toBuffer();
  return writeReport(
    dir,
    { ...r, protocol: "probe" },
    {
      context: { model: "test", dataset: "toy" },
      overlays: [{ title: "segmentation overlay", png: overlay, caption: "hook" }],
    },
  );
}

(chromium ? test.serial : test.skip)(
  "the HTML report shows every image in headless Chromium, and a missing one is caught",
  async (t) => {
    const dir = path.join(root, "report");
    const { html, images } = await makeReport(dir);
    // ROC (all + 3 classes), confusion matrix, the overlay
    t.deepEqual(images, ["roc-all.png", "roc-0.png", "roc-1.png", "roc-2.png", "confusion.png", "overlay-000.png"]);
    const good = loadedImages(html);
    t.is(good.imgs.length, images.length);
    t.deepEqual(
      good.imgs.map((i) => i.src),
      images,
    );
    for (const im of good.imgs) {
      t.is(im.loaded, "yes", `${im.src} did not load`);
      t.true(im.width > 0, `${im.src}: natural width ${im.width}`);
    }
    t.is(good.body, `${images.length}/${images.length}`);
    t.is(good.banner, "");
    // the pixels: the screenshot has the first curve's blue and the overlay's red, a page without its PNGs has neither
    const shot = path.join(root, "shot.png");
    browser([`--screenshot=${shot}`, "--window-size=1400,2400", `file://${html}`]);
    const blue = await countColour(shot, [0x1f, 0x77, 0xb4]);
    const red = await countColour(shot, [200, 30, 30]);
    t.true(blue > 150, `blue curve pixels: ${blue}`);
    t.true(red > 64 * 64 * 0.8, `overlay pixels: ${red}`);
    const bare = path.join(root, "bare");
    mkdirSync(bare);
    copyFileSync(html, path.join(bare, "index.html"));
    const shot2 = path.join(root, "shot-bare.png");
    browser([`--screenshot=${shot2}`, "--window-size=1400,2400", `file://${path.join(bare, "index.html")}`]);
    t.is(await countColour(shot2, [0x1f, 0x77, 0xb4]), 0, "without the PNGs nothing blue is drawn");
    // a wrong path: delete one PNG and the page reports it
    rmSync(path.join(dir, "confusion.png"));
    const broken = loadedImages(html);
    t.is(broken.imgs.find((i) => i.src === "confusion.png")?.loaded, "no");
    t.is(broken.imgs.filter((i) => i.loaded === "yes").length, images.length - 1);
    t.is(broken.body, `${images.length - 1}/${images.length}`);
    t.is(broken.banner, `1 of ${images.length} images could not be loaded`);
    t.true(readdirSync(dir).includes("index.html"));
  },
);

test("report figures are real PNGs of the right kind", async (t) => {
  const dir = path.join(root, "figs");
  const { images } = await makeReport(dir);
  for (const f of images) {
    const m = await sharp(path.join(dir, f)).metadata();
    t.is(m.format, "png", f);
    t.true((m.width ?? 0) >= 64 && (m.height ?? 0) >= 64, f);
  }
  // the confusion matrix of the toy scores has the counts on its diagonal drawn: not a blank image
  const { data } = await sharp(path.join(dir, "confusion.png"))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  let nonWhite = 0;
  for (let i = 0; i < data.length; i += 3) if (data[i]! + data[i + 1]! + data[i + 2]! < 700) nonWhite++;
  t.true(nonWhite > 1000, `non-white pixels ${nonWhite}`);
});
