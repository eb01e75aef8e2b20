import WebSocket from "ws";
import { ACK_EVERY_CHARS, PONG, PROTOCOL_VERSION, parseRoomFrame, type ClientFrame, type Cursor, type MutationResult, type ResolvedSubset, type RoomFrame, type RowOp } from "../../src/protocol/index.js";
import { waitFor } from "./wait-for.js";

/** A poke as the client assembles it: everything between pokeStart and pokeEnd. */
export interface AssembledPoke {
  pokeId: string;
  subs: string[];
  resets: string[];
  /** What limited subsets among `resets` resolved to (on-demand sync). */
  subsets?: ResolvedSubset[];
  ops: RowOp[];
  parts: number;
  cursor: Cursor;
  mutations?: MutationResult[];
}

/**
 * A protocol-level client for attacking the room: it speaks raw frames over
 * a real socket, records every frame, and assembles pokes (validating each
 * frame with the same schemas the real client uses).
 */
export class RawSocket {
  readonly frames: RoomFrame[] = [];
  readonly raw: string[] = [];
  readonly pokes: AssembledPoke[] = [];
  readonly errors: Extract<RoomFrame, { type: "error" }>[] = [];
  closed: { code: number; reason: string } | null = null;
  private open: AssembledPoke | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => this.onMessage(data.toString()));
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
  }

  /** Wraps a socket opened by the test itself (e.g. with extra headers). */
  static wrap(ws: WebSocket): RawSocket {
    return new RawSocket(ws);
  }

  static async connect(
    host: string,
    room: string,
    { token = "user:alice", party = "room", version = PROTOCOL_VERSION, clientId }: { token?: string | null; party?: string; version?: number; clientId?: string } = {},
  ): Promise<RawSocket> {
    const query = new URLSearchParams({ v: String(version) });
    if (token !== null) query.set("token", token);
    if (clientId) query.set("cid", clientId);
    const ws = new WebSocket(`ws://${host}/parties/${party}/${encodeURIComponent(room)}?${query}`);
    const socket = new RawSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return socket;
  }

  pongs = 0;
  abortedPokes = 0;

  /** Characters received since the last `ack` (a well-behaved client acknowledges; see ACK_EVERY_CHARS). */
  private unacked = 0;
  acknowledge = true;

  private onMessage(text: string): void {
    if (text === PONG) {
      this.pongs++;
      return;
    }
    this.raw.push(text);
    this.unacked += text.length;
    if (this.acknowledge && this.unacked >= ACK_EVERY_CHARS) {
      this.send({ type: "ack", received: this.unacked });
      this.unacked = 0;
    }
    const parsed = parseRoomFrame(text, 2_000_000);
    if (!parsed.ok) throw new Error(`room sent an invalid frame: ${parsed.error.message}: ${text.slice(0, 200)}`);
    const frame = parsed.frame;
    this.frames.push(frame);
    switch (frame.type) {
      case "error":
        this.errors.push(frame);
        // An error for a subscription the open poke covers ends that poke unapplied.
        if (frame.sub !== undefined && this.open?.subs.includes(frame.sub)) {
          this.abortedPokes++;
          this.open = null;
        }
        break;
      case "poke":
        if (this.open) throw new Error("room interleaved pokes");
        this.pokes.push({
          pokeId: frame.pokeId,
          subs: frame.subs,
          resets: frame.resets ?? [],
          ...(frame.subsets ? { subsets: frame.subsets } : {}),
          ops: frame.ops,
          parts: 1,
          cursor: frame.cursor,
          ...(frame.mutations ? { mutations: frame.mutations } : {}),
        });
        break;
      case "pokeStart":
        if (this.open) throw new Error("room interleaved pokes");
        this.open = {
          pokeId: frame.pokeId,
          subs: frame.subs,
          resets: frame.resets ?? [],
          ...(frame.subsets ? { subsets: frame.subsets } : {}),
          ops: [],
          parts: 0,
          cursor: { seq: -1, epoch: "" },
        };
        break;
      case "pokePart":
        if (!this.open || this.open.pokeId !== frame.pokeId) throw new Error("part outside its poke");
        this.open.ops.push(...frame.ops);
        this.open.parts++;
        break;
      case "pokeEnd":
        if (!this.open || this.open.pokeId !== frame.pokeId) throw new Error("end outside its poke");
        this.open.cursor = frame.cursor;
        if (frame.mutations) this.open.mutations = frame.mutations;
        this.pokes.push(this.open);
        this.open = null;
        break;
    }
  }

  /** Acknowledges everything received so far (after a pause with `acknowledge = false`). */
  ackNow(): void {
    if (this.unacked === 0) return;
    this.send({ type: "ack", received: this.unacked });
    this.unacked = 0;
  }

  /** Characters received and not yet acknowledged. */
  get unacknowledged(): number {
    return this.unacked;
  }

  send(frame: ClientFrame | string): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  subscribe(id: string, source: Extract<ClientFrame, { type: "subscribe" }>["source"], cursor?: Cursor): void {
    this.send(cursor ? { type: "subscribe", id, source, cursor } : { type: "subscribe", id, source });
  }

  /** Waits for the first poke at index `after` or later that covers `sub` (default: the first ever). */
  async nextPoke(sub: string, after = 0): Promise<AssembledPoke> {
    return waitFor(() => this.pokes.slice(after).find((poke) => poke.subs.includes(sub)), { message: `a poke for ${sub}` });
  }

  async nextError(after = this.errors.length): Promise<Extract<RoomFrame, { type: "error" }>> {
    return waitFor(() => this.errors[after], { message: "an error frame" });
  }

  /** The rows a subscription holds after applying every poke so far. */
  rows(sub: string): Map<string | number, Record<string, unknown>> {
    const rows = new Map<string | number, Record<string, unknown>>();
    for (const poke of this.pokes) {
      if (!poke.subs.includes(sub)) continue;
      if (poke.resets.includes(sub)) rows.clear();
      for (const op of poke.ops) {
        if (op.sub !== sub) continue;
        if (op.op === "put") rows.set(op.key, op.row);
        else rows.delete(op.key);
      }
    }
    return rows;
  }

  cursor(sub: string): Cursor | undefined {
    return this.pokes.filter((poke) => poke.subs.includes(sub)).at(-1)?.cursor;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once("close", () => resolve());
      this.ws.close();
    });
  }
}
