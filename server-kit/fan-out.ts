/**
 * Fan-out: what one flush sends to every socket. The flush reads the new
 * page of the change log once (see `SyncRoom.flush`); here each distinct
 * subscription group (table, predicate, projection) diffs membership once,
 * and each socket with changes or mutation outcomes gets one poke — or, while
 * a snapshot streams to it, the changes are appended to that open poke.
 */
import { LunoraError, type Cursor, type MutationResult } from "../src/protocol/index.js";
import type { KeyChange } from "./change-log.js";
import { PokeWriter, encodeRowOp } from "./poke-writer.js";
import { coveredByPoke } from "./snapshots.js";
import { SlowConsumer, type SocketState } from "./socket-state.js";
import { addOp, type SocketOutput } from "./socket-output.js";
import { membershipOp, type GroupOp, type ResolvedSubscription } from "./subscriptions.js";

type SubOps = Array<[ResolvedSubscription, GroupOp[]]>;

/**
 * Sends each socket what `changes` (coalesced, up to log seq `through`)
 * mean for its subscriptions, with its mutation outcomes. `sockets` yields
 * only sockets that may still be served.
 */
export function fanOut(
  out: SocketOutput,
  sockets: Iterable<[WebSocket, SocketState]>,
  changes: Map<string, KeyChange>,
  end: Cursor,
  outcomes: Map<WebSocket, MutationResult[]> | undefined,
): void {
  const changedTables = new Set<string>();
  for (const change of changes.values()) changedTables.add(change.table);
  const groups = new Map<string, GroupOp[]>();
  for (const [ws, state] of sockets) {
    const mutations = outcomes?.get(ws);
    const perSub: SubOps = [];
    for (const sub of state.subs.values()) {
      if (!changedTables.has(sub.table)) continue;
      let ops = groups.get(sub.group);
      if (ops === undefined) {
        ops = [];
        for (const change of changes.values()) {
          const op = membershipOp(sub, change);
          if (op) ops.push([op[0], op[1], change.key]);
        }
        groups.set(sub.group, ops);
      }
      if (ops.length > 0) perSub.push([sub, ops]);
    }
    if (state.open) {
      appendToOpenPoke(out, end.epoch, ws, state, perSub, end.seq, mutations);
      continue;
    }
    if (perSub.length === 0 && mutations === undefined) continue;
    sendPoke(out, ws, state, perSub, end, mutations);
  }
}

function sendPoke(out: SocketOutput, ws: WebSocket, state: SocketState, perSub: SubOps, end: Cursor, mutations: MutationResult[] | undefined): void {
  const send = out.pokeSender(ws, state);
  try {
    // Every live subscription of the socket is listed, so all their cursors
    // advance, not only those with ops. A subscription with a row too large
    // for any frame cannot be served without a gap: it is left out of the
    // poke entirely and ended with MESSAGE_TOO_LARGE.
    const writer = new PokeWriter(send, out.nextPokeId(end.seq));
    const tooLarge = perSub.filter(([sub, ops]) => ops.some(([op, tail]) => !writer.fits(encodeRowOp(op, sub.id, tail)))).map(([sub]) => sub);
    for (const sub of tooLarge) {
      out.endSubscription(ws, state, sub.id, new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`));
    }
    if (state.subs.size === 0 && mutations === undefined) return;
    writer.start([...state.subs.keys()]);
    for (const [sub, ops] of perSub) {
      if (tooLarge.includes(sub)) continue;
      for (const [op, tail] of ops) writer.add(encodeRowOp(op, sub.id, tail));
    }
    writer.end(end, mutations);
  } catch (error) {
    if (error instanceof SlowConsumer) out.closeSlowConsumer(ws);
    // Otherwise the socket closed mid-poke; the client resumes from its last complete poke.
  }
}

/**
 * A flush while a snapshot streams on the socket: the changes go into the
 * open poke (for a subscription being scanned, only keys the scan has
 * passed), the outcomes into its end, and the poke's cursor moves on.
 */
function appendToOpenPoke(
  out: SocketOutput,
  epoch: string,
  ws: WebSocket,
  state: SocketState,
  perSub: SubOps,
  through: number,
  mutations: MutationResult[] | undefined,
): void {
  const open = state.open!;
  try {
    for (const [sub, ops] of perSub) {
      for (const [op, tail, key] of ops) {
        if (coveredByPoke(open, sub.id, key)) addOp(open.writer, sub, op, tail);
      }
    }
  } catch (error) {
    state.open = undefined;
    if (error instanceof SlowConsumer) return out.closeSlowConsumer(ws);
    delete state.attachment.streaming;
    const failed = perSub.find(([sub, ops]) => ops.some(([op, tail]) => !open.writer.fits(encodeRowOp(op, sub.id, tail))));
    if (failed) out.endSubscription(ws, state, failed[0].id, error);
    open.mutations.push(...(mutations ?? []));
    sendOutcomesOnly(out, epoch, ws, state, open.mutations, through);
    return;
  }
  if (mutations) open.mutations.push(...mutations);
  open.seq = through;
}

/** Outcomes whose poke had to be dropped still reach the writer, in a poke without rows. */
export function sendOutcomesOnly(out: SocketOutput, epoch: string, ws: WebSocket, state: SocketState, mutations: MutationResult[], seq: number): void {
  if (mutations.length === 0) return;
  try {
    new PokeWriter(out.pokeSender(ws, state), out.nextPokeId(seq)).start([]).end({ seq, epoch }, mutations);
  } catch {
    out.closeSlowConsumer(ws);
  }
}
