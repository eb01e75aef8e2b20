import { describe, expect, it } from "vitest";
import { PokeBuffer } from "../../src/client/poke-buffer.js";
import { LunoraError, type RowOp } from "../../src/protocol/index.js";

const op = (sub: string, id: string): RowOp => ({ op: "put", sub, key: id, row: { id } });
const cursor = { seq: 1, epoch: "e" };

describe("PokeBuffer", () => {
  it("groups ops per subscription in wire order and completes at pokeEnd", () => {
    const buffer = new PokeBuffer();
    expect(buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a", "b"], resets: ["b"] })).toEqual({ kind: "pending" });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "1"), op("b", "2")] }, 10);
    buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "3")] }, 10);
    const step = buffer.end({ type: "pokeEnd", pokeId: "p", cursor });
    expect(step.kind).toBe("complete");
    if (step.kind !== "complete") return;
    expect(step.poke.opsBySub.get("a")).toEqual([op("a", "1"), op("a", "3")]);
    expect(step.poke.opsBySub.get("b")).toEqual([op("b", "2")]);
    expect([...step.poke.resets]).toEqual(["b"]);
    expect(buffer.isOpen).toBe(false);
  });

  it("an interleaved pokeStart drops both pokes and their remaining frames are skipped quietly", () => {
    const buffer = new PokeBuffer();
    buffer.start({ type: "pokeStart", pokeId: "p1", subs: ["a"] });
    const step = buffer.start({ type: "pokeStart", pokeId: "p2", subs: ["b"] });
    expect(step).toEqual({ kind: "dropped", subs: ["a", "b"], error: expect.any(LunoraError) });
    expect(buffer.part({ type: "pokePart", pokeId: "p1", ops: [op("a", "1")] }, 1)).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p2", cursor })).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p1", cursor })).toEqual({ kind: "ignored" });
    // A later poke is handled normally.
    buffer.start({ type: "pokeStart", pokeId: "p3", subs: ["a"] });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p3", cursor }).kind).toBe("complete");
  });

  it("the bounds count every part of a poke", () => {
    const buffer = new PokeBuffer({ maxChars: 100, maxOps: 1_000 });
    buffer.start({ type: "pokeStart", pokeId: "p", subs: ["a"] });
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "1")] }, 60).kind).toBe("pending");
    const step = buffer.part({ type: "pokePart", pokeId: "p", ops: [op("a", "2")] }, 60);
    expect(step.kind).toBe("dropped");
    if (step.kind === "dropped") expect(step.error.code).toBe("QUOTA_EXCEEDED");
  });
});
