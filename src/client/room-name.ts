import { LunoraError, type Source } from "../protocol/index.js";

/**
 * Longest name that travels on the wire (room, party, list, shape): the
 * bound of the protocol's `nameSchema`. Checked here by hand so the client
 * does not ship a validator for three string checks (test/client/
 * subscribe-input.test.ts holds the two to the same answers).
 */
const MAX_WIRE_NAME_LENGTH = 128;

/** A string of 1–128 characters (the protocol's `nameSchema`). */
export function isWireName(name: unknown): name is string {
  return typeof name === "string" && name.length >= 1 && name.length <= MAX_WIRE_NAME_LENGTH;
}

/** Whether `name` is a room or party name {@link assertRoomName} accepts. */
export function isRoomName(name: unknown): name is string {
  return isWireName(name) && !name.includes("/");
}

/**
 * Room and party names become URL path segments (`/parties/:party/:room`): a
 * `/` would route to another object, so it is refused rather than escaped.
 * Throws `INVALID_ARGS`.
 */
export function assertRoomName(what: "room" | "party", name: unknown): asserts name is string {
  if (!isRoomName(name)) {
    throw new LunoraError("INVALID_ARGS", `${what} must be a string of 1–128 characters without "/"`, { [what]: name });
  }
}

/**
 * Whether `source` is `{ list }` or `{ shape, args? }` with wire names and no
 * other keys (the protocol's `sourceSchema`, whose strict objects refuse
 * unknown keys: a misspelt `{ shpae }` must fail here, not as a frame the
 * room cannot read).
 */
export function isSource(source: unknown): source is Source {
  if (typeof source !== "object" || source === null || Array.isArray(source)) return false;
  const keys = Object.keys(source);
  const { list, shape } = source as { list?: unknown; shape?: unknown };
  if (keys.includes("list")) return keys.length === 1 && isWireName(list);
  return isWireName(shape) && keys.every((key) => key === "shape" || key === "args");
}
