import { LunoraError } from "./errors.js";

/** What parsing a frame gives: the frame, or the coded error to report. Never thrown. */
export type ParseResult<T> = { ok: true; frame: T } | { ok: false; error: LunoraError };

/**
 * The checks every frame passes before its content is looked at, in either
 * direction: text, not binary; within `maxBytes` of UTF-8
 * (`MESSAGE_TOO_LARGE`); valid JSON (`PROTOCOL_ERROR`). Returns the parsed
 * JSON as `frame` (still unchecked). Free of valibot: the client's room-frame
 * path uses it too.
 */
export function readFrameJson(data: string | ArrayBuffer | ArrayBufferView, maxBytes: number): ParseResult<unknown> {
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
  try {
    return { ok: true, frame: JSON.parse(data) as unknown };
  } catch {
    return { ok: false, error: new LunoraError("PROTOCOL_ERROR", "frame is not valid JSON") };
  }
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
