import { LunoraError } from "../src/protocol/errors.js";
import type { LunoraOptions } from "./definitions.js";
import { SyncRoom } from "./sync-room.js";

type DurableObjectLike = {
  fetch?(request: Request): Response | Promise<Response>;
  webSocketMessage?(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void>;
  webSocketClose?(ws: WebSocket, code: number, reason: string, wasClean: boolean): void | Promise<void>;
  webSocketError?(ws: WebSocket, error: unknown): void | Promise<void>;
  alarm?(alarmInfo?: unknown): void | Promise<void>;
};

// Any class whose constructor takes (ctx, env): DurableObject from
// "cloudflare:workers" or a plain class of the older style.
type DurableObjectClass = abstract new (...args: any[]) => object;

/** What `withLunora` adds to the room: `this.lunora`. */
export interface WithLunora {
  /** The room's sync engine: `flush()`, `epoch`, `resetEpoch()`, `sweep()`, `refreshSchema()`. */
  readonly lunora: SyncRoom;
}

const HANDLERS = ["fetch", "webSocketMessage", "webSocketClose", "webSocketError", "alarm"] as const;

function checkDefinitions(options: LunoraOptions): void {
  for (const [name, shape] of Object.entries(options.shapes ?? {})) {
    // A shape reads one table of this room: a table of another room (or none)
    // has no serialized cut to diff against, so it is refused here, at
    // definition time, not at the first subscription.
    if (!Object.hasOwn(options.tables, shape.table)) {
      throw new LunoraError("SHAPE_NOT_FOUND", `shape "${name}" reads table "${shape.table}", which is not a synced table of this room`);
    }
  }
  for (const [name, table] of Object.entries(options.tables)) {
    if (typeof table.key !== "string" || table.key.length === 0) throw new LunoraError("INVALID_ARGS", `table "${name}" needs a key column`);
    // A list sends whole rows of the table to any identity its read rule
    // admits: the columns it sends must be named by the room, not "all of
    // them, including the ones added next year".
    if (table.list === true && (!Array.isArray(table.columns) || table.columns.length === 0)) {
      throw new LunoraError("INVALID_ARGS", `table "${name}" is listable (list: true): declare the columns clients may receive with columns: [...]`);
    }
  }
}

/**
 * Turns any Durable Object class into a Lunora sync server, keeping what it
 * already does: its own `fetch` routes, its own WebSockets, tables and alarm.
 *
 * Sync upgrades (from `routeLunoraRequest`, or any `/parties/:party/:room`
 * upgrade) and sync sockets (tagged `lunora`) are handled by Lunora; every
 * other request and socket reaches the class's own handlers. After each
 * handler returns, changes its code wrote with plain `sql.exec` are flushed
 * to subscribers.
 *
 * ```ts
 * export class ChatRoom extends withLunora(DurableObject<Env>, {
 *   tables: { messages: { key: "id" } },
 *   shapes: { messagesByChannel: defineShape({ table: "messages", where: (ctx) => ({ channelId: ctx.room }) }) },
 *   authenticate: async (request) => verify(new URL(request.url).searchParams.get("token")),
 * }) {
 *   async fetch(request: Request) { … the room's own routes … }
 * }
 * ```
 */
export function withLunora<Base extends DurableObjectClass, const O extends LunoraOptions>(Base: Base, options: O) {
  checkDefinitions(options);

  abstract class LunoraDurableObject extends Base implements WithLunora {
    readonly lunora: SyncRoom;

    constructor(...args: any[]) {
      super(...(args as [DurableObjectState, any]));
      const [ctx, env] = args as [DurableObjectState, unknown];
      this.lunora = new SyncRoom(ctx, env, options);
      // The room's class extends this one, so its own `fetch` & co. override
      // ours on the prototype chain. Wrap whatever the final object has as
      // own properties, so sync traffic is dispatched first and the room's
      // handlers still run for everything else.
      const self = this as unknown as Record<string, unknown>;
      for (const name of HANDLERS) {
        const own = self[name] as ((...a: unknown[]) => unknown) | undefined;
        const mine = (LunoraDurableObject.prototype as unknown as Record<string, unknown>)[name];
        if (own !== undefined && own !== mine) {
          self[name] = wrapHandler(name, this.lunora, own.bind(this));
        }
      }
    }

    async fetch(request: Request): Promise<Response> {
      if (this.lunora.isSyncRequest(request)) return this.lunora.acceptSocket(request);
      return new Response("Not found", { status: 404 });
    }

    async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
      if (this.lunora.ownsSocket(ws)) return this.lunora.onMessage(ws, message);
    }

    async webSocketClose(ws: WebSocket, code: number, _reason: string, _wasClean: boolean): Promise<void> {
      if (this.lunora.ownsSocket(ws)) this.lunora.onClose(ws, code);
    }

    async webSocketError(ws: WebSocket, _error: unknown): Promise<void> {
      if (this.lunora.ownsSocket(ws)) this.lunora.onClose(ws, 1011);
    }

    async alarm(): Promise<void> {
      this.lunora.flush();
    }
  }

  return LunoraDurableObject as unknown as {
    new (ctx: DurableObjectState, env: ConstructorParameters<Base>[1]): InstanceType<Base> & WithLunora;
    /** The options, for `InferLunoraApi<typeof Room.lunora>`. */
    readonly lunoraOptions: O;
  } & Omit<Base, "prototype">;
}

/**
 * Wraps one of the room's own handlers: sync traffic goes to the engine; for
 * everything else the capture triggers are made to exist before the room's
 * code writes, and whatever it wrote is flushed to subscribers afterwards.
 */
function wrapHandler(name: (typeof HANDLERS)[number], lunora: SyncRoom, own: (...args: any[]) => unknown) {
  const forLunora = (args: any[]): (() => unknown) | undefined => {
    if (name === "fetch") return lunora.isSyncRequest(args[0]) ? () => lunora.acceptSocket(args[0]) : undefined;
    if (name === "alarm" || !lunora.ownsSocket(args[0])) return undefined;
    if (name === "webSocketMessage") return () => lunora.onMessage(args[0], args[1]);
    return () => lunora.onClose(args[0], name === "webSocketClose" ? args[1] : 1011);
  };
  return async (...args: any[]) => {
    const sync = forLunora(args);
    if (sync) return sync();
    lunora.ensureReady();
    try {
      return await own(...args);
    } finally {
      lunora.flush();
    }
  };
}
