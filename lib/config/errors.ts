import type { z } from "zod";

/** Zod issues as one line each naming the key: `hidden[1]: Too small: expected number to be >=1`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.reduce<string>(
        (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)),
        "",
      );
      return `${path || "(root)"}: ${issue.message}`;
    })
    .join("; ");
}
