/**
 * `@lunora/db/testing` — run a Worker and its Durable Objects in real local
 * workerd (through Miniflare) from Node tests.
 *
 * @packageDocumentation
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Miniflare, MiniflareOptions, WorkerOptions } from "miniflare";
import { LunoraError } from "../protocol/errors.js";
import { bundleWorker } from "./bundle.js";
import { importWranglersMiniflare, readWranglerWorker, type WranglerWorker } from "./wrangler-worker.js";

/** Default compatibility date: new enough for SQLite DOs, old enough for the pinned workerd. */
export const DEFAULT_COMPATIBILITY_DATE = "2026-04-01";

/** Options of {@link startLocalWorker}. Pass `script` or `config` (or both: `script` wins over `main`). */
export interface StartLocalWorkerOptions {
  /** Path of the Worker entry (`.ts` or `.js`). It is bundled with esbuild. */
  script?: string;
  /**
   * Path of a wrangler config (`wrangler.toml`, `wrangler.json` or
   * `wrangler.jsonc`). It is read by the installed `wrangler` (an optional
   * peer: `npm i -D wrangler`) with wrangler's own config reader and its own
   * mapping to Miniflare options, so everything `wrangler dev` reads applies:
   * `main`, compatibility date and flags, `vars` (plus `.dev.vars` / `.env`
   * next to the config), Durable Objects (`migrations` decide SQLite
   * storage), KV, R2, D1, service bindings, queues, `assets`, `define`,
   * `alias`, and the `[env.x]` section chosen by {@link env}. Explicit
   * options override what the file says. Not applied: `build.command`
   * (build first), `no_bundle`, module rules (the entry is bundled with
   * esbuild into one module). One Worker runs: a service binding to another
   * Worker answers calls with a "not found" error, as under `wrangler dev`
   * when that Worker is not running; Durable Objects of another Worker
   * (`script_name`) are an `INVALID_CONFIG` error.
   */
  config?: string;
  /**
   * Environment of the config to use (`[env.staging]` → `"staging"`), as
   * `wrangler dev --env staging`. Default: the top level. An environment the
   * config does not define is an `INVALID_CONFIG` error. Needs `config`.
   */
  env?: string;
  /**
   * Durable Object bindings: binding name → exported class name (or
   * `{ className, useSQLite }`). Classes given here use SQLite storage unless
   * `useSQLite: false`.
   */
  durableObjects?: Record<string, string | { className: string; useSQLite?: boolean }>;
  /** Compatibility date. Default {@link DEFAULT_COMPATIBILITY_DATE}; must not be newer than the installed workerd supports. */
  compatibilityDate?: string;
  /** Compatibility flags. Default: the config's (for its environment), else none. */
  compatibilityFlags?: string[];
  /** Plain bindings (`vars`) visible on the Worker's `env`. Merged over the config's `vars`. */
  bindings?: Record<string, unknown>;
  /**
   * Directory for Durable Object storage (directly in it) and the other
   * storage bindings (KV, R2, D1, … in subdirectories named after them).
   * Default: a fresh temporary directory (removed by `stop()`), so
   * `restart()` keeps data. `false`: in memory, lost on `restart()`.
   */
  persist?: string | false;
  /** Port to listen on (127.0.0.1). Default 0: a free port, kept across `restart()`. */
  port?: number;
  /**
   * Keep idle Durable Objects in memory (Miniflare `unsafePreventEviction`).
   * Default false: objects are evicted when idle and hibernation is real.
   */
  preventEviction?: boolean;
  /** Print Miniflare's own log (requests, ready line). Worker `console.*` output is printed either way. */
  log?: boolean;
}

/** A running local Worker, returned by {@link startLocalWorker}. */
export interface LocalWorker {
  /** Base URL, `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** `127.0.0.1:PORT` — what `partysocket` takes as `host`. */
  readonly host: string;
  /** The port; the same after `restart()`. */
  readonly port: number;
  /**
   * Dispose workerd and start it again over the same storage directory on
   * the same port: a "room restart with data kept". Open WebSockets are
   * dropped (close code 1006) and clients can reconnect to the same URL.
   */
  restart(): Promise<void>;
  /** Dispose workerd and remove the temporary files this helper made. Idempotent. */
  stop(): Promise<void>;
  /** `fetch` against the Worker over the real socket; relative paths (`"/api"`) resolve against {@link url}. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** The current Miniflare instance (changes on `restart()`). Escape hatch. */
  miniflare(): Miniflare;
}

type DurableObjectOption = NonNullable<WorkerOptions["durableObjects"]>[string];

/**
 * Start a Worker and its Durable Objects in local workerd (Miniflare),
 * listening on `127.0.0.1`. Nothing is faked: storage is real DO SQLite,
 * WebSockets are real (and hibernatable), requests go over a real socket.
 *
 * Always call `stop()` (a Node process with a live workerd does not exit).
 *
 * With `config`, the installed `wrangler` reads the file and maps it to
 * Miniflare options (see {@link StartLocalWorkerOptions.config}), so the
 * Worker sees the bindings `wrangler dev` would give it. Errors are
 * `LunoraError`s: `MISSING_PEER` (no `wrangler`, `miniflare` or `esbuild`
 * installed), `INVALID_CONFIG` (a config or environment wrangler refuses, no
 * entry).
 *
 * @example
 * ```ts
 * import { afterAll, beforeAll, expect, test } from "vitest";
 * import { startLocalWorker, type LocalWorker } from "@lunora/db/testing";
 *
 * let worker: LocalWorker;
 * beforeAll(async () => {
 *   worker = await startLocalWorker({ config: "./wrangler.jsonc" });
 *   // or an environment of a wrangler.toml: startLocalWorker({ config: "./wrangler.toml", env: "staging" })
 *   // or without wrangler: startLocalWorker({ script: "./src/worker.ts", durableObjects: { ROOM: "Room" } })
 * });
 * afterAll(() => worker?.stop());
 *
 * test("data survives a restart", async () => {
 *   await worker.fetch("/todos", { method: "POST", body: "{}" });
 *   await worker.restart(); // same URL, same storage
 *   expect((await worker.fetch("/todos")).status).toBe(200);
 * });
 * ```
 */
export async function startLocalWorker(options: StartLocalWorkerOptions): Promise<LocalWorker> {
  if (!options || (!options.script && !options.config)) {
    throw new LunoraError(
      "INVALID_CONFIG",
      "startLocalWorker: pass `script` (a Worker entry file) or `config` (a wrangler.toml/json/jsonc)",
    );
  }
  if (options.env !== undefined && !options.config) {
    throw new LunoraError("INVALID_CONFIG", `startLocalWorker: \`env: "${options.env}"\` names an environment of a config; pass \`config\` too`);
  }
  const fromConfig: WranglerWorker | undefined = options.config ? await readWranglerWorker(options.config, options.env) : undefined;
  const configPath = options.config ? path.resolve(options.config) : undefined;
  const entry = options.script ? path.resolve(options.script) : fromConfig?.main;
  if (entry === undefined) {
    throw new LunoraError("INVALID_CONFIG", `startLocalWorker: config has no "main" (the Worker entry file) (config: ${configPath})`, {
      config: configPath,
    });
  }
  if (!(await isFile(entry))) {
    throw new LunoraError(
      "INVALID_CONFIG",
      `startLocalWorker: Worker entry not found: ${entry}` + (options.script ? "" : ` (from "main" in ${configPath})`),
      { entry },
    );
  }

  const configured = fromConfig?.workerOptions;
  const compatibilityDate = options.compatibilityDate ?? configured?.compatibilityDate ?? DEFAULT_COMPATIBILITY_DATE;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(compatibilityDate)) {
    throw new Error(`startLocalWorker: compatibility date must look like "2026-04-01", got "${compatibilityDate}"`);
  }
  const compatibilityFlags = options.compatibilityFlags ?? configured?.compatibilityFlags ?? [];

  const durableObjects: Record<string, DurableObjectOption> = { ...(configured?.durableObjects ?? {}) };
  for (const [binding, value] of Object.entries(options.durableObjects ?? {})) {
    durableObjects[binding] =
      typeof value === "string" ? { className: value, useSQLite: true } : { className: value.className, useSQLite: value.useSQLite ?? true };
  }
  const ownClasses: Array<[binding: string, className: string]> = [];
  for (const [binding, d] of Object.entries(durableObjects)) {
    const definition = typeof d === "string" ? { className: d } : d;
    if (definition.scriptName !== undefined && definition.scriptName !== fromConfig?.name) {
      // wrangler dev finds other Workers through its dev registry; this helper runs one Worker.
      throw new LunoraError(
        "INVALID_CONFIG",
        `startLocalWorker: Durable Object binding "${binding}" uses script_name "${definition.scriptName}"; objects of other Workers are not supported (config: ${configPath})`,
        { config: configPath },
      );
    }
    ownClasses.push([binding, definition.className]);
    // The Worker runs unnamed (a name would move where Miniflare keeps DO
    // storage), so a script_name naming this Worker itself is dropped.
    const { scriptName: _ownName, ...own } = definition;
    durableObjects[binding] = options.preventEviction ? { ...own, unsafePreventEviction: true } : own;
  }
  const bindings = { ...(configured?.bindings ?? {}), ...(options.bindings ?? {}) };

  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`startLocalWorker: port must be an integer 0–65535, got ${String(options.port)}`);
  }

  let mfModule: typeof import("miniflare") | undefined = fromConfig ? await importWranglersMiniflare() : undefined;
  try {
    mfModule ??= await import("miniflare");
  } catch (error) {
    throw new LunoraError(
      "MISSING_PEER",
      "startLocalWorker: the `miniflare` package is needed (npm i -D miniflare): " + (error as Error).message,
      { peer: "miniflare" },
    );
  }

  const tempRoot = await mkdtemp(path.join(tmpdir(), "lunora-worker-"));
  let current: Miniflare | undefined;
  try {
    const bundleDir = path.join(tempRoot, "bundle");
    const { outfile, exports } = await bundleWorker(entry, bundleDir, {
      compatibilityFlags,
      define: fromConfig?.build.define,
      alias: fromConfig?.build.alias,
    });
    for (const [binding, className] of ownClasses) {
      if (!exports.includes(className)) {
        throw new Error(
          `startLocalWorker: Durable Object class "${className}" (binding "${binding}") is not exported by ${entry}` +
            ` (exports: ${exports.join(", ") || "none"})`,
        );
      }
    }
    const persist: string | false =
      options.persist === false ? false : options.persist ? path.resolve(options.persist) : path.join(tempRoot, "storage");

    const { Miniflare: MiniflareClass, Log, LogLevel, NoOpLog, supportedCompatibilityDate } = mfModule;
    const workerOptions: WorkerOptions = {
      ...configured,
      modules: true,
      scriptPath: outfile,
      modulesRoot: path.dirname(outfile),
      compatibilityDate,
      compatibilityFlags,
      bindings: bindings as WorkerOptions["bindings"],
      durableObjects,
    };
    const externalWorkers = fromConfig?.externalWorkers ?? [];
    const makeOptions = (listenPort: number): MiniflareOptions => ({
      ...(externalWorkers.length > 0 ? { workers: [workerOptions, ...externalWorkers] } : workerOptions),
      // Durable Objects directly in the directory (the layout before other
      // storage existed here, so older persisted directories keep working);
      // KV, R2, D1, … in subdirectories Miniflare names after each plugin.
      durableObjectsPersist: persist,
      ...(persist === false ? {} : { defaultPersistRoot: persist }),
      // A service binding to a Worker that is not running here: under
      // `wrangler dev` it starts and answers with an error at call time
      // rather than stopping the Worker from starting. Miniflare does that when
      // it has a dev registry; this one is private to the instance, so a test
      // never reaches a `wrangler dev` session that happens to run on the
      // machine.
      unsafeDevRegistryPath: path.join(tempRoot, "dev-registry"),
      host: "127.0.0.1",
      port: listenPort,
      log: options.log ? new Log(LogLevel.INFO) : new NoOpLog(),
    });

    const launch = async (listenPort: number): Promise<{ mf: Miniflare; url: URL }> => {
      const mf = new MiniflareClass(makeOptions(listenPort));
      try {
        const url = await mf.ready;
        return { mf, url };
      } catch (error) {
        await mf.dispose().catch(() => {});
        let message = `startLocalWorker: workerd failed to start: ${(error as Error).message}`;
        if (compatibilityDate > supportedCompatibilityDate) {
          message += ` — compatibility date ${compatibilityDate} may be newer than the installed workerd supports (it was built for ${supportedCompatibilityDate})`;
        }
        if (listenPort !== 0) message += ` — is port ${listenPort} already in use?`;
        throw new Error(message, { cause: error });
      }
    };

    const first = await launch(port);
    current = first.mf;
    const boundPort = Number(first.url.port);
    const url = `http://127.0.0.1:${boundPort}`;

    let stopped = false;
    let stopping: Promise<void> | undefined;
    // restart()/stop() run one at a time, in call order.
    let queue: Promise<unknown> = Promise.resolve();
    const serial = <T>(fn: () => Promise<T>): Promise<T> => {
      const run = queue.then(fn, fn);
      queue = run.catch(() => {});
      return run;
    };

    const worker: LocalWorker = {
      url,
      host: `127.0.0.1:${boundPort}`,
      port: boundPort,
      restart: () =>
        serial(async () => {
          if (stopped) throw new Error("startLocalWorker: restart() called after stop()");
          const old = current;
          current = undefined;
          await old?.dispose().catch(() => {}); // already disposed through miniflare() is fine
          // The port was just released; workerd may briefly fail to bind it again.
          let lastError: unknown;
          for (let attempt = 0; attempt < 10; attempt++) {
            if (stopped) return;
            try {
              current = (await launch(boundPort)).mf;
              return;
            } catch (error) {
              lastError = error;
              await new Promise((resolve) => setTimeout(resolve, 100 * (attempt + 1)));
            }
          }
          throw new Error(`startLocalWorker: restart() could not start workerd again on port ${boundPort}`, {
            cause: lastError,
          });
        }),
      stop: () => {
        if (!stopping) {
          stopped = true;
          stopping = serial(async () => {
            const mf = current;
            current = undefined;
            await mf?.dispose().catch(() => {}); // already disposed through miniflare() is fine
            await rm(tempRoot, { recursive: true, force: true }).catch(() => {});
          });
        }
        return stopping;
      },
      fetch: (input, init) => {
        if (stopped) return Promise.reject(new Error("startLocalWorker: fetch() called after stop()"));
        if (input instanceof Request) return fetch(input, init);
        return fetchOnLiveConnection(new URL(String(input), url), init);
      },
      miniflare: () => {
        if (!current) {
          throw new Error(stopped ? "startLocalWorker: the worker is stopped" : "startLocalWorker: the worker is restarting");
        }
        return current;
      },
    };
    return worker;
  } catch (error) {
    await current?.dispose().catch(() => {});
    await rm(tempRoot, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
}

async function isFile(file: string): Promise<boolean> {
  if (!existsSync(file)) return false;
  return (await stat(file)).isFile();
}

/**
 * `fetch` that survives a stale keep-alive connection. Node's fetch pools
 * connections and drops idle ones on a timer; when the event loop was busy
 * (a test applying a big snapshot) that timer runs late, the pooled
 * connection was already closed by the local server, and the request fails
 * with "other side closed" before any byte of a response — the request never
 * reached the Worker. Like a browser, send it again once on a new connection.
 * Only for bodies that can be sent twice (no streams).
 */
async function fetchOnLiveConnection(url: URL, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    const replayable = init?.body === undefined || init.body === null || typeof init.body === "string" || init.body instanceof ArrayBuffer || ArrayBuffer.isView(init.body);
    // "other side closed" before a response, or EPIPE while the request was
    // still being written: the server never had the whole request.
    if ((code !== "UND_ERR_SOCKET" && code !== "EPIPE") || !replayable) throw error;
    return fetch(url, init);
  }
}
