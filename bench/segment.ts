/**
 * Runs `vilref eval segment` / `vilref eval finetune` through a stand-in `eval` command (the lead
 * wires registerSegment/registerFinetune into lib/cli/main.ts):
 *
 *   npx tsx bench/segment.ts segment --data ../shared/data/DRIVE --minutes 5 --out bench/out/segment.json
 */
import { Command } from "commander";
import { registerFinetune, registerSegment } from "../lib/cli/segment.js";

const program = new Command("vilref").exitOverride();
const evalCommand = program.command("eval").description("evaluation protocols");
registerSegment(evalCommand);
registerFinetune(evalCommand);
await program.parseAsync(["node", "vilref", "eval", ...process.argv.slice(2)]);
