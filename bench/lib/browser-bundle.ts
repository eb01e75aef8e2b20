/**
 * How a browser app bundles the client: esbuild, minified ESM for the
 * browser, `NODE_ENV=production`, the peers external, tree-shaken. Shared by
 * the bundle-size bench and the bundle-composition test, so both look at the
 * same build.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type BuildResult } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The packages an app brings itself (peer dependencies and frameworks). */
export const CLIENT_PEERS = ["@tanstack/*", "partysocket", "partysocket/*", "react", "react/*", "react-dom", "react-dom/*", "vue", "solid-js", "solid-js/*", "svelte", "svelte/*"];

/** Bundles `contents` (a module in the repository's root) with a metafile; nothing is written. */
export function bundleForBrowser(contents: string, external: string[] = CLIENT_PEERS): Promise<BuildResult<{ write: false; metafile: true }>> {
  return build({
    stdin: { contents, resolveDir: root, loader: "ts", sourcefile: "bundle-entry.ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    external,
    logLevel: "silent",
    define: { "process.env.NODE_ENV": '"production"' },
    metafile: true,
  });
}
