/**
 * The framework bindings stay out of what an app without them loads: the
 * core entries reach no framework, and each binding reaches only its own
 * framework (the others are never pulled into, say, a Svelte app). Checked
 * on the esbuild graph of the source entries, the way an app's bundler sees
 * them.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { expect, test } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const FRAMEWORKS = ["react", "vue", "solid-js", "svelte"];

/** The bare packages an entry imports (everything is external, so nothing is bundled). */
async function packagesImportedBy(entry: string): Promise<Set<string>> {
  const result = await build({
    entryPoints: [path.join(root, entry)],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    metafile: true,
    logLevel: "silent",
    plugins: [
      {
        name: "record-packages",
        setup(b) {
          b.onResolve({ filter: /^[^./]/ }, (args) => ({ path: args.path, external: true }));
        },
      },
    ],
  });
  const packages = new Set<string>();
  for (const input of Object.values(result.metafile.inputs)) {
    for (const imported of input.imports) {
      if (!imported.external) continue;
      const parts = imported.path.split("/");
      packages.add(parts[0].startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]);
    }
  }
  return packages;
}

test("the core entries import no UI framework", async () => {
  for (const entry of ["src/index.ts", "src/collections/index.ts", "src/mutators/index.ts"]) {
    const imported = await packagesImportedBy(entry);
    expect([...imported].filter((name) => FRAMEWORKS.includes(name)), entry).toEqual([]);
  }
});

test("each binding imports only its own framework", async () => {
  const expected: Record<string, string> = { "src/vue/index.ts": "vue", "src/solid/index.ts": "solid-js", "src/svelte/index.ts": "svelte", "src/react/index.ts": "react" };
  for (const [entry, framework] of Object.entries(expected)) {
    const imported = await packagesImportedBy(entry);
    expect([...imported].filter((name) => FRAMEWORKS.includes(name)), entry).toEqual([framework]);
  }
});
