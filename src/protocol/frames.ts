import * as v from "valibot";
import { ackSchema, subscribeSchema, unsubscribeSchema } from "./subscribe.js";
import { pushSchema } from "./push.js";
import { pokeEndSchema, pokePartSchema, pokeSchema, pokeStartSchema } from "./poke.js";
import { helloSchema } from "./connect.js";
import { errorFrameSchema } from "./error-frame.js";
import { LunoraError } from "./errors.js";

/** Every frame a client may send to a room. */
export const clientFrameSchema = v.variant("type", [subscribeSchema, unsubscribeSchema, pushSchema, ackSchema]);
export type ClientFrame = v.InferOutput<typeof clientFrameSchema>;

/** Every frame a room may send to a client. */
export const roomFrameSchema = v.variant("type", [
  helloSchema,
  pokeSchema,
  pokeStartSchema,
  pokePartSchema,
  pokeEndSchema,
  errorFrameSchema,
]);
export type RoomFrame = v.InferOutput<typeof roomFrameSchema>;

export type ParseResult<T> = { ok: true; frame: T } | { ok: false; error: LunoraError };

function parseFrame<T>(
  schema: v.GenericSchema<unknown, T>,
  data: string | ArrayBuffer | ArrayBufferView,
  maxBytes: number,
): ParseResult<T> {
  if (typeof data !== "string") {
    return { ok: false, error: new LunoraError("PROTOCOL_ERROR", "binary frames are not part of the protocol") };
  }
  // A UTF-16 length above the bound is enough to refuse without encoding: every
  // code unit is at least one UTF-8 byte, and at most three — so a frame of at
  // most maxBytes / 3 code units needs no scan at all (most frames).
  if (data.length > maxBytes || (data.length * 3 > maxBytes && utf8Length(data) > maxBytes)) {
    return {
      ok: false,
      error: new LunoraError("MESSAGE_TOO_LARGE", `frame exceeds ${maxBytes} bytes`, { maxBytes }),
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, error: new LunoraError("PROTOCOL_ERROR", "frame is not valid JSON") };
  }
  const result = v.safeParse(schema, json);
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

/** Validates a frame received by a room. Never throws. */
export function parseClientFrame(data: string | ArrayBuffer | ArrayBufferView, maxBytes: number): ParseResult<ClientFrame> {
  return parseFrame(clientFrameSchema, data, maxBytes);
}

/** Validates a frame received by a client. Never throws. */
export function parseRoomFrame(data: string | ArrayBuffer | ArrayBufferView, maxBytes: number): ParseResult<RoomFrame> {
  return parseFrame(roomFrameSchema, data, maxBytes);
}

/** Serializes a frame. One function so both halves frame identically. */
export function encodeFrame(frame: ClientFrame | RoomFrame): string {
  return JSON.stringify(frame);
}

/** UTF-8 byte length of a string without allocating an encoded copy. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      // surrogate pair → one 4-byte code point
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
