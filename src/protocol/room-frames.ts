import { LunoraError } from "./errors.js";
import { readFrameJson, type ParseResult } from "./frame-text.js";
import type { Hello } from "./connect.js";
import type { ErrorFrame } from "./error-frame.js";
import type { Poke, PokeEnd, PokePart, PokeStart } from "./poke.js";

/** Every frame a room may send to a client. */
export type RoomFrame = Hello | Poke | PokeStart | PokePart | PokeEnd | ErrorFrame;

/**
 * Validates a frame received by a client. Never throws.
 *
 * Room → client frames are a small fixed grammar (`hello`, `error` and the
 * poke frames) and every row change a client receives passes here, so they
 * are checked by hand, in one pass over the parsed JSON that allocates
 * nothing per op while the frame is valid: the envelope's fields and their types
 * (unknown fields refused), each op block `[group, kind, ...items]` with
 * kind `"p"`, `"u"` or `"d"`, rows as JSON objects and keys as strings or
 * finite numbers. (A valibot schema did the same at several times the cost
 * per op and kept valibot in every client's bundle.) Whether a row fits its
 * subscription's columns is the poke buffer's check: it needs the bindings.
 *
 * Failures are `PROTOCOL_ERROR` naming the frame type and the path of the
 * first bad value (`invalid "poke" frame at ops.0.3: expected a row …`);
 * too large a frame is `MESSAGE_TOO_LARGE`, as for every frame.
 */
export function parseRoomFrame(data: string | ArrayBuffer | ArrayBufferView, maxBytes: number): ParseResult<RoomFrame> {
  const read = readFrameJson(data, maxBytes);
  if (!read.ok) return read;
  const json = read.frame;
  try {
    return { ok: true, frame: checkRoomFrame(json) };
  } catch (thrown) {
    if (!(thrown instanceof InvalidFrame)) throw thrown;
    const type = isJsonObject(json) && typeof json.type === "string" ? `"${json.type.slice(0, 40)}" ` : "";
    return {
      ok: false,
      error: new LunoraError("PROTOCOL_ERROR", `invalid ${type}frame${thrown.path ? ` at ${thrown.path}` : ""}: ${thrown.message}`),
    };
  }
}

/** The first problem found; thrown only on the failure path, so a valid frame builds no path string per op. */
class InvalidFrame {
  constructor(
    readonly path: string,
    readonly message: string,
  ) {}
}

type JsonObject = Record<string, unknown>;
/** An object or array of the frame, and its path in the frame (`""`: the frame itself). */
type Holder = JsonObject | unknown[];
/** Checks `holder[key]`; the value's path (`at(path, key)`) is built only when it fails. */
type Check = (holder: Holder, key: string | number, path: string) => void;

// Kept small on purpose: this module is in every client's bundle.
const at = (path: string, key: string | number): string => (path ? `${path}.${key}` : String(key));
const fail = (path: string, expected: string): never => {
  throw new InvalidFrame(path, `expected ${expected}`);
};
const valueAt = (holder: Holder, key: string | number): unknown => (holder as JsonObject)[key];
const object = (holder: Holder, key: string | number, path: string): JsonObject => {
  const value = valueAt(holder, key);
  return isJsonObject(value) ? value : fail(at(path, key), "an object");
};
const array = (holder: Holder, key: string | number, path: string): unknown[] => {
  const value = valueAt(holder, key);
  return Array.isArray(value) ? value : fail(at(path, key), "an array");
};
const string: Check = (holder, key, path) => {
  if (typeof valueAt(holder, key) !== "string") fail(at(path, key), "a string");
};
const number: Check = (holder, key, path) => {
  if (typeof valueAt(holder, key) !== "number") fail(at(path, key), "a number");
};
/** Names on the wire (ids, groups, columns) are 1–128 characters. */
const name: Check = (holder, key, path) => {
  const value = valueAt(holder, key);
  if (typeof value !== "string" || value.length < 1 || value.length > 128) fail(at(path, key), "a name of 1–128 characters");
};
/** An array whose every item passes `check`; optional ones may be absent. */
const list = (holder: Holder, key: string, path: string, check: Check, optional?: boolean): void => {
  if (optional && valueAt(holder, key) === undefined) return;
  const items = array(holder, key, path);
  const itemsPath = at(path, key);
  for (let i = 0; i < items.length; i++) check(items, i, itemsPath);
};
/** No field of `value` (at `path`) is outside `allowed`, as valibot's `strictObject` did. */
const onlyFields = (value: JsonObject, allowed: ReadonlySet<string>, path: string): void => {
  for (const field in value) if (!allowed.has(field)) throw new InvalidFrame(at(path, field.slice(0, 40)), "unknown field");
};
/** An object with no field outside `allowed`. */
const fields = (holder: Holder, key: string | number, path: string, allowed: ReadonlySet<string>): JsonObject => {
  const value = object(holder, key, path);
  onlyFields(value, allowed, at(path, key));
  return value;
};

/** Each frame's fields: anything else is refused. */
const FIELDS: Record<string, ReadonlySet<string>> = {
  hello: new Set(["type", "protocolVersion", "room", "epoch"]),
  error: new Set(["type", "sub", "error"]),
  poke: new Set(["type", "pokeId", "bind", "resets", "subsets", "ops", "cursor", "mutations"]),
  pokeStart: new Set(["type", "pokeId", "bind", "resets", "subsets"]),
  pokePart: new Set(["type", "pokeId", "ops"]),
  pokeEnd: new Set(["type", "pokeId", "cursor", "mutations"]),
};
const BINDING_FIELDS: ReadonlySet<string> = new Set(["sub", "group", "key", "columns"]);
const RESOLVED_FIELDS: ReadonlySet<string> = new Set(["sub", "where"]);
const APPLIED_FIELDS: ReadonlySet<string> = new Set(["clientSeq", "status", "result"]);
const FAILED_FIELDS: ReadonlySet<string> = new Set(["clientSeq", "status", "error"]);

function checkRoomFrame(json: unknown): RoomFrame {
  const type = isJsonObject(json) ? json.type : fail("", "an object");
  const allowed = typeof type === "string" && Object.prototype.hasOwnProperty.call(FIELDS, type) ? FIELDS[type] : undefined;
  if (!allowed) throw new InvalidFrame("type", typeof type === "string" ? `unknown frame type "${type.slice(0, 40)}"` : "expected a frame type");
  const frame = json as JsonObject;
  onlyFields(frame, allowed, "");
  if (type === "hello") {
    number(frame, "protocolVersion", "");
    string(frame, "room", "");
    name(frame, "epoch", "");
  } else if (type === "error") {
    if (frame.sub !== undefined) name(frame, "sub", "");
    errorBody(frame, "error", "");
  } else {
    name(frame, "pokeId", "");
    // `bind`, `resets`, `subsets`: the fields of `pokeStart` (also in `poke`).
    if (type === "poke" || type === "pokeStart") {
      list(frame, "bind", "", binding, true);
      list(frame, "resets", "", name, true);
      list(frame, "subsets", "", resolvedSubset, true);
    }
    if (type === "poke" || type === "pokePart") list(frame, "ops", "", block);
    // `cursor`, `mutations`: the fields of `pokeEnd` (also in `poke`).
    if (type === "poke" || type === "pokeEnd") {
      const { seq, epoch } = object(frame, "cursor", "");
      if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) fail("cursor.seq", "an integer ≥ 0");
      if (typeof epoch !== "string" || epoch.length < 1 || epoch.length > 64) fail("cursor.epoch", "1–64 characters");
      list(frame, "mutations", "", mutationResult, true);
    }
  }
  return frame as unknown as RoomFrame;
}

const binding: Check = (holder, key, path) => {
  const value = fields(holder, key, path, BINDING_FIELDS);
  const here = at(path, key);
  name(value, "sub", here);
  name(value, "group", here);
  name(value, "key", here);
  list(value, "columns", here, name);
};

const resolvedSubset: Check = (holder, key, path) => name(fields(holder, key, path, RESOLVED_FIELDS), "sub", at(path, key));

const mutationResult: Check = (holder, key, path) => {
  const outcome = object(holder, key, path);
  const here = at(path, key);
  number(outcome, "clientSeq", here);
  const status = outcome.status;
  if (status === "applied") onlyFields(outcome, APPLIED_FIELDS, here);
  else if (status === "rejected" || status === "error") {
    onlyFields(outcome, FAILED_FIELDS, here);
    errorBody(outcome, "error", here);
  } else fail(at(here, "status"), '"applied", "rejected" or "error"');
};

/**
 * An op block `[group, kind, ...items]`. Items are only type-checked here
 * (rows are JSON objects, keys strings or finite numbers); the poke buffer
 * checks them against the subscription's binding.
 */
const block: Check = (holder, key, path) => {
  const items = array(holder, key, path);
  const here = at(path, key);
  name(items, 0, here);
  const kind: unknown = items[1];
  const rows = kind === "p" || kind === "u";
  if (!rows && kind !== "d") fail(at(here, 1), 'an op kind: "p", "u" or "d"');
  for (let j = 2; j < items.length; j++) {
    if (rows ? !isJsonObject(items[j]) : !isRowKey(items[j])) fail(at(here, j), rows ? "a row (a JSON object)" : "a key (a string or a finite number)");
  }
};

const errorBody: Check = (holder, key, path) => {
  const body = object(holder, key, path);
  const here = at(path, key);
  string(body, "code", here);
  string(body, "message", here);
};

/** A JSON object that is not an array. */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A row key on the wire: a string or a finite number. */
export function isRowKey(value: unknown): value is string | number {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}
