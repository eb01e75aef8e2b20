import { LunoraError, utf8Length, type ErrorBody, type Source } from "../src/protocol/index.js";
import type { OpenPoke } from "./snapshots.js";
import type { ResolvedSubscription } from "./subscriptions.js";

/** A subscription as the socket remembers it: the name it reads and its VALIDATED args (never the client's raw ones). */
export interface StoredSubscription {
  id: string;
  source: { list: string } | { shape: string };
  args?: unknown;
  /**
   * On-demand sync: the subset's predicate as the room RESOLVED it (a limit
   * already turned into its cut; see subsets.ts), so a wake or a later reset
   * reads the same rows without resolving the limit again.
   */
  subset?: { where: unknown };
  /**
   * The group id the client was bound to (protocol 4). A wake resolves the
   * subscription again, and what it reads may have changed meanwhile (a
   * migration added a column to an unlisted projection): ops would then
   * travel under an id the client never bound and be ignored — a silent gap.
   * A mismatch on wake rebinds the subscription with a reset instead.
   * Absent in attachments written before it existed.
   */
  group?: string;
}

/**
 * What a sync socket must remember across hibernation. It is stored with
 * `serializeAttachment`, which the runtime caps at 16 KiB, so it holds only
 * the identity and each subscription's name and validated args — the
 * resolved predicates are recomputed on wake.
 *
 * Subscriptions are a list, not an object keyed by id: ids are chosen by the
 * client, and `subs["__proto__"] = …` on a plain object sets its prototype
 * instead of storing the subscription (it then vanished on hibernation).
 */
export interface SocketAttachment {
  v: 2;
  room: string;
  auth: unknown;
  identity: string;
  clientId: string | null;
  /** Token expiry (ms since epoch), if `authenticate` returned one. */
  exp?: number;
  subs: StoredSubscription[];
  /** Set while a snapshot streams to the socket (its open poke lives in memory only). */
  streaming?: true;
}

/** The attachment of protocol 1 deployments (subs keyed by id), read once after an upgrade of the room's code. */
interface SocketAttachmentV1 extends Omit<SocketAttachment, "v" | "subs"> {
  v: 1;
  subs: Record<string, { source: Source; args?: unknown }>;
}

/** Only the name of a source: a shape's raw args stay out of storage. */
export function sourceName(source: Source): StoredSubscription["source"] {
  return "list" in source ? { list: source.list } : { shape: source.shape };
}

/** The runtime's cap on `serializeAttachment`, minus headroom for the structured-clone envelope. */
export const MAX_ATTACHMENT_BYTES = 16 * 1024 - 512;

export function attachmentSize(attachment: SocketAttachment): number {
  return utf8Length(JSON.stringify(attachment));
}

/** The attachment of a sync socket, or null for sockets that are not ours. */
export function readAttachment(ws: WebSocket): SocketAttachment | null {
  try {
    const attachment = ws.deserializeAttachment() as SocketAttachment | SocketAttachmentV1 | null;
    if (attachment?.v === 2) return attachment;
    if (attachment?.v === 1) {
      const subs = Object.entries(attachment.subs).map(([id, sub]) => ({ id, source: sourceName(sub.source), args: sub.args }));
      return { ...attachment, v: 2, subs };
    }
    return null;
  } catch {
    return null;
  }
}

/**
 * Closes a socket without throwing: `close()` throws if the socket is already
 * closing, and a code in the reserved range (1005, 1006, 1015) is rejected.
 */
export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // already closed or closing
  }
}

export function sendQuietly(ws: WebSocket, frame: string): boolean {
  try {
    ws.send(frame);
    return true;
  } catch {
    return false; // the peer went away mid-flush; its close handler cleans up
  }
}

/** What the room keeps in memory for one sync socket while the object is awake (rebuilt from the attachment on wake). */
export interface SocketState {
  attachment: SocketAttachment;
  /** What the attachment stores, by subscription id (a Map: ids are client-chosen strings). */
  stored: Map<string, StoredSubscription>;
  subs: Map<string, ResolvedSubscription>;
  protocolErrors: number;
  /** Characters of frames sent and not yet acknowledged (in memory: zero after a wake, when nothing is in flight). */
  unacked: number;
  /**
   * Characters an `ack` may claim beyond `unacked`. An honest client may
   * still count up to one ack interval of text it received before the object
   * was evicted, which a rebuilt state no longer knows about; a fresh socket
   * has none. Beyond that, an ack claims text the room never sent: it is a
   * protocol error and does not loosen flow control.
   */
  ackCredit: number;
  /** The poke open while a snapshot streams (see snapshots.ts); flushes append to it. */
  open?: OpenPoke;
  /** Work that must wait for the open poke to end (subscribes, in arrival order). Bounded by the subscription limit. */
  waiting: Array<() => unknown>;
}

/**
 * A socket's in-memory state. `ackCredit`: 0 for a socket just accepted; one
 * ack interval for one rebuilt after a wake (see {@link SocketState.ackCredit}).
 */
export function newSocketState(attachment: SocketAttachment, ackCredit: number): SocketState {
  return { attachment, stored: new Map(), subs: new Map(), protocolErrors: 0, unacked: 0, ackCredit, waiting: [] };
}

export function errorFrame(error: ErrorBody, sub?: string): string {
  return JSON.stringify(sub === undefined ? { type: "error", error } : { type: "error", sub, error });
}

export function toLunoraError(error: unknown): LunoraError {
  if (error instanceof LunoraError) return error;
  // Uncoded exceptions are the room's bug, not the client's: report them
  // without their message, which may contain internals.
  console.error("lunora: unexpected error", error);
  return new LunoraError("INTERNAL", "internal error");
}

/** Thrown by a poke sender when the socket's unacknowledged text exceeds the bound. */
export class SlowConsumer extends Error {}

/** Answers an upgrade with a coded error frame and a close, on a socket that is never hibernated. */
export function refuse(error: LunoraError, closeCode: number): Response {
  const pair = new WebSocketPair();
  const server = pair[1];
  server.accept();
  server.send(errorFrame(error.toBody()));
  server.close(closeCode, error.code);
  return new Response(null, { status: 101, webSocket: pair[0] });
}
