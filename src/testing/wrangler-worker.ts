/**
 * The Worker a wrangler config describes, as wrangler itself reads it.
 *
 * `startLocalWorker({ config })` does not interpret wrangler configs: it asks
 * the installed `wrangler` (its exported `unstable_readConfig`, and
 * `unstable_getMiniflareWorkerOptions`, the mapping
 * `@cloudflare/vitest-pool-workers` builds on) so that `wrangler.toml` /
 * `.json` / `.jsonc`, `[env.x]` sections, `.dev.vars`, and every binding kind
 * (vars, Durable Objects with their SQLite migrations, KV, R2, D1, services,
 * queues, assets, …) mean here exactly what they mean under `wrangler dev`.
 * A hand-written reader drifted from wrangler on each of those.
 *
 * wrangler is an optional peer: it is imported only when a config is given,
 * and its absence is a coded error rather than a module-resolution trace.
 */
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { WorkerOptions } from "miniflare";
import { LunoraError } from "../protocol/errors.js";

/** What {@link readWranglerWorker} hands to Miniflare and to the bundler. */
export interface WranglerWorker {
  /** Absolute path of the entry (`main`), if the config names one. */
  main: string | undefined;
  /**
   * Miniflare options of the Worker, without its code: compatibility date and
   * flags, `vars` (with `.dev.vars` / `.env`), Durable Objects (SQLite from
   * `migrations`), KV, R2, D1, services, assets and the rest.
   */
  workerOptions: Omit<WorkerOptions, "script" | "scriptPath" | "modules" | "modulesRoot">;
  /** Extra Workers some bindings need next to this one (wrangler decides which). */
  externalWorkers: WorkerOptions[];
  /** The config's `name` (a service binding to it is a binding to this Worker). */
  name: string | undefined;
  /** Build settings wrangler would apply when bundling: `define`, `alias`. */
  build: { define: Record<string, string>; alias: Record<string, string> };
}

type Wrangler = typeof import("wrangler");
let wranglerModule: Promise<Wrangler> | undefined;

/** Import the app's `wrangler` once per process (loading it takes about 2 s). */
function loadWrangler(): Promise<Wrangler> {
  wranglerModule ??= import("wrangler").catch((error: unknown) => {
    wranglerModule = undefined;
    const code = (error as { code?: string }).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") {
      throw new LunoraError(
        "MISSING_PEER",
        "startLocalWorker: reading a wrangler config needs the `wrangler` package (npm i -D wrangler), " +
          "which is an optional peer of @lunora/db. Without it, pass `script` and `durableObjects` instead of `config`.",
        { peer: "wrangler" },
      );
    }
    throw error;
  });
  return wranglerModule;
}

/**
 * The `miniflare` that the installed wrangler depends on: the options
 * wrangler builds are for that version, and under a strict layout (pnpm) it is
 * the only one reachable without a direct dependency. Undefined when it
 * cannot be located that way (the caller then imports `miniflare` itself).
 */
export async function importWranglersMiniflare(): Promise<typeof import("miniflare") | undefined> {
  try {
    const wranglerEntry = createRequire(import.meta.url).resolve("wrangler");
    const miniflareEntry = createRequire(wranglerEntry).resolve("miniflare");
    return (await import(pathToFileURL(miniflareEntry).href)) as typeof import("miniflare");
  } catch {
    return undefined;
  }
}

function invalidConfig(configPath: string, message: string, cause?: unknown): LunoraError {
  const error = new LunoraError("INVALID_CONFIG", `startLocalWorker: ${message} (config: ${configPath})`, { config: configPath });
  if (cause !== undefined) Object.defineProperty(error, "cause", { value: cause, enumerable: false });
  return error;
}

/**
 * Read a wrangler config (`wrangler.toml`, `wrangler.json`, `wrangler.jsonc`)
 * for the environment `env` (the top level when undefined) the way
 * `wrangler dev` does, and map it to Miniflare options with wrangler's own
 * mapping. Throws `LunoraError` `MISSING_PEER` without wrangler installed,
 * `INVALID_CONFIG` for a config wrangler refuses (unreadable, malformed, an
 * unknown environment, a missing assets directory).
 */
export async function readWranglerWorker(configPath: string, env: string | undefined): Promise<WranglerWorker> {
  const absolute = path.resolve(configPath);
  const wrangler = await loadWrangler();
  try {
    // Warnings (e.g. a binding not repeated in an environment, which
    // environments do not inherit) are printed, as `wrangler dev` prints them.
    const config = wrangler.unstable_readConfig({ config: absolute, env });
    const { workerOptions, externalWorkers, main } = wrangler.unstable_getMiniflareWorkerOptions(config, env);
    const configDir = path.dirname(absolute);
    // wrangler resolves relative alias targets against the config's directory.
    const alias = Object.fromEntries(
      Object.entries((config.alias ?? {}) as Record<string, string>).map(([from, to]): [string, string] => [from, to.startsWith(".") ? path.resolve(configDir, to) : to]),
    );
    return {
      main: main === undefined ? undefined : path.resolve(configDir, main),
      workerOptions: workerOptions as WranglerWorker["workerOptions"],
      externalWorkers: externalWorkers as WorkerOptions[],
      name: config.name,
      build: { define: { ...(config.define as Record<string, string>) }, alias },
    };
  } catch (error) {
    throw invalidConfig(absolute, (error as Error).message.trim(), error);
  }
}
