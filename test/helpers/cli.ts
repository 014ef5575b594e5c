// The vilref command run from the TypeScript sources (tests spawn it; bin/vilref.js runs dist/).
import { main } from "../../lib/cli/main.js";

process.exitCode = await main(process.argv);
