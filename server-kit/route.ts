import { LunoraError } from "../src/protocol/errors.js";

/** partysocket's default URL: `/parties/:party/:room`. */
export const PARTY_PATH = /^\/parties\/([^/]+)\/([^/]+)\/?$/;

/** Request headers the router never forwards: a client must not be able to speak in the router's name. */
const RESERVED_HEADER_PREFIX = "x-lunora-";

/** `ChatRoom` → `chat-room`, the party name partysocket/partyserver use for a binding. */
function kebab(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/_/g, "-")
    .toLowerCase();
}

function isNamespace(value: unknown): value is DurableObjectNamespace {
  return typeof value === "object" && value !== null && typeof (value as DurableObjectNamespace).idFromName === "function";
}

/** Options of {@link routeLunoraRequest}. */
export interface RouteOptions<Env = Record<string, unknown>> {
  /**
   * The Durable Object bindings that are Lunora rooms (classes made with
   * `withLunora`), by binding name: `["CHAT_ROOM"]`. Only these are reachable;
   * a client's URL names one by the binding name or its kebab-case form
   * (`CHAT_ROOM` ↔ `chat-room`, `ChatRoom` ↔ `chat-room`).
   *
   * Required because a Worker cannot tell from `env` which class a namespace
   * holds: routing by whatever binding the URL names would hand every
   * Durable Object of the app — including internal ones that trust their
   * callers — to anyone on the internet.
   */
  parties: ReadonlyArray<Extract<keyof Env, string>>;
}

/** Parses `/parties/:party/:room`; `"bad"` when a segment is not valid percent-encoding or the room name is out of bounds. */
export function parsePartyPath(pathname: string): { party: string; room: string } | "bad" | null {
  const match = PARTY_PATH.exec(pathname);
  if (!match) return null;
  try {
    const party = decodeURIComponent(match[1]);
    const room = decodeURIComponent(match[2]);
    if (room.length === 0 || room.length > 256) return "bad";
    return { party, room };
  } catch {
    return "bad";
  }
}

/**
 * Routes a client's sync socket — a WebSocket upgrade of
 * `/parties/:party/:room`, partysocket's default URL — to the Durable Object
 * named `room` of a binding listed in `parties`. Returns `null` for anything
 * else (other paths, other methods, plain HTTP, unlisted parties), so the
 * Worker's own routes keep working and decide what they answer.
 *
 * Only the upgrade is forwarded, with the client's URL and headers (the
 * room's `authenticate` reads its token from them) minus any `x-lunora-*`
 * header. The object decides that a request is a sync socket, and which room
 * it is, from its own name (`ctx.id.name`), never from client input.
 *
 * ```ts
 * export default {
 *   async fetch(request: Request, env: Env) {
 *     return (await routeLunoraRequest(request, env, { parties: ["CHAT_ROOM"] })) ?? new Response("Not found", { status: 404 });
 *   },
 * };
 * ```
 *
 * @throws LunoraError `INVALID_ARGS` when `parties` is missing or names something that is not a Durable Object binding of `env` (a deployment mistake, reported loudly on the first request).
 */
export async function routeLunoraRequest<Env extends object>(request: Request, env: Env, options: RouteOptions<Env>): Promise<Response | null> {
  const parties = options?.parties;
  if (!Array.isArray(parties) || parties.length === 0) {
    throw new LunoraError("INVALID_ARGS", "routeLunoraRequest(request, env, { parties: [...] }) needs the binding names of the Lunora rooms it may route to");
  }
  const parsed = parsePartyPath(new URL(request.url).pathname);
  if (parsed === null) return null;
  const bindings = env as Record<string, unknown>;
  let binding: string | undefined;
  for (const name of parties) {
    if (!Object.hasOwn(bindings, name) || !isNamespace(bindings[name])) {
      throw new LunoraError("INVALID_ARGS", `routeLunoraRequest: "${name}" is not a Durable Object binding of env`);
    }
    if (parsed !== "bad" && (name === parsed.party || kebab(name) === parsed.party)) binding = name;
  }
  if (parsed === "bad") return isSyncUpgrade(request) ? new Response("Bad room name", { status: 400 }) : null;
  if (binding === undefined || !isSyncUpgrade(request)) return null;
  const namespace = bindings[binding] as DurableObjectNamespace;
  const headers = new Headers();
  request.headers.forEach((value, name) => {
    if (!name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX)) headers.append(name, value);
  });
  const stub = namespace.get(namespace.idFromName(parsed.room));
  return stub.fetch(new Request(request.url, { method: "GET", headers }));
}

/** A sync socket is a GET with `Upgrade: websocket`; nothing else of `/parties/*` is the router's. */
export function isSyncUpgrade(request: Request): boolean {
  return request.method === "GET" && request.headers.get("Upgrade")?.toLowerCase() === "websocket";
}
