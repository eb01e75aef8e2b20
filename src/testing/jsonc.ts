/**
 * Parse JSON with comments (`//`, `/* *\/`) and trailing commas, as used by
 * `wrangler.jsonc`. Strings are left untouched, so `"https://x"` survives.
 */
export function parseJsonc(text: string): unknown {
  return JSON.parse(stripJsonc(text));
}

/** Remove comments and trailing commas from JSONC text, keeping strings intact. */
export function stripJsonc(text: string): string {
  let out = "";
  let i = 0;
  const n = text.length;
  // Index in `out` of the last comma that may turn out to be trailing.
  let pendingComma = -1;
  while (i < n) {
    const ch = text[i];
    const next = text[i + 1];
    if (ch === '"') {
      const start = i;
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === "\\") i++;
        i++;
      }
      i++;
      out += text.slice(start, i);
      pendingComma = -1;
      continue;
    }
    if (ch === "/" && next === "/") {
      while (i < n && text[i] !== "\n") i++;
      continue;
    }
    if (ch === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end === -1 ? n : end + 2;
      out += " ";
      continue;
    }
    if (ch === ",") {
      pendingComma = out.length;
      out += ch;
      i++;
      continue;
    }
    if (ch === "}" || ch === "]") {
      if (pendingComma !== -1) {
        out = out.slice(0, pendingComma) + " " + out.slice(pendingComma + 1);
      }
      pendingComma = -1;
      out += ch;
      i++;
      continue;
    }
    if (!/\s/.test(ch)) pendingComma = -1;
    out += ch;
    i++;
  }
  return out;
}
