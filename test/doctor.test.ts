// vilref doctor: the report, the BLAS verdicts, and the command.
import test from "ava";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../lib/build/addon.js";
import { classifyBlas, doctor, formatDoctor } from "../lib/doctor.js";

const lib = (realPath: string) => ({ path: realPath, realPath });

test("BLAS verdicts: OpenMP OpenBLAS is fine; pthread, sequential and reference BLAS warn loudly", (t) => {
  t.like(
    classifyBlas({
      libraries: [lib("/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3")],
      openblasParallel: "openmp",
      openblasConfig: "OpenBLAS 0.3.21 USE_OPENMP",
    }),
    { kind: "openblas-openmp", warning: null },
  );
  const pthread = classifyBlas({
    libraries: [lib("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3")],
    openblasParallel: "pthread",
  });
  t.is(pthread.kind, "openblas-pthread");
  t.regex(pthread.warning ?? "", /pthread build.*libopenblas0-openmp/);
  // the fix that works with the pthread build still installed: the alternatives, for this library's architecture
  for (const name of ["libblas.so.3", "liblapack.so.3", "libopenblas.so.0"])
    t.true(
      pthread.warning!.includes(
        `update-alternatives --set ${name}-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/${name}`,
      ),
      name,
    );
  const arm = classifyBlas({
    libraries: [lib("/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3")],
    openblasParallel: "pthread",
  });
  t.regex(arm.warning ?? "", /--set libblas\.so\.3-aarch64-linux-gnu \/usr\/lib\/aarch64-linux-gnu\/openblas-openmp\//);
  t.is(classifyBlas({ libraries: [], openblasParallel: "sequential" }).kind, "openblas-sequential");
  const reference = classifyBlas({ libraries: [lib("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3")] });
  t.is(reference.kind, "reference");
  t.regex(reference.warning ?? "", /reference BLAS.*60x slower/);
  t.like(classifyBlas({ libraries: [lib("/opt/intel/oneapi/mkl/lib/libmkl_rt.so.2")] }), {
    kind: "mkl",
    warning: null,
  });
  t.like(classifyBlas({ libraries: [] }, "  - BLAS_INFO=mkl\n"), { kind: "mkl", detail: "mkl, linked into LibTorch" });
  t.is(classifyBlas({ libraries: [] }).kind, "unknown");
});

test("doctor reports the loaded addon, LibTorch, CUDA, BLAS and threads of this process", (t) => {
  const r = doctor();
  t.is(r.node.version, process.version);
  t.truthy(r.libtorch.found);
  if ("error" in r.addon) return t.fail(r.addon.error);
  t.true(["prebuild", "build"].includes(r.addon.route));
  t.is(r.addon.flavour, r.libtorch.found!.flavour);
  t.is(r.cuda?.available, r.cuda!.deviceCount > 0);
  t.truthy(r.blas);
  t.deepEqual(r.threads, { intraOp: availableParallelism(), cores: availableParallelism() });
  t.is(r.ok, r.blas!.warning === null);
  const text = formatDoctor(r);
  t.regex(text, /^node {7}v\d+/m);
  t.regex(text, /^blas {7}\S+/m);
  t.regex(text, new RegExp(`^threads {4}${availableParallelism()} intra-op`, "m"));
});

test("`vilref doctor --json` prints the same report from the command line", (t) => {
  const r = spawnSync(process.execPath, [join(packageRoot, "bin/vilref.js"), "doctor", "--json"], {
    encoding: "utf8",
    env: { ...process.env, VILREF_THREADS: "1" },
  });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.node.version, process.version);
  t.is(report.threads.intraOp, 1, "VILREF_THREADS is honoured");
  t.is(typeof report.addon.path, "string");
});

test("a bad VILREF_THREADS is named", (t) => {
  const r = spawnSync(process.execPath, [join(packageRoot, "bin/vilref.js"), "doctor"], {
    encoding: "utf8",
    env: { ...process.env, VILREF_THREADS: "many" },
  });
  t.is(r.status, 1);
  t.regex(r.stderr + r.stdout, /VILREF_THREADS: expected a positive integer, got "many"/);
});

test("VILREF_CPU_CACHE_MB=0 turns the CPU block cache off; doctor says which", (t) => {
  const run = (env: NodeJS.ProcessEnv) =>
    JSON.parse(
      spawnSync(process.execPath, [join(packageRoot, "bin/vilref.js"), "doctor", "--json"], {
        encoding: "utf8",
        env: { ...process.env, ...env },
      }).stdout,
    );
  t.like(run({ VILREF_CPU_CACHE_MB: "0" }).cpuCache, { enabled: false, limitBytes: 0 });
  t.like(run({ VILREF_CPU_CACHE_MB: "64" }).cpuCache, { enabled: true, limitBytes: 64 * 2 ** 20 });
});
