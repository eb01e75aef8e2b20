import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { startLocalWorker, type LocalWorker } from "../../src/testing/index.js";
import { waitFor } from "../helpers/wait-for.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.resolve(here, "../fixtures/smoke");
const script = path.join(fixture, "worker.ts");
const config = path.join(fixture, "wrangler.jsonc");

async function json(worker: LocalWorker, pathname: string): Promise<unknown> {
  const res = await worker.fetch(pathname);
  expect(res.status).toBe(200);
  return res.json();
}

/** Open a `ws` socket and collect its messages and close event. */
function openSocket(url: string) {
  const ws = new WebSocket(url);
  const messages: string[] = [];
  let closed: { code: number } | undefined;
  ws.on("message", (data) => messages.push(String(data)));
  ws.on("close", (code) => {
    closed = { code };
  });
  ws.on("error", () => {}); // a dropped connection also emits "close"
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, messages, opened, closed: () => closed };
}

describe("startLocalWorker with script + durableObjects", () => {
  let worker: LocalWorker;
  beforeAll(async () => {
    worker = await startLocalWorker({
      script,
      durableObjects: { COUNTER: "Counter" },
      bindings: { GREETING: "from options" },
    });
  });
  afterAll(() => worker?.stop());

  test("serves the Worker on 127.0.0.1 with url and host", async () => {
    expect(worker.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(worker.host).toBe(`127.0.0.1:${worker.port}`);
    expect(worker.url).toBe(`http://${worker.host}`);
    expect(await (await worker.fetch("/greeting")).text()).toBe("from options");
    // Absolute URLs and the global fetch reach the same server.
    expect(await (await fetch(`${worker.url}/greeting`)).text()).toBe("from options");
    expect(worker.miniflare()).toBeDefined();
  });

  test("Durable Object SQLite state survives restart() on the same URL", async () => {
    expect(await json(worker, "/incr?name=a")).toEqual({ value: 1 });
    expect(await json(worker, "/incr?name=a")).toEqual({ value: 2 });
    expect(await json(worker, "/incr?name=b")).toEqual({ value: 1 });
    const url = worker.url;
    const before = worker.miniflare();

    await worker.restart();

    expect(worker.url).toBe(url);
    expect(worker.miniflare()).not.toBe(before);
    expect(await json(worker, "/get?name=a")).toEqual({ value: 2 });
    expect(await json(worker, "/get?name=b")).toEqual({ value: 1 });
    expect(await json(worker, "/incr?name=a")).toEqual({ value: 3 });
  });

  test("a hibernatable WebSocket is dropped by restart() and reconnects to the same URL", async () => {
    const wsUrl = `ws://${worker.host}/ws?name=sock`;
    await json(worker, "/incr?name=sock");

    const first = openSocket(wsUrl);
    await first.opened;
    first.ws.send("ping");
    await waitFor(() => first.messages.includes("pong"), { message: "pong before restart" });
    first.ws.send("count");
    await waitFor(() => first.messages.includes("1"), { message: "count before restart" });

    await worker.restart();

    const closed = await waitFor(() => first.closed(), { message: "socket closed by restart" });
    expect(closed.code).toBe(1006);

    const second = openSocket(wsUrl);
    await second.opened;
    second.ws.send("count");
    await waitFor(() => second.messages.includes("1"), { message: "count after reconnect" });
    second.ws.close();
    await waitFor(() => second.closed(), { message: "clean close" });
  });

  test("persist: false keeps storage in memory only; stop() is idempotent and later calls fail clearly", async () => {
    const w = await startLocalWorker({
      script,
      durableObjects: { COUNTER: "Counter" },
      persist: false,
      preventEviction: true,
    });
    expect(await json(w, "/incr")).toEqual({ value: 1 });
    expect(await json(w, "/incr")).toEqual({ value: 2 });
    await w.restart();
    expect(await json(w, "/get")).toEqual({ value: 0 });
    await Promise.all([w.stop(), w.stop()]);
    await w.stop();
    await expect(w.fetch("/get")).rejects.toThrow(/after stop/);
    await expect(w.restart()).rejects.toThrow(/after stop/);
    expect(() => w.miniflare()).toThrow(/stopped/);
  });
});

describe("startLocalWorker with a wrangler.jsonc config", () => {
  let worker: LocalWorker;
  let persist: string;
  beforeAll(async () => {
    persist = await mkdtemp(path.join(tmpdir(), "lunora-smoke-persist-"));
    worker = await startLocalWorker({ config, persist });
  });
  afterAll(async () => {
    await worker?.stop();
    await rm(persist, { recursive: true, force: true });
  });

  test("reads main, vars, durable_objects and sqlite migrations", async () => {
    expect(await (await worker.fetch("/greeting")).text()).toBe("hello // not a comment");
    expect(await json(worker, "/incr?name=cfg")).toEqual({ value: 1 });
    await worker.restart();
    expect(await json(worker, "/incr?name=cfg")).toEqual({ value: 2 });
  });

  test("a user-given persist directory outlives stop() and is reused by a new worker", async () => {
    await worker.stop();
    worker = await startLocalWorker({ config, persist });
    expect(await json(worker, "/get?name=cfg")).toEqual({ value: 2 });
  });
});

test("static assets from the config are served, the rest goes to the Worker", async () => {
  const worker = await startLocalWorker({ config: path.join(fixture, "wrangler.assets.jsonc") });
  try {
    const asset = await worker.fetch("/hello.txt");
    expect(asset.status).toBe(200);
    expect((await asset.text()).trim()).toBe("hello from assets");
    expect(await json(worker, "/incr?name=assets")).toEqual({ value: 1 });
  } finally {
    await worker.stop();
  }
});

describe("startLocalWorker errors", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "lunora-bad-config-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("needs script or config", async () => {
    await expect(startLocalWorker({})).rejects.toMatchObject({ code: "INVALID_CONFIG", message: expect.stringMatching(/pass `script`.*or `config`/) });
  });

  test("config without main", async () => {
    const file = path.join(dir, "no-main.jsonc");
    await writeFile(file, '{ "name": "x", // no main\n }');
    await expect(startLocalWorker({ config: file })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringMatching(/startLocalWorker: config has no "main"/),
    });
  });

  test("config that is not JSON or TOML (wrangler's parser refuses it, with the file named)", async () => {
    const file = path.join(dir, "broken.json");
    await writeFile(file, "{ main: ");
    await expect(startLocalWorker({ config: file })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringContaining(`(config: ${file})`),
    });
    const toml = path.join(dir, "broken.toml");
    await writeFile(toml, 'main = "./worker.ts\n[vars\n');
    await expect(startLocalWorker({ config: toml })).rejects.toMatchObject({ code: "INVALID_CONFIG" });
  });

  test("missing config file and missing entry", async () => {
    await expect(startLocalWorker({ config: path.join(dir, "nope.jsonc") })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringMatching(/Could not read file: .*nope\.jsonc/),
    });
    const file = path.join(dir, "missing-main.json");
    await writeFile(file, JSON.stringify({ main: "./missing.ts" }));
    await expect(startLocalWorker({ config: file })).rejects.toMatchObject({
      code: "INVALID_CONFIG",
      message: expect.stringMatching(/Worker entry not found: .*missing\.ts/),
    });
  });

  test("a Durable Object class the entry does not export", async () => {
    await expect(startLocalWorker({ script, durableObjects: { ROOM: "Room" } })).rejects.toThrow(
      /class "Room" \(binding "ROOM"\) is not exported .*Counter/,
    );
  });

  test("a compatibility date newer than the installed workerd", async () => {
    await expect(
      startLocalWorker({ script, durableObjects: { COUNTER: "Counter" }, compatibilityDate: "2099-01-01" }),
    ).rejects.toThrow(/workerd failed to start.*compatibility date 2099-01-01 may be newer/);
  });

  test("a Worker that does not bundle", async () => {
    const file = path.join(dir, "bad-import.ts");
    await writeFile(file, 'import { x } from "./does-not-exist.js";\nexport default { fetch: () => new Response(String(x)) };\n');
    await expect(startLocalWorker({ script: file })).rejects.toThrow(/could not bundle[\s\S]*does-not-exist/);
  });
});
