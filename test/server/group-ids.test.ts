/**
 * Group ids (server-kit/groups.ts): a stable 64-bit FNV-1a of the group
 * definition, and a registry that never lets two definitions share an id
 * and stays bounded by the ids live subscriptions use.
 */
import { describe, expect, test } from "vitest";
import { LunoraError } from "../../src/protocol/index.js";
import { GroupRegistry, groupId } from "../../server-kit/groups.js";

describe("groupId", () => {
  test("is FNV-1a 64 of the UTF-8 bytes, in base 36 (known vectors)", () => {
    // FNV-1a 64 test vectors: "" → cbf29ce484222325, "a" → af63dc4c8601ec8c, "foobar" → 85944171f73967e8.
    expect(groupId("")).toBe(0xcbf29ce484222325n.toString(36));
    expect(groupId("a")).toBe(0xaf63dc4c8601ec8cn.toString(36));
    expect(groupId("foobar")).toBe(0x85944171f73967e8n.toString(36));
  });

  test("is the same for the same definition and short enough for every block", () => {
    const definition = JSON.stringify(["items", { listId: "ünï 😀" }, ["id", "title"]]);
    expect(groupId(definition)).toBe(groupId(definition));
    expect(groupId(definition)).not.toBe(groupId(definition.replace("title", "titles")));
    expect(groupId(definition).length).toBeLessThanOrEqual(13);
  });
});

describe("GroupRegistry", () => {
  test("a second definition with a taken id is INTERNAL; the first and its id stay", () => {
    const registry = new GroupRegistry(() => [], () => "same");
    expect(registry.register("definition A")).toBe("same");
    expect(registry.register("definition A")).toBe("same");
    let error: unknown;
    try {
      registry.register("definition B");
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LunoraError);
    expect((error as LunoraError).code).toBe("INTERNAL");
    expect(registry.register("definition A")).toBe("same");
  });

  test("ids no live subscription uses are dropped once the registry passes twice the live ones; live ids keep their collision check", () => {
    const live = new Set<string>();
    const registry = new GroupRegistry(() => live);
    const first = registry.register("live definition");
    live.add(first);
    for (let i = 0; i < 2_000; i++) registry.register(`gone ${i}`);
    // Bounded: at most max(256, 2 × live) + 1 ids, however many came and went.
    expect(registry.size).toBeLessThanOrEqual(257);
    // The live id survived every prune: another definition hashing to it is still refused.
    registry.idOf = () => first;
    expect(() => registry.register("an impostor")).toThrow(LunoraError);
  });
});
