// Finding LibTorch: LIBTORCH, then a Python torch, then the system's; a clear message when none.
import test from "ava";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDebian, locateLibTorch, missingMessage } from "../lib/build/libtorch.js";

const scratch = mkdtempSync(join(tmpdir(), "vilref-locate-"));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

function touch(path: string, text = "") {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
}

/** A prefix laid out as LibTorch/pip torch: include/, lib/, share/cmake/Torch. */
function fakeTorchPrefix(
  dir: string,
  opts: { abi?: 0 | 1; headerVersion?: string; buildVersion?: string; cuda?: boolean } = {},
) {
  touch(join(dir, "include/torch/csrc/api/include/torch/torch.h"));
  touch(
    join(dir, "include/torch/csrc/api/include/torch/version.h"),
    `#define TORCH_VERSION \\\n  "${opts.headerVersion ?? "2.3.0"}"\n`,
  );
  touch(join(dir, "lib/libtorch.so"));
  if (opts.cuda) touch(join(dir, "lib/libtorch_cuda.so"));
  touch(
    join(dir, "share/cmake/Torch/TorchConfig.cmake"),
    `set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${opts.abi ?? 1}")\n`,
  );
  if (opts.buildVersion) touch(join(dir, "build-version"), `${opts.buildVersion}\n`);
  return dir;
}

/** A fake interpreter answering the locator's find_spec question with `answer`. */
function fakePython(name: string, answer: string) {
  const path = join(scratch, name);
  writeFileSync(path, `#!/bin/sh\necho '${answer}'\n`);
  chmodSync(path, 0o755);
  return path;
}

const libtorchDir = fakeTorchPrefix(join(scratch, "libtorch"), { abi: 0, buildVersion: "2.5.1+cu124", cuda: true });
const pyTorchDir = fakeTorchPrefix(join(scratch, "site-packages/torch"));
touch(join(pyTorchDir, "version.py"), "__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\n");
const cpuPyTorchDir = fakeTorchPrefix(join(scratch, "cpu-site/torch"));
touch(join(cpuPyTorchDir, "version.py"), "__version__ = '2.4.0+cpu'\ncuda: Optional[str] = None\n");
const systemPrefix = join(scratch, "usr");
touch(join(systemPrefix, "include/torch/csrc/api/include/torch/torch.h"));
touch(join(systemPrefix, "include/torch/csrc/api/include/torch/version.h"), '#define TORCH_VERSION "1.13.0"\n');
touch(join(systemPrefix, "lib/libtorch.so"));
touch(join(systemPrefix, "lib/cmake/Torch/TorchConfig.cmake"), 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")\n');
const withTorch = fakePython("python-with-torch", pyTorchDir);
const withoutTorch = fakePython("python-without-torch", "");
const emptyPrefix = join(scratch, "nothing-here");

test("LIBTORCH comes first, and its build-version gives version and CUDA", (t) => {
  const { torch } = locateLibTorch({
    env: { LIBTORCH: libtorchDir },
    python: withTorch,
    systemPrefixes: [systemPrefix],
  });
  t.like(torch, {
    source: "LIBTORCH",
    version: "2.5.1",
    cuda: "12.4",
    flavour: "torch2.5.1-cu124",
    cxx11Abi: 0,
    cmakePrefix: join(libtorchDir, "share/cmake"),
    libDir: join(libtorchDir, "lib"),
  });
  t.deepEqual(torch?.libs, ["torch", "torch_cpu", "c10", "torch_cuda"]);
});

test("a LIBTORCH that is not a LibTorch is an error naming it, not silently skipped", (t) => {
  t.throws(
    () => locateLibTorch({ env: { LIBTORCH: emptyPrefix }, python: withTorch, systemPrefixes: [systemPrefix] }),
    {
      message: new RegExp(`^LIBTORCH=${emptyPrefix} is not a LibTorch directory: no C\\+\\+ headers`),
    },
  );
});

test("a Python torch comes next, read from torch/version.py without importing torch", (t) => {
  const { torch, tried } = locateLibTorch({ env: {}, python: withTorch, systemPrefixes: [systemPrefix] });
  t.like(torch, {
    source: "python",
    version: "2.11.0",
    cuda: "13.0",
    flavour: "torch2.11.0-cu130",
    root: pyTorchDir,
    cmakePrefix: join(pyTorchDir, "share/cmake"),
  });
  t.deepEqual(tried, [{ source: "LIBTORCH", detail: "LIBTORCH is not set" }]);
  const cpu = locateLibTorch({ env: {}, python: fakePython("python-cpu", cpuPyTorchDir), systemPrefixes: [] });
  t.like(cpu.torch, { source: "python", version: "2.4.0", cuda: null, flavour: "torch2.4.0-cpu" });
});

test("VILREF_PYTHON picks the interpreter", (t) => {
  const { torch } = locateLibTorch({ env: { VILREF_PYTHON: withTorch }, systemPrefixes: [] });
  t.is(torch?.source, "python");
});

test("then the system LibTorch", (t) => {
  const { torch, tried } = locateLibTorch({
    env: {},
    python: withoutTorch,
    systemPrefixes: [emptyPrefix, systemPrefix],
  });
  t.like(torch, {
    source: "system",
    version: "1.13.0",
    cuda: null,
    flavour: "torch1.13.0-cpu",
    libDir: join(systemPrefix, "lib"),
    cmakePrefix: join(systemPrefix, "lib/cmake"),
  });
  t.is(tried[1]?.detail, `${withoutTorch} has no torch package`);
  t.regex(tried[2]?.detail ?? "", /nothing-here: no .*torch\.h/);
});

test("none found: every place tried is listed, with the one thing to install", (t) => {
  const { torch, tried } = locateLibTorch({
    env: {},
    python: join(scratch, "no-such-python"),
    systemPrefixes: [emptyPrefix],
  });
  t.is(torch, null);
  t.deepEqual(
    tried.map((a) => a.source),
    ["LIBTORCH", "python", "system"],
  );
  t.regex(tried[1]!.detail, /no .*no-such-python on PATH/);
  const message = missingMessage(tried);
  t.regex(message, /^vilref needs LibTorch/);
  if (isDebian()) t.regex(message, /apt-get install -y --no-install-recommends libtorch-dev libopenblas0-openmp/);
  else t.regex(message, /set LIBTORCH/);
});

test("this machine's LibTorch is found (the set-up installs it on Debian)", (t) => {
  const { torch } = locateLibTorch();
  t.truthy(torch, "npm test's set-up should have made LibTorch available");
  t.regex(torch!.flavour, /^torch\d+\.\d+\.\d+-(cpu|cu\d+)$/);
});
