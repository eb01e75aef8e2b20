import { describe, expect, it } from "vitest";
import { startHarness } from "./helpers/harness.js";
import { eventually } from "./helpers/eventually.js";
import { del, messagesCollection, patch, plain, put, recordBatches, rowsOf } from "./helpers/rows.js";
import { bindingOf, groupOf } from "./helpers/scripted-room.js";
import { createInMemoryQueryCache } from "../../src/cache/index.js";
import { viewCacheKey } from "../../src/cache/view-key.js";

const cursor = (seq: number) => ({ seq, epoch: "epoch-1" });

/** A harness with one `messages` collection whose snapshot (m1, m2 at seq 1) is in. */
async function withSnapshot() {
  const h = await startHarness();
  const messages = messagesCollection(h.client);
  const ready = messages.collection.preload();
  const socket = await h.room.socket();
  socket.hello();
  const { id: sub } = await socket.subscribeFrame();
  socket.poke({
    pokeId: "p1",
    subs: [sub!],
    resets: [sub!],
    parts: [[put(sub!, { id: "m1", text: "hello" }), put(sub!, { id: "m2", text: "world" })]],
    cursor: cursor(1),
  });
  await ready;
  return { ...h, ...messages, socket, sub: sub! };
}

/**
 * A harness with two `messages` collections preloading on one socket, both
 * subscribed (ids `a`, `b`); `ready` resolves once both are ready.
 */
async function twoSubscribed() {
  const h = await startHarness();
  const first = messagesCollection(h.client);
  const second = messagesCollection(h.client);
  const ready = Promise.all([first.collection.preload(), second.collection.preload()]);
  const socket = await h.room.socket();
  socket.hello();
  const a = (await socket.subscribeFrame(0)).id!;
  const b = (await socket.subscribeFrame(1)).id!;
  return { h, first, second, ready, socket, a, b };
}

/**
 * A harness with two `messages` collections subscribed and reset at seq 1,
 * then the second cleaned up: its `unsubscribe` (id `b`) has gone out.
 */
async function twoSubscribedThenOneUnsubscribed() {
  const { h, first: kept, second: gone, ready, socket, a, b } = await twoSubscribed();
  socket.poke({ pokeId: "p1", subs: [a, b], resets: [a, b], cursor: cursor(1) });
  await ready;
  await gone.collection.cleanup();
  await eventually(() => expect(socket.frames.at(-1)).toEqual({ type: "unsubscribe", id: b }));
  return { h, kept, gone, socket, a, b };
}

describe("pokes", () => {
  it("a first subscribe carries the source and no cursor, and the snapshot poke makes the collection ready", async () => {
    const { socket, collection } = await withSnapshot();
    expect(socket.subscribes[0]).toEqual({ type: "subscribe", id: expect.any(String), source: { list: "messages" } });
    expect(collection.status).toBe("ready");
    expect(rowsOf(collection)).toEqual([
      { id: "m1", text: "hello" },
      { id: "m2", text: "world" },
    ]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
    expect(collection.utils.isAuthoritative()).toBe(true);
  });

  it("delta pokes insert, update and delete rows", async () => {
    const { socket, sub, collection } = await withSnapshot();
    socket.poke({
      pokeId: "p2",
      subs: [sub],
      parts: [[put(sub, { id: "m3", text: "new" }), put(sub, { id: "m1", text: "edited" }), del(sub, "m2")]],
      cursor: cursor(4),
    });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(4)));
    expect(rowsOf(collection)).toEqual([
      { id: "m1", text: "edited" },
      { id: "m3", text: "new" },
    ]);
  });

  it("a put replaces the whole row: columns the server dropped disappear", async () => {
    const { socket, sub, collection } = await withSnapshot();
    socket.poke({ pokeId: "p2", subs: [sub], parts: [[put(sub, { id: "m1" })]], cursor: cursor(2) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    expect(plain(collection.get("m1")!)).toEqual({ id: "m1" });
  });

  it("a delete of a row the collection never held is ignored", async () => {
    const { socket, sub, collection, errors } = await withSnapshot();
    socket.poke({ pokeId: "p2", subs: [sub], parts: [[del(sub, "nope")]], cursor: cursor(2) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(errors).toEqual([]);
  });

  it("a reset poke replaces every row in one update", async () => {
    const { socket, sub, collection } = await withSnapshot();
    const batches = recordBatches(collection);
    socket.poke({
      pokeId: "p2",
      subs: [sub],
      resets: [sub],
      parts: [[put(sub, { id: "m2", text: "world" }), put(sub, { id: "m9", text: "fresh" })]],
      cursor: { seq: 50, epoch: "epoch-2" },
    });
    await eventually(() => expect(collection.utils.cursor()).toEqual({ seq: 50, epoch: "epoch-2" }));
    expect(rowsOf(collection)).toEqual([
      { id: "m2", text: "world" },
      { id: "m9", text: "fresh" },
    ]);
    expect(batches).toHaveLength(1);
    expect(batches[0].filter((change) => change.key === "m1")).toEqual([
      { type: "delete", key: "m1", value: { id: "m1", text: "hello" } },
    ]);
  });

  it("a poke split into parts is applied atomically", async () => {
    const { socket, sub, collection, received, processed } = await withSnapshot();
    const batches = recordBatches(collection);
    const sizes: number[] = [];
    collection.subscribeChanges(() => sizes.push(collection.size));

    const before = received();
    socket.pokeStart({ pokeId: "p2", subs: [sub] });
    socket.pokePart("p2", [put(sub, { id: "a", text: "1" }), put(sub, { id: "b", text: "2" })]);
    socket.pokePart("p2", [put(sub, { id: "c", text: "3" }), del(sub, "m1")]);
    socket.pokePart("p2", [put(sub, { id: "d", text: "4" })]);
    await processed(before, 4);
    // Three parts are in the client's buffer; none of it may be visible.
    expect(batches).toEqual([]);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));

    socket.pokeEnd("p2", cursor(9));
    await eventually(() => expect(batches).toHaveLength(1));
    expect(batches[0].map((change) => `${change.type}:${String(change.key)}`).sort()).toEqual(
      ["insert:a", "insert:b", "insert:c", "insert:d", "delete:m1"].sort(),
    );
    expect(sizes).toEqual([5]);
    expect(collection.utils.cursor()).toEqual(cursor(9));
  });

  it("a poke covering two collections is applied to both with the same cursor", async () => {
    const { h, first, second, ready, socket, a, b } = await twoSubscribed();
    expect(a).not.toBe(b);
    socket.poke({
      pokeId: "p1",
      subs: [a, b],
      resets: [a, b],
      parts: [[put(a, { id: "x", text: "for a" })], [put(b, { id: "y", text: "for b" })]],
      cursor: cursor(3),
    });
    await ready;
    expect(rowsOf(first.collection)).toEqual([{ id: "x", text: "for a" }]);
    expect(rowsOf(second.collection)).toEqual([{ id: "y", text: "for b" }]);
    expect(first.collection.utils.cursor()).toEqual(cursor(3));
    expect(second.collection.utils.cursor()).toEqual(cursor(3));
  });

  it("interleaved pokes are dropped and the subscription is resubscribed without cursor", async () => {
    const { socket, sub, collection, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.pokeStart({ pokeId: "p2", subs: [sub] });
    socket.pokePart("p2", [put(sub, { id: "broken-1", text: "x" })]);
    socket.pokeStart({ pokeId: "p3", subs: [sub] });
    socket.pokePart("p3", [put(sub, { id: "broken-2", text: "y" })]);
    socket.pokeEnd("p2", cursor(2));
    socket.pokeEnd("p3", cursor(3));
    await processed(before, 6);

    const again = await socket.subscribeFrame(1);
    expect(again).toEqual({ type: "subscribe", id: sub, source: { list: "messages" } });
    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));

    // Until the room resets the subscription, a delta for it may assume the
    // dropped poke: it is skipped.
    const skipped = received();
    socket.poke({ pokeId: "p4", subs: [sub], parts: [[put(sub, { id: "stale", text: "?" })]], cursor: cursor(4) });
    await processed(skipped, 2);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);

    socket.poke({ pokeId: "p5", subs: [sub], resets: [sub], parts: [[put(sub, { id: "m2", text: "world" })]], cursor: cursor(5) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(5)));
    expect(rowsOf(collection)).toEqual([{ id: "m2", text: "world" }]);
    expect(socket.subscribes).toHaveLength(2);
  });

  it("a part with an unknown pokeId drops the open poke", async () => {
    const { socket, sub, collection, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.pokeStart({ pokeId: "p2", subs: [sub] });
    socket.pokePart("p2", [put(sub, { id: "half", text: "x" })]);
    socket.pokePart("p-unknown", [put(sub, { id: "other", text: "y" })]);
    socket.pokeEnd("p2", cursor(2));
    await processed(before, 4);

    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]);
    expect(await socket.subscribeFrame(1)).toEqual({ type: "subscribe", id: sub, source: { list: "messages" } });
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
  });

  it("an end with an unknown pokeId and no open poke is reported and changes nothing", async () => {
    const { socket, collection, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.pokeEnd("ghost", cursor(7));
    await processed(before, 1);
    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
  });

  it("ops for a group no subscription is bound to are ignored; the rest of the poke applies", async () => {
    const { socket, sub, collection, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.poke({
      pokeId: "p2",
      parts: [[put(sub, { id: "ok", text: "x" })], [put("s-not-bound", { id: "bad", text: "y" })]],
      cursor: cursor(2),
    });
    await processed(before, 4);
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    expect(clientErrors).toEqual([]);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2", "ok"]);
    expect(socket.subscribes).toHaveLength(1);
  });

  it("ops for a subscription that was unsubscribed meanwhile are ignored", async () => {
    const { h, kept, socket, a, b } = await twoSubscribedThenOneUnsubscribed();
    socket.poke({
      pokeId: "p2",
      subs: [a, b],
      parts: [[put(a, { id: "x", text: "kept" }), put(b, { id: "y", text: "gone" })]],
      cursor: cursor(2),
    });
    await eventually(() => expect(rowsOf(kept.collection)).toEqual([{ id: "x", text: "kept" }]));
    expect(h.clientErrors).toEqual([]);
  });

  it("garbage frames are reported as PROTOCOL_ERROR and the socket keeps working", async () => {
    const { socket, sub, collection, clientErrors, received, processed, client } = await withSnapshot();
    const before = received();
    socket.send("this is not json");
    socket.send({ type: "surprise", pokeId: "p" });
    socket.send({ type: "pokeEnd", pokeId: "p", cursor: { seq: -1, epoch: "" } });
    socket.send(Buffer.from([1, 2, 3]));
    await processed(before, 4);
    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR", "PROTOCOL_ERROR", "PROTOCOL_ERROR", "PROTOCOL_ERROR"]);
    expect(client.status).toBe("connected");

    socket.poke({ pokeId: "p2", subs: [sub], parts: [[put(sub, { id: "m3", text: "after" })]], cursor: cursor(2) });
    await eventually(() => expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2", "m3"]));
  });

  it("a garbage frame in the middle of a poke drops that poke", async () => {
    const { socket, sub, collection, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.pokeStart({ pokeId: "p2", subs: [sub] });
    socket.pokePart("p2", [put(sub, { id: "a", text: "1" })]);
    socket.send("{ truncated");
    socket.pokePart("p2", [put(sub, { id: "c", text: "3" })]);
    socket.pokeEnd("p2", cursor(2));
    await processed(before, 5);
    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect((await socket.subscribeFrame(1)).cursor).toBeUndefined();
  });

  it("an error frame for one subscription reaches only that collection and marks it ready", async () => {
    const h = await startHarness();
    const denied = messagesCollection(h.client);
    const other = messagesCollection(h.client);
    const deniedReady = denied.collection.preload();
    void other.collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const a = (await socket.subscribeFrame(0)).id!;
    await socket.subscribeFrame(1);

    socket.send({ type: "error", sub: a, error: { code: "FORBIDDEN", message: "no access", data: { table: "messages" } } });
    await deniedReady;
    expect(denied.collection.status).toBe("ready");
    expect(denied.errors.map((e) => [e.code, e.message, e.data])).toEqual([["FORBIDDEN", "no access", { table: "messages" }]]);
    expect(denied.collection.utils.isAuthoritative()).toBe(false);
    expect(other.errors).toEqual([]);
    expect(other.collection.status).toBe("loading");
    expect(h.clientErrors).toEqual([]);
  });

  it("an error frame without a subscription goes to the client's error listeners", async () => {
    const { socket, clientErrors, received, processed } = await withSnapshot();
    const before = received();
    socket.send({ type: "error", error: { code: "MESSAGE_TOO_LARGE", message: "too big" } });
    await processed(before, 1);
    expect(clientErrors.map((e) => [e.error.code, e.room])).toEqual([["MESSAGE_TOO_LARGE", "default"]]);
  });

  it("a poke over the client's bounds is dropped and reported as QUOTA_EXCEEDED", async () => {
    const h = await startHarness({ limits: { maxPokeOps: 3 } });
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const { id: sub } = await socket.subscribeFrame();
    socket.poke({
      pokeId: "big",
      subs: [sub!],
      resets: [sub!],
      parts: [
        [put(sub!, { id: "1" }), put(sub!, { id: "2" })],
        [put(sub!, { id: "3" }), put(sub!, { id: "4" })],
      ],
      cursor: cursor(1),
    });
    // The collection is told, so preload() does not hang on a snapshot that cannot fit.
    await ready;
    expect(messages.errors.map((e) => e.code)).toEqual(["QUOTA_EXCEEDED"]);
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["QUOTA_EXCEEDED"]);
    expect(messages.collection.size).toBe(0);
    // Its snapshot does not fit: the room is told to stop, and the client does
    // not ask for it again on this connection (that would fetch it forever).
    await eventually(() => expect(socket.frames.filter((frame) => frame.type === "unsubscribe").map((frame) => frame.id)).toEqual([sub]));
    expect(socket.frames.filter((frame) => frame.type === "subscribe")).toHaveLength(1);
    // A later poke for it (sent before the room saw the unsubscribe) is ignored.
    const before = h.received();
    socket.poke({ pokeId: "late", subs: [sub!], parts: [[put(sub!, { id: "9" })]], cursor: cursor(2) });
    // Its binding ended with the unsubscribe, and a bind sent before the room
    // read it binds nothing: the room serves it no more.
    socket.poke({ pokeId: "small", bind: [bindingOf(sub!)], resets: [sub!], parts: [[put(sub!, { id: "1" })]], cursor: cursor(3) });
    await h.processed(before, 6);
    expect(messages.collection.size).toBe(0);
    // The next connection subscribes it anew, and the answer brings rows again.
    socket.terminate();
    const again = await h.room.socket(1);
    again.hello();
    expect((await again.subscribeFrame(0)).id).toBe(sub);
    again.poke({ pokeId: "small", bind: [bindingOf(sub!)], resets: [sub!], parts: [[put(sub!, { id: "1" })]], cursor: cursor(3) });
    await eventually(() => expect(rowsOf(messages.collection)).toEqual([{ id: "1" }]));
  });

  it("a row the collection cannot key resets its subscription instead of half-applying the poke", async () => {
    const h = await startHarness();
    const { collection, errors } = messagesCollection(h.client);
    const ready = collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame()).id!;
    // The room keys rows by `key`; the collection (default getKey) by `id`.
    const bind = [{ sub, group: groupOf(sub), key: "key", columns: ["key"] }];
    socket.poke({ pokeId: "p1", bind, resets: [sub], parts: [[put(sub, { id: "m1", key: "m1" }, { id: "m2", key: "m2" })]], cursor: cursor(1) });
    await ready;
    socket.poke({
      pokeId: "p2",
      parts: [[put(sub, { id: "m3", key: "m3" }), [groupOf(sub), "p", { key: "k", text: "no id" }]]],
      cursor: cursor(2),
    });
    await eventually(() => expect(errors.map((e) => e.code)).toEqual(["INTERNAL"]));
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
    expect((await socket.subscribeFrame(1)).cursor).toBeUndefined();
  });

  it("mutation results reach checkpoints after the poke's rows are committed", async () => {
    const { socket, sub, collection, checkpoints } = await withSnapshot();
    const seenWithRow: unknown[] = [];
    const waiting = checkpoints.waitFor("default", 2).then((result) => {
      seenWithRow.push(collection.get("m3") && plain(collection.get("m3")!));
      return result;
    });
    socket.poke({
      pokeId: "p2",
      subs: [sub],
      parts: [[put(sub, { id: "m3", text: "mine" })]],
      cursor: cursor(2),
      mutations: [
        { clientSeq: 1, status: "applied" },
        { clientSeq: 2, status: "rejected", error: { code: "CONFLICT", message: "taken" } },
        { clientSeq: 3, status: "error", error: { code: "INTERNAL", message: "boom" } },
      ],
    });
    expect(await waiting).toEqual({ clientSeq: 2, status: "rejected", error: { code: "CONFLICT", message: "taken" } });
    expect(seenWithRow).toEqual([{ id: "m3", text: "mine" }]);
    expect(checkpoints.watermark("default")).toBe(2);
    expect(checkpoints.result("default", 1)).toEqual({ clientSeq: 1, status: "applied" });
    await expect(checkpoints.waitFor("default", 1)).resolves.toEqual({ clientSeq: 1, status: "applied" });
  });

  it("the outcomes in the pokeEnd of a poke the client dropped still reach the writer (a bound hit, a violation)", async () => {
    const h = await startHarness({ limits: { maxPokeOps: 2 } });
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame()).id!;
    socket.poke({ pokeId: "p1", subs: [sub], resets: [sub], parts: [[put(sub, { id: "m1" })]], cursor: cursor(1) });
    await ready;
    const outcomes: unknown[] = [];
    h.client.onMutationResults((_room, results) => outcomes.push(...results));
    // Over the client's bound: the client drops the poke, the room (which
    // cannot know) ends it with the outcomes of this socket's pushes.
    socket.pokeStart({ pokeId: "p2" });
    socket.pokePart("p2", [put(sub, { id: "a" }, { id: "b" }, { id: "c" })]);
    socket.pokeEnd("p2", cursor(2), [{ clientSeq: 1, status: "applied" }]);
    // A violation in a part (a put without its key column, in the poke
    // binding the subscription again): dropped too.
    socket.pokeStart({ pokeId: "p3", bind: [bindingOf(sub)], resets: [sub] });
    socket.pokePart("p3", [[groupOf(sub), "p", { text: "no key" }]]);
    socket.pokeEnd("p3", cursor(3), [{ clientSeq: 2, status: "rejected", error: { code: "CONFLICT", message: "taken" } }]);
    // The same in a poke of one frame.
    socket.send({
      type: "poke",
      pokeId: "p4",
      bind: [bindingOf(sub)],
      resets: [sub],
      ops: [[groupOf(sub), "p", { text: "no key" }]],
      cursor: cursor(4),
      mutations: [{ clientSeq: 3, status: "applied" }],
    });
    // Nothing else would ever tell the writer: its write would wait forever.
    await eventually(() =>
      expect(outcomes).toEqual([
        { clientSeq: 1, status: "applied" },
        { clientSeq: 2, status: "rejected", error: { code: "CONFLICT", message: "taken" } },
        { clientSeq: 3, status: "applied" },
      ]),
    );
    expect(messages.collection.utils.cursor()).toEqual(cursor(1));
  });
});


describe("protocol 4: bindings, shared groups and patches", () => {
  /** A `messages` collection whose snapshot (m1, m2 with an author) is in, bound with columns id, text, author. */
  async function withAuthors() {
    const h = await startHarness();
    const messages = messagesCollection(h.client);
    const ready = messages.collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame()).id!;
    socket.poke({
      pokeId: "p1",
      subs: [sub],
      columns: ["id", "text", "author"],
      resets: [sub],
      parts: [[put(sub, { id: "m1", text: "hello", author: "ann" }, { id: "m2", text: "world", author: "bob" })]],
      cursor: cursor(1),
    });
    await ready;
    return { ...h, ...messages, socket, sub };
  }

  it("a patch merges into the held row and is written as one update", async () => {
    const { socket, sub, collection } = await withAuthors();
    const batches = recordBatches(collection);
    socket.poke({ pokeId: "p2", subs: [sub], parts: [[patch(sub, { id: "m1", text: "edited" })]], cursor: cursor(2) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    expect(plain(collection.get("m1")!)).toEqual({ id: "m1", text: "edited", author: "ann" });
    expect(batches).toEqual([[{ type: "update", key: "m1", value: { id: "m1", text: "edited", author: "ann" } }]]);
  });

  it("patches of one key in one poke apply in order, each on the result of the last", async () => {
    const { socket, sub, collection } = await withAuthors();
    socket.poke({
      pokeId: "p2",
      parts: [[patch(sub, { id: "m2", text: "one" }), patch(sub, { id: "m2", author: "cy" })], [put(sub, { id: "m3", text: "new", author: "dee" })], [patch(sub, { id: "m3", text: "newer" })]],
      cursor: cursor(2),
    });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    expect(rowsOf(collection)).toEqual([
      { id: "m1", text: "hello", author: "ann" },
      { id: "m2", text: "one", author: "cy" },
      { id: "m3", text: "newer", author: "dee" },
    ]);
  });

  it("a patch for a row the subscription does not hold drops nothing else but resets that subscription", async () => {
    const { socket, sub, collection, clientErrors, errors } = await withAuthors();
    socket.poke({ pokeId: "p2", parts: [[put(sub, { id: "m3", text: "x", author: "y" }), patch(sub, { id: "ghost", text: "boo" })]], cursor: cursor(2) });
    // Reported to the app as the room's protocol violation, not to the collection.
    await eventually(() => expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]));
    expect(clientErrors[0].error.message).toContain("ghost");
    expect(errors).toEqual([]);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
    expect((await socket.subscribeFrame(1)).cursor).toBeUndefined();
    // The room answers with a reset; the collection starts over from it.
    socket.poke({ pokeId: "p3", subs: [sub], columns: ["id", "text", "author"], resets: [sub], parts: [[put(sub, { id: "m9", text: "fresh", author: "z" })]], cursor: cursor(3) });
    await eventually(() => expect(rowsOf(collection)).toEqual([{ id: "m9", text: "fresh", author: "z" }]));
  });

  it("a failed poke that deleted every held row first still lets the reset replace the rows the collection shows", async () => {
    const { socket, sub, collection, clientErrors, errors } = await withAuthors();
    // Deletes both rows, then fails: nothing of it applies, the collection still shows m1 and m2.
    socket.poke({ pokeId: "p2", parts: [[del(sub, "m1", "m2"), patch(sub, { id: "ghost", text: "boo" })]], cursor: cursor(2) });
    await eventually(() => expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]));
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect((await socket.subscribeFrame(1)).cursor).toBeUndefined();
    // The reset brings m1 back and not m2: the collection shows exactly the reset's rows.
    socket.poke({ pokeId: "p3", subs: [sub], columns: ["id", "text", "author"], resets: [sub], parts: [[put(sub, { id: "m1", text: "fresh", author: "z" })]], cursor: cursor(3) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(3)));
    expect(rowsOf(collection)).toEqual([{ id: "m1", text: "fresh", author: "z" }]);
    expect(errors).toEqual([]);
    expect(clientErrors.map((e) => e.error.code)).toEqual(["PROTOCOL_ERROR"]);
    expect(socket.subscribes).toHaveLength(2);
  });

  it("the query cache stores the merged row of a patch", async () => {
    const queryCache = createInMemoryQueryCache();
    const h = await startHarness({ queryCache });
    const { collection } = messagesCollection(h.client);
    const ready = collection.preload();
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame()).id!;
    socket.poke({ pokeId: "p1", subs: [sub], columns: ["id", "text", "author"], resets: [sub], parts: [[put(sub, { id: "m1", text: "hello", author: "ann" })]], cursor: cursor(1) });
    await ready;
    socket.poke({ pokeId: "p2", parts: [[patch(sub, { id: "m1", text: "edited" })]], cursor: cursor(2) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(2)));
    await queryCache.flush();
    const cached = await queryCache.read(viewCacheKey("chat", "default", { list: "messages" }));
    expect(cached?.serverCursor).toBe(2);
    expect(cached?.rows).toEqual([["m1", { id: "m1", text: "edited", author: "ann" }]]);
  });

  it("a group bound to two subscriptions applies each block to both", async () => {
    const { h, first, second, ready, socket, a, b } = await twoSubscribed();
    const columns = ["id", "text"];
    const shared = (sub: string) => ({ sub, group: "shared", key: "id", columns });
    socket.poke({ pokeId: "p1", bind: [shared(a), shared(b)], resets: [a, b], parts: [[["shared", "p", { id: "x", text: "one" }, { id: "y", text: "two" }]]], cursor: cursor(1) });
    await ready;
    socket.poke({ pokeId: "p2", parts: [[["shared", "u", { id: "x", text: "uno" }], ["shared", "d", "y"]]], cursor: cursor(2) });
    await eventually(() => expect(second.collection.utils.cursor()).toEqual(cursor(2)));
    for (const { collection } of [first, second]) {
      expect(rowsOf(collection)).toEqual([{ id: "x", text: "uno" }]);
      expect(collection.utils.cursor()).toEqual(cursor(2));
    }
    // One collection's patch is not the other's row: merged copies, not one shared object.
    expect(first.collection.get("x")).not.toBe(second.collection.get("x"));
  });

  it("an error for a subscription the client unbound while its snapshot streamed still drops that poke: the others start over at once", async () => {
    const { socket, sub, collection, client, clientErrors } = await withAuthors();
    const dropped = client.subscribe({ room: "default", source: { list: "messages" }, handler: { cursor: () => undefined, applyPoke: () => undefined, onError: () => undefined } });
    const other = (await socket.subscribeFrame(1)).id!;
    expect(other).toBe(dropped.id);
    // Its snapshot streams (the collection's subscription advances with it)…
    socket.pokeStart({ pokeId: "p2", subs: [other], resets: [other] });
    socket.pokePart("p2", [put(other, { id: "x" }), patch(sub, { id: "m1", text: "edited" })]);
    // …the app drops it meanwhile, and the room, before it reads the
    // unsubscribe, ends it with a row too large for a frame: no pokeEnd follows.
    await eventually(() => expect(socket.frames.some((frame) => frame.type === "subscribe" && frame.id === other)).toBe(true));
    dropped.unsubscribe();
    socket.send({ type: "error", sub: other, error: { code: "MESSAGE_TOO_LARGE", message: "a row is larger than a frame" } });
    // The collection's subscription covered by the abandoned poke starts over now, not at some later poke.
    await eventually(() => expect(socket.subscribes.filter((frame) => frame.id === sub)).toHaveLength(2));
    expect(socket.subscribes.filter((frame) => frame.id === sub)[1].cursor).toBeUndefined();
    // Its next poke is no protocol violation.
    socket.poke({ pokeId: "p3", bind: [bindingOf(sub, ["id", "text", "author"])], resets: [sub], parts: [[put(sub, { id: "m1", text: "edited", author: "ann" })]], cursor: cursor(3) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(3)));
    expect(clientErrors).toEqual([]);
    expect(rowsOf(collection)).toEqual([{ id: "m1", text: "edited", author: "ann" }]);
  });

  it("a snapshot ended by an error for its subscription, then an outcomes-only poke: no cursor moves past the dropped poke's ops", async () => {
    const { socket, sub, collection, client, clientErrors } = await withAuthors();
    const outcomes: unknown[] = [];
    client.onMutationResults((_room, results) => outcomes.push(...results));
    const big = messagesCollection(client);
    void big.collection.preload();
    const other = (await socket.subscribeFrame(1)).id!;
    socket.pokeStart({ pokeId: "p2", subs: [other], columns: ["id", "text", "author"], resets: [other] });
    // A flush appended to the open snapshot: the collection's change rides in it.
    socket.pokePart("p2", [put(other, { id: "x", text: "t", author: "a" }), patch(sub, { id: "m1", text: "edited" })]);
    // The room meets a row too large for a frame: an error instead of a pokeEnd, then the outcomes alone.
    socket.send({ type: "error", sub: other, error: { code: "MESSAGE_TOO_LARGE", message: "a row is larger than a frame" } });
    socket.poke({ pokeId: "p3", cursor: cursor(5), mutations: [{ clientSeq: 1, status: "applied" }] });
    await eventually(() => expect(outcomes).toEqual([{ clientSeq: 1, status: "applied" }]));
    // The collection did not move to seq 5 without the patch: it starts over.
    expect(collection.utils.cursor()).toEqual(cursor(1));
    expect(plain(collection.get("m1")!)).toEqual({ id: "m1", text: "hello", author: "ann" });
    await eventually(() => expect(socket.subscribes.filter((frame) => frame.id === sub)).toHaveLength(2));
    expect(socket.subscribes.filter((frame) => frame.id === sub)[1].cursor).toBeUndefined();
    expect(big.errors.map((e) => e.code)).toEqual(["MESSAGE_TOO_LARGE"]);
    expect(clientErrors).toEqual([]);
  });

  it("after an error for a subscription, ops for its group no longer reach it", async () => {
    const { socket, sub, collection, errors, received, processed } = await withAuthors();
    socket.send({ type: "error", sub, error: { code: "FORBIDDEN", message: "revoked" } });
    await eventually(() => expect(errors.map((e) => e.code)).toEqual(["FORBIDDEN"]));
    const before = received();
    socket.poke({ pokeId: "p2", parts: [[put(sub, { id: "late", text: "must not land", author: "x" })]], cursor: cursor(2) });
    await processed(before, 3);
    expect(errors).toHaveLength(1);
    expect(rowsOf(collection).map((row) => row.id)).toEqual(["m1", "m2"]);
    expect(collection.utils.cursor()).toEqual(cursor(1));
  });

  it("a resubscribe unbinds at once: ops for the old binding sent before the room's answer do not reach the handler", async () => {
    const h = await startHarness();
    const received: Array<{ keys: unknown[]; seq: number }> = [];
    let at: { seq: number; epoch: string } | undefined;
    const subscription = h.client.subscribe({
      room: "default",
      source: { list: "messages" },
      handler: {
        cursor: () => at,
        applyPoke: (update) => {
          received.push({ keys: update.ops.map((op) => op.key), seq: update.cursor.seq });
          at = update.cursor;
        },
        onError: () => undefined,
      },
    });
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame()).id!;
    socket.poke({ pokeId: "p1", subs: [sub], resets: [sub], parts: [[put(sub, { id: "m1" })]], cursor: cursor(1) });
    await eventually(() => expect(received).toEqual([{ keys: ["m1"], seq: 1 }]));

    subscription.resubscribe();
    expect((await socket.subscribeFrame(1)).cursor).toEqual(cursor(1));
    const before = h.received();
    // Sent before the room read the subscribe: for the old binding.
    socket.poke({ pokeId: "p2", parts: [[put(sub, { id: "stale" })]], cursor: cursor(2) });
    await h.processed(before, 3);
    expect(received).toHaveLength(1);
    // The room's answer binds it again.
    socket.poke({ pokeId: "p3", subs: [sub], parts: [[put(sub, { id: "m2" })]], cursor: cursor(3) });
    await eventually(() => expect(received).toEqual([{ keys: ["m1"], seq: 1 }, { keys: ["m2"], seq: 3 }]));
  });

  it("a resubscribe without cursor (the handler dropped its rows) ignores the answer to an earlier subscribe with a cursor until its reset", async () => {
    const h = await startHarness();
    const received: Array<{ reset: boolean; keys: unknown[]; seq: number }> = [];
    let at: { seq: number; epoch: string } | undefined = cursor(5);
    const subscription = h.client.subscribe({
      room: "default",
      source: { list: "messages" },
      handler: {
        cursor: () => at,
        applyPoke: (update) => {
          received.push({ reset: update.reset, keys: update.ops.map((op) => op.key), seq: update.cursor.seq });
          at = update.cursor;
        },
        onError: () => undefined,
      },
    });
    const socket = await h.room.socket();
    socket.hello();
    const first = await socket.subscribeFrame(0);
    expect(first.cursor).toEqual(cursor(5));
    const sub = first.id!;
    // Before any answer, the handler drops its rows (as an on-demand
    // collection does after a violation) and subscribes again from nothing.
    at = undefined;
    subscription.resubscribe();
    expect((await socket.subscribeFrame(1)).cursor).toBeUndefined();
    // The room answers the first subscribe: what changed since seq 5 — deltas
    // against rows the handler no longer has.
    const before = h.received();
    socket.poke({ pokeId: "p1", subs: [sub], parts: [[put(sub, { id: "changed" })]], cursor: cursor(7) });
    await h.processed(before, 3);
    expect(received).toEqual([]);
    // Then the second: a reset with the snapshot.
    socket.poke({ pokeId: "p2", bind: [bindingOf(sub)], resets: [sub], parts: [[put(sub, { id: "all" })]], cursor: cursor(7) });
    await eventually(() => expect(received).toEqual([{ reset: true, keys: ["all"], seq: 7 }]));
  });

  it("a subscription unsubscribed for a snapshot over the poke bound is not bound again by the answer to a subscribe sent before", async () => {
    const h = await startHarness({ limits: { maxPokeOps: 3 } });
    const received: Array<{ reset: boolean; seq: number }> = [];
    const errors: string[] = [];
    const subscription = h.client.subscribe({
      room: "default",
      source: { list: "messages" },
      handler: {
        cursor: () => undefined,
        applyPoke: (update) => received.push({ reset: update.reset, seq: update.cursor.seq }),
        onError: (error) => errors.push(error.code),
      },
    });
    const socket = await h.room.socket();
    socket.hello();
    const sub = (await socket.subscribeFrame(0)).id!;
    socket.pokeStart({ pokeId: "p1", subs: [sub], resets: [sub] });
    socket.pokePart("p1", [put(sub, { id: "1" }, { id: "2" })]);
    // A second subscribe goes out while the snapshot streams…
    subscription.resubscribe();
    await socket.subscribeFrame(1);
    // …and the snapshot then passes the bound: the client unsubscribes it.
    socket.pokePart("p1", [put(sub, { id: "3" }, { id: "4" })]);
    socket.pokeEnd("p1", cursor(1));
    await eventually(() => expect(socket.frames.filter((frame) => frame.type === "unsubscribe").map((frame) => frame.id)).toEqual([sub]));
    expect(errors).toEqual(["QUOTA_EXCEEDED"]);
    // The room answers the second subscribe (it reads the unsubscribe only after).
    const before = h.received();
    socket.poke({ pokeId: "p2", bind: [bindingOf(sub)], resets: [sub], parts: [[put(sub, { id: "1" })]], cursor: cursor(2) });
    // From then on the room serves it no more: a later poke must not move it.
    socket.poke({ pokeId: "p3", cursor: cursor(3) });
    await h.processed(before, 5);
    expect(received).toEqual([]);
    expect(h.clientErrors.map((e) => e.error.code)).toEqual(["QUOTA_EXCEEDED"]);
  });

  it("a poke moves every bound subscription to its cursor, also one it has nothing for, which sees no change", async () => {
    const { h, first: busy, second: quiet, ready, socket, a, b } = await twoSubscribed();
    socket.poke({ pokeId: "p1", subs: [a, b], resets: [a, b], parts: [[put(a, { id: "x" }), put(b, { id: "y" })]], cursor: cursor(1) });
    await ready;
    const quietBatches = recordBatches(quiet.collection);
    socket.poke({ pokeId: "p2", parts: [[put(a, { id: "x2" })]], cursor: cursor(2) });
    await eventually(() => expect(busy.collection.utils.cursor()).toEqual(cursor(2)));
    expect(quiet.collection.utils.cursor()).toEqual(cursor(2));
    expect(quietBatches).toEqual([]);
    expect(rowsOf(quiet.collection)).toEqual([{ id: "y" }]);
    // A reconnect resumes both from there.
    socket.terminate();
    const again = await h.room.socket(1);
    again.hello();
    expect([(await again.subscribeFrame(0)).cursor, (await again.subscribeFrame(1)).cursor]).toEqual([cursor(2), cursor(2)]);
  });

  it("a poke that crossed an unsubscribe and still resets the subscription applies to the others, without an error", async () => {
    const { h, kept, socket, a, b } = await twoSubscribedThenOneUnsubscribed();
    // A new epoch: the room resets every subscription it still had for the socket.
    socket.poke({ pokeId: "p2", resets: [a, b], parts: [[put(a, { id: "x" }), put(b, { id: "y" })]], cursor: { seq: 1, epoch: "epoch-2" } });
    await eventually(() => expect(rowsOf(kept.collection)).toEqual([{ id: "x" }]));
    expect(h.clientErrors).toEqual([]);
    expect(socket.subscribes).toHaveLength(2);
  });

  it("a bind replaces the subscription's earlier binding: ops for its old group no longer reach it", async () => {
    const { socket, sub, collection, clientErrors } = await withAuthors();
    const columns = ["id", "text", "author"];
    socket.poke({ pokeId: "p2", bind: [{ sub, group: "g-new", key: "id", columns }], parts: [[["g-new", "p", { id: "m3", text: "new", author: "n" }]]], cursor: cursor(2) });
    socket.poke({ pokeId: "p3", parts: [[put(sub, { id: "old-group", text: "x", author: "o" })], [["g-new", "u", { id: "m3", text: "newer" }]]], cursor: cursor(3) });
    await eventually(() => expect(collection.utils.cursor()).toEqual(cursor(3)));
    expect(rowsOf(collection).map((row) => [row.id, row.text])).toEqual([
      ["m1", "hello"],
      ["m2", "world"],
      ["m3", "newer"],
    ]);
    expect(clientErrors).toEqual([]);
  });
});
