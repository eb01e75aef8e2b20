/**
 * The load tests' frame reader for one socket: a minimal protocol-4 reader
 * (docs/protocol.md, "Pokes"), so hundreds of subscribers cost the test
 * process little. It assembles pokes (`poke`, or `pokeStart` / `pokePart` /
 * `pokeEnd`), learns each group's key column from `bind`, and turns the
 * blocks `[group, kind, ...items]` into the keys they touch, in order: a put
 * or patch's key is `item[keyColumn]`, a delete lists keys.
 *
 * Anything the contract calls a protocol violation (ops for a group no
 * binding named, a malformed block, a part without a start, …) and any
 * `error` frame is recorded in `violations`, never skipped silently: the
 * tests assert that there are none.
 */

/** One applied poke: the keys of its ops in order, and its cursor's seq. */
export interface ReadPoke {
  keys: string[];
  seq: number;
}

export class PokeReader {
  /** Group id → key column, from the `bind` of the pokes read so far. */
  private readonly keyColumns = new Map<string, string>();
  /** Keys of an open multi-frame poke. */
  private open: string[] | null = null;
  readonly violations: string[] = [];

  constructor(private readonly onPoke: (poke: ReadPoke) => void) {}

  /** Reads one text frame. */
  read(text: string): void {
    if (text === "pong") return;
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      this.violations.push(`not JSON: ${text.slice(0, 80)}`);
      return;
    }
    switch (frame.type) {
      case "hello":
        return;
      case "poke": {
        if (this.open !== null) this.violations.push("poke while a multi-frame poke is open");
        this.bind(frame.bind);
        this.deliver(this.keysOf(frame.ops), frame.cursor);
        return;
      }
      case "pokeStart":
        if (this.open !== null) this.violations.push("pokeStart while a poke is open");
        this.bind(frame.bind);
        this.open = [];
        return;
      case "pokePart":
        if (this.open === null) {
          this.violations.push("pokePart without pokeStart");
          return;
        }
        this.open.push(...this.keysOf(frame.ops));
        return;
      case "pokeEnd": {
        if (this.open === null) {
          this.violations.push("pokeEnd without pokeStart");
          return;
        }
        const keys = this.open;
        this.open = null;
        this.deliver(keys, frame.cursor);
        return;
      }
      case "error":
        this.violations.push(`error frame: ${text.slice(0, 200)}`);
        return;
      default:
        // Frames this reader has no use for (mutation outcomes travel inside pokes).
        return;
    }
  }

  private bind(bindings: unknown): void {
    if (bindings === undefined) return;
    if (!Array.isArray(bindings)) {
      this.violations.push("bind is not a list");
      return;
    }
    for (const binding of bindings as Array<{ group?: unknown; key?: unknown }>) {
      if (typeof binding?.group !== "string" || typeof binding.key !== "string") {
        this.violations.push(`malformed binding ${JSON.stringify(binding)}`);
        continue;
      }
      this.keyColumns.set(binding.group, binding.key);
    }
  }

  private keysOf(ops: unknown): string[] {
    if (!Array.isArray(ops)) {
      this.violations.push("ops is not a list");
      return [];
    }
    const keys: string[] = [];
    for (const block of ops as unknown[]) {
      if (!Array.isArray(block) || block.length < 2 || typeof block[0] !== "string") {
        this.violations.push(`malformed block ${JSON.stringify(block)?.slice(0, 120)}`);
        continue;
      }
      const [group, kind] = block as [string, unknown];
      const keyColumn = this.keyColumns.get(group);
      if (keyColumn === undefined) {
        // Legal after an unsubscribe; these tests never unsubscribe, so it means a missing `bind`.
        this.violations.push(`ops for group ${group}, which no binding named`);
        continue;
      }
      for (let i = 2; i < block.length; i++) {
        const item = block[i] as unknown;
        if (kind === "p" || kind === "u") {
          const key = (item as Record<string, unknown> | null)?.[keyColumn];
          if (typeof key === "string" || typeof key === "number") keys.push(String(key));
          else this.violations.push(`a ${kind} item without its key column ${keyColumn}`);
        } else if (kind === "d") {
          keys.push(String(item));
        } else {
          this.violations.push(`unknown op kind ${JSON.stringify(kind)}`);
          break;
        }
      }
    }
    return keys;
  }

  private deliver(keys: string[], cursor: unknown): void {
    const seq = (cursor as { seq?: unknown } | undefined)?.seq;
    if (typeof seq !== "number") this.violations.push("poke without cursor.seq");
    this.onPoke({ keys, seq: typeof seq === "number" ? seq : Number.NaN });
  }
}
