/**
 * Mutation outcomes are bounded like every other frame content: however many
 * outcomes a flush carries for a socket and however large a mutator's result
 * or a rejection's body is, no frame passes `MAX_FRAME_BYTES`, the outcomes
 * arrive in order, and none is lost (protocol.md, "Mutation outcomes").
 */
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { describe, expect, test } from "vitest";
import { LunoraClient } from "../../src/client/index.js";
import { MAX_FRAME_BYTES, type Mutation, type MutationResult } from "../../src/protocol/index.js";
import type { RawSocket } from "../helpers/raw-socket.js";
import { useRawFixtureRoom } from "../helpers/raw-fixture-room.js";
import { waitFor } from "../helpers/wait-for.js";

const fixture = useRawFixtureRoom("outcomes");
const { freshRoom, connect } = fixture;

const echo = (clientSeq: number, bytes: number): Mutation => ({ clientSeq, name: "results:echo", args: { bytes } });
const outcomesOf = (socket: RawSocket): MutationResult[] => socket.pokes.flatMap((poke) => poke.mutations ?? []);
const largestFrame = (socket: RawSocket): number => Math.max(...socket.raw.map((frame) => Buffer.byteLength(frame)));

describe("mutation outcomes respect the frame bound", () => {
  test("outcomes of one flush larger than a frame are split across pokes, in order, the first with the rows they produced", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    socket.subscribe("s", { list: "items" });
    await socket.nextPoke("s");
    const id = randomUUID();
    // One write with a row, then twelve results of 100 kB: 1.2 MB of outcomes for one socket in one flush.
    const mutations: Mutation[] = [{ clientSeq: 1, name: "items:create", args: { id, listId: "L", title: "with outcomes" } }];
    for (let seq = 2; seq <= 13; seq++) mutations.push(echo(seq, 100_000));
    socket.send({ type: "push", clientId: randomUUID(), mutations });
    await waitFor(() => outcomesOf(socket).length >= 13, { message: "all 13 outcomes" });
    expect(largestFrame(socket)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const outcomes = outcomesOf(socket);
    expect(outcomes.map((outcome) => outcome.clientSeq)).toEqual(mutations.map((mutation) => mutation.clientSeq));
    expect(outcomes[0]).toEqual({ clientSeq: 1, status: "applied", result: id });
    for (const outcome of outcomes.slice(1)) expect(outcome).toEqual({ clientSeq: outcome.clientSeq, status: "applied", result: "r".repeat(100_000) });
    // Confirmation never comes before its data: the write's row is in the poke carrying its outcome.
    const first = socket.pokes.find((poke) => poke.mutations?.some((outcome) => outcome.clientSeq === 1))!;
    expect(first.ops.some((op) => op.op === "put" && op.key === id)).toBe(true);
    // Every poke after it carries the same cursor: the outcomes add no data.
    const carrying = socket.pokes.filter((poke) => poke.mutations !== undefined);
    expect(carrying.length).toBeGreaterThan(1);
    expect(new Set(carrying.map((poke) => `${poke.cursor.epoch}:${poke.cursor.seq}`)).size).toBe(1);
  });

  test("an outcome larger than a frame alone is sent in its MESSAGE_TOO_LARGE form, also when replayed; its neighbours are untouched", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    const mutations: Mutation[] = [echo(1, 950_000), { clientSeq: 2, name: "results:reject", args: { bytes: 950_000 } }, echo(3, 10)];
    socket.send({ type: "push", clientId, mutations });
    await waitFor(() => outcomesOf(socket).length >= 3, { message: "all 3 outcomes" });
    expect(largestFrame(socket)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const [applied, rejected, small] = outcomesOf(socket);
    // Applied: it ran and stays applied; its result is replaced by a coded marker.
    expect(applied).toMatchObject({
      clientSeq: 1,
      status: "applied",
      result: { truncated: true, error: { code: "MESSAGE_TOO_LARGE", data: { bytes: expect.any(Number) } } },
    });
    // Rejected: still a (permanent) rejection, now MESSAGE_TOO_LARGE, naming the mutator's own code.
    expect(rejected).toMatchObject({ clientSeq: 2, status: "rejected", error: { code: "MESSAGE_TOO_LARGE", data: { code: "CONFLICT", bytes: expect.any(Number) } } });
    expect(small).toEqual({ clientSeq: 3, status: "applied", result: "r".repeat(10) });
    // A replay on another socket is answered from the stored outcomes, bounded the same way.
    const again = await connect(room);
    again.send({ type: "push", clientId, mutations });
    await waitFor(() => outcomesOf(again).length >= 3, { message: "the replayed outcomes" });
    expect(largestFrame(again)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const replayed = outcomesOf(again);
    expect(replayed.map((outcome) => outcome.status)).toEqual(["applied", "rejected", "applied"]);
    expect(replayed[1]).toMatchObject({ status: "rejected", error: { code: "MESSAGE_TOO_LARGE", data: { code: "CONFLICT" } } });
    expect(replayed[2]).toEqual(small);
  });

  test("a rejection too large to be stored is recorded in its MESSAGE_TOO_LARGE form: the batch is answered and the writer goes on", async () => {
    const room = freshRoom();
    const socket = await connect(room);
    const clientId = randomUUID();
    // 2.5 MB of error data: more than an SQLite value of a Durable Object may hold (2 MB).
    const mutations: Mutation[] = [echo(1, 10), { clientSeq: 2, name: "results:reject", args: { bytes: 2_500_000 } }, echo(3, 10)];
    socket.send({ type: "push", clientId, mutations });
    await waitFor(() => outcomesOf(socket).length >= 3, { message: "all 3 outcomes" });
    const outcomes = outcomesOf(socket);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(["applied", "rejected", "applied"]);
    expect(outcomes[1]).toMatchObject({ clientSeq: 2, status: "rejected", error: { code: "MESSAGE_TOO_LARGE", data: { code: "CONFLICT" } } });
    // The replay is answered with what was recorded: the same outcome.
    const again = await connect(room);
    again.send({ type: "push", clientId, mutations: [mutations[1]] });
    await waitFor(() => outcomesOf(again).length >= 1, { message: "the replayed outcome" });
    expect(outcomesOf(again)).toEqual([outcomes[1]]);
  });

  test("a LunoraClient receives every outcome of a flush whose outcomes pass 1 MiB, and no error", async () => {
    const room = freshRoom();
    const client = new LunoraClient({ host: fixture.worker.host, party: "room", auth: "user:alice", WebSocket, pingIntervalMs: 0 });
    const received: MutationResult[] = [];
    const errors: string[] = [];
    client.onMutationResults((_room, results) => received.push(...results));
    client.onError((error) => errors.push(error.code));
    const release = client.retainRoom(room);
    try {
      await waitFor(() => client.roomStatus(room) === "connected", { message: "connected" });
      const mutations = Array.from({ length: 12 }, (_, i) => echo(i + 1, 100_000));
      expect(client.push(room, { clientId: randomUUID(), mutations })).toBe(true);
      await waitFor(() => received.length >= 12 || errors.length > 0, { message: "12 outcomes" });
      expect(errors).toEqual([]);
      expect(received.map((outcome) => [outcome.clientSeq, outcome.status])).toEqual(mutations.map((mutation) => [mutation.clientSeq, "applied"]));
    } finally {
      release();
      client.close();
    }
  });
});
