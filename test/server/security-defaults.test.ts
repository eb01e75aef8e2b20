/**
 * Security defaults, attacked from outside over real sockets against real
 * workerd: a Worker with a synced room (ROOM) and an internal Durable Object
 * (VAULT) that trusts its callers (test/fixtures/guarded).
 *
 * - The router reaches only the bindings the app listed, and only with a
 *   sync upgrade: no method, upgrade, spelling or encoding of a party name
 *   reaches VAULT.
 * - The room decides "sync socket" and "which room" from its own name, not
 *   from a header a client can send: the app's own upgrade routes stay the
 *   app's, and `ctx.room` is never client input.
 * - Tables are not lists unless the room opts in, and a list sends only the
 *   columns the room declared.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../../src/protocol/index.js";
import { startLocalWorker, type LocalWorker } from "../../src/testing/index.js";
import { RawSocket } from "../helpers/raw-socket.js";
import { waitFor } from "../helpers/wait-for.js";

const here = path.dirname(fileURLToPath(import.meta.url));
let worker: LocalWorker;
const sockets: RawSocket[] = [];

beforeAll(async () => {
  worker = await startLocalWorker({ config: path.join(here, "../fixtures/guarded/wrangler.jsonc") });
});

afterAll(async () => {
  await Promise.all(sockets.map((socket) => socket.close().catch(() => undefined)));
  await worker?.stop();
});

async function vaultHits(name: string): Promise<number> {
  const response = await worker.fetch(`/__vault/hits?name=${encodeURIComponent(name)}`);
  return ((await response.json()) as { n: number }).n;
}

/** Opens a WebSocket and reports what happened: the first message, or the HTTP status of a refused upgrade. */
function tryUpgrade(pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ opened: boolean; status?: number; firstMessage?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${worker.host}${pathAndQuery}`, { headers });
    let opened = false;
    const done = (result: { opened: boolean; status?: number; firstMessage?: string }) => {
      ws.removeAllListeners();
      ws.on("error", () => undefined);
      ws.terminate();
      resolve(result);
    };
    ws.on("unexpected-response", (_request, response) => done({ opened: false, status: response.statusCode }));
    ws.on("open", () => {
      opened = true;
    });
    ws.on("message", (data) => done({ opened, firstMessage: data.toString() }));
    ws.on("close", () => done({ opened }));
    ws.on("error", () => done({ opened }));
  });
}

// Spellings and encodings of the internal binding's name in the party segment.
const VAULT_PARTIES = ["VAULT", "vault", "Vault", "%56AULT", "v%61ult", "%76%61%75%6c%74", "VAULT%20", "vault%2F", "__proto__", "constructor"];

describe("the router reaches only the Lunora rooms the app listed", () => {
  test.each(VAULT_PARTIES)("HTTP requests of every method naming party %s never reach the internal object", async (party) => {
    const name = `target-${party.replace(/[^a-z0-9]/gi, "_")}`;
    for (const method of ["GET", "POST", "PUT", "DELETE", "PATCH"]) {
      const response = await worker.fetch(`/parties/${party}/${name}`, method === "GET" ? { method } : { method, body: "x" });
      const body = await response.text();
      expect(body).not.toContain("vault-secret");
      expect(response.status).toBe(404);
    }
    expect(await vaultHits(name)).toBe(0);
  });

  test.each(VAULT_PARTIES)("a WebSocket upgrade naming party %s never reaches the internal object", async (party) => {
    const name = `ws-${party.replace(/[^a-z0-9]/gi, "_")}`;
    const result = await tryUpgrade(`/parties/${party}/${name}?v=${PROTOCOL_VERSION}&token=ok`);
    expect(result.firstMessage).not.toBe("vault-secret");
    expect(result.opened).toBe(false);
    expect(result.status).toBe(404);
    expect(await vaultHits(name)).toBe(0);
  });

  test("the sync path of the listed room works, by binding name and kebab-case", async () => {
    for (const party of ["room", "ROOM"]) {
      const socket = await RawSocket.connect(worker.host, `listed-${party}`, { token: "ok", party });
      sockets.push(socket);
      await waitFor(() => socket.frames.find((frame) => frame.type === "hello"), { message: "hello" });
      expect(socket.frames[0]).toMatchObject({ type: "hello", room: `listed-${party}` });
    }
  });

  test("non-upgrade requests to a listed party are not forwarded: the Worker's own routes answer", async () => {
    for (const method of ["GET", "POST", "DELETE"]) {
      const response = await worker.fetch(`/parties/room/plain-http`, method === "GET" ? { method } : { method, body: "{}" });
      expect(response.status).toBe(404);
      expect(await response.text()).toBe("worker's own 404");
    }
  });

  test("a router without parties, or listing something that is not a binding, fails loudly with a code", async () => {
    for (const [config, expected] of [
      ["missing", "INVALID_ARGS"],
      ["GREETING", "INVALID_ARGS"],
      ["NOPE", "INVALID_ARGS"],
    ] as const) {
      const response = await worker.fetch(`/parties/room/x`, { headers: { "x-test-router": config } });
      expect(response.status).toBe(500);
      expect(await response.text()).toBe(expected);
    }
  });
});

describe("the room's name and the sync decision come from the object, not the client", () => {
  test.each(["own-route", "other-room"])("a client-sent x-lunora-room: %s on the app's own upgrade route does not make it a sync socket", async (forged) => {
    const ws = new WebSocket(`ws://${worker.host}/rooms/own-route/own-ws?v=${PROTOCOL_VERSION}&token=ok`, { headers: { "x-lunora-room": forged } });
    const messages: string[] = [];
    ws.on("message", (data) => messages.push(data.toString()));
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send("typing");
    // A sync socket sends `hello` first; the room's own socket only echoes.
    await waitFor(() => messages.length > 0, { message: "a reply" });
    expect(messages[0]).toBe("own:typing");
    ws.close();
  });

  test("a forged header on the sync path cannot rename the room: ctx.room is the object's own name", async () => {
    const room = "partition-a";
    await worker.fetch(`/rooms/${room}/seed`, { method: "POST" });
    const ws = new WebSocket(`ws://${worker.host}/parties/room/${room}?v=${PROTOCOL_VERSION}&token=ok`, { headers: { "x-lunora-room": "elsewhere" } });
    const socket = RawSocket.wrap(ws);
    sockets.push(socket);
    await waitFor(() => socket.frames.find((frame) => frame.type === "hello"), { message: "hello" });
    expect(socket.frames[0]).toMatchObject({ type: "hello", room });
    socket.subscribe("p", { shape: "postsOfThisRoom" });
    await socket.nextPoke("p");
    expect([...socket.rows("p").keys()]).toEqual(["p-here"]);
  });

  test("an app route that forwards a sync-looking path for another room is not a sync socket of that room", async () => {
    // The app forwards /rooms/:room/* to the object :room. A client that makes
    // the forwarded URL look like the sync path of another room still talks
    // to the room's own fetch, which does not know that path.
    const result = await tryUpgrade(`/rooms/victim/parties/room/other?v=${PROTOCOL_VERSION}&token=ok`, { "x-lunora-room": "other" });
    expect(result.opened).toBe(false);
    expect(result.status).toBe(404);
  });
});

describe("tables are not lists unless the room opts in, and lists send declared columns only", () => {
  test("a table reachable only through a shape cannot be listed, and the shape's projection holds", async () => {
    const room = "lists-1";
    await worker.fetch(`/rooms/${room}/seed`, { method: "POST" });
    const socket = await RawSocket.connect(worker.host, room, { token: "ok" });
    sockets.push(socket);
    socket.subscribe("all-notes", { list: "notes" });
    const error = await socket.nextError(0);
    expect(error).toMatchObject({ sub: "all-notes", error: { code: "SHAPE_NOT_FOUND" } });
    socket.subscribe("bodies", { shape: "notesBody", args: {} });
    await socket.nextPoke("bodies");
    expect(socket.rows("bodies").get("n1")).toEqual({ id: "n1", body: "hello" });
    expect(socket.raw.join("\n")).not.toContain("moderation");
  });

  test("a listable table sends its declared columns, never the others", async () => {
    const room = "lists-2";
    await worker.fetch(`/rooms/${room}/seed`, { method: "POST" });
    const socket = await RawSocket.connect(worker.host, room, { token: "ok" });
    sockets.push(socket);
    socket.subscribe("posts", { list: "posts" });
    await socket.nextPoke("posts");
    expect(socket.rows("posts").get("p-here")).toEqual({ id: "p-here", room, body: "here" });
    expect(socket.raw.join("\n")).not.toContain("secret-column");
  });

  test("declaring a list without columns is refused when the class is defined", async () => {
    const refused = await worker.fetch("/__define?columns=0");
    expect(refused.status).toBe(500);
    expect(await refused.text()).toMatch(/^INVALID_ARGS: .*declare the columns/);
    expect((await worker.fetch("/__define?columns=1")).status).toBe(200);
  });
});
