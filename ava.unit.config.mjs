// `npm run test:unit`: every test file but the slow ones listed in ava.config.mjs.
import base, { integration } from "./ava.config.mjs";

export default { ...base, files: [...base.files, ...integration.map((f) => `!${f}`)] };
