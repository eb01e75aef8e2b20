import type { Source } from "../protocol/index.js";

/**
 * The cache key of a collection view: party, room and source (list, or shape
 * and args). Args are serialized with sorted object keys, so `{ a, b }` and
 * `{ b, a }` name the same view — they are the same subscription to the room.
 */
export function viewCacheKey(party: string, room: string, source: Source): string {
  return canonicalJson([party, room, source]);
}

/** JSON with object keys sorted at every level: equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (inner === null || typeof inner !== "object" || Array.isArray(inner)) return inner;
    // Null prototype: an arg named `__proto__` stays an ordinary key.
    const sorted: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(inner).sort()) sorted[key] = (inner as Record<string, unknown>)[key];
    return sorted;
  });
}

/**
 * The cache key of one subset of a view (on-demand sync): the view's key and
 * the subset's canonical JSON, so two loads of the same subset share an entry.
 */
export function subsetCacheKey(viewKey: string, subsetKey: string): string {
  return canonicalJson([viewKey, subsetKey]);
}
