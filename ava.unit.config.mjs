// `npm run test:unit`: every test file but the slow ones listed in ava.integration.config.mjs.
import { base, integration } from "./ava.integration.config.mjs";

export default { ...base, files: [...base.files, ...integration.map((f) => `!${f}`)] };
