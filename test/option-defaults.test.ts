// One documented default per option: every option field (the `...Fields` objects the schemas are
// built from, lib/config/options.ts) has a JSDoc comment, and its `Default: <value>` is the value
// the schema fills in — so what a user reads in the .d.ts is what the native object gets.
import test from "ava";
import { readFileSync } from "node:fs";
import ts from "typescript";
import { z } from "zod";
import { loadStateFields } from "../lib/config/options.js";
import { finetunerOptionFields } from "../lib/finetune/finetuner.js";
import { createOptionFields, encodeOptionFields, modelOptionFields } from "../lib/model/vilref.js";
import { segmenterConfigFields, segmenterOptionFields, segmenterStepFields } from "../lib/segment/segmenter.js";
import { processGroupFields } from "../lib/train/dist.js";
import { wsclOptionFields } from "../lib/train/losses.js";
import { trainerOptionFields, trainerStepFields } from "../lib/train/trainer.js";

const FIELDS: [string, string, Record<string, z.ZodType>][] = [
  ["lib/train/trainer.ts", "trainerOptionFields", trainerOptionFields],
  ["lib/train/trainer.ts", "trainerStepFields", trainerStepFields],
  ["lib/train/losses.ts", "wsclOptionFields", wsclOptionFields],
  ["lib/finetune/finetuner.ts", "finetunerOptionFields", finetunerOptionFields],
  ["lib/segment/segmenter.ts", "segmenterConfigFields", segmenterConfigFields],
  ["lib/segment/segmenter.ts", "segmenterOptionFields", segmenterOptionFields],
  ["lib/segment/segmenter.ts", "segmenterStepFields", segmenterStepFields],
  ["lib/model/vilref.ts", "modelOptionFields", modelOptionFields],
  ["lib/model/vilref.ts", "createOptionFields", createOptionFields],
  ["lib/model/vilref.ts", "encodeOptionFields", encodeOptionFields],
  ["lib/config/options.ts", "loadStateFields", loadStateFields],
  ["lib/train/dist.ts", "processGroupFields", processGroupFields],
];

/** The JSDoc of each property written in `export const name = { ... }` (spreads are checked where they are written). */
function propertyDocs(file: string, name: string): Map<string, string> {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const docs = new Map<string, string>();
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && node.name.getText() === name && node.initializer) {
      if (!ts.isObjectLiteralExpression(node.initializer)) throw new Error(`${file}: ${name} is not an object literal`);
      for (const p of node.initializer.properties) {
        if (!ts.isPropertyAssignment(p)) continue;
        const jsDoc = (p as unknown as { jsDoc?: ts.JSDoc[] }).jsDoc ?? [];
        docs.set(p.name.getText(), jsDoc.map((d) => ts.getTextOfJSDocComment(d.comment) ?? "").join(" "));
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return docs;
}

/** The token after "Default:", up to " —", a sentence end or the end. */
function documentedDefault(doc: string): string | undefined {
  const m = /Default: (.+?)(?: —|\.\s|\.?$)/s.exec(doc.replace(/\s+/g, " ").trim());
  return m?.[1]?.trim();
}

function parsedDefault(token: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(token) };
  } catch {
    return { ok: false };
  }
}

for (const [file, name, fields] of FIELDS) {
  test(`${name} (${file}): every option documents the default the schema fills in`, (t) => {
    const docs = propertyDocs(file, name);
    for (const [key, field] of Object.entries(fields)) {
      if (!docs.has(key)) continue; // spread in from another fields object, checked there
      const doc = docs.get(key)!;
      t.true(doc.length > 0, `${name}.${key} has a JSDoc comment`);
      const token = documentedDefault(doc);
      const r = z.object({ [key]: field }).safeParse({});
      if (!r.success) {
        t.regex(doc, /Required\./, `${name}.${key}: required, and says so`);
        t.is(token, undefined, `${name}.${key}: required, so no default`);
      } else if ((r.data as Record<string, unknown>)[key] === undefined) {
        t.truthy(token ?? /Optional\./.exec(doc), `${name}.${key}: optional; its doc says what happens without it`);
        if (token !== undefined) t.false(parsedDefault(token).ok, `${name}.${key}: a derived default, in words`);
      } else {
        t.not(token, undefined, `${name}.${key}: documents its default`);
        const parsed = parsedDefault(token!);
        t.true(parsed.ok, `${name}.${key}: "Default: ${token}" is a value`);
        if (parsed.ok) t.deepEqual(parsed.value, (r.data as Record<string, unknown>)[key], `${name}.${key}`);
      }
    }
  });
}

test("the checker reads what it should", (t) => {
  t.is(documentedDefault("AdamW's betas. Default: [0.9, 0.98]."), "[0.9, 0.98]");
  t.is(documentedDefault('Default: "wscl".'), '"wscl"');
  t.is(documentedDefault("Default: 5e-4 — the peak rate"), "5e-4");
  t.is(documentedDefault("Default: lr."), "lr");
  t.is(documentedDefault("Number of labels. Required."), undefined);
  t.true(propertyDocs("lib/train/trainer.ts", "trainerOptionFields").get("lr")!.includes("Default: 5e-4"));
});
