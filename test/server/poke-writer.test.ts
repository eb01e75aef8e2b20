/**
 * PokeWriter (protocol 4 framing): items merge into `[group, kind, …]`
 * blocks, a poke splits into parts under the frame bound — a block cut by
 * a part boundary reopens in the next part — and nothing is lost, reordered
 * or sent twice. Property test with a small frame bound and multi-byte text.
 */
import fc from "fast-check";
import { expect, test } from "vitest";
import { parseRoomFrame, utf8Length, type MutationResult, type OpBlock } from "../../src/protocol/index.js";
import { PokeWriter } from "../../server-kit/poke-writer.js";

const MAX = 700;
const itemArb = fc.record({
  group: fc.constantFrom("g1", "g2"),
  kind: fc.constantFrom("p" as const, "u" as const, "d" as const),
  text: fc.oneof(
    fc.string({ unit: fc.constantFrom("a", "é", "😀", '"', "\\"), maxLength: 12 }),
    fc.string({ unit: fc.constantFrom("a", "é", "😀", '"', "\\"), maxLength: 250 }),
  ),
});

test("blocks merge per group and kind, parts stay under the bound, and every item arrives once, in order", () => {
  fc.assert(
    fc.property(fc.array(itemArb, { minLength: 20, maxLength: 120, size: "max" }), fc.boolean(), (items, withMutations) => {
      const frames: string[] = [];
      const writer = new PokeWriter((frame) => frames.push(frame), "p.1", MAX).start({ resets: ["s"] });
      const accepted: Array<[string, string, unknown]> = [];
      for (const { group, kind, text } of items) {
        const item = kind === "d" ? JSON.stringify(text) : JSON.stringify({ id: text });
        if (writer.add(group, kind, item)) accepted.push([group, kind, JSON.parse(item)]);
        // Refused only when the block holding it alone cannot fit in a part.
        else expect(utf8Length(`{"type":"pokePart","pokeId":"p.1","ops":[[${JSON.stringify(group)},"${kind}",${item}]]}`)).toBeGreaterThan(MAX);
      }
      writer.end({ seq: 1, epoch: "e" }, withMutations ? [{ clientSeq: 1, status: "applied" }] : undefined);

      const received: Array<[string, string, unknown]> = [];
      const parts = frames.filter((frame) => frame.startsWith('{"type":"pokePart"'));
      for (let i = 0; i + 1 < parts.length; i++) {
        // Greedy: a part ends only when the next item would not fit in it.
        const blocks = JSON.parse(parts[i]).ops as OpBlock[];
        const [lastGroup, lastKind] = blocks.at(-1)!;
        const [group, kind, first] = (JSON.parse(parts[i + 1]).ops as OpBlock[])[0];
        const item = utf8Length(JSON.stringify(first));
        const extra = group === lastGroup && kind === lastKind ? 1 + item : 1 + utf8Length(`[${JSON.stringify(group)},"${kind}",`) + item + 1;
        expect(utf8Length(parts[i]) + extra).toBeGreaterThan(MAX);
      }
      for (const frame of frames) {
        expect(utf8Length(frame)).toBeLessThanOrEqual(MAX);
        const parsed = parseRoomFrame(frame, MAX);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        const blocks: OpBlock[] = parsed.frame.type === "poke" || parsed.frame.type === "pokePart" ? parsed.frame.ops : [];
        blocks.forEach(([group, kind, ...rest], i) => {
          // Consecutive blocks of one part never share group and kind (they would have merged).
          if (i > 0) expect([blocks[i - 1][0], blocks[i - 1][1]]).not.toEqual([group, kind]);
          expect(rest.length).toBeGreaterThan(0);
          for (const item of rest) received.push([group, kind, item]);
        });
      }
      expect(received).toEqual(accepted);
      const types = frames.map((frame) => JSON.parse(frame).type);
      if (types.length === 1) expect(types).toEqual(["poke"]);
      else expect(types).toEqual(["pokeStart", ...Array(types.length - 2).fill("pokePart"), "pokeEnd"]);
      const last = JSON.parse(frames.at(-1)!);
      expect(last.mutations).toEqual(withMutations ? [{ clientSeq: 1, status: "applied" }] : undefined);
      expect(JSON.parse(frames[0]).resets).toEqual(["s"]);
    }),
    { numRuns: 1_000 },
  );
});

const outcomeArb = fc.oneof(
  fc.record({ status: fc.constant("applied" as const), result: fc.option(fc.string({ unit: fc.constantFrom("r", "é", "😀"), maxLength: 900 }), { nil: undefined }) }),
  fc.record({ status: fc.constantFrom("rejected" as const, "error" as const), data: fc.string({ unit: fc.constantFrom("d", "é"), maxLength: 900 }) }),
);

test("outcomes of any number and size are split across frames under the bound, in order; one too large alone is replaced, never dropped", () => {
  fc.assert(
    fc.property(fc.array(itemArb, { maxLength: 30 }), fc.array(outcomeArb, { maxLength: 40 }), (items, shapes) => {
      const outcomes: MutationResult[] = shapes.map((shape, i) =>
        shape.status === "applied"
          ? shape.result === undefined
            ? { clientSeq: i + 1, status: "applied" }
            : { clientSeq: i + 1, status: "applied", result: shape.result }
          : { clientSeq: i + 1, status: shape.status, error: { code: "CONFLICT", message: "no", data: shape.data } },
      );
      const frames: string[] = [];
      const writer = new PokeWriter((frame) => frames.push(frame), "p.1", MAX).start();
      for (const { group, kind, text } of items) writer.add(group, kind, kind === "d" ? JSON.stringify(text) : JSON.stringify({ id: text }));
      writer.end({ seq: 7, epoch: "e" }, outcomes);
      const received: MutationResult[] = [];
      const pokeIds = new Set<string>();
      for (const frame of frames) {
        expect(utf8Length(frame)).toBeLessThanOrEqual(MAX);
        const parsed = parseRoomFrame(frame, MAX);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        if (parsed.frame.type === "poke" || parsed.frame.type === "pokeEnd") {
          // Every poke that ends here is at the same cursor; later ones add outcomes only.
          expect(parsed.frame.cursor).toEqual({ seq: 7, epoch: "e" });
          pokeIds.add(parsed.frame.pokeId);
          received.push(...(parsed.frame.mutations ?? []));
        }
      }
      expect(received.map((outcome) => [outcome.clientSeq, outcome.status])).toEqual(outcomes.map((outcome) => [outcome.clientSeq, outcome.status]));
      received.forEach((outcome, i) => {
        if (JSON.stringify(outcome) === JSON.stringify(outcomes[i])) return;
        // Replaced: only an outcome that could not fit in a frame alone, and the replacement says so with a code.
        expect(utf8Length(JSON.stringify(outcomes[i]))).toBeGreaterThan(MAX - 100);
        const error = outcome.status === "applied" ? (outcome.result as { error: { code: string } }).error : outcome.error;
        expect(error.code).toBe("MESSAGE_TOO_LARGE");
      });
      // Pokes are told apart by their ids.
      expect(pokeIds.size).toBe(frames.filter((frame) => /^\{"type":"poke(End)?"/.test(frame)).length);
    }),
    { numRuns: 500 },
  );
});
