/**
 * Client bundle size. The client entry points (`@lunora/db`, `/collections`,
 * `/mutators`, `/react` — whichever exist) bundled together with esbuild,
 * minified, for the browser, with the peers external (`@tanstack/*`,
 * `partysocket`, `react`), then gzip -9. Regular dependencies (valibot, idb…)
 * are bundled: an app ships them. Each entry alone is a metric
 * (`bundle_<entry>_gzip_bytes`), and so is what a read-only app ships
 * (`bundle_reads_only_gzip_bytes`: the client, the collection source and the
 * IndexedDB query cache, tree-shaken). The largest source files (esbuild's
 * metafile) and each peer are printed for context.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { CLIENT_PEERS, bundleForBrowser } from "./lib/browser-bundle.js";
import type { BenchContext, Metric } from "./lib/context.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** The client entries, by the name their metric carries. */
const ENTRIES = [
  ["index", "src/index.ts"],
  ["collections", "src/collections/index.ts"],
  ["mutators", "src/mutators/index.ts"],
  ["react", "src/react/index.ts"],
] as const;
/**
 * What an app that only reads ships: the transport, the collection source
 * and an offline read cache, imported by name so the bundler drops the rest
 * (the write outbox, `defineCollections`, mutators). Goal ≤ 9 KB gzip.
 */
const READS_ONLY = `export { LunoraClient, lunoraCollectionOptions, createIndexedDbQueryCache } from "./src/index.ts";`;
/** Reads and writes: what the example app imports from the core entry. */
const READS_AND_WRITES = `export { LunoraClient, lunoraCollectionOptions, defineCollections, createIndexedDbQueryCache } from "./src/index.ts";`;
const PEERS = CLIENT_PEERS;
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

interface BundleSize {
  minified: number;
  gzip: number;
  /** Minified bytes per source folder (src/outbox, …) or dependency package. */
  byArea: Record<string, number>;
  /** Minified bytes per source file (a dependency counts as one file). */
  byFile: Record<string, number>;
  /** Our source files in the bundle that import valibot (esbuild keeps their module-level schemas even when unused). */
  valibotImporters: string[];
}

async function gzipOf(contents: string, external: string[]): Promise<BundleSize> {
  const result = await bundleForBrowser(contents, external);
  const code = result.outputFiles[0].contents;
  const byArea: Record<string, number> = {};
  const byFile: Record<string, number> = {};
  for (const output of Object.values(result.metafile.outputs)) {
    for (const [file, input] of Object.entries(output.inputs)) {
      const parts = file.split("/");
      const at = parts.lastIndexOf("node_modules");
      const area = at >= 0 ? parts.slice(at + 1, at + (parts[at + 1].startsWith("@") ? 3 : 2)).join("/") : parts.slice(0, 2).join("/");
      byArea[area] = (byArea[area] ?? 0) + input.bytesInOutput;
      const name = at >= 0 ? area : file;
      byFile[name] = (byFile[name] ?? 0) + input.bytesInOutput;
    }
  }
  const valibotImporters = Object.entries(result.metafile.inputs)
    .filter(([file, input]) => !file.includes("node_modules") && input.imports.some((imported) => imported.path.includes("node_modules/valibot/")))
    .map(([file]) => file);
  return { minified: code.byteLength, gzip: gzipSync(code, { level: 9 }).byteLength, byArea, byFile, valibotImporters };
}

/** `name 1,234 (~400 gz)` for the largest entries of `bytes`, largest first; gzip shares are estimated pro rata. */
function largest(bytes: Record<string, number>, size: BundleSize, count = Infinity): string {
  return Object.entries(bytes)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, n]) => `${name} ${n.toLocaleString("en-US")} (~${Math.round((n / size.minified) * size.gzip).toLocaleString("en-US")} gz)`)
    .join("; ");
}

/** Everything an entry exports, kept (a namespace re-export keeps the whole public API). */
const entrySource = (files: string[]) =>
  files.map((file, i) => `export * as e${i} from ${JSON.stringify("./" + file)};`).join("\n");

export async function runBundleSize(ctx: BenchContext): Promise<Metric[]> {
  const entries = ENTRIES.filter(([, file]) => existsSync(path.join(root, file)));
  const all = await gzipOf(entrySource(entries.map(([, file]) => file)), PEERS);
  const entryMetrics: Metric[] = [];
  for (const [name, file] of entries) {
    const one = await gzipOf(entrySource([file]), PEERS);
    entryMetrics.push({ name: `bundle_${name}_gzip_bytes`, value: one.gzip });
  }
  ctx.note("bundle", `minified bytes by area (gzip share estimated pro rata): ${largest(all.byArea, all)}`);
  ctx.note("bundle", `largest source files (minified bytes): ${largest(all.byFile, all, 15)}`);
  ctx.note(
    "bundle",
    `entries: ${entries.map(([, file]) => file).join(", ")} — together ${all.minified.toLocaleString("en-US")} B minified, ${all.gzip.toLocaleString("en-US")} B gzip; alone (gzip): ${entryMetrics.map((m, i) => `${entries[i][1]} ${m.value.toLocaleString("en-US")}`).join("; ")}`,
  );

  // What typical apps pull in (tree-shaken).
  const readsOnly = await gzipOf(READS_ONLY, PEERS);
  const readsAndWrites = await gzipOf(READS_AND_WRITES, PEERS);
  ctx.note(
    "bundle",
    `reads only (LunoraClient, lunoraCollectionOptions, createIndexedDbQueryCache): ${readsOnly.minified.toLocaleString("en-US")} B minified, ${readsOnly.gzip.toLocaleString("en-US")} B gzip; largest files: ${largest(readsOnly.byFile, readsOnly, 10)}`,
  );
  ctx.note("bundle", `reads + writes (+ defineCollections): ${readsAndWrites.gzip.toLocaleString("en-US")} B gzip`);
  // valibot's schema builders are marked side-effect free, but esbuild drops a
  // module-level `v.strictObject({ a: v.string() })` only when every nested call
  // is annotated too: any module the client reaches that builds schemas at
  // load keeps valibot in, used or not.
  ctx.note("bundle", `valibot reached (reads only) through: ${readsOnly.valibotImporters.join(", ") || "nothing"}`);

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
    ...entryMetrics,
    { name: "bundle_reads_only_gzip_bytes", value: readsOnly.gzip },
    { name: "bundle_reads_writes_gzip_bytes", value: readsAndWrites.gzip },
    { name: "bundle_peers_gzip_bytes", value: peersTotal },
    ...frameworkMetrics,
  ];
}
