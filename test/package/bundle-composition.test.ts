/**
 * What a browser app ships, by module: an app that only reads (client,
 * collection source, query cache) must not carry the write outbox, and the
 * client's own modules must not bring a validator in (names and sources are
 * checked by hand; the protocol's schemas are the room's business). Built
 * as bench/bundle-size.ts builds it (bench/lib/browser-bundle.ts).
 */
import type { Metafile } from "esbuild";
import { describe, expect, it } from "vitest";
import { bundleForBrowser } from "../../bench/lib/browser-bundle.js";

async function inputsOf(contents: string): Promise<Metafile["inputs"]> {
  const result = await bundleForBrowser(contents);
  // Only modules that put bytes in the output (a type-only or fully shaken import is not shipped).
  const kept = new Set(Object.entries(Object.values(result.metafile.outputs)[0].inputs).filter(([, input]) => input.bytesInOutput > 0).map(([file]) => file));
  return Object.fromEntries(Object.entries(result.metafile.inputs).filter(([file]) => kept.has(file)));
}

describe("client bundle composition", () => {
  it("a read-only app (LunoraClient, lunoraCollectionOptions, createIndexedDbQueryCache) ships no outbox code", async () => {
    const inputs = await inputsOf(`export { LunoraClient, lunoraCollectionOptions, createIndexedDbQueryCache } from "./src/index.ts";`);
    const files = Object.keys(inputs);
    expect(files).toContain("src/client/lunora-client.ts");
    expect(files).toContain("src/cache/query-cache.ts");
    expect(files.filter((file) => file.startsWith("src/outbox/") || file.startsWith("src/mutators/"))).toEqual([]);
  });

  it("no module of the transport, the cache, the outbox or the mutators imports valibot", async () => {
    const inputs = await inputsOf(
      ["src/index.ts", "src/collections/index.ts", "src/mutators/index.ts", "src/react/index.ts"].map((file, i) => `export * as e${i} from "./${file}";`).join("\n"),
    );
    const mine = /^src\/(outbox|cache|mutators|react|frameworks)\/|^src\/client\/(lunora-client|room-name|backoff|identity|keepalive|listeners|status)\.ts$/;
    const importers = Object.entries(inputs)
      .filter(([file, input]) => mine.test(file) && input.imports.some((imported) => imported.path.includes("node_modules/valibot/")))
      .map(([file]) => file);
    expect(Object.keys(inputs).filter((file) => mine.test(file)).length).toBeGreaterThan(10);
    expect(importers).toEqual([]);
  });

  // The room validates client frames with valibot schemas that live in
  // src/protocol, which every client module imports for its types and
  // constants. They are `/* @__PURE__ */`-marked so that a bundle that never
  // calls them drops them (esbuild keeps an unmarked unused
  // `v.strictObject({…})`); without the marks valibot ships in every entry.
  it("no client entry ships any byte of valibot", async () => {
    const inputs = await inputsOf(
      ["src/index.ts", "src/collections/index.ts", "src/mutators/index.ts", "src/react/index.ts"].map((file, i) => `export * as e${i} from "./${file}";`).join("\n"),
    );
    expect(Object.keys(inputs)).toContain("src/protocol/room-frames.ts");
    expect(Object.keys(inputs).filter((file) => file.includes("node_modules/valibot/"))).toEqual([]);
  });
});
