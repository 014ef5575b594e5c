/**
 * The `vilref` command line. Each family of commands lives in its own module that exports
 * `register(program)`; this file only assembles them.
 */
import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { register as registerData } from "./data.js";
import { register as registerEval } from "./eval.js";
import { register as registerLabels } from "./labels.js";
import { register as registerModel } from "./model.js";
import { registerFinetune, registerSegment } from "./segment.js";
import { register as registerSystem } from "./system.js";
import { register as registerText } from "./text.js";
import { register as registerTrain } from "./train.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

export function buildProgram(): Command {
  const program = new Command("vilref")
    .description("ViLReF: retinal vision-language foundation model toolkit")
    .version(pkg.version)
    .showHelpAfterError()
    .exitOverride();
  registerSystem(program);
  registerText(program);
  registerLabels(program);
  registerModel(program);
  registerData(program);
  registerTrain(program);
  const evalCommand = registerEval(program);
  registerSegment(evalCommand);
  registerFinetune(evalCommand);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    console.error(`vilref: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
