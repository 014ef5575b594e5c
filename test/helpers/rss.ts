// The vilref command run from the TypeScript sources, reporting its peak resident set size (KiB) on
// the last line of standard error: `maxRSS <kib>` (tests measure memory in a process of its own).
import { main } from "../../lib/cli/main.js";

const code = await main(process.argv);
process.stderr.write(`\nmaxRSS ${process.resourceUsage().maxRSS}\n`);
process.exitCode = code;
