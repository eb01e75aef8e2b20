import { ROOM_HEADER } from "./sync-room.js";

const PARTY_PATH = /^\/parties\/([^/]+)\/([^/]+)\/?$/;

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

/**
 * Routes a client's request `/parties/:party/:room` (partysocket's default
 * URL) to the Durable Object `room` of the binding whose name is `party`
 * (exactly, or in kebab-case: binding `ChatRoom` ↔ party `chat-room`).
 * Returns `null` for any other path, or an unknown party, so the Worker's own
 * routes keep working.
 *
 * ```ts
 * export default {
 *   async fetch(request: Request, env: Env) {
 *     return (await routeLunoraRequest(request, env)) ?? new Response("Not found", { status: 404 });
 *   },
 * };
 * ```
 */
export async function routeLunoraRequest(request: Request, env: object): Promise<Response | null> {
  const match = PARTY_PATH.exec(new URL(request.url).pathname);
  if (!match) return null;
  let party: string;
  let room: string;
  try {
    party = decodeURIComponent(match[1]);
    room = decodeURIComponent(match[2]);
  } catch {
    return new Response("Bad room name", { status: 400 });
  }
  if (room.length === 0 || room.length > 256) return new Response("Bad room name", { status: 400 });
  const bindings = env as Record<string, unknown>;
  const binding = Object.keys(bindings).find((name) => isNamespace(bindings[name]) && (name === party || kebab(name) === party));
  if (binding === undefined) return null;
  const namespace = bindings[binding] as DurableObjectNamespace;
  const headers = new Headers(request.headers);
  headers.set(ROOM_HEADER, room);
  const stub = namespace.get(namespace.idFromName(room));
  return stub.fetch(new Request(request, { headers }));
}
