/**
 * `startLocalWorker({ config })` reads the config through the installed
 * wrangler, so a Worker under it gets what `wrangler dev` would give it:
 * `wrangler.toml`, `[env.x]` sections, KV / D1 / service bindings, and the
 * JSONC configs of this repository (fixtures and the example app) as before.
 * Every worker runs in real workerd through Miniflare.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { LunoraError } from "../../src/protocol/errors.js";
import { startLocalWorker, type LocalWorker } from "../../src/testing/index.js";
import { putItems, serverItems } from "../helpers/fixture-room.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const envsConfig = path.join(repo, "test/fixtures/envs/wrangler.toml");

async function text(worker: LocalWorker, pathname: string, init?: RequestInit): Promise<{ status: number; body: string }> {
  const res = await worker.fetch(pathname, init);
  return { status: res.status, body: await res.text() };
}

/** The `LunoraError` a promise rejects with (fails the test if it resolves or throws something else). */
async function codedError(promise: Promise<unknown>): Promise<LunoraError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LunoraError);
  return error as LunoraError;
}

describe("a wrangler.toml with an [env.staging] section", () => {
  let persist: string;
  beforeAll(async () => {
    persist = await mkdtemp(path.join(tmpdir(), "lunora-envs-persist-"));
  });
  afterAll(() => rm(persist, { recursive: true, force: true }));

  test("the top level: its var, its define, its KV namespace (write, then read through the Worker), D1 and a service binding to itself", async () => {
    const worker = await startLocalWorker({ config: envsConfig, persist });
    try {
      expect(await text(worker, "/greeting")).toEqual({ status: 200, body: "hello from the top level" });
      expect(await text(worker, "/build")).toEqual({ status: 200, body: "top-level build" });
      expect(await (await worker.fetch("/bindings")).json()).toEqual(["DB", "GREETING", "SELF", "STORE"]);

      expect(await text(worker, "/kv/shared-key")).toEqual({ status: 404, body: "missing" });
      expect(await text(worker, "/kv/shared-key", { method: "PUT", body: "written at the top level" })).toEqual({ status: 200, body: "stored" });
      expect(await text(worker, "/kv/shared-key")).toEqual({ status: 200, body: "written at the top level" });
      // KV lives in the persist directory like Durable Objects: a restart keeps it.
      await worker.restart();
      expect(await text(worker, "/kv/shared-key")).toEqual({ status: 200, body: "written at the top level" });

      expect(await (await worker.fetch("/d1")).json()).toEqual({ answer: 42 });
      expect(await text(worker, "/self")).toEqual({ status: 200, body: "via service: hello from the top level" });
    } finally {
      await worker.stop();
    }
  });

  test('env: "staging" sees the environment\'s var and define, its own KV namespace and its own Worker name', async () => {
    const staging = await startLocalWorker({ config: envsConfig, env: "staging", persist });
    try {
      expect(await text(staging, "/greeting")).toEqual({ status: 200, body: "hello from staging" });
      expect(await text(staging, "/build")).toEqual({ status: 200, body: "staging build" });
      expect(await (await staging.fetch("/bindings")).json()).toEqual(["DB", "GREETING", "SELF", "STORE"]);
      // wrangler names the Worker of an environment `<name>-<env>`: the
      // environment's service binding to that name reaches this Worker.
      expect(await text(staging, "/self")).toEqual({ status: 200, body: "via service: hello from staging" });

      // Same binding name, another namespace: the top level's value (written
      // by the previous test into the same persist directory) is not there.
      expect(await text(staging, "/kv/shared-key")).toEqual({ status: 404, body: "missing" });
      expect(await text(staging, "/kv/shared-key", { method: "PUT", body: "written in staging" })).toEqual({ status: 200, body: "stored" });
      expect(await text(staging, "/kv/shared-key")).toEqual({ status: 200, body: "written in staging" });
    } finally {
      await staging.stop();
    }

    // …and the top level's namespace kept its own value.
    const top = await startLocalWorker({ config: envsConfig, persist });
    try {
      expect(await text(top, "/kv/shared-key")).toEqual({ status: 200, body: "written at the top level" });
    } finally {
      await top.stop();
    }
  });

  test("explicit options still win over the environment's values", async () => {
    const worker = await startLocalWorker({ config: envsConfig, env: "staging", persist: false, bindings: { GREETING: "from options" } });
    try {
      expect(await text(worker, "/greeting")).toEqual({ status: 200, body: "from options" });
    } finally {
      await worker.stop();
    }
  });

  test("a service binding to a Worker that is not running: the Worker starts, and the call answers with an error (as under wrangler dev)", async () => {
    const config = path.join(persist, "other-service.toml");
    await writeFile(
      config,
      [
        'name = "lunora-fixture-envs"',
        `main = ${JSON.stringify(path.join(repo, "test/fixtures/envs/worker.ts"))}`,
        'compatibility_date = "2026-04-01"',
        'services = [{ binding = "SELF", service = "a-worker-not-running-here" }]',
      ].join("\n"),
    );
    const worker = await startLocalWorker({ config, persist: false });
    try {
      const { status, body } = await text(worker, "/self");
      expect(status).toBe(200); // the Worker's own response, wrapping what the binding answered
      expect(body).toMatch(/^via service: .*"a-worker-not-running-here" not found/);
    } finally {
      await worker.stop();
    }
  });

  test("an environment the config does not define is INVALID_CONFIG, naming the ones it has", async () => {
    const error = await codedError(startLocalWorker({ config: envsConfig, env: "stagin" }));
    expect(error.code).toBe("INVALID_CONFIG");
    expect(error.message).toMatch(/No environment found in configuration with name "stagin"/);
    expect(error.message).toMatch(/\["staging"\]/);
  });

  test("env without config is INVALID_CONFIG", async () => {
    const error = await codedError(startLocalWorker({ script: path.join(repo, "test/fixtures/envs/worker.ts"), env: "staging" }));
    expect(error.code).toBe("INVALID_CONFIG");
    expect(error.message).toMatch(/pass `config` too/);
  });
});

describe("the JSONC configs of this repository still start", () => {
  test("the fixture room (test/fixtures/room/wrangler.jsonc): its SQLite Durable Object stores rows", async () => {
    const worker = await startLocalWorker({ config: path.join(repo, "test/fixtures/room/wrangler.jsonc"), persist: false });
    try {
      await putItems(worker, "cfg", { id: "i1", listId: "L", title: "kept" });
      expect((await serverItems(worker, "cfg")).map((item) => item.title)).toEqual(["kept"]);
    } finally {
      await worker.stop();
    }
  });

  test("the guarded fixture (two SQLite Durable Objects): the internal one answers through the Worker", async () => {
    const worker = await startLocalWorker({ config: path.join(repo, "test/fixtures/guarded/wrangler.jsonc"), persist: false });
    try {
      const res = await worker.fetch("/__vault/hits?name=cfg");
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ n: 0 });
    } finally {
      await worker.stop();
    }
  });

  describe("the example app's wrangler.jsonc", () => {
    let dir: string;
    let worker: LocalWorker | undefined;
    beforeAll(async () => {
      // The example's config as it is, except what needs a build of this
      // repository: its assets directory (Vite output) becomes a scratch one,
      // and the Worker's import of this package points at the source.
      // Inside the repository (.tmp is ignored by git) so the copied Worker's
      // package imports resolve from this repository's node_modules.
      await mkdir(path.join(repo, ".tmp"), { recursive: true });
      dir = await mkdtemp(path.join(repo, ".tmp/example-config-"));
      const exampleDir = path.join(repo, "examples/chat");
      await cp(exampleDir, path.join(dir, "chat"), {
        recursive: true,
        filter: (source) => !/[/\\](dist|node_modules)$/.test(source),
      });
      const assets = path.join(dir, "chat/dist");
      await mkdir(path.join(assets, "rooms/general"), { recursive: true });
      await writeFile(path.join(assets, "index.html"), "<!doctype html><title>chat</title>");
      // A file on a path `run_worker_first` gives to the Worker: it must not be served.
      await writeFile(path.join(assets, "rooms/general/nope"), "the asset, not the Worker");
      const configFile = path.join(dir, "chat/wrangler.jsonc");
      const original = await readFile(configFile, "utf8");
      expect(original).toMatch(/"run_worker_first": \["\/parties\/\*", "\/rooms\/\*"\]/);
      const withSourceAlias = original.replace(
        '"send_metrics": false,',
        `"send_metrics": false, "alias": { "@lunora/db/server-kit": ${JSON.stringify(path.join(repo, "server-kit/index.ts"))} },`,
      );
      expect(withSourceAlias).not.toBe(original);
      await writeFile(configFile, withSourceAlias);
      worker = await startLocalWorker({ config: configFile, persist: false });
    }, 60_000);
    afterAll(async () => {
      await worker?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    test("serves its assets, and run_worker_first routes reach the Worker and its ChatRoom object", async () => {
      expect(await text(worker!, "/")).toEqual({ status: 200, body: "<!doctype html><title>chat</title>" });
      // /rooms/* goes to the Worker first (as an array of patterns, as the
      // example declares it), which hands it to the ChatRoom object: its 404.
      expect(await text(worker!, "/rooms/general/nope")).toEqual({ status: 404, body: "Not found" });
    });
  });
});
