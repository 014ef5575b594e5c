// scripts/check-size.mjs (issue 19): the function-length measure behind `npm run format:check`.
import test from "ava";
import { measureCc, measureTs } from "../scripts/check-size.mjs";

test("TypeScript: declarations, methods, arrows, constructors: from the declaration to the closing brace", (t) => {
  const text = [
    "export function a(x: number): number {", // 1
    "  const f = (y: number) => {", // 2
    "    return y;", // 3
    "  };", // 4
    "  return f(x);", // 5
    "}", // 6
    "class C {", // 7
    "  constructor() {", // 8
    "    this.m();", // 9
    "  }", // 10
    "  m(): void {}", // 11
    "  get g(): number {", // 12
    "    return 1;", // 13
    "  }", // 14
    "}", // 15
    "const h = function () {", // 16
    "  return [1].map(function named() { return 2; });", // 17
    "};", // 18
  ].join("\n");
  const found = measureTs("x.ts", text).map((f) => `${f.name}@${f.line}:${f.length}`);
  t.deepEqual(found, ["a@1:6", "f@2:3", "constructor@8:3", "m@11:1", "g@12:3", "h@16:3", "named@17:1"]);
});

test("C++: definitions (wrapped signatures, initializer lists, class members) end at the matching brace", (t) => {
  const text = [
    "namespace vilref {", // 1
    "", // 2
    "// a comment {", // 3
    "static const int kTable[] = {", // 4
    "    1, 2,", // 5
    "};", // 6
    "Napi::Value Run(const Napi::CallbackInfo& info,", // 7
    "                int x) {", // 8
    '  const char* s = "}";', // 9
    "  auto f = [&](int y) {", // 10
    "    if (y) {", // 11
    "      return y;", // 12
    "    }", // 13
    "    return 0;", // 14
    "  };", // 15
    "  return f(x);", // 16
    "}", // 17
    "class Box {", // 18
    " public:", // 19
    "  Box(int a)", // 20
    "      : a_(a) {", // 21
    "    Check();", // 22
    "  }", // 23
    "  int Get() const { return a_; }", // 24
    "};", // 25
    "}  // namespace vilref", // 26
  ].join("\n");
  const found = measureCc(text).map((f) => `${f.name}@${f.line}:${f.length}`);
  // a definition on one line (Get) cannot exceed the limit and is not listed
  t.deepEqual(found, ["Run@7:11", "Box@20:4"]);
});

test("the tree has no function over 80 lines outside the allow-list", async (t) => {
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, ["scripts/check-size.mjs"], { encoding: "utf8" });
  t.is(r.status, 0, r.stdout + r.stderr);
});
