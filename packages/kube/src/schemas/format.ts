// One-line descriptions of validation errors that name the offending field.

import type { z } from "zod";

/** "spec.rules[0].from[0].source.principals" for a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else {
      const s = String(part);
      out += /^[A-Za-z_$][\w$]*$/.test(s) ? (out ? `.${s}` : s) : `[${JSON.stringify(s)}]`;
    }
  }
  return out || "(root)";
}

/** "spec.rules[0].from[0].source.principals: Invalid input: expected array, received string; …" */
export function describeZodError(error: z.ZodError): string {
  return error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join("; ");
}
