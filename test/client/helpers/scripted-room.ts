import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { PING, PONG, PROTOCOL_VERSION, type Cursor, type MutationResult, type RowOp } from "../../../src/protocol/index.js";
import { eventually } from "./eventually.js";

/** A frame the client sent, parsed. */
export type SentFrame = { type: string; id?: string; cursor?: Cursor; source?: unknown; [key: string]: unknown };

export interface PokeScript {
  pokeId: string;
  subs: string[];
  resets?: string[];
  /** Each entry becomes one `pokePart` frame. */
  parts?: RowOp[][];
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
      this.frames.push(JSON.parse(text) as SentFrame);
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

  pokeStart(script: Pick<PokeScript, "pokeId" | "subs" | "resets">): void {
    this.send({ type: "pokeStart", pokeId: script.pokeId, subs: script.subs, ...(script.resets ? { resets: script.resets } : {}) });
  }

  pokePart(pokeId: string, ops: RowOp[]): void {
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
