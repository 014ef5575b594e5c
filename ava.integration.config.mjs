// `npm run test:integration`: the slow tests listed in ava.config.mjs.
import base, { integration } from "./ava.config.mjs";

export default { ...base, files: integration };
