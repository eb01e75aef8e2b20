import { describe, expect, it } from "vitest";
import { PokeBuffer, type CompletePoke, type PokeStep } from "../../src/client/poke-buffer.js";
import { LunoraError, type Binding, type OpBlock } from "../../src/protocol/index.js";

const cursor = { seq: 1, epoch: "e" };
const binding = (sub: string, group = `g-${sub}`, columns = ["id", "text"]): Binding => ({ sub, group, key: "id", columns });
const rowsFor = (group: string, ...ids: string[]): OpBlock => [group, "p", ...ids.map((id) => ({ id, text: id }))];

function complete(step: PokeStep): CompletePoke {
  expect(step.kind).toBe("complete");
  if (step.kind !== "complete") throw new Error("not complete");
  return step.poke;
}

/** A buffer whose subscriptions `subs` are bound by a first poke. */
function boundBuffer(bind: Binding[], options: { limits?: { maxChars: number; maxOps: number }; live?: (id: string) => boolean } = {}) {
  const buffer = new PokeBuffer(options.limits, options.live);
  buffer.start({ type: "pokeStart", pokeId: "bind", bind, resets: bind.map((b) => b.sub) });
  complete(buffer.end({ type: "pokeEnd", pokeId: "bind", cursor }));
  return buffer;
}

describe("PokeBuffer", () => {
  it("hands every bound subscription its group's blocks in wire order, and completes at pokeEnd", () => {
    const buffer = new PokeBuffer();
    expect(buffer.start({ type: "pokeStart", pokeId: "p", bind: [binding("a"), binding("b")], resets: ["b"] })).toEqual({ kind: "pending" });
    const first = rowsFor("g-a", "1");
    const second = rowsFor("g-b", "2");
    const third = rowsFor("g-a", "3");
    buffer.part({ type: "pokePart", pokeId: "p", ops: [first, second] }, 10);
    buffer.part({ type: "pokePart", pokeId: "p", ops: [third] }, 10);
    const poke = complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor }));
    const bySub = new Map(poke.subs.map((sub) => [sub.id, sub]));
    expect(bySub.get("a")).toEqual({ id: "a", keyColumn: "id", blocks: [first, third] });
    // The wire arrays themselves, not copies.
    expect(bySub.get("a")!.blocks[0]).toBe(first);
    expect(bySub.get("b")!.blocks).toEqual([second]);
    expect([...poke.resets]).toEqual(["b"]);
    expect(buffer.isOpen).toBe(false);
  });

  it("a poke covers every bound subscription, also those it has no ops for", () => {
    const buffer = boundBuffer([binding("a"), binding("b")]);
    buffer.start({ type: "pokeStart", pokeId: "p" });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "1")] }, 1);
    const poke = complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor }));
    expect(poke.subs.map((sub) => [sub.id, sub.blocks.length])).toEqual([
      ["a", 1],
      ["b", 0],
    ]);
  });

  it("a group bound to two subscriptions gives both the same block arrays", () => {
    const buffer = boundBuffer([binding("a", "shared"), binding("b", "shared")]);
    buffer.start({ type: "pokeStart", pokeId: "p" });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("shared", "1", "2")] }, 1);
    const [a, b] = complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs;
    expect(a.blocks).toHaveLength(1);
    expect(a.blocks).toBe(b.blocks);
  });

  it("blocks of a group no subscription is bound to are ignored", () => {
    const buffer = boundBuffer([binding("a")]);
    buffer.start({ type: "pokeStart", pokeId: "p" });
    // Not checked against anything either: nobody reads it.
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops: [["g-gone", "p", { nothing: 1 }], rowsFor("g-a", "1")] }, 1)).toEqual({ kind: "pending" });
    const poke = complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor }));
    expect(poke.subs).toEqual([{ id: "a", keyColumn: "id", blocks: [rowsFor("g-a", "1")] }]);
  });

  it("unbind takes effect at once: later blocks of the group reach nobody, and the subscription is no longer covered", () => {
    const buffer = boundBuffer([binding("a", "shared"), binding("b", "shared")]);
    buffer.start({ type: "pokeStart", pokeId: "p" });
    buffer.unbind("b");
    buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("shared", "1")] }, 1);
    expect(buffer.covers("b")).toBe(false);
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs.map((sub) => sub.id)).toEqual(["a"]);
    buffer.unbind("a");
    buffer.start({ type: "pokeStart", pokeId: "q" });
    buffer.part({ type: "pokePart", pokeId: "q", ops: [rowsFor("shared", "2")] }, 1);
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "q", cursor })).subs).toEqual([]);
  });

  it("a bind for a subscription the client no longer has binds nothing, and may reset it", () => {
    const buffer = new PokeBuffer(undefined, (id) => id !== "gone");
    buffer.start({ type: "pokeStart", pokeId: "p", bind: [binding("gone"), binding("a")], resets: ["gone", "a"] });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-gone", "1")] }, 1);
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs.map((sub) => sub.id)).toEqual(["a"]);
  });

  it("a reset of a subscription that is not bound drops the poke", () => {
    const buffer = boundBuffer([binding("a")]);
    const step = buffer.start({ type: "pokeStart", pokeId: "p", resets: ["a", "nobody"] });
    expect(step).toMatchObject({ kind: "dropped", subs: ["a"], error: { code: "PROTOCOL_ERROR" } });
    expect((step as { error: LunoraError }).error.message).toContain('"nobody"');
    expect(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).toEqual({ kind: "ignored" });
  });

  it("a reset of a subscription the client unbound itself (the poke crossed its unsubscribe or re-subscribe) is no violation", () => {
    const buffer = boundBuffer([binding("a"), binding("b")]);
    buffer.unbind("b");
    expect(buffer.start({ type: "pokeStart", pokeId: "p", resets: ["a", "b"] })).toEqual({ kind: "pending" });
    buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "1"), rowsFor("g-b", "2")] }, 1);
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs.map((sub) => sub.id)).toEqual(["a"]);
    // Bound again, then reset only while bound: the release is forgotten.
    buffer.start({ type: "pokeStart", pokeId: "q", bind: [binding("b")], resets: ["b"] });
    complete(buffer.end({ type: "pokeEnd", pokeId: "q", cursor }));
    // A new socket forgets what the old one released.
    buffer.unbind("a");
    buffer.clear();
    expect(buffer.start({ type: "pokeStart", pokeId: "r", resets: ["a"] })).toMatchObject({ kind: "dropped", error: { code: "PROTOCOL_ERROR" } });
  });

  it("a bind without its key among its columns, twice for one subscription, or reusing a bound group with other columns drops the poke", () => {
    for (const bind of [
      [{ sub: "b", group: "g-b", key: "uuid", columns: ["id"] }],
      [binding("b"), binding("b")],
      [binding("b", "g-a", ["id", "text", "secret"])],
      [binding("b", "g-new"), binding("c", "g-new", ["id"])],
    ]) {
      const buffer = boundBuffer([binding("a")]);
      const step = buffer.start({ type: "pokeStart", pokeId: "p", bind });
      expect({ bind, step }).toMatchObject({ bind, step: { kind: "dropped", error: { code: "PROTOCOL_ERROR" } } });
      // Nothing of it took effect, and the subscriptions it named start over.
      expect(buffer.groupOf("b")).toBeUndefined();
      expect((step as { subs: string[] }).subs).toEqual(expect.arrayContaining(["a", "b"]));
    }
  });

  it("a bind of a subscription to a group only it reads may change the columns", () => {
    const buffer = boundBuffer([binding("a")]);
    expect(buffer.start({ type: "pokeStart", pokeId: "p", bind: [binding("a", "g-a", ["id", "text", "more"])] })).toEqual({ kind: "pending" });
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops: [["g-a", "u", { id: "1", more: 2 }]] }, 1)).toEqual({ kind: "pending" });
  });

  it("checks each item against its binding: a put has every column and a key, a patch its key and only binding columns", () => {
    const cases: Array<[string, OpBlock]> = [
      ["put missing a column", ["g-a", "p", { id: "1" }]],
      ["put with a null key", ["g-a", "p", { id: null, text: "x" }]],
      ["put with an object key", ["g-a", "p", { id: { $gt: "" }, text: "x" }]],
      ["patch without its key", ["g-a", "u", { text: "x" }]],
      ["patch with a foreign column", ["g-a", "u", { id: "1", secret: "x" }]],
      ["patch naming __proto__", ["g-a", "u", JSON.parse('{"id":"1","__proto__":{"polluted":true}}')]],
      ["put whose missing column is inherited", ["g-c", "p", { id: "1" }]],
    ];
    for (const [name, block] of cases) {
      const buffer = boundBuffer([binding("a"), binding("c", "g-c", ["id", "constructor"])]);
      buffer.start({ type: "pokeStart", pokeId: "p" });
      const step = buffer.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "ok"), block] }, 1);
      expect({ name, step }).toMatchObject({ name, step: { kind: "dropped", subs: ["a", "c"], error: { code: "PROTOCOL_ERROR" } } });
      expect(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).toEqual({ kind: "ignored" });
    }
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it("accepts a put with extra columns, a patch of some columns, numeric keys and deletes", () => {
    const buffer = boundBuffer([binding("a")]);
    buffer.start({ type: "pokeStart", pokeId: "p" });
    const ops: OpBlock[] = [
      ["g-a", "p", { id: 7, text: "x" }],
      ["g-a", "u", { id: 7 }, { id: "s", text: "y" }],
      ["g-a", "d", 7, "s"],
    ];
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops }, 1)).toEqual({ kind: "pending" });
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs[0].blocks).toEqual(ops);
  });

  it("group ids, subscription ids and columns named __proto__ or constructor are plain names", () => {
    const columns = ["__proto__", "constructor"];
    const bind: Binding[] = [
      { sub: "__proto__", group: "constructor", key: "constructor", columns },
      { sub: "constructor", group: "__proto__", key: "__proto__", columns },
    ];
    const patch = JSON.parse('{"__proto__":"k1","constructor":"v"}');
    const put = JSON.parse('{"constructor":"k2","__proto__":1}');
    const buffer = new PokeBuffer();
    buffer.start({ type: "pokeStart", pokeId: "p", bind });
    expect(buffer.part({ type: "pokePart", pokeId: "p", ops: [["__proto__", "u", patch], ["constructor", "p", put]] }, 1)).toEqual({ kind: "pending" });
    expect(complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).subs).toEqual([
      { id: "__proto__", keyColumn: "constructor", blocks: [["constructor", "p", put]] },
      { id: "constructor", keyColumn: "__proto__", blocks: [["__proto__", "u", patch]] },
    ]);
    // A row without an own `constructor` column lacks it, whatever its prototype has.
    buffer.start({ type: "pokeStart", pokeId: "q" });
    expect(buffer.part({ type: "pokePart", pokeId: "q", ops: [["constructor", "p", JSON.parse('{"__proto__":1}')]] }, 1)).toMatchObject({
      kind: "dropped",
      error: { code: "PROTOCOL_ERROR", message: expect.stringContaining('lacks column "constructor"') },
    });
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it("an interleaved pokeStart drops both pokes and their remaining frames are skipped quietly", () => {
    const buffer = boundBuffer([binding("a")]);
    buffer.start({ type: "pokeStart", pokeId: "p1" });
    const step = buffer.start({ type: "pokeStart", pokeId: "p2", bind: [binding("b")] });
    expect(step).toEqual({ kind: "dropped", subs: ["a", "b"], error: expect.any(LunoraError) });
    expect(buffer.part({ type: "pokePart", pokeId: "p1", ops: [rowsFor("g-a", "1")] }, 1)).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p2", cursor })).toEqual({ kind: "ignored" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p1", cursor })).toEqual({ kind: "ignored" });
    // A later poke is handled normally.
    buffer.start({ type: "pokeStart", pokeId: "p3" });
    expect(buffer.end({ type: "pokeEnd", pokeId: "p3", cursor }).kind).toBe("complete");
  });

  it("the bounds count every item of every part of a poke", () => {
    const chars = boundBuffer([binding("a")], { limits: { maxChars: 100, maxOps: 1_000 } });
    chars.start({ type: "pokeStart", pokeId: "p" });
    expect(chars.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "1")] }, 60).kind).toBe("pending");
    expect(chars.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "2")] }, 60)).toMatchObject({ kind: "dropped", error: { code: "QUOTA_EXCEEDED" } });

    const ops = boundBuffer([binding("a")], { limits: { maxChars: 1_000_000, maxOps: 3 } });
    ops.start({ type: "pokeStart", pokeId: "p", resets: ["a"] });
    expect(ops.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-a", "1", "2")] }, 1).kind).toBe("pending");
    // Items of ignored groups count too: the buffer holds the frame either way.
    expect(ops.part({ type: "pokePart", pokeId: "p", ops: [rowsFor("g-other", "3", "4")] }, 1)).toMatchObject({ kind: "dropped", error: { code: "QUOTA_EXCEEDED" }, resets: ["a"] });
  });

  it("clear forgets the bindings: a new socket starts with nothing bound", () => {
    const buffer = boundBuffer([binding("a")]);
    buffer.clear();
    expect(buffer.groupOf("a")).toBeUndefined();
    expect(buffer.start({ type: "pokeStart", pokeId: "p", resets: ["a"] })).toMatchObject({ kind: "dropped", error: { code: "PROTOCOL_ERROR" } });
  });

  it("carries the predicates a poke resolved its limited subsets to", () => {
    const buffer = new PokeBuffer();
    const where = { $and: [{ grp: { eq: "x" } }, { a: { lte: 7 } }] };
    buffer.start({ type: "pokeStart", pokeId: "p", bind: [binding("a"), binding("b")], resets: ["a"], subsets: [{ sub: "a", where }] });
    const poke = complete(buffer.end({ type: "pokeEnd", pokeId: "p", cursor }));
    expect(poke.resolved.get("a")).toEqual(where);
    expect(poke.resolved.has("b")).toBe(false);
  });

  it("a resolved predicate for a subscription the poke does not reset, twice, or not a predicate, drops the poke", () => {
    for (const subsets of [
      [{ sub: "b", where: true }],
      [{ sub: "c", where: true }],
      [{ sub: "a", where: true }, { sub: "a", where: false }],
      [{ sub: "a", where: [1] }],
      [{ sub: "a", where: null }],
    ]) {
      const buffer = new PokeBuffer();
      const step = buffer.start({ type: "pokeStart", pokeId: "p", bind: [binding("a"), binding("b")], resets: ["a"], subsets });
      expect(step).toMatchObject({ kind: "dropped", error: { code: "PROTOCOL_ERROR" } });
      expect(buffer.end({ type: "pokeEnd", pokeId: "p", cursor })).toEqual({ kind: "ignored" });
    }
  });
});
