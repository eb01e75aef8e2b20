/**
 * Client bundle size. The client entry points (`@lunora/db`, `/collections`,
 * `/mutators`, `/react` — whichever exist) bundled together with esbuild,
 * minified, for the browser, with the peers external (`@tanstack/*`,
 * `partysocket`, `react`), then gzip -9. Regular dependencies (valibot, idb…)
 * are bundled: an app ships them. Each entry alone and each peer are printed
 * for context.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import type { BenchContext, Metric } from "./lib/context.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ENTRIES = ["src/index.ts", "src/collections/index.ts", "src/mutators/index.ts", "src/react/index.ts"];
const PEERS = ["@tanstack/*", "partysocket", "partysocket/*", "react", "react/*", "react-dom", "react-dom/*", "vue", "solid-js", "solid-js/*", "svelte", "svelte/*"];
/**
 * The framework bindings besides React. Each is measured alone (an app uses
 * one framework), with the framework and the other peers external; they are
 * not part of the all-entries total, which is what a React app ships.
 */
const FRAMEWORK_ENTRIES = [
  ["vue", "src/vue/index.ts"],
  ["solid", "src/solid/index.ts"],
  ["svelte", "src/svelte/index.ts"],
] as const;
const PEER_PACKAGES = ["@tanstack/db", "@tanstack/offline-transactions", "@tanstack/react-db", "partysocket"];

async function gzipOf(contents: string, external: string[]): Promise<{ minified: number; gzip: number; byArea: Record<string, number> }> {
  const result = await build({
    stdin: { contents, resolveDir: root, loader: "ts", sourcefile: "bench-bundle-entry.ts" },
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
  const code = result.outputFiles[0].contents;
  // Minified bytes per source folder (src/outbox, …) or dependency package.
  const byArea: Record<string, number> = {};
  for (const output of Object.values(result.metafile.outputs)) {
    for (const [file, input] of Object.entries(output.inputs)) {
      const parts = file.split("/");
      const at = parts.lastIndexOf("node_modules");
      const area = at >= 0 ? parts.slice(at + 1, at + (parts[at + 1].startsWith("@") ? 3 : 2)).join("/") : parts.slice(0, 2).join("/");
      byArea[area] = (byArea[area] ?? 0) + input.bytesInOutput;
    }
  }
  return { minified: code.byteLength, gzip: gzipSync(code, { level: 9 }).byteLength, byArea };
}

/** Everything an entry exports, kept (a namespace re-export keeps the whole public API). */
const entrySource = (files: string[]) =>
  files.map((file, i) => `export * as e${i} from ${JSON.stringify("./" + file)};`).join("\n");

export async function runBundleSize(ctx: BenchContext): Promise<Metric[]> {
  const entries = ENTRIES.filter((file) => existsSync(path.join(root, file)));
  const all = await gzipOf(entrySource(entries), PEERS);
  const parts: string[] = [];
  for (const file of entries) {
    const one = await gzipOf(entrySource([file]), PEERS);
    parts.push(`${file} ${one.gzip.toLocaleString("en-US")}`);
  }
  const areas = Object.entries(all.byArea)
    .filter(([, bytes]) => bytes > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([area, bytes]) => `${area} ${bytes.toLocaleString("en-US")} (~${Math.round((bytes / all.minified) * all.gzip).toLocaleString("en-US")} gz)`);
  ctx.note("bundle", `minified bytes by area (gzip share estimated pro rata): ${areas.join("; ")}`);
  ctx.note("bundle", `entries: ${entries.join(", ")} — together ${all.minified.toLocaleString("en-US")} B minified, ${all.gzip.toLocaleString("en-US")} B gzip; alone: ${parts.join("; ")}`);

  // What typical apps pull in (tree-shaken): reads only, and reads + writes + offline cache.
  const typical = [
    ["reads (LunoraClient, lunoraCollectionOptions)", `export { LunoraClient, lunoraCollectionOptions } from "./src/index.ts";`],
    ["reads + writes + cache (+ defineCollections, createIndexedDbQueryCache)", `export { LunoraClient, lunoraCollectionOptions, defineCollections, createIndexedDbQueryCache } from "./src/index.ts";`],
  ] as const;
  const typicalParts: string[] = [];
  for (const [label, source] of typical) {
    try {
      typicalParts.push(`${label} ${(await gzipOf(source, PEERS)).gzip.toLocaleString("en-US")}`);
    } catch (error) {
      typicalParts.push(`${label}: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  ctx.note("bundle", `typical app imports (gzip): ${typicalParts.join("; ")}`);

  const frameworkMetrics: Metric[] = [];
  for (const [name, file] of FRAMEWORK_ENTRIES) {
    if (!existsSync(path.join(root, file))) continue;
    const one = await gzipOf(entrySource([file]), PEERS);
    frameworkMetrics.push({ name: `bundle_${name}_gzip_bytes`, value: one.gzip });
  }
  ctx.note("bundle", `framework entries alone (gzip, framework external): ${frameworkMetrics.map((m) => `${m.name.split("_")[1]} ${m.value.toLocaleString("en-US")}`).join("; ")}`);

  let peersTotal = 0;
  const peerParts: string[] = [];
  for (const name of PEER_PACKAGES) {
    // Each peer with the other peers external, so nothing is counted twice.
    const others = PEERS.filter((pattern) => pattern !== name && !(name.startsWith("@tanstack/") && pattern === "@tanstack/*"));
    others.push(...PEER_PACKAGES.filter((other) => other !== name));
    const size = await gzipOf(`export * from ${JSON.stringify(name)};`, others);
    peersTotal += size.gzip;
    peerParts.push(`${name} ${size.gzip.toLocaleString("en-US")}`);
  }
  ctx.note("bundle", `peers (gzip -9, for context): ${peerParts.join("; ")}; total ${peersTotal.toLocaleString("en-US")}`);
  return [
    { name: "bundle_gzip_bytes", value: all.gzip },
    { name: "bundle_minified_bytes", value: all.minified },
    { name: "bundle_peers_gzip_bytes", value: peersTotal },
    ...frameworkMetrics,
  ];
}
