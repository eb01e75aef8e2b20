/**
 * Fan-out: what one flush sends to every socket. The flush reads the new
 * page of the change log once (see `SyncRoom.flush`); here
 *
 * 1. each distinct subscription group (table, predicate, projection) diffs
 *    membership once, into ops serialized once;
 * 2. each socket's poke is named by the sorted ids of its groups that have
 *    ops (its *frame key*) — frames name groups, never subscriptions, so
 *    every socket with one key can take the very same strings;
 * 3. the frames of each key are built once (one `pokeId` per flush) and
 *    sent to every socket with that key; a socket whose pushes are in the
 *    flush gets them with its `mutations` added to the last frame (or, when
 *    they do not fit there, its own frames, the outcomes split by
 *    `PokeWriter.end` under the frame bound).
 *
 * Flow control stays per socket (`SocketOutput.pokeSender`). A socket with
 * a streamed snapshot open gets the changes appended to that poke instead.
 * Only one key's frames are held at a time, so a flush's memory does not
 * grow with the number of distinct keys.
 */
import { LunoraError, MAX_FRAME_BYTES, utf8Length, type Cursor, type MutationResult } from "../src/protocol/index.js";
import type { KeyChange } from "./change-log.js";
import { PokeWriter } from "./poke-writer.js";
import { coveredByPoke } from "./snapshots.js";
import { SlowConsumer, type SocketState } from "./socket-state.js";
import { addOp, type SocketOutput } from "./socket-output.js";
import { membershipOp, type GroupOp, type ResolvedSubscription } from "./subscriptions.js";

/** Counters a flush keeps (`SyncRoom.stats`). */
export interface FanOutStats {
  /** Poke frames built by flushes: once per frame key, not once per socket. */
  pokeFramesBuilt: number;
}

/** One group's ops in one flush. */
interface GroupOps {
  id: string;
  /** A subscription of the group (they all read the same rows). */
  sub: ResolvedSubscription;
  /** Puts, then patches, then deletes: each key appears once per group in a flush, so kinds may be reordered into fewer blocks. */
  ops: Array<GroupOp & { bytes: number; change: KeyChange }>;
  /** Some item cannot fit in any frame: the group's subscriptions are ended. */
  tooLarge: boolean;
  /** The same ops with whole rows instead of patches (for an open snapshot poke), built on demand. */
  wholeRows?: GroupOp[];
}

type Member = [ws: WebSocket, state: SocketState, mutations: MutationResult[] | undefined];

/**
 * Sends each socket what `changes` (coalesced, up to log seq `end.seq`)
 * mean for its subscriptions, with its mutation outcomes. `sockets` yields
 * only sockets that may still be served.
 */
export function fanOut(
  out: SocketOutput,
  sockets: Iterable<[WebSocket, SocketState]>,
  changes: Map<string, KeyChange>,
  end: Cursor,
  outcomes: Map<WebSocket, MutationResult[]> | undefined,
  stats: FanOutStats,
): void {
  const changedTables = new Set<string>();
  for (const change of changes.values()) changedTables.add(change.table);
  const pokeId = out.nextPokeId(end.seq);
  const probe = new PokeWriter(() => undefined, pokeId);
  const groups = new Map<string, GroupOps>();
  const opsOf = (sub: ResolvedSubscription): GroupOps => {
    let group = groups.get(sub.groupId);
    if (group === undefined) {
      const puts: GroupOps["ops"] = [];
      const patches: GroupOps["ops"] = [];
      const deletes: GroupOps["ops"] = [];
      let tooLarge = false;
      for (const change of changes.values()) {
        const op = membershipOp(sub, change);
        if (op === null) continue;
        const item = { kind: op[0], json: op[1], key: change.key, bytes: utf8Length(op[1]), change };
        if (!probe.fits(sub.groupId, item.json, item.bytes)) tooLarge = true;
        (item.kind === "p" ? puts : item.kind === "u" ? patches : deletes).push(item);
      }
      group = { id: sub.groupId, sub, ops: puts.concat(patches, deletes), tooLarge };
      groups.set(sub.groupId, group);
    }
    return group;
  };

  // Pass 1: each socket's frame key (and the open pokes, which take their own path).
  const byKey = new Map<string, { groups: GroupOps[]; members: Member[] }>();
  for (const [ws, state] of sockets) {
    const mutations = outcomes?.get(ws);
    const mine = new Map<string, GroupOps>();
    let tooLarge = false;
    for (const sub of state.subs.values()) {
      if (!changedTables.has(sub.table)) continue;
      const group = opsOf(sub);
      if (group.ops.length > 0) mine.set(group.id, group);
      tooLarge ||= group.tooLarge;
    }
    if (state.open) {
      appendToOpenPoke(out, end.epoch, ws, state, [...mine.values()], end.seq, mutations);
      continue;
    }
    // A subscription with a row too large for any frame cannot be served
    // without a gap: it is left out of the poke and ended.
    if (tooLarge) {
      for (const sub of [...state.subs.values()]) {
        if (mine.get(sub.groupId)?.tooLarge) {
          out.endSubscription(ws, state, sub.id, new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`));
        }
      }
      for (const [id, group] of mine) if (group.tooLarge) mine.delete(id);
    }
    if (mine.size === 0 && mutations === undefined) continue;
    const ids = [...mine.keys()].sort();
    const key = ids.join(",");
    let bucket = byKey.get(key);
    if (bucket === undefined) {
      bucket = { groups: ids.map((id) => mine.get(id)!), members: [] };
      byKey.set(key, bucket);
    }
    bucket.members.push([ws, state, mutations]);
  }

  // Pass 2: each key's frames, built once, sent to every socket with that key.
  for (const { groups: keyGroups, members } of byKey.values()) {
    const frames = buildFrames(pokeId, keyGroups, end, undefined, stats);
    const lastBytes = utf8Length(frames[frames.length - 1]);
    for (const [ws, state, mutations] of members) {
      let mine = frames;
      if (mutations !== undefined && mutations.length > 0) {
        const added = `,"mutations":${JSON.stringify(mutations)}`;
        if (lastBytes + utf8Length(added) <= MAX_FRAME_BYTES) {
          const last = frames[frames.length - 1];
          mine = [...frames.slice(0, -1), `${last.slice(0, -1)}${added}}`];
        } else {
          mine = buildFrames(pokeId, keyGroups, end, mutations, stats);
        }
      }
      sendFrames(out, ws, state, mine);
    }
  }
}

/** The frames of one poke carrying `groups`' ops, built once for every socket that reads exactly those groups. */
function buildFrames(pokeId: string, groups: GroupOps[], end: Cursor, mutations: MutationResult[] | undefined, stats: FanOutStats): string[] {
  const frames: string[] = [];
  const writer = new PokeWriter((frame) => frames.push(frame), pokeId).start();
  for (const group of groups) {
    for (const op of group.ops) writer.add(group.id, op.kind, op.json, op.bytes);
  }
  writer.end(end, mutations);
  stats.pokeFramesBuilt += frames.length;
  return frames;
}

function sendFrames(out: SocketOutput, ws: WebSocket, state: SocketState, frames: string[]): void {
  const send = out.pokeSender(ws, state);
  try {
    for (const frame of frames) send(frame);
  } catch (error) {
    if (error instanceof SlowConsumer) out.closeSlowConsumer(ws);
    // Otherwise the socket closed mid-poke; the client resumes from its last complete poke.
  }
}

/**
 * A flush while a snapshot streams on the socket: the changes go into the
 * open poke, the outcomes into its end, and the poke's cursor moves on.
 *
 * For a group read by a subscription the poke snapshots, the ops are whole
 * rows (a page was read at its own moment: a row the client got from it
 * need not be at the flush's before-image, so a patch could miss columns or
 * name a row the client does not hold), and a key is left out only when
 * every subscription of the socket bound to that group is a scan that has
 * not reached it yet (the scan reads it in its current state).
 */
function appendToOpenPoke(
  out: SocketOutput,
  epoch: string,
  ws: WebSocket,
  state: SocketState,
  groups: GroupOps[],
  through: number,
  mutations: MutationResult[] | undefined,
): void {
  const open = state.open!;
  const snapshotted = new Set(open.scans.map((scan) => scan.target.id));
  let failed: ResolvedSubscription | undefined;
  try {
    for (const group of groups) {
      const bound = [...state.subs.values()].filter((sub) => sub.groupId === group.id);
      if (bound.length === 0) continue;
      failed = bound[0];
      if (!bound.some((sub) => snapshotted.has(sub.id))) {
        for (const op of group.ops) addOp(open.writer, group.sub, op.kind, op.json, op.bytes);
        continue;
      }
      group.wholeRows ??= group.ops.map((op) => {
        if (op.kind !== "u") return op;
        const whole = membershipOp(group.sub, op.change, true)!;
        return { kind: whole[0], json: whole[1], key: op.key };
      });
      for (const op of group.wholeRows) {
        if (bound.some((sub) => coveredByPoke(open, sub.id, op.key))) addOp(open.writer, group.sub, op.kind, op.json);
      }
    }
  } catch (error) {
    state.open = undefined;
    if (error instanceof SlowConsumer) return out.closeSlowConsumer(ws);
    delete state.attachment.streaming;
    // A row larger than a frame: the error frame also tells the client to
    // drop the open poke (it subscribes the subscriptions it covered again).
    if (failed) out.endSubscription(ws, state, failed.id, error);
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
    new PokeWriter(out.pokeSender(ws, state), out.nextPokeId(seq)).start().end({ seq, epoch }, mutations);
  } catch {
    out.closeSlowConsumer(ws);
  }
}
