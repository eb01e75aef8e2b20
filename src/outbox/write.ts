import type { OfflineTransaction } from "@tanstack/offline-transactions";
import { isRoomName, isWireName } from "../client/room-name.js";
import { LunoraError, MAX_MUTATIONS_PER_PUSH, utf8Length, type ErrorBody, type Mutation } from "../protocol/index.js";

/** Key of the Lunora record in a transaction's `metadata` (transaction-level metadata survives reloads). */
export const WRITE_METADATA_KEY = "lunora";

/** The one mutation-function name Lunora registers with `@tanstack/offline-transactions`. */
export const WRITE_MUTATION_FN = "lunora:push";

/**
 * A queued write as persisted with its transaction. Everything a replay after
 * a reload needs is here: the server mutator and its args are computed when
 * the write is made (per-mutation metadata does not survive a reload, and the
 * optimistic rows of a custom mutator say nothing about its args), and
 * `clientId` + `clientSeq` are assigned before the write is persisted, so a
 * replay reuses them and the room recognises it.
 */
export interface WriteMetadata {
  v: 1;
  kind: "insert" | "mutator";
  /** Server mutator name (`"messages:send"`). */
  name: string;
  args: unknown;
  party: string;
  room: string;
  /** Collection name the write is reported under (`onWriteRejected`). */
  collection?: string;
  /** The optimistic row of an insert (`onWriteRejected`). */
  row?: Record<string, unknown>;
  /** Identity fingerprint the write was made under; never sent under another. */
  identity?: string;
  clientId?: string;
  clientSeq?: number;
}

export type AssignedWriteMetadata = WriteMetadata & { identity: string; clientId: string; clientSeq: number };

/** The Lunora record in a transaction's `metadata`, if it holds a readable one. */
export function writeMetadataOf(metadata: Record<string, unknown> | undefined): WriteMetadata | undefined {
  const value = metadata?.[WRITE_METADATA_KEY];
  return isWriteMetadata(value) ? value : undefined;
}

/**
 * Whether a stored value (read back from storage: anything) has the fields
 * every write's record has. Its room and party must be names the client
 * opens (as every write of this version checks when it is made) and its
 * mutator name one a push frame carries: a record with others could not be
 * sent (registering a bad room throws and failed the load of every record
 * queued with it; a bad name makes a frame the room refuses), so it counts
 * as unreadable, and is reported and deleted.
 */
export function isWriteMetadata(value: unknown): value is WriteMetadata {
  const meta = value as Partial<WriteMetadata> | null;
  return typeof meta === "object" && meta !== null && meta.v === 1 && isWireName(meta.name) && isRoomName(meta.room) && isRoomName(meta.party);
}

/**
 * Whether `meta` has its writer and clientSeq — as the push frame takes them
 * (a clientId the protocol accepts, a clientSeq that is an integer ≥ 1): a
 * stored write with others would make a frame the room refuses with a
 * protocol error and no outcome, and wait for one forever.
 */
export function isAssigned(meta: WriteMetadata): meta is AssignedWriteMetadata {
  return typeof meta.identity === "string" && isWireName(meta.clientId) && Number.isSafeInteger(meta.clientSeq) && meta.clientSeq! >= 1;
}

/**
 * Whether a stored write can go out as it is: assigned (see
 * {@link isAssigned}) and small enough for one push frame. A write is
 * checked for size when it is made ({@link assertWriteFits}); one read back
 * from storage (another version's bound, an edited database) is checked
 * again, because a frame over the room's bound is refused without an
 * outcome — it would be resent on every reconnect, holding up the writes
 * behind it.
 */
export function isSendable(meta: WriteMetadata): meta is AssignedWriteMetadata {
  if (!isAssigned(meta)) return false;
  try {
    assertWriteFits(meta.name, meta.args);
    return true;
  } catch {
    return false;
  }
}

export function roomKey(party: string, room: string): string {
  return JSON.stringify([party, room]);
}

/**
 * Bytes of push frame text Lunora puts in one frame. Rooms refuse inbound
 * frames over 1,000,000 bytes (`MESSAGE_TOO_LARGE`); the margin covers the
 * frame envelope.
 */
export const MAX_PUSH_FRAME_BYTES = 900_000;

/** Splits an ordered batch into frames under both bounds of the protocol. */
export function chunkMutations(mutations: Mutation[]): Mutation[][] {
  const chunks: Mutation[][] = [];
  let chunk: Mutation[] = [];
  let bytes = 0;
  for (const mutation of mutations) {
    const size = utf8Length(JSON.stringify(mutation)) + 1;
    if (chunk.length > 0 && (chunk.length >= MAX_MUTATIONS_PER_PUSH || bytes + size > MAX_PUSH_FRAME_BYTES)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(mutation);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/** Refuses, before anything is queued, a write no room could ever accept. */
export function assertWriteFits(name: string, args: unknown): void {
  let size: number;
  try {
    size = utf8Length(JSON.stringify({ clientSeq: Number.MAX_SAFE_INTEGER, name, args }) ?? "");
  } catch (cause) {
    throw new LunoraError("INVALID_ARGS", `args of "${name}" are not JSON-serializable: ${String(cause)}`);
  }
  if (size > MAX_PUSH_FRAME_BYTES) {
    throw new LunoraError("MESSAGE_TOO_LARGE", `a "${name}" write of ${size} bytes exceeds the ${MAX_PUSH_FRAME_BYTES}-byte push bound`, {
      maxBytes: MAX_PUSH_FRAME_BYTES,
    });
  }
}

/**
 * A transient failure of a write (`INTERNAL`, `OUT_OF_ORDER`,
 * `QUOTA_EXCEEDED` outcomes): thrown to `@tanstack/offline-transactions` so it
 * retries with backoff. Its message never carries the server's text nor any
 * digit: the library's retry policy treats messages containing "400", "401",
 * "403" or "422" as permanent.
 */
export function transientWriteError(error: ErrorBody): Error {
  const failure = new Error(`transient write failure: ${error.code.replace(/[0-9]/g, "")}`);
  failure.name = "TransientWriteError";
  return failure;
}

/** createdAt of an offline record: strictly increasing, so the library's FIFO (sorted by it) is enqueue order. */
export function monotonicClock(): () => Date {
  let last = 0;
  return () => {
    last = Math.max(Date.now(), last + 1);
    return new Date(last);
  };
}

/** Sort key of restored records: FIFO by createdAt, then clientSeq (records of one room never tie). */
export function compareRecords(a: OfflineTransaction, b: OfflineTransaction): number {
  const byTime = a.createdAt.getTime() - b.createdAt.getTime();
  if (byTime !== 0) return byTime;
  return (writeMetadataOf(a.metadata)?.clientSeq ?? 0) - (writeMetadataOf(b.metadata)?.clientSeq ?? 0);
}
