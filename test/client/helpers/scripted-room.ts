import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { PING, PONG, PROTOCOL_VERSION, type Binding, type Cursor, type MutationResult, type OpBlock, type ResolvedSubset } from "../../../src/protocol/index.js";
import { eventually } from "./eventually.js";

/** A frame the client sent, parsed. */
export type SentFrame = { type: string; id?: string; cursor?: Cursor; source?: unknown; [key: string]: unknown };

/**
 * The scripted room's convention: each subscription reads its own group,
 * named after it (a real room derives groups from what subscriptions read).
 */
export const groupOf = (sub: string): string => `g.${sub}`;

/** The binding the scripted room sends for `sub`: group {@link groupOf}, key `id`, and `columns` (default: only `id`). */
export const bindingOf = (sub: string, columns: string[] = ["id"]): Binding => ({ sub, group: groupOf(sub), key: "id", columns });

export interface PokeScript {
  pokeId: string;
  /**
   * The subscriptions the poke is for. Those whose latest `subscribe` this
   * socket has not answered yet are bound by it (with {@link bindingOf} and
   * `columns`), as a room binds a subscription in the poke answering it.
   */
  subs?: string[];
  /** Explicit bindings, sent as given (instead of those derived from `subs`). */
  bind?: Binding[];
  /** Columns of the bindings derived from `subs` (default: only `id`). */
  columns?: string[];
  resets?: string[];
  subsets?: ResolvedSubset[];
  /** Each entry becomes one `pokePart` frame. */
  parts?: OpBlock[][];
  cursor: Cursor;
  mutations?: MutationResult[];
}

/** One accepted socket, driven by the test. */
export class RoomSocket {
  readonly url: URL;
  readonly party: string;
  readonly room: string;
  /** Every non-ping frame the client sent, parsed, in order. */
  readonly frames: SentFrame[] = [];
  pings = 0;
  closed = false;
  /** Subscriptions whose latest `subscribe` no poke has bound yet. */
  readonly #unanswered = new Set<string>();
  readonly #ws: WebSocket;

  constructor(ws: WebSocket, rawUrl: string, answerPings: () => boolean) {
    this.#ws = ws;
    this.url = new URL(rawUrl, "http://127.0.0.1");
    const [, , party = "", room = ""] = this.url.pathname.split("/");
    this.party = party;
    this.room = room;
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? "" : data.toString();
      if (text === PING) {
        this.pings++;
        if (answerPings()) ws.send(PONG);
        return;
      }
      const frame = JSON.parse(text) as SentFrame;
      this.frames.push(frame);
      if (frame.type === "subscribe") this.#unanswered.add(frame.id!);
      if (frame.type === "unsubscribe") this.#unanswered.delete(frame.id!);
    });
    ws.on("close", () => {
      this.closed = true;
    });
  }

  get query(): URLSearchParams {
    return this.url.searchParams;
  }

  /** `subscribe` frames received so far. */
  get subscribes(): SentFrame[] {
    return this.frames.filter((frame) => frame.type === "subscribe");
  }

  send(frame: object | string | Buffer): void {
    this.#ws.send(typeof frame === "string" || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  hello(epoch = "epoch-1"): void {
    this.send({ type: "hello", protocolVersion: PROTOCOL_VERSION, room: this.room, epoch });
  }

  /** The `bind` of a poke for `script`: explicit, or the unanswered subscriptions among `subs` (now answered). */
  #bindFor(script: Pick<PokeScript, "subs" | "bind" | "columns">): Binding[] | undefined {
    if (script.bind) return script.bind;
    const bind: Binding[] = [];
    for (const sub of script.subs ?? []) {
      if (!this.#unanswered.delete(sub)) continue;
      bind.push(bindingOf(sub, script.columns));
    }
    return bind.length > 0 ? bind : undefined;
  }

  pokeStart(script: Pick<PokeScript, "pokeId" | "subs" | "bind" | "columns" | "resets" | "subsets">): void {
    const bind = this.#bindFor(script);
    this.send({
      type: "pokeStart",
      pokeId: script.pokeId,
      ...(bind ? { bind } : {}),
      ...(script.resets ? { resets: script.resets } : {}),
      ...(script.subsets ? { subsets: script.subsets } : {}),
    });
  }

  /** A whole poke as one `poke` frame (`ops` instead of `parts`). */
  pokeFrame(script: Omit<PokeScript, "parts"> & { ops?: OpBlock[] }): void {
    const bind = this.#bindFor(script);
    this.send({
      type: "poke",
      pokeId: script.pokeId,
      ...(bind ? { bind } : {}),
      ...(script.resets ? { resets: script.resets } : {}),
      ...(script.subsets ? { subsets: script.subsets } : {}),
      ops: script.ops ?? [],
      cursor: script.cursor,
      ...(script.mutations ? { mutations: script.mutations } : {}),
    });
  }

  pokePart(pokeId: string, ops: OpBlock[]): void {
    this.send({ type: "pokePart", pokeId, ops });
  }

  pokeEnd(pokeId: string, cursor: Cursor, mutations?: MutationResult[]): void {
    this.send({ type: "pokeEnd", pokeId, cursor, ...(mutations ? { mutations } : {}) });
  }

  /** A whole poke, back to back. */
  poke(script: PokeScript): void {
    this.pokeStart(script);
    for (const ops of script.parts ?? []) this.pokePart(script.pokeId, ops);
    this.pokeEnd(script.pokeId, script.cursor, script.mutations);
  }

  /** Waits until the client sent `subscribe` number `index` (0-based) on this socket and returns it. */
  async subscribeFrame(index = 0): Promise<SentFrame> {
    return eventually(() => {
      const frame = this.subscribes[index];
      if (!frame) throw new Error(`no subscribe #${index} yet (got ${this.subscribes.length})`);
      return frame;
    });
  }

  close(code?: number, reason?: string): void {
    this.#ws.close(code, reason);
  }

  /** Drops the TCP connection without a close handshake (like a crashed room). */
  terminate(): void {
    this.#ws.terminate();
  }
}

/**
 * A raw WebSocket server on 127.0.0.1 that plays a room from a script. It
 * accepts every socket and does nothing by itself except answer pings (unless
 * told not to): the test sends `hello`, pokes and errors.
 */
export class ScriptedRoom {
  readonly sockets: RoomSocket[] = [];
  answerPings = true;
  readonly #server: WebSocketServer;

  private constructor(server: WebSocketServer) {
    this.#server = server;
    server.on("connection", (ws, request) => {
      this.sockets.push(new RoomSocket(ws, request.url ?? "/", () => this.answerPings));
    });
  }

  static async start(): Promise<ScriptedRoom> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", reject);
    });
    return new ScriptedRoom(server);
  }

  get host(): string {
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Waits for socket number `index` (0-based, in accept order). */
  async socket(index = 0): Promise<RoomSocket> {
    return eventually(() => {
      const socket = this.sockets[index];
      if (!socket) throw new Error(`no socket #${index} yet (got ${this.sockets.length})`);
      return socket;
    });
  }

  /** Open sockets of a room. */
  openSockets(room?: string): RoomSocket[] {
    return this.sockets.filter((socket) => !socket.closed && (room === undefined || socket.room === room));
  }

  async stop(): Promise<void> {
    for (const client of this.#server.clients) client.terminate();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
