/**
 * What a new user gets from npm: the package is built and packed as it
 * ships, the tarball is installed into an empty app with ONLY the required
 * peers (`@tanstack/db`, `partysocket`, plus `ws` for Node) — not the
 * optional `@tanstack/offline-transactions` — and that app, following the
 * README's read path, imports `@lunora/db` and `@lunora/db/collections` in a
 * plain Node process and syncs a row from the fixture room in real workerd.
 *
 * `npm install` in the scratch app uses the npm cache first (`npm ci` of this
 * repository filled it with the same versions), the registry otherwise.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "tsup";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { packageBuilds } from "../../tsup.config.js";
import type { LocalWorker } from "../../src/testing/index.js";
import { putItems, startFixtureRoom } from "../helpers/fixture-room.js";

const run = promisify(execFile);

/**
 * The environment for npm in the scratch directories: without the `npm_*`
 * variables of the `npm test` that runs this file (`npm_config_local_prefix`
 * names this repository, and must not steer the scratch install into it).
 */
function scratchNpmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) && key !== "INIT_CWD") env[key] = value;
  }
  return { ...env, npm_config_loglevel: "error", npm_config_update_notifier: "false" };
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

/**
 * The required peers, at the versions this repository is tested with — which
 * must be the lower bounds `peerDependencies` declares (checked below), so
 * this install proves the oldest versions a user may have.
 */
const REQUIRED_PEERS = ["@tanstack/db", "partysocket", "ws"];
/** The entries a read-only app loads (the React one also needs React; its graph is checked statically below). */
const READ_ONLY_ENTRIES = ["index.js", "collections.js", "react.js"];

let scratch: string;
let app: string;
let packageDist: string;
let worker: LocalWorker;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), "lunora-package-"));
  const pkg = path.join(scratch, "pkg");
  app = path.join(scratch, "app");
  packageDist = path.join(pkg, "dist");
  await mkdir(app, { recursive: true });

  // Build what ships (JS only) next to a copy of package.json, and pack it.
  const manifest = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
    devDependencies: Record<string, string>;
  };
  await Promise.all(packageBuilds({ outDir: packageDist, dts: false }).map((options) => build({ ...options, silent: true })));
  await copyFile(path.join(root, "package.json"), path.join(pkg, "package.json"));
  await copyFile(path.join(root, "README.md"), path.join(pkg, "README.md"));
  const packed = await run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", scratch], { cwd: pkg, env: scratchNpmEnv() });
  const [{ filename }] = JSON.parse(packed.stdout) as Array<{ filename: string }>;

  await writeFile(path.join(app, "package.json"), JSON.stringify({ name: "read-only-app", private: true, type: "module" }));
  const peers = REQUIRED_PEERS.map((name) => `${name}@${manifest.devDependencies[name]}`);
  await run(
    npm,
    ["install", path.join(scratch, filename), ...peers, "--prefix", app, "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", "--no-package-lock"],
    { cwd: app, env: scratchNpmEnv() },
  );
  worker = await startFixtureRoom();
}, 180_000);

afterAll(async () => {
  await worker?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("the packed package in an app without the optional peers", () => {
  test("the optional outbox peer is really absent from the app", () => {
    expect(existsSync(path.join(app, "node_modules/@lunora/db/package.json"))).toBe(true);
    expect(existsSync(path.join(app, "node_modules/@tanstack/db/package.json"))).toBe(true);
    expect(existsSync(path.join(app, "node_modules/@tanstack/offline-transactions"))).toBe(false);
  });

  test("the peers installed are the lower bounds package.json declares (ranges, not exact pins)", async () => {
    const manifest = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
      peerDependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    for (const name of ["@tanstack/db", "@tanstack/offline-transactions", "@tanstack/react-db"]) {
      const range = manifest.peerDependencies[name];
      // A range a patch release satisfies (no ERESOLVE for an app one patch ahead)…
      expect(range).toMatch(/^[~^]\d/);
      // …whose lower bound is what this repository tests with.
      expect(range.slice(1)).toBe(manifest.devDependencies[name]);
    }
    const installed = JSON.parse(await readFile(path.join(app, "node_modules/@tanstack/db/package.json"), "utf8")) as { version: string };
    expect(`~${installed.version}`).toBe(manifest.peerDependencies["@tanstack/db"]);
  });

  test("no read-only entry statically imports @tanstack/offline-transactions (it loads when an outbox starts)", async () => {
    for (const entry of READ_ONLY_ENTRIES) {
      const offenders: string[] = [];
      const seen = new Set<string>();
      const visit = async (file: string): Promise<void> => {
        if (seen.has(file)) return;
        seen.add(file);
        const code = await readFile(path.join(packageDist, file), "utf8");
        // Static forms only: `import … from "x"`, `export … from "x"`, `import "x"`; `import("x")` is lazy.
        for (const match of code.matchAll(/(?:^|[;\n])\s*(?:import|export)\s*(?:[^'"();]*?\sfrom\s*)?["']([^"']+)["']/g)) {
          const specifier = match[1];
          if (specifier.startsWith("./")) await visit(specifier.slice(2));
          else if (specifier.startsWith("@tanstack/offline-transactions")) offenders.push(file);
        }
      };
      await visit(entry);
      expect(offenders, entry).toEqual([]);
      expect(seen.size, entry).toBeGreaterThan(1); // the walk followed the chunks
    }
    expect((await readdir(packageDist)).some((file) => file.endsWith(".js") && file.startsWith("chunk-"))).toBe(true);
  });

  test("the README's read path runs in plain Node: import @lunora/db and /collections, sync a row from a room", async () => {
    const room = `pkg-${Date.now().toString(36)}`;
    await putItems(worker, room, { id: "i1", listId: "L", title: "from the room" });
    await writeFile(
      path.join(app, "read.mjs"),
      `
import { createCollection } from "@tanstack/db";
import { WebSocket } from "ws";
import { LunoraClient, LunoraError, createInMemoryQueryCache, lunoraCollectionOptions } from "@lunora/db";
import * as collectionsEntry from "@lunora/db/collections";

const [host, room] = process.argv.slice(2);
const client = new LunoraClient({ host, party: "room", auth: "user:alice", WebSocket, queryCache: createInMemoryQueryCache() });
const items = createCollection(lunoraCollectionOptions({ client, list: "items", shardKey: room }).config);
const viaEntry = createCollection(collectionsEntry.lunoraCollectionOptions({ client, list: "items", shardKey: room }).config);
const [rows, rowsViaEntry] = await Promise.all([items.toArrayWhenReady(), viaEntry.toArrayWhenReady()]);
const strip = (row) => Object.fromEntries(Object.entries(row).filter(([key]) => !key.startsWith("$")));
console.log(JSON.stringify({ rows: rows.map(strip), rowsViaEntry: rowsViaEntry.map(strip), errorClass: typeof LunoraError, status: client.status }));
await items.cleanup();
await viaEntry.cleanup();
client.close();
`,
    );
    const { stdout } = await run(process.execPath, ["read.mjs", worker.host, room], { cwd: app, timeout: 30_000 });
    const result = JSON.parse(stdout.trim().split("\n").pop()!) as {
      rows: unknown[];
      rowsViaEntry: unknown[];
      errorClass: string;
      status: string;
    };
    const row = { id: "i1", listId: "L", title: "from the room", rank: 0 };
    expect(result.rows).toEqual([expect.objectContaining(row)]);
    expect(result.rowsViaEntry).toEqual([expect.objectContaining(row)]);
    expect(result.errorClass).toBe("function");
    expect(result.status).toBe("connected");
  });
});

describe("the testing entry in an app without wrangler (an optional peer)", () => {
  test("wrangler is declared an optional peer whose lower bound is the version tested here", async () => {
    const manifest = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
      devDependencies: Record<string, string>;
    };
    expect(manifest.peerDependencies.wrangler).toBe(`^${manifest.devDependencies.wrangler}`);
    expect(manifest.peerDependenciesMeta.wrangler).toEqual({ optional: true });
    expect(existsSync(path.join(app, "node_modules/wrangler"))).toBe(false);
  });

  test("wrangler is imported lazily by the testing entry only: no read-only entry's module graph names it", async () => {
    for (const entry of READ_ONLY_ENTRIES) {
      const seen = new Set<string>();
      const named: string[] = [];
      const visit = async (file: string): Promise<void> => {
        if (seen.has(file)) return;
        seen.add(file);
        const code = await readFile(path.join(packageDist, file), "utf8");
        if (/["']wrangler["']/.test(code)) named.push(file);
        for (const match of code.matchAll(/(?:^|[;\n])\s*(?:import|export)\s*(?:[^'"();]*?\sfrom\s*)?["']([^"']+)["']/g)) {
          if (match[1].startsWith("./")) await visit(match[1].slice(2));
        }
      };
      await visit(entry);
      expect(named, entry).toEqual([]);
    }
    const testing = await readFile(path.join(packageDist, "testing.js"), "utf8");
    expect(testing).toMatch(/import\(\s*["']wrangler["']\s*\)/);
    expect(testing).not.toMatch(/(?:^|[;\n])\s*import\s*[^'"();]*?\sfrom\s*["']wrangler["']/);
  });

  test("startLocalWorker({ config }) without wrangler is a coded MISSING_PEER error naming it", async () => {
    await writeFile(path.join(app, "wrangler.toml"), 'main = "./worker.js"\ncompatibility_date = "2026-04-01"\n');
    await writeFile(
      path.join(app, "start.mjs"),
      `
import { startLocalWorker } from "@lunora/db/testing";
try {
  const worker = await startLocalWorker({ config: "./wrangler.toml" });
  await worker.stop();
  console.log(JSON.stringify({ started: true }));
} catch (error) {
  console.log(JSON.stringify({ name: error.name, code: error.code, data: error.data, message: error.message }));
}
`,
    );
    const { stdout } = await run(process.execPath, ["start.mjs"], { cwd: app, timeout: 30_000 });
    const result = JSON.parse(stdout.trim().split("\n").pop()!) as { name?: string; code?: string; data?: unknown; message?: string };
    expect(result).toMatchObject({ name: "LunoraError", code: "MISSING_PEER", data: { peer: "wrangler" } });
    expect(result.message).toMatch(/npm i -D wrangler/);
  });
});
