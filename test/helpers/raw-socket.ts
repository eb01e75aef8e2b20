import WebSocket from "ws";
import {
  ACK_EVERY_CHARS,
  PONG,
  PROTOCOL_VERSION,
  parseRoomFrame,
  type Binding,
  type ClientFrame,
  type Cursor,
  type MutationResult,
  type OpBlock,
  type ResolvedSubset,
  type RoomFrame,
  type Row,
  type RowKey,
  type RowOp,
} from "../../src/protocol/index.js";
import { waitFor } from "./wait-for.js";

/** A poke as the client assembles it: everything between pokeStart and pokeEnd. */
export interface AssembledPoke {
  pokeId: string;
  /**
   * The subscriptions bound on the socket once this poke is applied (bound
   * by it or earlier): protocol 4 says every one of them is at `cursor`.
   */
  subs: string[];
  /** The subscriptions this poke started (`bind`). */
  bind: Binding[];
  resets: string[];
  /** What limited subsets among `resets` resolved to (on-demand sync). */
  subsets?: ResolvedSubset[];
  /** The blocks as they came on the wire, in order. */
  blocks: OpBlock[];
  /** The blocks expanded through the bindings: one op per item and per subscription bound to its group. */
  ops: RowOp[];
  parts: number;
  cursor: Cursor;
  mutations?: MutationResult[];
}

/**
 * A protocol-level client for attacking the room: it speaks raw frames over
 * a real socket, records every frame, and assembles pokes (validating each
 * frame with the same schemas the real client uses). It keeps the socket's
 * bindings (subscription → group) the way protocol 4 asks a client to, and
 * expands each block into per-subscription ops, so a test reads
 * `{ op, sub, key, row }` whatever the grouping on the wire.
 *
 * It also applies every poke to the rows each subscription holds and throws
 * (an uncaught error, failing the test run) on a protocol violation: a
 * patch for a row the subscription does not hold, a put missing a column of
 * its binding, a patch or put naming a column outside it, a reset of a
 * subscription that is not bound.
 */
export class RawSocket {
  readonly frames: RoomFrame[] = [];
  readonly raw: string[] = [];
  readonly pokes: AssembledPoke[] = [];
  readonly errors: Extract<RoomFrame, { type: "error" }>[] = [];
  closed: { code: number; reason: string } | null = null;
  /** The open poke, with the bindings it will leave (applied at its end). */
  private open: { poke: AssembledPoke; bindings: Map<string, Binding> } | null = null;
  /** Subscription id → its binding, as of the last applied poke. */
  private bindings = new Map<string, Binding>();
  /** Rows each subscription holds, as of the last applied poke. */
  private held = new Map<string, Map<RowKey, Row>>();

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
        if (frame.sub !== undefined) {
          // An error for a subscription the open poke covers (every bound
          // one) ends that poke unapplied; the subscription is no longer served.
          if (this.open?.bindings.has(frame.sub)) {
            this.abortedPokes++;
            this.open = null;
          }
          this.bindings.delete(frame.sub);
        }
        break;
      case "poke": {
        if (this.open) throw new Error("room interleaved pokes");
        this.begin(frame);
        this.expand(frame.ops);
        this.open!.poke.parts = 1;
        this.finish(frame.cursor, frame.mutations);
        break;
      }
      case "pokeStart":
        if (this.open) throw new Error("room interleaved pokes");
        this.begin(frame);
        break;
      case "pokePart":
        if (!this.open || this.open.poke.pokeId !== frame.pokeId) throw new Error("part outside its poke");
        this.expand(frame.ops);
        this.open.poke.parts++;
        break;
      case "pokeEnd":
        if (!this.open || this.open.poke.pokeId !== frame.pokeId) throw new Error("end outside its poke");
        this.finish(frame.cursor, frame.mutations);
        break;
    }
  }

  private begin(frame: { pokeId: string; bind?: Binding[]; resets?: string[]; subsets?: ResolvedSubset[] }): void {
    const bindings = new Map(this.bindings);
    for (const binding of frame.bind ?? []) bindings.set(binding.sub, binding);
    for (const sub of frame.resets ?? []) {
      if (!bindings.has(sub)) throw new Error(`room reset "${sub}", which is not bound`);
    }
    this.open = {
      bindings,
      poke: {
        pokeId: frame.pokeId,
        subs: [],
        bind: frame.bind ?? [],
        resets: frame.resets ?? [],
        ...(frame.subsets ? { subsets: frame.subsets } : {}),
        blocks: [],
        ops: [],
        parts: 0,
        cursor: { seq: -1, epoch: "" },
      },
    };
  }

  /** Expands blocks through the open poke's bindings; groups bound to no subscription are ignored, as the protocol says. */
  private expand(blocks: OpBlock[]): void {
    const { poke, bindings } = this.open!;
    for (const block of blocks) {
      poke.blocks.push(block);
      const [group, kind, ...items] = block;
      const bound = [...bindings.values()].filter((binding) => binding.group === group);
      for (const item of items) {
        for (const binding of bound) {
          if (kind === "d") poke.ops.push({ op: "del", sub: binding.sub, key: item as RowKey });
          else {
            const row = item as Row;
            poke.ops.push({ op: kind === "p" ? "put" : "patch", sub: binding.sub, key: row[binding.key] as RowKey, row });
          }
        }
      }
    }
  }

  private finish(cursor: Cursor, mutations: MutationResult[] | undefined): void {
    const { poke, bindings } = this.open!;
    this.open = null;
    poke.cursor = cursor;
    if (mutations) poke.mutations = mutations;
    poke.subs = [...bindings.keys()];
    this.bindings = bindings;
    this.apply(poke);
    this.pokes.push(poke);
  }

  /** Applies a poke to the rows each subscription holds, checking what protocol 4 forbids. */
  private apply(poke: AssembledPoke): void {
    for (const sub of poke.resets) this.held.set(sub, new Map());
    for (const binding of poke.bind) if (!this.held.has(binding.sub)) this.held.set(binding.sub, new Map());
    for (const op of poke.ops) {
      const rows = this.held.get(op.sub)!;
      const binding = this.bindings.get(op.sub)!;
      if (op.op === "del") {
        rows.delete(op.key);
        continue;
      }
      for (const column of Object.keys(op.row)) {
        if (!binding.columns.includes(column)) throw new Error(`room sent column "${column}" outside the binding of "${op.sub}"`);
      }
      if (op.op === "put") {
        for (const column of binding.columns) {
          if (!Object.hasOwn(op.row, column)) throw new Error(`room sent a put for "${op.sub}" without column "${column}"`);
        }
        rows.set(op.key, op.row);
      } else {
        const row = rows.get(op.key);
        if (row === undefined) throw new Error(`room sent a patch of "${String(op.key)}" for "${op.sub}", which does not hold it`);
        rows.set(op.key, { ...row, ...op.row });
      }
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
    // An unsubscribed subscription is no longer bound: ops for its group are ignored from now on.
    if (typeof frame !== "string" && frame.type === "unsubscribe") {
      this.bindings.delete(frame.id);
      this.open?.bindings.delete(frame.id);
    }
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /**
   * Subscribes. `holding`: the rows the client holds at `cursor` (a resume
   * from another socket's state, as a reconnecting client does): a resume
   * patches them.
   */
  subscribe(id: string, source: Extract<ClientFrame, { type: "subscribe" }>["source"], cursor?: Cursor, holding?: Map<RowKey, Row>): void {
    if (holding) this.held.set(id, new Map(holding));
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
    return new Map(this.held.get(sub) ?? []);
  }

  /** The subscription's current binding (group, key, columns), if bound. */
  binding(sub: string): Binding | undefined {
    return this.bindings.get(sub);
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
