import { rmSync } from "node:fs";
import { defineConfig, type Options } from "tsup";

/**
 * The builds of the package, as options for tsup. Exported so the packed-
 * tarball test (test/package) builds exactly what ships, into a scratch
 * directory (there without declarations, which it does not need and which
 * take most of the build time).
 */
export function packageBuilds({ outDir, dts }: { outDir: string; dts: boolean }): Options[] {
  // Every public entry point is built with declarations. Peers stay external so
  // the app's bundler dedupes them (two copies of @tanstack/db break its
  // transaction stack).
  const shared: Options = {
    format: ["esm"],
    dts,
    outDir,
    sourcemap: true,
    target: "es2022",
    splitting: true,
    treeshake: true,
    external: [/^@tanstack\//, "partysocket", "react", "vue", "solid-js", /^svelte(\/|$)/, "cloudflare:workers", "miniflare", "esbuild", "wrangler", "valibot"],
  };
  return [
    // Browser / Node entries: type-checked with DOM types (tsconfig.json).
    {
      ...shared,
      entry: {
        index: "src/index.ts",
        collections: "src/collections/index.ts",
        mutators: "src/mutators/index.ts",
        react: "src/react/index.ts",
        vue: "src/vue/index.ts",
        solid: "src/solid/index.ts",
        svelte: "src/svelte/index.ts",
        testing: "src/testing/index.ts",
      },
    },
    // The server-kit runs in workerd: its declarations need the Workers types,
    // which cannot share one program with the DOM's.
    { ...shared, entry: { "server-kit": "server-kit/index.ts" }, tsconfig: "server-kit/tsconfig.json" },
  ];
}

export default defineConfig(() => {
  // The two builds run at the same time into dist/, so neither may clean it
  // (tsup's clean would delete the other's files): it is emptied here, once.
  rmSync("dist", { recursive: true, force: true });
  return packageBuilds({ outDir: "dist", dts: true });
});
