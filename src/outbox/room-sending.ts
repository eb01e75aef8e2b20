import type { Transaction } from "@tanstack/db";
import type { LunoraClient } from "../client/lunora-client.js";
import { coalesced } from "./coalesced.js";
import type { ErrorBody, LunoraError, Mutation, MutationResult } from "../protocol/index.js";
import { chunkMutations, roomKey, type WriteMetadata } from "./write.js";

/**
 * One write the outbox knows of, from enqueue (or restore / adoption) until
 * it is settled. The optional fields start absent (`undefined` reads as
 * "no" / "not yet"): fewer bytes in the bundle than spelling each one out.
 */
export interface PendingWrite {
  id: string;
  meta: WriteMetadata;
  room: RoomState;
  /** It has its writer's clientId and clientSeq (in `meta`). */
  assigned?: boolean;
  /** Its clientId is the stored writer's (it may be replayed after a reload). */
  durable?: boolean;
  createdAt?: Date;
  /** The room generation it was last sent on; `undefined` when unsent. */
  sentGeneration?: number;
  outcome?: Extract<MutationResult, { status: "applied" | "rejected" }>;
  transient?: ErrorBody;
  dropped?: LunoraError;
  /** Set when it was dropped with a stored record: settles once the record is deleted and the drop reported (`false`: not reported, see LunoraOutbox). */
  forgotten?: Promise<boolean>;
  /** Deliveries awaiting its outcome: only a write someone waits for is sent. */
  waiting: number;
  wake: Set<() => void>;
  reported?: boolean;
  transientFailures: number;
  /** Its rows were handed to a pending overlay after too many transient failures (see LunoraOutbox). */
  parked?: boolean;
  /** The client's identity generation when the write was made: it belongs to that identity even before being assigned a writer. */
  identityGeneration: number;
  /** Settles when the write's live TanStack transaction has completed or rolled back (this session's writes only). */
  settled?: Promise<void>;
  /** Its `lunora:tab-write:` record, when a follower sends it (see tab-writes.ts); deleted once settled. */
  tabRecord?: string;
  /** Its `tx:` record is in storage and this session sends it; removed once settled. */
  queuedRecord?: boolean;
  /** Its live TanStack DB transaction, when this session made it (parking needs it). */
  transaction?: Transaction<any>;
  /** Set while this session sends it: releases its live transaction when it is parked. */
  onParked?: () => void;
}

/** What a delivery ends with: the room's answer for the write (its `clientSeq` aside), or a drop as a rejection. */
export type Outcome = { status: "applied"; result?: unknown } | { status: "rejected"; error: ErrorBody } | { status: "error"; error: ErrorBody };

/** The sending state of one room (party + room name). */
export interface RoomState {
  key: string;
  party: string;
  room: string;
  writes: Set<PendingWrite>;
  /** Bumped on every status change: a write sent under an older generation counts as unsent. */
  generation: number;
  /** Writes sent on the current socket and not answered yet, by clientSeq (one clientId at a time). */
  inFlight: Map<number, PendingWrite>;
  /** The room expects a clientSeq no pending write carries (a write lost with storage): filled before the next batch. */
  gap?: { clientId: string; expected: number };
  /** Lets the room's socket go (see {@link RoomSender.roomFor}). */
  release?: () => void;
  /** Sends what is due on the room's socket (coalesced: one send at a time). */
  kick: () => void;
}

/** What the sender asks of the outbox before a batch goes out. */
export interface SendGate {
  /**
   * Settles identity and stores the writer's counters; returns the identity
   * writes may be sent as on this room's socket now, or `undefined` to send
   * nothing (the socket still speaks for another identity).
   */
  prepare(room: RoomState): Promise<string | undefined>;
  readonly disposed: boolean;
}

/** Gap filler: an unknown mutator name is a recorded permanent rejection, which moves the room's watermark past it. */
const GAP_MUTATOR = "__lunora:gap";

/**
 * Per-room sending: writes travel on the room's socket in `clientSeq`
 * order; pipelined, every pending write of the room goes out in one `push`
 * when the first is due; each outcome (or a reconnect) wakes the write it
 * belongs to.
 */
export class RoomSender {
  readonly rooms = new Map<string, RoomState>();
  readonly #client: LunoraClient<any>;
  readonly #pipeline: boolean;
  readonly #gate: SendGate;

  constructor(client: LunoraClient<any>, pipeline: boolean, gate: SendGate) {
    this.#client = client;
    this.#pipeline = pipeline;
    this.#gate = gate;
  }

  /** The room's state, created (and its socket retained) on first use. */
  roomFor(party: string, name: string): RoomState {
    const key = roomKey(party, name);
    let room = this.rooms.get(key);
    if (!room) {
      const state: RoomState = {
        key,
        party,
        room: name,
        writes: new Set(),
        generation: 0,
        inFlight: new Map(),
        kick: coalesced(
          () => this.#sendPending(state),
          () => !this.#gate.disposed,
        ),
      };
      this.rooms.set(key, (room = state));
      // Writes keep the room's socket open (and open it) until they settle.
      if (!this.#gate.disposed) room.release = this.#client.retainRoom(name, party);
    }
    return room;
  }

  /** Forgets `write`; a room with no writes left lets its socket go. */
  remove(write: PendingWrite): void {
    const room = write.room;
    room.writes.delete(write);
    if (room.writes.size === 0 && this.rooms.get(room.key) === room) {
      room.release?.();
      this.rooms.delete(room.key);
    }
  }

  dispose(): void {
    for (const room of this.rooms.values()) room.release?.();
    this.rooms.clear();
  }

  /**
   * Waits for the outcome of `write`, sending it (and, pipelined, every
   * other pending write of its room) whenever its room is connected and it
   * has not been sent on the current socket.
   */
  async deliver(write: PendingWrite): Promise<Outcome> {
    write.waiting++;
    try {
      for (let outOfOrder = 0; ; ) {
        if (write.dropped) return { status: "rejected", error: write.dropped.toBody() };
        if (write.outcome) return write.outcome;
        const transient = write.transient;
        if (transient) {
          write.transient = undefined;
          // A gap or an earlier write still in flight: resend at once (the gap is filled), a few times.
          if (transient.code === "OUT_OF_ORDER" && outOfOrder++ < 3) continue;
          return { status: "error", error: transient };
        }
        if (write.sentGeneration !== write.room.generation) write.room.kick();
        await new Promise<void>((resolve) => write.wake.add(resolve));
      }
    } finally {
      write.waiting--;
    }
  }

  onResults(party: string, roomName: string, results: MutationResult[]): void {
    const room = this.rooms.get(roomKey(party, roomName));
    if (!room) return;
    for (const result of results) {
      const write = room.inFlight.get(result.clientSeq);
      if (!write) continue;
      room.inFlight.delete(result.clientSeq);
      if (result.status === "error") {
        write.sentGeneration = undefined;
        const expected = (result.error.data as { expected?: unknown } | undefined)?.expected;
        if (result.error.code === "OUT_OF_ORDER" && typeof expected === "number" && expected < result.clientSeq) {
          if (!room.gap || room.gap.expected > expected) room.gap = { clientId: write.meta.clientId!, expected };
        }
        // Only the write being waited for takes the failure; the others are simply sent again.
        if (write.waiting > 0) write.transient = result.error;
      } else {
        write.outcome = result;
      }
      wake(write);
    }
    if (room.inFlight.size === 0) kickIfDue(room);
  }

  /** Sends what is due in every room (sending was allowed again). */
  resume(): void {
    for (const room of this.rooms.values()) kickIfDue(room);
  }

  onRoomStatus(party: string, roomName: string, status: string): void {
    const room = this.rooms.get(roomKey(party, roomName));
    if (!room) return;
    room.generation++;
    room.inFlight.clear();
    if (status === "connected") room.kick();
  }

  #connected(room: RoomState): boolean {
    return !this.#gate.disposed && this.#client.roomStatus(room.room, room.party) === "connected";
  }

  async #sendPending(room: RoomState): Promise<void> {
    if (!this.#connected(room)) return;
    const identity = await this.#gate.prepare(room);
    if (identity === undefined || !this.#connected(room)) return;

    const current = (write: PendingWrite) =>
      write.assigned && !write.outcome && !write.dropped && write.meta.identity === identity && write.sentGeneration !== room.generation;
    const armed = [...room.writes].filter((write) => write.waiting > 0 && current(write));
    if (armed.length === 0) return;
    armed.sort((a, b) => a.createdAt!.getTime() - b.createdAt!.getTime());
    const clientId = armed[0].meta.clientId!;
    // Outcomes carry no clientId: one writer in flight per socket at a time
    // (so any write in flight names it).
    const inFlight = room.inFlight.values().next().value;
    if (inFlight && (inFlight.meta.clientId !== clientId || !this.#pipeline)) return;
    const pending = [...room.writes]
      .filter((write) => current(write) && write.meta.clientId === clientId)
      .sort((a, b) => a.meta.clientSeq! - b.meta.clientSeq!);
    // Not pipelined: the lowest pending clientSeq alone, one round trip each.
    const batch = this.#pipeline ? pending : pending.slice(0, 1);
    const mutations: Mutation[] = [];
    const gap = room.gap;
    if (gap && gap.clientId === clientId) {
      room.gap = undefined;
      // A dropped write keeps its clientSeq but is never sent: its seq is a hole to fill too.
      const known = new Set([...room.writes].filter((w) => w.meta.clientId === clientId && !w.dropped).map((w) => w.meta.clientSeq));
      for (let seq = gap.expected; seq < batch[0].meta.clientSeq!; seq++) {
        if (!known.has(seq)) mutations.push({ clientSeq: seq, name: GAP_MUTATOR, args: null });
      }
    }
    for (const write of batch) mutations.push({ clientSeq: write.meta.clientSeq!, name: write.meta.name, args: write.meta.args });
    const bySeq = new Map(batch.map((write) => [write.meta.clientSeq!, write]));
    for (const chunk of chunkMutations(mutations)) {
      if (!this.#client.push(room.room, { clientId, mutations: chunk }, room.party)) return;
      for (const mutation of chunk) {
        const write = bySeq.get(mutation.clientSeq);
        if (!write) continue;
        write.sentGeneration = room.generation;
        room.inFlight.set(mutation.clientSeq, write);
      }
    }
  }
}

/** Sends on `room` when a write someone waits for was not sent on its current socket. */
function kickIfDue(room: RoomState): void {
  for (const write of room.writes) {
    if (write.waiting > 0 && write.sentGeneration !== room.generation) return room.kick();
  }
}

/** Resumes everything waiting on `write` (an outcome, a failure, a drop). */
export function wake(write: PendingWrite): void {
  const waiters = [...write.wake];
  write.wake.clear();
  for (const resolve of waiters) resolve();
}
