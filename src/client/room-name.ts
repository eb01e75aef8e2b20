import * as v from "valibot";
import { LunoraError, nameSchema } from "../protocol/index.js";

/**
 * Room and party names become URL path segments (`/parties/:party/:room`): a
 * `/` would route to another object, so it is refused rather than escaped.
 * Throws `INVALID_ARGS`.
 */
export function assertRoomName(what: "room" | "party", name: unknown): asserts name is string {
  if (!v.is(nameSchema, name) || name.includes("/")) {
    throw new LunoraError("INVALID_ARGS", `${what} must be a string of 1–128 characters without "/"`, { [what]: name });
  }
}
