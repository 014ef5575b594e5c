// ava's configuration. `npm test` runs every test file; `npm run test:unit` the fast ones
// (ava.unit.config.mjs) and `npm run test:integration` the slow ones listed below
// (ava.integration.config.mjs). A new test file is a unit test unless it is listed in `integration`.

/**
 * The slow tests, slowest first: they compile the addon or pack and install the package, start
 * worker processes, or run training loops and whole CLI runs.
 */
export const integration = [
  "test/eval-synthetic.test.ts",
  "test/segment-cli.test.ts",
  "test/segment.test.ts",
  "test/load-routes.test.ts",
  "test/package.test.ts",
  "test/dist.test.ts",
  "test/pretrain.test.ts",
  "test/pretrain-kill.test.ts",
  "test/dispose.test.ts",
  "test/finetune.test.ts",
  "test/train-cli.test.ts",
];

// Files run two at a time (one per core); starting the slowest first keeps one long file from
// running alone at the end.
const rank = (file) => {
  const i = integration.findIndex((f) => file.endsWith(f));
  return i < 0 ? integration.length : i;
};

export default {
  extensions: { ts: "module" },
  files: ["test/**/*.test.ts"],
  nodeArguments: ["--import=tsx", "--expose-gc"],
  workerThreads: false,
  timeout: "15m",
  sortTestFiles: (a, b) => rank(a) - rank(b) || a.localeCompare(b),
};
