import { builtinModules } from "node:module";
import path from "node:path";
import { LunoraError } from "../protocol/errors.js";

/** What the bundle depends on besides the entry. */
export interface BundleSettings {
  compatibilityFlags: string[];
  /** Identifier → replacement expression (wrangler's `define`). */
  define?: Record<string, string>;
  /** Module specifier → replacement (wrangler's `alias`). */
  alias?: Record<string, string>;
}

/**
 * Bundle a Worker entry (TypeScript or JavaScript) into one ES module file
 * `outDir/worker.js` with esbuild, resolving packages the way workerd would
 * (`workerd` / `worker` / `browser` export conditions). `cloudflare:*` and
 * `node:*` imports stay external; with `nodejs_compat` bare Node built-ins
 * (`"buffer"`) stay external too. A wrangler config's `define` and `alias`
 * apply as wrangler would apply them.
 */
export async function bundleWorker(
  entry: string,
  outDir: string,
  { compatibilityFlags, define = {}, alias = {} }: BundleSettings,
): Promise<{ outfile: string; exports: string[] }> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch (error) {
    throw new LunoraError(
      "MISSING_PEER",
      "startLocalWorker: the `esbuild` package is needed to bundle the Worker (npm i -D esbuild): " +
        (error as Error).message,
      { peer: "esbuild" },
    );
  }
  const nodeCompat = compatibilityFlags.some((f) => f === "nodejs_compat" || f === "nodejs_compat_v2");
  const outfile = path.join(outDir, "worker.js");
  let result: import("esbuild").BuildResult<{ metafile: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      conditions: ["workerd", "worker", "browser"],
      mainFields: ["browser", "module", "main"],
      resolveExtensions: [".ts", ".tsx", ".mts", ".js", ".jsx", ".mjs", ".cjs", ".json"],
      external: ["cloudflare:*", "node:*", ...(nodeCompat ? builtinModules : [])],
      define: { "process.env.NODE_ENV": '"development"', ...define },
      alias,
      sourcemap: "linked",
      logLevel: "silent",
      metafile: true,
      write: true,
    });
  } catch (error) {
    const errors = (error as { errors?: { text: string; location?: { file: string; line: number } | null }[] })
      .errors;
    const detail = errors?.length
      ? errors
          .map((e) => (e.location ? `${e.location.file}:${e.location.line}: ${e.text}` : e.text))
          .join("\n  ")
      : (error as Error).message;
    throw new Error(`startLocalWorker: could not bundle ${entry}:\n  ${detail}`);
  }
  const output = Object.entries(result.metafile.outputs).find(([file]) => file.endsWith(".js"));
  return { outfile, exports: output?.[1].exports ?? [] };
}
