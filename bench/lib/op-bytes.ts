/**
 * Where a poke's bytes go: the row data it must carry versus the envelope
 * around it. Understands both wire forms of `ops`:
 *
 * - protocol 4: blocks `[group, kind, ...items]`; an item is a whole row
 *   (`"p"`), a patch (`"u"`: key column + changed columns) or a key (`"d"`);
 * - protocol ≤ 3: one object per op, `{ op, sub, key, row? }`; its item is
 *   `row` (put) or `key` (delete).
 *
 * Item bytes are the JSON of each item; envelope bytes are everything else
 * inside `ops` (block or op headers, the commas and brackets between them).
 */
export interface OpBytes {
  /** Rows, patches and deleted keys carried. */
  items: number;
  /** JSON bytes of those items. */
  itemBytes: number;
  /** JSON bytes of the whole `ops` arrays (items + envelope). */
  opsBytes: number;
}

const utf8 = (value: unknown) => Buffer.byteLength(JSON.stringify(value), "utf8");

export function opBytes(frames: string[]): OpBytes {
  const total: OpBytes = { items: 0, itemBytes: 0, opsBytes: 0 };
  for (const frame of frames) {
    if (!frame.startsWith('{"type":"poke')) continue;
    const ops = (JSON.parse(frame) as { ops?: unknown[] }).ops;
    if (!Array.isArray(ops)) continue;
    total.opsBytes += utf8(ops);
    for (const op of ops) {
      if (Array.isArray(op)) {
        for (const item of op.slice(2)) {
          total.items++;
          total.itemBytes += utf8(item);
        }
      } else if (op !== null && typeof op === "object") {
        const { row, key } = op as { row?: unknown; key?: unknown };
        total.items++;
        total.itemBytes += utf8(row !== undefined ? row : key);
      }
    }
  }
  return total;
}

/** UTF-8 bytes of frames. */
export const frameBytes = (frames: string[]) => frames.reduce((sum, frame) => sum + Buffer.byteLength(frame, "utf8"), 0);

/**
 * The keys of the rows a poke frame puts (protocol 4 `"p"` blocks; a put's
 * key is its row's key column, `key`). For raw-socket observers that
 * timestamp when a written row arrives.
 */
export function putKeys(frame: string, key = "id"): unknown[] {
  const ops = (JSON.parse(frame) as { ops?: unknown[] }).ops;
  const keys: unknown[] = [];
  if (!Array.isArray(ops)) return keys;
  for (const block of ops) {
    if (!Array.isArray(block) || block[1] !== "p") continue;
    for (let i = 2; i < block.length; i++) keys.push((block[i] as Record<string, unknown>)[key]);
  }
  return keys;
}
