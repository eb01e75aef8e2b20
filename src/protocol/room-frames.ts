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

// Kept small on purpose: this module is in every client's bundle.
const fail = (path: string, expected: string): never => {
  throw new InvalidFrame(path, `expected ${expected}`);
};
const object = (value: unknown, path: string): JsonObject => (isJsonObject(value) ? value : fail(path, "an object"));
const array = (value: unknown, path: string): unknown[] => (Array.isArray(value) ? value : fail(path, "an array"));
const string = (value: unknown, path: string): void => {
  if (typeof value !== "string") fail(path, "a string");
};
const number = (value: unknown, path: string): void => {
  if (typeof value !== "number") fail(path, "a number");
};
/** Names on the wire (ids, groups, columns) are 1–128 characters. */
const name = (value: unknown, path: string): void => {
  if (typeof value !== "string" || value.length < 1 || value.length > 128) fail(path, "a name of 1–128 characters");
};
const names = (value: unknown, path: string): void => {
  const list = array(value, path);
  for (let i = 0; i < list.length; i++) name(list[i], `${path}.${i}`);
};

/** Each frame's fields: anything else is refused, as valibot's `strictObject` did. */
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
  const frame = object(json, "");
  const type = frame.type;
  const fields = typeof type === "string" && Object.prototype.hasOwnProperty.call(FIELDS, type) ? FIELDS[type] : undefined;
  if (!fields) throw new InvalidFrame("type", typeof type === "string" ? `unknown frame type "${type.slice(0, 40)}"` : "expected a frame type");
  onlyFields(frame, fields, "");
  if (type === "hello") {
    number(frame.protocolVersion, "protocolVersion");
    string(frame.room, "room");
    name(frame.epoch, "epoch");
  } else if (type === "error") {
    if (frame.sub !== undefined) name(frame.sub, "sub");
    errorBody(frame.error, "error");
  } else {
    name(frame.pokeId, "pokeId");
    if (type === "poke" || type === "pokeStart") startFields(frame);
    if (type === "poke" || type === "pokePart") ops(frame.ops);
    if (type === "poke" || type === "pokeEnd") endFields(frame);
  }
  return frame as unknown as RoomFrame;
}

/** `bind`, `resets`, `subsets`: the fields of `pokeStart` (also in `poke`). */
function startFields(frame: JsonObject): void {
  const { bind, resets, subsets } = frame;
  if (bind !== undefined) {
    const list = array(bind, "bind");
    for (let i = 0; i < list.length; i++) {
      const path = `bind.${i}`;
      const binding = object(list[i], path);
      onlyFields(binding, BINDING_FIELDS, `${path}.`);
      name(binding.sub, `${path}.sub`);
      name(binding.group, `${path}.group`);
      name(binding.key, `${path}.key`);
      names(binding.columns, `${path}.columns`);
    }
  }
  if (resets !== undefined) names(resets, "resets");
  if (subsets !== undefined) {
    const list = array(subsets, "subsets");
    for (let i = 0; i < list.length; i++) {
      const subset = object(list[i], `subsets.${i}`);
      onlyFields(subset, RESOLVED_FIELDS, `subsets.${i}.`);
      name(subset.sub, `subsets.${i}.sub`);
    }
  }
}

/** `cursor`, `mutations`: the fields of `pokeEnd` (also in `poke`). */
function endFields(frame: JsonObject): void {
  const cursor = object(frame.cursor, "cursor");
  const seq = cursor.seq;
  if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) fail("cursor.seq", "an integer ≥ 0");
  const epoch = cursor.epoch;
  if (typeof epoch !== "string" || epoch.length < 1 || epoch.length > 64) fail("cursor.epoch", "1–64 characters");
  if (frame.mutations === undefined) return;
  const list = array(frame.mutations, "mutations");
  for (let i = 0; i < list.length; i++) {
    const path = `mutations.${i}`;
    const outcome = object(list[i], path);
    number(outcome.clientSeq, `${path}.clientSeq`);
    const status = outcome.status;
    if (status === "applied") onlyFields(outcome, APPLIED_FIELDS, `${path}.`);
    else if (status === "rejected" || status === "error") {
      onlyFields(outcome, FAILED_FIELDS, `${path}.`);
      errorBody(outcome.error, `${path}.error`);
    } else fail(`${path}.status`, '"applied", "rejected" or "error"');
  }
}

/**
 * `ops`: blocks `[group, kind, ...items]`. Items are only type-checked here
 * (rows are JSON objects, keys strings or finite numbers); the poke buffer
 * checks them against the subscription's binding.
 */
function ops(value: unknown): void {
  const blocks = array(value, "ops");
  for (let i = 0; i < blocks.length; i++) {
    const block = array(blocks[i], `ops.${i}`);
    name(block[0], `ops.${i}.0`);
    const kind: unknown = block[1];
    const rows = kind === "p" || kind === "u";
    if (!rows && kind !== "d") fail(`ops.${i}.1`, 'an op kind: "p", "u" or "d"');
    for (let j = 2; j < block.length; j++) {
      if (rows ? !isJsonObject(block[j]) : !isRowKey(block[j])) fail(`ops.${i}.${j}`, rows ? "a row (a JSON object)" : "a key (a string or a finite number)");
    }
  }
}

function errorBody(value: unknown, path: string): void {
  const body = object(value, path);
  string(body.code, `${path}.code`);
  string(body.message, `${path}.message`);
}

function onlyFields(value: JsonObject, allowed: ReadonlySet<string>, prefix: string): void {
  for (const key in value) if (!allowed.has(key)) throw new InvalidFrame(`${prefix}${key.slice(0, 40)}`, "unknown field");
}

/** A JSON object that is not an array. */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A row key on the wire: a string or a finite number. */
export function isRowKey(value: unknown): value is string | number {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}
