/**
 * Output to sync sockets. Every frame the room sends to a sync socket goes
 * through one `SocketOutput`, so flow control counts exactly what the client
 * counts (all text but the runtime's pong); pokes are refused past the
 * slow-consumer bound instead of piling up in the runtime's buffer; and the
 * attachment (what survives hibernation) is written back whenever a
 * socket's subscriptions change.
 */
import { CLOSE_CODES, LunoraError, type OpKind } from "../src/protocol/index.js";
import type { PokeWriter } from "./poke-writer.js";
import { SlowConsumer, closeQuietly, errorFrame, sendQuietly, toLunoraError, type SocketState } from "./socket-state.js";
import type { ResolvedSubscription } from "./subscriptions.js";

/** Sends one frame of a poke (throws `SlowConsumer` past the bound). */
export type Send = (frame: string) => void;

/** The bounds output enforces (from `LunoraOptions.limits`, defaults applied). */
export interface OutputLimits {
  maxUnackedChars: number;
  maxProtocolErrors: number;
}

/** Counters `SyncRoom.stats` exposes. */
export interface OutputStats {
  pokeFramesSent: number;
  slowConsumersClosed: number;
}

export class SocketOutput {
  private pokeCounter = 0;

  constructor(
    private readonly limits: OutputLimits,
    private readonly stats: OutputStats,
    /** Drops the room's in-memory state of a socket it closed. */
    private readonly forget: (ws: WebSocket) => void,
  ) {}

  /** A frame outside pokes (`hello`, `error`): counted for flow control, never refused. */
  sendFrame(ws: WebSocket, state: SocketState, frame: string): boolean {
    state.unacked += frame.length;
    return sendQuietly(ws, frame);
  }

  /**
   * A frame sender for pokes to one socket, with flow control: the runtime
   * buffers whatever a slow reader has not taken, without limit, so the room
   * counts what the client has not acknowledged and refuses to send more
   * past the bound (the caller closes the socket with 4009; the client
   * resumes from its cursor).
   */
  pokeSender(ws: WebSocket, state: SocketState): Send {
    return (frame: string) => {
      if (state.unacked > this.limits.maxUnackedChars) {
        throw new SlowConsumer();
      }
      ws.send(frame);
      state.unacked += frame.length;
      this.stats.pokeFramesSent++;
    };
  }

  closeSlowConsumer(ws: WebSocket): void {
    this.stats.slowConsumersClosed++;
    sendQuietly(ws, errorFrame({ code: "QUOTA_EXCEEDED", message: "the client fell too far behind reading; resume from the cursor" }));
    closeQuietly(ws, CLOSE_CODES.SLOW_CONSUMER, "slow consumer");
    this.forget(ws);
  }

  /** Closes the socket if its token expired. Returns whether it may still be served. */
  checkExpiry(ws: WebSocket, state: SocketState): boolean {
    if (state.attachment.exp !== undefined && Date.now() >= state.attachment.exp) {
      sendQuietly(ws, errorFrame({ code: "UNAUTHENTICATED", message: "token expired" }));
      closeQuietly(ws, CLOSE_CODES.UNAUTHENTICATED, "token expired");
      this.forget(ws);
      return false;
    }
    return true;
  }

  /** A bad frame: a coded error; past the bound the socket is closed (4008). */
  protocolError(ws: WebSocket, state: SocketState, error: LunoraError): void {
    this.sendFrame(ws, state, errorFrame(error.toBody()));
    state.protocolErrors++;
    if (state.protocolErrors >= this.limits.maxProtocolErrors) {
      closeQuietly(ws, CLOSE_CODES.POLICY, "too many protocol errors");
    }
  }

  /** Writes the socket's subscriptions to its attachment (which survives hibernation). */
  saveAttachment(ws: WebSocket, state: SocketState): void {
    state.attachment.subs = [...state.stored.values()];
    try {
      ws.serializeAttachment(state.attachment);
    } catch {
      // closed
    }
  }

  /**
   * Ends a subscription the room cannot serve (e.g. a row larger than a
   * frame). The error frame also tells the client to drop a poke for it that
   * is still open.
   */
  endSubscription(ws: WebSocket, state: SocketState, id: string, error: unknown): void {
    state.stored.delete(id);
    state.subs.delete(id);
    this.saveAttachment(ws, state);
    this.sendFrame(ws, state, errorFrame(toLunoraError(error).toBody(), id));
  }

  nextPokeId(seq: number): string {
    this.pokeCounter = (this.pokeCounter + 1) % 1_000_000;
    return `${seq.toString(36)}.${this.pokeCounter.toString(36)}`;
  }
}

/** Adds one op of `sub`'s group to a poke, or throws `MESSAGE_TOO_LARGE` when the item cannot fit in any frame. */
export function addOp(writer: PokeWriter, sub: ResolvedSubscription, kind: OpKind, item: string, bytes?: number): void {
  if (!writer.add(sub.groupId, kind, item, bytes)) {
    throw new LunoraError("MESSAGE_TOO_LARGE", `a row of "${sub.table}" is larger than a frame`);
  }
}
