/**
 * PokeWriter (protocol 4 framing): items merge into `[group, kind, …]`
 * blocks, a poke splits into parts under the frame bound — a block cut by
 * a part boundary reopens in the next part — and nothing is lost, reordered
 * or sent twice. Property test with a small frame bound and multi-byte text.
 */
import fc from "fast-check";
import { expect, test } from "vitest";
import { parseRoomFrame, utf8Length, type OpBlock } from "../../src/protocol/index.js";
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
