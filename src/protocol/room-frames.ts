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
 * nothing while the frame is valid: the envelope's fields and their types
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

/** The first problem found; thrown only on the failure path, so a valid frame builds no path strings. */
class InvalidFrame {
  constructor(
    readonly path: string,
    readonly message: string,
  ) {}
}

function invalid(path: string, message: string): never {
  throw new InvalidFrame(path, message);
}

type JsonObject = Record<string, unknown>;

const HELLO_FIELDS: ReadonlySet<string> = new Set(["type", "protocolVersion", "room", "epoch"]);
const ERROR_FIELDS: ReadonlySet<string> = new Set(["type", "sub", "error"]);
const POKE_FIELDS: ReadonlySet<string> = new Set(["type", "pokeId", "bind", "resets", "subsets", "ops", "cursor", "mutations"]);
const POKE_START_FIELDS: ReadonlySet<string> = new Set(["type", "pokeId", "bind", "resets", "subsets"]);
const POKE_PART_FIELDS: ReadonlySet<string> = new Set(["type", "pokeId", "ops"]);
const POKE_END_FIELDS: ReadonlySet<string> = new Set(["type", "pokeId", "cursor", "mutations"]);
const BINDING_FIELDS: ReadonlySet<string> = new Set(["sub", "group", "key", "columns"]);
const RESOLVED_FIELDS: ReadonlySet<string> = new Set(["sub", "where"]);
const APPLIED_FIELDS: ReadonlySet<string> = new Set(["clientSeq", "status", "result"]);
const FAILED_FIELDS: ReadonlySet<string> = new Set(["clientSeq", "status", "error"]);

function checkRoomFrame(json: unknown): RoomFrame {
  if (!isJsonObject(json)) invalid("", "expected a JSON object");
  switch (json.type) {
    case "hello":
      onlyFields(json, HELLO_FIELDS, "");
      if (typeof json.protocolVersion !== "number") invalid("protocolVersion", "expected a number");
      if (typeof json.room !== "string") invalid("room", "expected a string");
      name(json.epoch, "epoch");
      return json as unknown as Hello;
    case "error":
      onlyFields(json, ERROR_FIELDS, "");
      if (json.sub !== undefined) name(json.sub, "sub");
      errorBody(json.error, "error");
      return json as unknown as ErrorFrame;
    case "poke":
      onlyFields(json, POKE_FIELDS, "");
      name(json.pokeId, "pokeId");
      startFields(json);
      ops(json.ops);
      endFields(json);
      return json as unknown as Poke;
    case "pokeStart":
      onlyFields(json, POKE_START_FIELDS, "");
      name(json.pokeId, "pokeId");
      startFields(json);
      return json as unknown as PokeStart;
    case "pokePart":
      onlyFields(json, POKE_PART_FIELDS, "");
      name(json.pokeId, "pokeId");
      ops(json.ops);
      return json as unknown as PokePart;
    case "pokeEnd":
      onlyFields(json, POKE_END_FIELDS, "");
      name(json.pokeId, "pokeId");
      endFields(json);
      return json as unknown as PokeEnd;
    default:
      return invalid("type", typeof json.type === "string" ? `unknown frame type "${json.type.slice(0, 40)}"` : "expected a frame type");
  }
}

/** `bind`, `resets`, `subsets`: the fields of `pokeStart` (also in `poke`). */
function startFields(frame: JsonObject): void {
  const { bind, resets, subsets } = frame;
  if (bind !== undefined) {
    if (!Array.isArray(bind)) invalid("bind", "expected an array of bindings");
    for (let i = 0; i < bind.length; i++) {
      const binding: unknown = bind[i];
      if (!isJsonObject(binding)) invalid(`bind.${i}`, "expected a binding { sub, group, key, columns }");
      onlyFields(binding, BINDING_FIELDS, `bind.${i}.`);
      name(binding.sub, `bind.${i}.sub`);
      name(binding.group, `bind.${i}.group`);
      name(binding.key, `bind.${i}.key`);
      const columns = binding.columns;
      if (!Array.isArray(columns)) invalid(`bind.${i}.columns`, "expected an array of column names");
      for (let j = 0; j < columns.length; j++) name(columns[j], `bind.${i}.columns.${j}`);
    }
  }
  if (resets !== undefined) {
    if (!Array.isArray(resets)) invalid("resets", "expected an array of subscription ids");
    for (let i = 0; i < resets.length; i++) name(resets[i], `resets.${i}`);
  }
  if (subsets !== undefined) {
    if (!Array.isArray(subsets)) invalid("subsets", "expected an array of resolved subsets");
    for (let i = 0; i < subsets.length; i++) {
      const subset: unknown = subsets[i];
      if (!isJsonObject(subset)) invalid(`subsets.${i}`, "expected { sub, where }");
      onlyFields(subset, RESOLVED_FIELDS, `subsets.${i}.`);
      name(subset.sub, `subsets.${i}.sub`);
    }
  }
}

/** `cursor`, `mutations`: the fields of `pokeEnd` (also in `poke`). */
function endFields(frame: JsonObject): void {
  const { cursor, mutations } = frame;
  if (!isJsonObject(cursor)) invalid("cursor", "expected a cursor { seq, epoch }");
  const seq = cursor.seq;
  if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) invalid("cursor.seq", "expected an integer ≥ 0");
  const epoch = cursor.epoch;
  if (typeof epoch !== "string" || epoch.length < 1 || epoch.length > 64) invalid("cursor.epoch", "expected 1–64 characters");
  if (mutations === undefined) return;
  if (!Array.isArray(mutations)) invalid("mutations", "expected an array of mutation outcomes");
  for (let i = 0; i < mutations.length; i++) {
    const outcome: unknown = mutations[i];
    const path = `mutations.${i}`;
    if (!isJsonObject(outcome)) invalid(path, "expected a mutation outcome");
    if (typeof outcome.clientSeq !== "number") invalid(`${path}.clientSeq`, "expected a number");
    switch (outcome.status) {
      case "applied":
        onlyFields(outcome, APPLIED_FIELDS, `${path}.`);
        break;
      case "rejected":
      case "error":
        onlyFields(outcome, FAILED_FIELDS, `${path}.`);
        errorBody(outcome.error, `${path}.error`);
        break;
      default:
        invalid(`${path}.status`, 'expected "applied", "rejected" or "error"');
    }
  }
}

/**
 * `ops`: blocks `[group, kind, ...items]`. Items are only type-checked here
 * (rows are JSON objects, keys strings or finite numbers); the poke buffer
 * checks them against the subscription's binding.
 */
function ops(value: unknown): void {
  if (!Array.isArray(value)) invalid("ops", "expected an array of op blocks");
  for (let i = 0; i < value.length; i++) {
    const block: unknown = value[i];
    if (!Array.isArray(block)) invalid(`ops.${i}`, "expected an op block [group, kind, ...items]");
    name(block[0], `ops.${i}.0`);
    const kind: unknown = block[1];
    if (kind === "p" || kind === "u") {
      for (let j = 2; j < block.length; j++) if (!isJsonObject(block[j])) invalid(`ops.${i}.${j}`, "expected a row (a JSON object)");
    } else if (kind === "d") {
      for (let j = 2; j < block.length; j++) if (!isRowKey(block[j])) invalid(`ops.${i}.${j}`, "expected a key (a string or a finite number)");
    } else invalid(`ops.${i}.1`, 'expected an op kind: "p", "u" or "d"');
  }
}

function errorBody(value: unknown, path: string): void {
  if (!isJsonObject(value)) invalid(path, "expected an error { code, message }");
  if (typeof value.code !== "string") invalid(`${path}.code`, "expected a string");
  if (typeof value.message !== "string") invalid(`${path}.message`, "expected a string");
}

/** Names on the wire (ids, groups, columns) are 1–128 characters. */
function name(value: unknown, path: string): void {
  if (typeof value !== "string" || value.length < 1 || value.length > 128) invalid(path, "expected a name of 1–128 characters");
}

/** Fields outside the frame's grammar are refused, as valibot's `strictObject` did. */
function onlyFields(value: JsonObject, allowed: ReadonlySet<string>, prefix: string): void {
  for (const key in value) if (!allowed.has(key)) invalid(`${prefix}${key.slice(0, 40)}`, "unknown field");
}

/** A JSON object that is not an array. */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A row key on the wire: a string or a finite number. */
export function isRowKey(value: unknown): value is string | number {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}
