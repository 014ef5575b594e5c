// `npm run test:integration`: the slow tests — the ones that compile the addon or pack and install
// the package, start worker processes, or run training loops and whole CLI runs. `npm run
// test:unit` runs every other test file (ava.unit.config.mjs, seconds each), `npm test` all of them
// (package.json "ava"). A new test file is a unit test unless it is listed here.
import { readFileSync } from "node:fs";

export const base = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8")).ava;

export const integration = [
  "test/load-routes.test.ts",
  "test/package.test.ts",
  "test/dispose.test.ts",
  "test/dist.test.ts",
  "test/pretrain.test.ts",
  "test/pretrain-kill.test.ts",
  "test/train-cli.test.ts",
  "test/segment.test.ts",
  "test/segment-cli.test.ts",
  "test/finetune.test.ts",
];

export default { ...base, files: integration };
