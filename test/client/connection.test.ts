import { describe, expect, it } from "vitest";
import { LunoraClient, type ConnectionStatus } from "../../src/client/index.js";
import { CLOSE_CODES, PROTOCOL_VERSION, type Cursor } from "../../src/protocol/index.js";
import { onCleanup, startHarness } from "./helpers/harness.js";
import { eventually } from "./helpers/eventually.js";
import { messagesCollection, put, rowsOf } from "./helpers/rows.js";
import type { RoomSocket } from "./helpers/scripted-room.js";

const cursor = (seq: number): Cursor => ({ seq, epoch: "epoch-1" });

/** Answers the socket's subscribe with a snapshot at `seq` and returns the subscription id. */
async function snapshot(socket: RoomSocket, seq: number, index = 0): Promise<string> {
  const { id } = await socket.subscribeFrame(index);
  socket.poke({ pokeId: `snap-${seq}`, subs: [id!], resets: [id!], parts: [[put(id!, { id: `m${seq}`, text: "x" })]], cursor: cursor(seq) });
  return id!;
}

describe("connection", () => {
  it("the socket URL names party and room and carries protocol version, token and client id", async () => {
    const h = await startHarness({ auth: "secret-token" });
    void messagesCollection(h.client, { room: "general" }).collection.preload();
    const socket = await h.room.socket();
    expect(socket.url.pathname).toBe("/parties/chat/general");
    expect(socket.query.get("v")).toBe(String(PROTOCOL_VERSION));
    expect(socket.query.get("token")).toBe("secret-token");
    expect(socket.query.get("cid")).toBe(h.client.clientId);
    expect(h.client.clientId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("an anonymous client sends no token parameter", async () => {
    const h = await startHarness({ auth: async () => null });
    void messagesCollection(h.client).collection.preload();
    const socket = await h.room.socket();
    expect(socket.query.has("token")).toBe(false);
    expect(socket.query.get("v")).toBe(String(PROTOCOL_VERSION));
  });

  it("after the server drops the socket, the client resumes from the last pokeEnd cursor", async () => {
    const h = await startHarness();
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const first = await h.room.socket(0);
    first.hello();
    const sub = await snapshot(first, 1);
    await ready;
    first.poke({ pokeId: "d", subs: [sub], parts: [[put(sub, { id: "m7", text: "delta" })]], cursor: cursor(7) });
    // A poke cut off by the disconnect must not move the cursor.
    first.pokeStart({ pokeId: "cut", subs: [sub] });
    first.pokePart("cut", [put(sub, { id: "never", text: "x" })]);
    await eventually(() => expect(messages.collection.utils.cursor()).toEqual(cursor(7)));
    first.terminate();

    const second = await h.room.socket(1);
    const resume = await second.subscribeFrame(0);
    expect(resume).toEqual({ type: "subscribe", id: sub, source: { list: "messages" }, cursor: cursor(7) });
    second.hello();
    second.poke({ pokeId: "r", subs: [sub], parts: [[put(sub, { id: "m8", text: "missed" })]], cursor: cursor(8) });
    await eventually(() => expect(rowsOf(messages.collection).map((row) => row.id)).toEqual(["m1", "m7", "m8"]));
  });

  it("status goes connecting → connected → offline → connected", async () => {
    const h = await startHarness();
    const seen: ConnectionStatus[] = [];
    h.client.onStatusChange((status) => seen.push(status));
    expect(h.client.status).toBe("idle");

    void messagesCollection(h.client).collection.preload();
    expect(h.client.status).toBe("connecting");
    const first = await h.room.socket(0);
    await first.subscribeFrame();
    expect(h.client.status).toBe("connecting"); // open, but no hello yet
    first.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    expect(h.client.roomStatus("default")).toBe("connected");

    first.close(1011, "restarting");
    await eventually(() => expect(seen).toContain("offline"));
    const second = await h.room.socket(1);
    await second.subscribeFrame();
    second.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));

    expect(seen[0]).toBe("connecting");
    expect(seen[1]).toBe("connected");
    expect(seen[2]).toBe("offline");
    expect(seen.at(-1)).toBe("connected");
    // Listeners only hear changes.
    for (let i = 1; i < seen.length; i++) expect(seen[i]).not.toBe(seen[i - 1]);
  });

  it("a room's socket is opened by its first subscription and closed with its last", async () => {
    const h = await startHarness();
    expect(h.room.sockets).toHaveLength(0);
    const a = messagesCollection(h.client, { room: "general" });
    const b = messagesCollection(h.client, { room: "general" });
    const c = messagesCollection(h.client, { room: "random" });
    void a.collection.preload();
    void b.collection.preload();
    void c.collection.preload();
    await eventually(() => expect(h.room.openSockets().map((s) => s.room).sort()).toEqual(["general", "random"]));
    const general = h.room.openSockets("general")[0];
    await general.subscribeFrame(1); // both collections share the socket

    await a.collection.cleanup();
    await eventually(() => expect(general.frames.at(-1)?.type).toBe("unsubscribe"));
    expect(general.closed).toBe(false);
    await b.collection.cleanup();
    await eventually(() => expect(general.closed).toBe(true));
    expect(h.client.roomStatus("general")).toBe("idle");
    await c.collection.cleanup();
    await eventually(() => expect(h.room.openSockets()).toEqual([]));
    expect(h.client.status).toBe("idle");
  });

  it("close 4001 re-reads the token before reconnecting", async () => {
    let token = "expired";
    let reads = 0;
    const h = await startHarness({
      auth: () => {
        reads++;
        return token;
      },
    });
    void messagesCollection(h.client).collection.preload();
    const first = await h.room.socket(0);
    expect(first.query.get("token")).toBe("expired");
    const readsBefore = reads;
    token = "fresh";
    first.close(CLOSE_CODES.UNAUTHENTICATED, "token expired");

    const second = await h.room.socket(1);
    expect(second.query.get("token")).toBe("fresh");
    expect(reads).toBeGreaterThan(readsBefore);
    second.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    expect(h.clientErrors).toEqual([]);
  });

  it("a room that refuses a token the auth provider returns again gets UNAUTHENTICATED, not a hot loop", async () => {
    const h = await startHarness({ auth: "revoked", reconnect: { minDelayMs: 10, maxDelayMs: 60_000 } });
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const first = await h.room.socket(0);
    first.close(CLOSE_CODES.UNAUTHENTICATED, "revoked");
    const second = await h.room.socket(1);
    expect(second.query.get("token")).toBe("revoked");
    second.close(CLOSE_CODES.UNAUTHENTICATED, "revoked");

    await eventually(() => expect(h.clientErrors.map((e) => e.error.code)).toEqual(["UNAUTHENTICATED"]));
    // The collection hears it too, so preload() does not wait forever.
    await ready;
    expect(messages.errors.map((e) => e.code)).toEqual(["UNAUTHENTICATED"]);

    // It keeps retrying with the same token, backing off, reporting once per streak.
    const third = await h.room.socket(2);
    expect(third.query.get("token")).toBe("revoked");
    third.close(CLOSE_CODES.UNAUTHENTICATED, "revoked");
    const fourth = await h.room.socket(3);
    fourth.hello();
    await eventually(() => expect(h.client.status).toBe("connected"));
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["UNAUTHENTICATED"]);
  });

  it("close 4002 stops reconnecting and reports PROTOCOL_VERSION_MISMATCH once", async () => {
    const h = await startHarness();
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const socket = await h.room.socket(0);
    socket.send({ type: "error", error: { code: "PROTOCOL_VERSION_MISMATCH", message: "room speaks 2" } });
    socket.close(CLOSE_CODES.PROTOCOL_VERSION, "upgrade");

    await ready;
    expect(messages.errors.map((e) => e.code)).toEqual(["PROTOCOL_VERSION_MISMATCH"]);
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_VERSION_MISMATCH"]);
    expect(h.client.status).toBe("offline");
    expect(h.client.roomStatus("default")).toBe("offline");
    // A marker subscription in another room proves time passed for a retry to happen.
    const other = messagesCollection(h.client, { room: "other" });
    void other.collection.preload();
    await eventually(() => expect(h.room.openSockets("other")).toHaveLength(1));
    const marker = h.room.openSockets("other")[0];
    marker.hello();
    await snapshot(marker, 1);
    await other.collection.preload();
    expect(h.client.status).toBe("offline"); // the failed room keeps the aggregate offline
    expect(h.room.sockets.filter((s) => s.room === "default")).toHaveLength(1);
  });

  it("a hello with another protocol version is treated as a mismatch", async () => {
    const h = await startHarness();
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const socket = await h.room.socket(0);
    socket.send({ type: "hello", protocolVersion: PROTOCOL_VERSION + 1, room: "default", epoch: "e" });
    await ready;
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_VERSION_MISMATCH"]);
    await eventually(() => expect(socket.closed).toBe(true));
    expect(h.client.status).toBe("offline");
  });

  it("a room that stops answering pings is reconnected by the keepalive", async () => {
    const h = await startHarness({ pingIntervalMs: 20 });
    h.room.answerPings = false;
    void messagesCollection(h.client).collection.preload();
    const first = await h.room.socket(0);
    first.hello();
    await first.subscribeFrame();

    const second = await h.room.socket(1);
    await eventually(() => expect(first.closed).toBe(true));
    expect(first.pings).toBeGreaterThan(0); // it asked before giving up
    expect((await second.subscribeFrame()).type).toBe("subscribe");
  });

  it("identity is the SHA-256 of the token, or anonymous without one", async () => {
    const anonymous = new LunoraClient({ host: "127.0.0.1:1", party: "chat" });
    onCleanup(() => anonymous.close());
    expect(await anonymous.identity()).toBe("anonymous");

    let token = "abc";
    const client = new LunoraClient({ host: "127.0.0.1:1", party: "chat", auth: async () => token });
    onCleanup(() => client.close());
    // sha256("abc")
    expect(await client.identity()).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    token = "";
    expect(await client.identity()).toBe("anonymous");
  });

  it("an auth provider that throws is reported as UNAUTHENTICATED and retried", async () => {
    let fail = true;
    const h = await startHarness({
      auth: () => {
        if (fail) throw new Error("session store down");
        return "ok";
      },
    });
    void messagesCollection(h.client).collection.preload();
    await eventually(() => expect(h.clientErrors.map((e) => e.error.code)).toContain("UNAUTHENTICATED"));
    expect(h.clientErrors[0].error.message).toContain("session store down");
    fail = false;
    const socket = await h.room.socket(0);
    expect(socket.query.get("token")).toBe("ok");
  });

  it("bad room names and sources are refused with INVALID_ARGS", async () => {
    const h = await startHarness();
    const handler = { cursor: () => undefined, applyPoke: () => {}, onError: () => {} };
    expect(() => h.client.subscribe({ room: "a/b", source: { list: "messages" }, handler })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGS" }),
    );
    expect(() => h.client.subscribe({ room: "", source: { list: "messages" }, handler })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGS" }),
    );
    expect(() => h.client.subscribe({ room: "ok", source: { table: "x" } as never, handler })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGS" }),
    );
    expect(h.client.status).toBe("idle");
  });

  it("a hold counts from the moment retainRoom() opens the room: a room-status listener that holds and releases it meanwhile does not close it", async () => {
    const h = await startHarness();
    let nested = 0;
    // The room's first status ("connecting") is emitted while retainRoom()
    // opens the socket; a listener that takes and drops a hold of its own
    // then must not close the room the outer hold is opening.
    h.client.onRoomStatusChange((room, status) => {
      if (room !== "held" || status !== "connecting" || nested++ > 0) return;
      h.client.retainRoom("held")();
    });
    const release = h.client.retainRoom("held");
    expect(nested).toBe(1);
    expect(h.client.roomStatus("held")).not.toBe("idle");
    await eventually(() => expect(h.room.openSockets("held")).toHaveLength(1));
    h.room.openSockets("held")[0].hello();
    await eventually(() => expect(h.client.roomStatus("held")).toBe("connected"));
    release();
    expect(h.client.roomStatus("held")).toBe("idle");
    await eventually(() => expect(h.room.openSockets("held")).toHaveLength(0));
  });

  it("a subscription counts from the moment subscribe() opens the room: a room-status listener that holds and releases it meanwhile does not close it", async () => {
    const h = await startHarness();
    let nested = 0;
    h.client.onRoomStatusChange((room, status) => {
      if (room !== "joined" || status !== "connecting" || nested++ > 0) return;
      h.client.retainRoom("joined")();
    });
    const errors: string[] = [];
    const sub = h.client.subscribe({
      room: "joined",
      source: { list: "messages" },
      handler: { cursor: () => undefined, applyPoke: () => undefined, onError: (error) => errors.push(error.code) },
    });
    expect(nested).toBe(1);
    expect(h.client.roomStatus("joined")).not.toBe("idle");
    const socket = await eventually(() => {
      const [open] = h.room.openSockets("joined");
      if (!open) throw new Error("no socket for the subscription");
      return open;
    });
    expect((await socket.subscribeFrame()).id).toBe(sub.id);
    sub.unsubscribe();
    expect(h.client.roomStatus("joined")).toBe("idle");
    expect(errors).toEqual([]);
  });

  it("close() closes every socket and leaves the client idle", async () => {
    const h = await startHarness();
    void messagesCollection(h.client, { room: "one" }).collection.preload();
    void messagesCollection(h.client, { room: "two" }).collection.preload();
    await eventually(() => expect(h.room.openSockets()).toHaveLength(2));
    h.client.close();
    expect(h.client.status).toBe("idle");
    await eventually(() => expect(h.room.openSockets()).toHaveLength(0));
  });
});
