import * as v from "valibot";
import { ackSchema, subscribeSchema, unsubscribeSchema } from "./subscribe.js";
import { pushSchema } from "./push.js";
import { LunoraError } from "./errors.js";
import { readFrameJson, type ParseResult } from "./frame-text.js";
import type { RoomFrame } from "./room-frames.js";

// Kept importable from here, where it lived before frame-text.ts.
export { utf8Length } from "./frame-text.js";

/** Every frame a client may send to a room. */
export const clientFrameSchema = /* @__PURE__ */ v.variant("type", [subscribeSchema, unsubscribeSchema, pushSchema, ackSchema]);
export type ClientFrame = v.InferOutput<typeof clientFrameSchema>;

/**
 * Validates a frame received by a room. Never throws. Client → room frames
 * are checked with valibot: they come from untrusted clients, carry
 * open-ended parts (shape args, mutation args, subsets) and are few per
 * socket. Room → client frames are checked by hand (`parseRoomFrame` in
 * `room-frames.ts`): they are the client's hot path.
 */
export function parseClientFrame(data: string | ArrayBuffer | ArrayBufferView, maxBytes: number): ParseResult<ClientFrame> {
  const read = readFrameJson(data, maxBytes);
  if (!read.ok) return read;
  const json = read.frame;
  const result = v.safeParse(clientFrameSchema, json);
  if (!result.success) {
    const type = typeof json === "object" && json !== null ? (json as { type?: unknown }).type : undefined;
    const issue = result.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".") ?? "";
    return {
      ok: false,
      error: new LunoraError(
        "PROTOCOL_ERROR",
        `invalid ${typeof type === "string" ? `"${type.slice(0, 40)}"` : ""} frame${path ? ` at ${path}` : ""}: ${issue.message}`,
      ),
    };
  }
  return { ok: true, frame: result.output };
}

/** Serializes a frame. One function so both halves frame identically. */
export function encodeFrame(frame: ClientFrame | RoomFrame): string {
  return JSON.stringify(frame);
}
