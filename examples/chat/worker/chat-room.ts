/**
 * The chat room as it was before Lunora: a Durable Object with its own HTTP
 * routes (join, announce), its own WebSocket feature (a typing indicator that
 * is never stored) and its own tables, all written with plain `sql.exec`.
 *
 * Adding sync took one line: `extends withLunora(DurableObject<Env>, lunora)`.
 * The routes below did not change; Lunora's triggers capture their writes to
 * `channels`, `users` and `messages`, so those reach every subscribed client
 * live. The `announcements` table is not listed in `lunora.tables` and stays
 * private to the room.
 */
import { DurableObject } from "cloudflare:workers";
import { withLunora } from "@lunora/db/server-kit";
import { LOBBY, USER_NAME } from "../shared/names";
import { lunora, nextMessageTime } from "./lunora";

export interface Env {
  CHAT_ROOM: DurableObjectNamespace<ChatRoom>;
}

/** Channels the lobby starts with. */
const DEFAULT_CHANNELS = [
  { id: "general", name: "general" },
  { id: "random", name: "random" },
];

/** Tag of the room's own typing-indicator sockets (sync sockets carry Lunora's tag). */
const TYPING = "typing";

export class ChatRoom extends withLunora(DurableObject<Env>, lunora) {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Runs on every wake, so it stays cheap: CREATE ... IF NOT EXISTS only.
    const sql = ctx.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, name TEXT NOT NULL, createdBy TEXT NOT NULL, createdAt INTEGER NOT NULL)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL, joinedAt INTEGER NOT NULL)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS messages (
      id TEXT PRIMARY KEY, channelId TEXT NOT NULL, authorId TEXT NOT NULL, text TEXT NOT NULL,
      createdAt INTEGER NOT NULL, editedAt INTEGER, kind TEXT NOT NULL DEFAULT 'user')`);
    sql.exec(`CREATE TABLE IF NOT EXISTS announcements (n INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, at INTEGER NOT NULL)`);
  }

  /** The room's own routes: `/rooms/:room/join`, `/rooms/:room/announce`, `/rooms/:room/typing`. */
  async fetch(request: Request): Promise<Response> {
    const match = /^\/rooms\/([^/]+)\/([a-z]+)$/.exec(new URL(request.url).pathname);
    if (!match) return new Response("Not found", { status: 404 });
    const room = decodeURIComponent(match[1]);
    switch (`${request.method} ${match[2]}`) {
      case "POST join":
        return room === LOBBY ? this.join(request) : new Response("join the lobby", { status: 404 });
      case "POST announce":
        return this.announce(room, request);
      case "GET typing":
        return this.acceptTypingSocket(request);
      default:
        return new Response("Not found", { status: 404 });
    }
  }

  /**
   * Signs a user in (lobby only): records them in `users` and answers with a
   * token. DEMO ONLY: the token is the user name itself; see `authenticate`.
   */
  private async join(request: Request): Promise<Response> {
    const { name } = (await request.json().catch(() => ({}))) as { name?: unknown };
    if (typeof name !== "string" || !USER_NAME.test(name.trim())) {
      return Response.json({ error: "a name is 1-32 letters, digits, - or _" }, { status: 400 });
    }
    const id = name.trim().toLowerCase();
    const now = Date.now();
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      for (const channel of DEFAULT_CHANNELS) {
        sql.exec(`INSERT OR IGNORE INTO channels (id, name, createdBy, createdAt) VALUES (?, ?, 'system', ?)`, channel.id, channel.name, now);
      }
      sql.exec(`INSERT OR IGNORE INTO users (id, name, joinedAt) VALUES (?, ?, ?)`, id, name.trim(), now);
    });
    return Response.json({ userId: id, token: id });
  }

  /** An operator's announcement: a system message in this channel, written with plain SQL. */
  private async announce(room: string, request: Request): Promise<Response> {
    const { text } = (await request.json().catch(() => ({}))) as { text?: unknown };
    if (typeof text !== "string" || text.trim() === "" || text.length > 2000) {
      return Response.json({ error: "text is required (at most 2000 characters)" }, { status: 400 });
    }
    const id = crypto.randomUUID();
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      sql.exec(`INSERT INTO announcements (text, at) VALUES (?, ?)`, text, Date.now());
      sql.exec(
        `INSERT INTO messages (id, channelId, authorId, text, createdAt, kind) VALUES (?, ?, 'system', ?, ?, 'system')`,
        id,
        room,
        text.trim(),
        nextMessageTime(sql),
      );
    });
    return Response.json({ id }, { status: 201 });
  }

  /** The typing indicator: a WebSocket of the room's own, hibernatable, never stored. */
  private acceptTypingSocket(request: Request): Response {
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket", { status: 426 });
    const user = new URL(request.url).searchParams.get("user") ?? "";
    if (!USER_NAME.test(user)) return new Response("bad user", { status: 400 });
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1], [TYPING]);
    pair[1].serializeAttachment({ user: user.toLowerCase() });
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** Typing sockets only: Lunora dispatches its own sockets before this runs. */
  async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (message !== "typing") return;
    const { user } = ws.deserializeAttachment() as { user: string };
    const frame = JSON.stringify({ type: "typing", user });
    for (const peer of this.ctx.getWebSockets(TYPING)) {
      if (peer === ws) continue;
      try {
        peer.send(frame);
      } catch {
        // A peer that is closing misses one indicator; nothing to recover.
      }
    }
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    try {
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }
}
