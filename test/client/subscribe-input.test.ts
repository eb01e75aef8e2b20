/**
 * The client checks names and sources by hand (no validator in the client
 * bundle for three string checks); the room checks them with the protocol's
 * schemas. The two must give the same answer for every input: a source the
 * client accepts and the room refuses would only fail later, as a frame
 * error; one the client refuses and the room accepts would be a usable
 * source the client wrongly forbids.
 */
import fc from "fast-check";
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { LunoraClient } from "../../src/client/index.js";
import { assertRoomName, isSource, isWireName } from "../../src/client/room-name.js";
import { nameSchema, sourceSchema } from "../../src/protocol/index.js";

const names = fc.oneof(
  fc.string({ maxLength: 3 }),
  fc.constantFrom("", "a", "a".repeat(128), "a".repeat(129), "é".repeat(128), "__proto__", "constructor"),
  fc.string({ minLength: 120, maxLength: 140 }),
  fc.integer(),
  fc.constantFrom(null, undefined, true),
);
const keys = fc.constantFrom("list", "shape", "args", "table", "__proto__", "constructor", "toString");
/** Objects built with own keys only (`Object.fromEntries` makes `__proto__` an own key, as JSON.parse does). */
const sources = fc.oneof(
  fc.array(fc.tuple(keys, fc.oneof(names, fc.anything())), { maxLength: 4 }).map((entries) => Object.fromEntries(entries)),
  fc.record({ list: names }),
  fc.record({ shape: names, args: fc.anything() }, { requiredKeys: ["shape"] }),
  fc.anything(),
);

describe("subscribe input checks", () => {
  it("a wire name is what the protocol's nameSchema accepts", () => {
    fc.assert(fc.property(names, (name) => isWireName(name) === v.is(nameSchema, name)), { numRuns: 2_000 });
  });

  it("a source is what the protocol's sourceSchema accepts", () => {
    fc.assert(fc.property(sources, (source) => isSource(source) === v.is(sourceSchema, source)), { numRuns: 5_000 });
    for (const source of [{ list: "m" }, { shape: "s" }, { shape: "s", args: { a: 1 } }, { shape: "s", args: undefined }]) {
      expect(isSource(source)).toBe(true);
    }
    for (const source of [{ list: "m", args: 1 }, { shape: "s", list: "m" }, { table: "x" }, JSON.parse('{"__proto__":1,"list":"m"}'), [], null, "m"]) {
      expect(isSource(source)).toBe(false);
    }
  });

  it("room and party names are wire names without a slash", () => {
    expect(() => assertRoomName("room", "general")).not.toThrow();
    expect(() => assertRoomName("room", "__proto__")).not.toThrow();
    for (const bad of ["", "a/b", "a".repeat(129), 7, undefined]) {
      expect(() => assertRoomName("room", bad)).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
    }
  });

  it("subscribe refuses a bad source or subset envelope with INVALID_ARGS before opening any socket", () => {
    const client = new LunoraClient({ host: "127.0.0.1:9", party: "chat" });
    const handler = { cursor: () => undefined, applyPoke: () => {}, onError: () => {} };
    const refused = [
      { room: "r", source: { list: "m", extra: 1 } },
      { room: "r", source: { shape: "" } },
      { room: "r", source: { list: "m" }, subset: [] },
      { room: "r", source: { list: "m" }, subset: { where: null, order: "x" } },
      { room: "r", source: { list: "m" }, subset: "where" },
    ];
    for (const options of refused) {
      expect(() => client.subscribe({ ...options, handler } as never)).toThrow(expect.objectContaining({ code: "INVALID_ARGS" }));
    }
    expect(client.status).toBe("idle");
    client.close();
  });
});
