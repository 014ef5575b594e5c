// The typed addon surface (lib/addon-types.ts) against the loaded addon: every export, namespace
// member, class method and accessor the addon registers is declared, and nothing declared is
// missing, so a new native export cannot go untyped.
import test from "ava";
import { ADDON_CLASSES, ADDON_EXPORTS, ADDON_NAMESPACES } from "../lib/addon-types.js";
import { native } from "../lib/native.js";

const sorted = (xs: readonly string[]) => [...xs].sort();

test("the addon's top-level exports are exactly the declared ones", (t) => {
  t.deepEqual(sorted(Object.keys(native())), sorted(ADDON_EXPORTS));
});

test("the addon's namespace objects hold exactly the declared members", (t) => {
  const addon = native() as unknown as Record<string, object>;
  for (const [name, members] of Object.entries(ADDON_NAMESPACES)) {
    t.deepEqual(sorted(Object.keys(addon[name]!)), sorted(members), name);
  }
});

test("the addon's classes have exactly the declared instance and static members", (t) => {
  const addon = native() as unknown as Record<string, Record<string, unknown>>;
  for (const [path, members] of Object.entries(ADDON_CLASSES)) {
    const parts = path.split(".");
    const cls = (parts.length === 1 ? addon[parts[0]!] : addon[parts[0]!]![parts[1]!]) as unknown as {
      prototype: object;
    };
    t.is(typeof cls, "function", `${path} is a class`);
    const instance = Object.getOwnPropertyNames(cls.prototype).filter((k) => k !== "constructor");
    t.deepEqual(sorted(instance), sorted(members.instance), `${path} instance members`);
    const statics = Object.getOwnPropertyNames(cls).filter(
      (k) => !["length", "name", "prototype", "arguments", "caller"].includes(k),
    );
    t.deepEqual(sorted(statics), sorted(members.static), `${path} static members`);
  }
});
