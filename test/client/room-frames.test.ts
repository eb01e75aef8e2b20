import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, parseRoomFrame } from "../../src/protocol/index.js";

const MAX = 1024 * 1024;
const parse = (frame: unknown) => parseRoomFrame(typeof frame === "string" ? frame : JSON.stringify(frame), MAX);
const cursor = { seq: 3, epoch: "e1" };

describe("parseRoomFrame (hand-written check of room → client frames)", () => {
  it("accepts every frame of the grammar and returns the parsed JSON itself", () => {
    const frames = [
      { type: "hello", protocolVersion: PROTOCOL_VERSION, room: "r", epoch: "e1" },
      { type: "error", error: { code: "PROTOCOL_ERROR", message: "m" } },
      { type: "error", sub: "s1", error: { code: "FORBIDDEN", message: "m", data: { table: "t" } } },
      {
        type: "poke",
        pokeId: "1.2",
        bind: [{ sub: "s1", group: "g", key: "id", columns: ["id", "text"] }],
        resets: ["s1"],
        subsets: [{ sub: "s1", where: { a: 1 } }],
        ops: [["g", "p", { id: "a", text: "x" }], ["g", "u", { id: 1 }], ["g", "d", "a", 2.5], ["g", "p"]],
        cursor,
        mutations: [
          { clientSeq: 1, status: "applied", result: { any: "thing" } },
          { clientSeq: 2, status: "rejected", error: { code: "CONFLICT", message: "no" } },
          { clientSeq: 3, status: "error", error: { code: "INTERNAL", message: "later" } },
        ],
      },
      { type: "pokeStart", pokeId: "p" },
      { type: "pokePart", pokeId: "p", ops: [] },
      { type: "pokeEnd", pokeId: "p", cursor },
    ];
    for (const frame of frames) expect(parse(frame)).toEqual({ ok: true, frame });
  });

  it("names the frame type and the path of the first bad value", () => {
    const cases: Array<[unknown, string]> = [
      [{ type: "poke", pokeId: "p", ops: [["g", "x"]], cursor }, 'invalid "poke" frame at ops.0.1: expected an op kind'],
      [{ type: "poke", pokeId: "p", ops: [["g", "p", { id: 1 }, 7]], cursor }, 'invalid "poke" frame at ops.0.3: expected a row'],
      [{ type: "pokePart", pokeId: "p", ops: [["g", "d", "k", null]] }, 'invalid "pokePart" frame at ops.0.3: expected a key'],
      [{ type: "pokeStart", pokeId: "p", bind: [{ sub: "s", group: "g", key: "id", columns: ["id", ""] }] }, 'invalid "pokeStart" frame at bind.0.columns.1'],
      [{ type: "pokeStart", pokeId: "p", bind: [{ sub: "s", group: "g", key: "id", columns: [], extra: 1 }] }, "at bind.0.extra: unknown field"],
      [{ type: "pokeEnd", pokeId: "p", cursor: { seq: 1.5, epoch: "e" } }, "at cursor.seq"],
      [{ type: "pokeEnd", pokeId: "p", cursor, mutations: [{ clientSeq: 1, status: "maybe" }] }, "at mutations.0.status"],
      [{ type: "hello", protocolVersion: "4", room: "r", epoch: "e" }, 'invalid "hello" frame at protocolVersion'],
      [{ type: "error", error: { code: 1, message: "m" } }, "at error.code"],
      [{ type: "poke", pokeId: "x".repeat(129), ops: [], cursor }, "at pokeId"],
      [{ type: "nope" }, 'at type: unknown frame type "nope"'],
      [[1], "invalid frame: expected an object"],
    ];
    for (const [frame, message] of cases) {
      const result = parse(frame);
      expect({ frame, ok: result.ok }).toEqual({ frame, ok: false });
      if (!result.ok) {
        expect(result.error.code).toBe("PROTOCOL_ERROR");
        expect(result.error.message).toContain(message);
      }
    }
  });

  it("refuses binary and oversized frames with their codes", () => {
    expect(parseRoomFrame(new ArrayBuffer(2), MAX)).toMatchObject({ ok: false, error: { code: "PROTOCOL_ERROR" } });
    expect(parseRoomFrame(JSON.stringify({ type: "pokePart", pokeId: "p", ops: [["g", "p", { t: "é".repeat(40) }]] }), 50)).toMatchObject({
      ok: false,
      error: { code: "MESSAGE_TOO_LARGE" },
    });
  });

  it("pulls no valibot into the client's frame path", async () => {
    const result = await build({
      entryPoints: ["src/protocol/room-frames.ts"],
      bundle: true,
      write: false,
      metafile: true,
      format: "esm",
      platform: "neutral",
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((input) => input.includes("room-frames"))).toBe(true);
    expect(inputs.filter((input) => input.includes("valibot"))).toEqual([]);
  });
});
