// The loader's routes, for real: a prebuild made by `npm run prebuild` (a stripped copy of the
// cmake-js build) is used when its flavour and source hash match; once native/ changes it is passed
// over and the addon is rebuilt with cmake-js; a current build is reused without compiling; a
// prebuild for another LibTorch is never used. The scratch packages hold a hard-linked copy of
// node_modules, so their compile commands equal the checkout's relative to CCACHE_BASEDIR (the
// package root) and the compiler cache serves their builds: only what changed is compiled.
import test from "ava";
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  findPrebuild,
  makeStamp,
  packageRoot,
  prebuildDir,
  prebuildName,
  readStamp,
  sourceHash,
  stalePrebuilds,
  stampPath,
  writeStamp,
} from "../lib/build/addon.js";
import { requireLibTorch } from "../lib/build/libtorch.js";
import { loadNative } from "../lib/native.js";

const torch = requireLibTorch();

/** `cp -al`: a real directory tree whose files are hard links (a copy where links cannot be made). */
function linkTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const [a, b] = [join(from, e.name), join(to, e.name)];
    if (e.isDirectory()) linkTree(a, b);
    else if (e.isSymbolicLink()) cpSync(a, b, { verbatimSymlinks: true });
    else {
      try {
        linkSync(a, b);
      } catch {
        cpSync(a, b);
      }
    }
  }
}

/** A throwaway copy of the package's build inputs with its own node_modules (hard links). */
function scratchPackage(): string {
  const root = mkdtempSync(join(tmpdir(), "vilref-routes-"));
  for (const p of ["package.json", "CMakeLists.txt", "native", "lib/build", "scripts"])
    cpSync(join(packageRoot, p), join(root, p), { recursive: true });
  linkTree(join(packageRoot, "node_modules"), join(root, "node_modules"));
  return root;
}

test.serial(
  "prebuild with a matching hash is used; stale prebuild is rebuilt, not used; a current build is reused",
  async (t) => {
    const root = scratchPackage();
    t.teardown(() => rmSync(root, { recursive: true, force: true }));

    // 1. npm run prebuild → prebuilds/linux-x64/vilref.<flavour>.napi.node with its stamp, a
    // stripped copy of the cmake-js build (made first; from the compiler cache)
    const r = spawnSync(process.execPath, [join(root, "scripts/prebuild.mjs"), "--root", root, "--out", root], {
      cwd: root,
      encoding: "utf8",
    });
    t.is(r.status, 0, r.stderr.slice(-3000));
    const prebuilt = join(prebuildDir(root), prebuildName(torch.flavour));
    t.true(existsSync(prebuilt));
    const hash = sourceHash(root);
    t.like(readStamp(prebuilt), {
      flavour: torch.flavour,
      sourceHash: hash,
      builder: "cmake-js",
      cxx11Abi: torch.cxx11Abi,
    });
    // As in an installed package: no build/, only the prebuild.
    rmSync(join(root, "build"), { recursive: true, force: true });

    const first = loadNative({ root, build: false });
    t.is(first.route, "prebuild");
    t.is(first.path, prebuilt);
    t.false(first.built);
    t.is(first.addon.buildInfo().sourceHash, hash, "the binary itself carries the hash");
    t.is(first.addon.buildInfo().flavour, torch.flavour);
    t.is(
      readlinkSync(join(dirname(prebuilt), `libtorch-${torch.flavour}`)),
      torch.libDir,
      "the prebuild's LibTorch link points here",
    );
    const y = await new first.addon.Head({
      inFeatures: 3,
      hidden: [],
      outFeatures: 2,
      activation: "gelu",
      seed: 1,
    }).forward({
      data: new Float32Array(6).fill(1),
      shape: [2, 3],
    });
    t.deepEqual(y.shape, [2, 2]);

    // 2. the sources change: the prebuild is stale
    appendFileSync(join(root, "native/head.cc"), "\n// a change after the prebuild was made\n");
    const newHash = sourceHash(root);
    t.not(newHash, hash);
    const refused = t.throws(() => loadNative({ root, build: false }));
    t.regex(refused!.message, /building is switched off/);
    t.regex(refused!.message, new RegExp(`stale: built from sources ${hash}, native/ is now ${newHash}`));

    const second = loadNative({ root, quiet: true, log: () => {} });
    t.is(second.route, "build");
    t.true(second.built, "compiled by this call");
    t.is(second.path, join(root, "build/Release/vilref.node"));
    t.is(second.addon.buildInfo().sourceHash, newHash);
    t.like(readStamp(second.path), { builder: "cmake-js", sourceHash: newHash });
    t.deepEqual(
      second.rejected.map((x) => x.path),
      [prebuilt],
    );

    // 3. nothing changed since: the build is reused, nothing compiled
    const third = loadNative({ root, build: false });
    t.is(third.route, "build");
    t.false(third.built);

    // 4. a prebuild for another LibTorch is never used, even with the right sources
    const other = join(prebuildDir(root), prebuildName("torch9.9.9-cu999"));
    cpSync(prebuilt, other);
    writeFileSync(
      stampPath(other),
      JSON.stringify({ ...readStamp(prebuilt), flavour: "torch9.9.9-cu999", sourceHash: newHash }),
    );
    const found = findPrebuild(root, torch, newHash);
    t.is(found.path, null);
    t.deepEqual(
      found.rejected.map((x) => [x.path, x.reason]),
      [
        [prebuilt, `stale: built from sources ${hash}, native/ is now ${newHash}`],
        [other, `built for torch9.9.9-cu999, this LibTorch is ${torch.flavour}`],
      ].sort((a, b) => a[0]!.localeCompare(b[0]!)),
    );
    t.is(loadNative({ root, build: false }).route, "build");
    // npm pack refuses to ship a prebuild that does not fit native/ (scripts/prepack.mjs)
    t.deepEqual(
      stalePrebuilds(root).map((x) => x.path),
      [prebuilt],
    );
  },
);

test.serial("a prebuild whose stamp fits but which cannot be loaded is passed over for a build", (t) => {
  // E.g. a system library it links (libturbojpeg, when made with the JPEG fast path) missing on the
  // user's machine; simulated by a file that is not a shared object, with a fitting stamp.
  const root = scratchPackage();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const hash = sourceHash(root);
  const prebuilt = join(prebuildDir(root), prebuildName(torch.flavour));
  mkdirSync(dirname(prebuilt), { recursive: true });
  writeFileSync(prebuilt, "not a shared object");
  const stamp = readStamp(join(packageRoot, "build/Release/vilref.node"));
  t.truthy(stamp, "the repository's own build has a stamp");
  writeFileSync(stampPath(prebuilt), JSON.stringify({ ...stamp, sourceHash: hash }));
  t.is(findPrebuild(root, torch, hash).path, prebuilt, "its stamp fits");
  const loaded = loadNative({ root, quiet: true, log: () => {} });
  t.is(loaded.route, "build");
  t.true(loaded.built);
  t.is(loaded.addon.buildInfo().sourceHash, hash);
  t.is(loaded.rejected[0]?.path, prebuilt);
  t.regex(loaded.rejected[0]?.reason ?? "", /^cannot be loaded: /);
});

test("a package without its native sources says so", (t) => {
  const root = mkdtempSync(join(tmpdir(), "vilref-empty-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  t.throws(() => loadNative({ root, torch, build: false }), { message: /native sources are missing/ });
});

test("a build that cannot compile fails with the compiler's complaint, not a crash", (t) => {
  const root = scratchPackage();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, "native/broken.cc"), "this is not C++;\n");
  const e = t.throws(() => loadNative({ root, torch, quiet: true, log: () => {} }));
  t.regex(e!.message, /cmake-js build failed/);
  t.regex(e!.message, /broken\.cc/);
});

test("prebuild selection: node-gyp-build's tags, then the stamp's flavour, ABI and hash", (t) => {
  const root = mkdtempSync(join(tmpdir(), "vilref-select-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = prebuildDir(root);
  mkdirSync(dir, { recursive: true });
  const stamp = makeStamp(torch, "0123456789abcdef", "node-gyp");
  const put = (name: string, s: object | null) => {
    writeFileSync(join(dir, name), "");
    if (s) writeStamp(join(dir, name), s as typeof stamp);
  };
  put(`a-vilref.${torch.flavour}.electron.abi999.node`, stamp);
  put(`b-vilref.${torch.flavour}.napi.node`, null);
  put(`c-vilref.${torch.flavour}.napi.node`, { ...stamp, cxx11Abi: torch.cxx11Abi ? 0 : 1 });
  put(`d-vilref.${torch.flavour}.napi.node`, { ...stamp, sourceHash: "fedcba9876543210" });
  put(`e-vilref.${torch.flavour}.napi.node`, stamp);
  const r = findPrebuild(root, torch, "0123456789abcdef");
  t.is(r.path, join(dir, `e-vilref.${torch.flavour}.napi.node`));
  t.deepEqual(
    r.rejected.map((x) => x.reason),
    [
      `its tags do not fit Node ${process.version} (N-API 8 build expected)`,
      "no stamp",
      `built with _GLIBCXX_USE_CXX11_ABI=${torch.cxx11Abi ? 0 : 1}, LibTorch needs ${torch.cxx11Abi}`,
      "stale: built from sources fedcba9876543210, native/ is now 0123456789abcdef",
    ],
  );
});
