/**
 * The `vilref` command line. Each family of commands lives in its own module that exports
 * `register(program)`; this file assembles them and owns the exit status:
 *
 *   0  success (and --help, --version)
 *   1  the command ran and failed (a missing file, a bad checkpoint, a diverging loss, ...)
 *   2  usage error: a malformed number, an unknown choice, a missing required option or argument,
 *      an unknown option or command, options that exclude each other (one line naming the option)
 *
 * Errors go to standard error prefixed with the command (`vilref eval probe: ...`), a usage error
 * on one line; VILREF_DEBUG=1 prints the stack trace of a failure instead of its message.
 */
import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { registerAdapter } from "./adapt.js";
import { register as registerData } from "./data.js";
import { register as registerEval } from "./eval.js";
import { register as registerLabels } from "./labels.js";
import { register as registerModel } from "./model.js";
import { UsageError } from "./options.js";
import { registerFinetune, registerSegment } from "./segment.js";
import { register as registerSystem } from "./system.js";
import { register as registerText } from "./text.js";
import { register as registerTrain } from "./train.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

/** Where commander's help and error lines go (tests capture them; default: the process's streams). */
export interface CliOutput {
  out?: (s: string) => void;
  err?: (s: string) => void;
}

/** "vilref eval probe" for the probe command. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

function* allCommands(cmd: Command): Generator<Command> {
  yield cmd;
  for (const c of cmd.commands) yield* allCommands(c);
}

export function buildProgram(output: CliOutput = {}): Command {
  const program = new Command("vilref")
    .description("ViLReF: retinal vision-language foundation model toolkit")
    .version(pkg.version)
    .exitOverride()
    // a command's options go to that command: `vilref labels eval --rules R` reaches labels eval, not labels
    .enablePositionalOptions()
    .addHelpText(
      "after",
      "\nExit status: 0 success, 1 failure, 2 usage error. VILREF_DEBUG=1 prints stack traces.\n" +
        "Run `vilref <command> --help` for a command's options and examples.\n",
    );
  registerSystem(program);
  registerText(program);
  registerLabels(program);
  registerModel(program);
  registerData(program);
  registerTrain(program);
  const evalCommand = registerEval(program);
  registerSegment(evalCommand);
  registerFinetune(evalCommand);
  registerAdapter(evalCommand);
  const writeOut = output.out ?? ((s: string) => void process.stdout.write(s));
  const writeErr = output.err ?? ((s: string) => void process.stderr.write(s));
  for (const c of allCommands(program)) {
    const name = commandPath(c);
    c.exitOverride().configureOutput({
      writeOut,
      writeErr,
      outputError: (s, write) => write(`${name}: ${s.replace(/^error: /, "")}`),
    });
  }
  return program;
}

/** Exit status for a CommanderError: 0 for help and version, 2 for every usage error. */
function commanderStatus(e: CommanderError): number {
  return e.code === "commander.helpDisplayed" || e.code === "commander.version" ? 0 : 2;
}

/** Runs the command line; returns the exit status (see the file header). */
export async function main(argv: string[] = process.argv, output: CliOutput = {}): Promise<number> {
  const program = buildProgram(output);
  const writeErr = output.err ?? ((s: string) => void process.stderr.write(s));
  let running: Command = program;
  program.hook("preAction", (_self, action) => {
    running = action;
  });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return commanderStatus(e);
    const debug = process.env.VILREF_DEBUG === "1";
    const message = e instanceof Error ? e.message : String(e);
    if (debug && e instanceof Error && e.stack) writeErr(`${commandPath(running)}: ${e.stack}\n`);
    else writeErr(`${commandPath(running)}: ${message}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
