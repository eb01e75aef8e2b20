import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseJsonc } from "./jsonc.js";

/** The part of a wrangler config that {@link startLocalWorker} understands. */
export interface LocalWorkerConfig {
  /** Absolute path of the Worker entry (`main`). */
  main: string;
  compatibilityDate?: string;
  compatibilityFlags?: string[];
  /** binding name → DO class, with SQLite storage decided by `migrations`. */
  durableObjects: Record<string, { className: string; useSQLite: boolean }>;
  vars: Record<string, unknown>;
  /** Absolute path of the static assets directory, if `assets.directory` is set. */
  assets?: {
    directory: string;
    binding?: string;
    runWorkerFirst?: boolean;
    htmlHandling?: "auto-trailing-slash" | "force-trailing-slash" | "drop-trailing-slash" | "none";
    notFoundHandling?: "single-page-application" | "404-page" | "none";
  };
}

function fail(configPath: string, message: string): never {
  throw new Error(`startLocalWorker: ${message} (config: ${configPath})`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringArray(configPath: string, value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    fail(configPath, `"${field}" must be an array of strings`);
  }
  return value as string[];
}

/**
 * Read a `wrangler.json` / `wrangler.jsonc` file. Only the fields a local
 * test run needs are read: `main`, `compatibility_date`,
 * `compatibility_flags`, `durable_objects.bindings`, `migrations`, `vars`
 * and `assets` (`directory`, `binding`, `run_worker_first: true`,
 * `html_handling`, `not_found_handling`). TOML configs are not supported.
 */
export async function readWranglerConfig(configPath: string): Promise<LocalWorkerConfig> {
  const absolute = path.resolve(configPath);
  if (/\.toml$/i.test(absolute)) {
    fail(absolute, "wrangler.toml is not supported, use wrangler.json or wrangler.jsonc");
  }
  let text: string;
  try {
    text = await readFile(absolute, "utf8");
  } catch (error) {
    fail(absolute, `cannot read config file: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseJsonc(text);
  } catch (error) {
    fail(absolute, `config is not valid JSON/JSONC: ${(error as Error).message}`);
  }
  if (!isRecord(raw)) fail(absolute, "config must be a JSON object");
  const dir = path.dirname(absolute);

  if (typeof raw.main !== "string" || raw.main.length === 0) {
    fail(absolute, 'config has no "main" (the Worker entry file)');
  }
  const main = path.resolve(dir, raw.main);

  if (raw.compatibility_date !== undefined && typeof raw.compatibility_date !== "string") {
    fail(absolute, '"compatibility_date" must be a string like "2026-04-01"');
  }
  const compatibilityFlags =
    raw.compatibility_flags === undefined
      ? undefined
      : stringArray(absolute, raw.compatibility_flags, "compatibility_flags");

  // Which classes get SQLite storage: the same rule as wrangler — a class is
  // SQLite-backed when a migration lists it in `new_sqlite_classes` (renames
  // carry the kind over).
  const sqlite = new Map<string, boolean>();
  if (raw.migrations !== undefined) {
    if (!Array.isArray(raw.migrations)) fail(absolute, '"migrations" must be an array');
    for (const migration of raw.migrations) {
      if (!isRecord(migration)) fail(absolute, '"migrations" entries must be objects');
      for (const c of stringArray(absolute, migration.new_sqlite_classes, "migrations[].new_sqlite_classes")) sqlite.set(c, true);
      for (const c of stringArray(absolute, migration.new_classes, "migrations[].new_classes")) sqlite.set(c, false);
      if (migration.renamed_classes !== undefined) {
        if (!Array.isArray(migration.renamed_classes)) fail(absolute, '"migrations[].renamed_classes" must be an array');
        for (const r of migration.renamed_classes) {
          if (!isRecord(r) || typeof r.from !== "string" || typeof r.to !== "string") {
            fail(absolute, '"migrations[].renamed_classes" entries need "from" and "to"');
          }
          sqlite.set(r.to, sqlite.get(r.from) ?? false);
          sqlite.delete(r.from);
        }
      }
      for (const c of stringArray(absolute, migration.deleted_classes, "migrations[].deleted_classes")) sqlite.delete(c);
    }
  }

  const durableObjects: LocalWorkerConfig["durableObjects"] = {};
  if (raw.durable_objects !== undefined) {
    const bindings = isRecord(raw.durable_objects) ? raw.durable_objects.bindings : undefined;
    if (bindings !== undefined && !Array.isArray(bindings)) {
      fail(absolute, '"durable_objects.bindings" must be an array');
    }
    for (const binding of (bindings ?? []) as unknown[]) {
      if (!isRecord(binding) || typeof binding.name !== "string" || typeof binding.class_name !== "string") {
        fail(absolute, '"durable_objects.bindings" entries need "name" and "class_name"');
      }
      if (binding.script_name !== undefined) {
        fail(
          absolute,
          `Durable Object binding "${binding.name}" uses script_name "${String(binding.script_name)}"; objects of other Workers are not supported`,
        );
      }
      durableObjects[binding.name] = {
        className: binding.class_name,
        useSQLite: sqlite.get(binding.class_name) ?? false,
      };
    }
  }

  if (raw.vars !== undefined && !isRecord(raw.vars)) fail(absolute, '"vars" must be an object');
  const vars = { ...((raw.vars as Record<string, unknown> | undefined) ?? {}) };

  let assets: LocalWorkerConfig["assets"];
  if (isRecord(raw.assets) && typeof raw.assets.directory === "string") {
    assets = {
      directory: path.resolve(dir, raw.assets.directory),
      binding: typeof raw.assets.binding === "string" ? raw.assets.binding : undefined,
      runWorkerFirst: raw.assets.run_worker_first === true,
      htmlHandling: raw.assets.html_handling as NonNullable<LocalWorkerConfig["assets"]>["htmlHandling"],
      notFoundHandling: raw.assets.not_found_handling as NonNullable<LocalWorkerConfig["assets"]>["notFoundHandling"],
    };
  }

  return {
    main,
    compatibilityDate: raw.compatibility_date as string | undefined,
    compatibilityFlags,
    durableObjects,
    vars,
    assets,
  };
}
