/**
 * The Worker: static assets (the built React app) are served by the platform;
 * this handler sees `/parties/*` (Lunora's sync sockets) and `/rooms/*` (the
 * room's own routes), as listed in `assets.run_worker_first`.
 */
import { routeLunoraRequest } from "@lunora/db/server-kit";
import type { Env } from "./chat-room";

export { ChatRoom } from "./chat-room";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    // A sync upgrade of `/parties/chat-room/:room` → the ChatRoom object named :room; null for anything else.
    // Only the bindings listed in `parties` are reachable from the internet.
    const synced = await routeLunoraRequest(request, env, { parties: ["CHAT_ROOM"] });
    if (synced) return synced;

    const match = /^\/rooms\/([^/]+)\//.exec(new URL(request.url).pathname);
    if (match) {
      const room = decodeURIComponent(match[1]);
      return env.CHAT_ROOM.get(env.CHAT_ROOM.idFromName(room)).fetch(request);
    }
    return new Response("Not found", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
