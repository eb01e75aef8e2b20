import { MAX_FRAME_BYTES, utf8Length, type Cursor, type MutationResult, type ResolvedSubset } from "../src/protocol/index.js";

/**
 * Writes one poke to one socket. Ops are buffered; a poke that fits in one
 * frame is sent as a single `poke` frame, a bigger one as `pokeStart`,
 * `pokePart`… (a new part whenever the next op would push a frame past
 * `maxFrameBytes`), `pokeEnd`. Ops arrive pre-serialized (see
 * {@link encodeRowOp}) so a row shared by many subscribers is stringified
 * once per flush, not once per socket.
 */
export class PokeWriter {
  private part: string[] = [];
  private partBytes = 0;
  private readonly partHeader: string;
  private readonly frameBudget: number;
  private head: { subs: string[]; resets?: string[]; subsets?: ResolvedSubset[] } | undefined;
  /** Whether `pokeStart` went out (the poke no longer fits in one frame). */
  private split = false;
  /** Frames sent so far (observable in tests and benchmarks). */
  frames = 0;

  constructor(
    private readonly send: (frame: string) => void,
    readonly pokeId: string,
    private readonly maxFrameBytes = MAX_FRAME_BYTES,
  ) {
    this.partHeader = `{"type":"pokePart","pokeId":${JSON.stringify(pokeId)},"ops":[`;
    this.frameBudget = maxFrameBytes - utf8Length(this.partHeader) - 2; // "]}"
  }

  /**
   * Opens the poke: the subscriptions it covers, those it resets, and what
   * the limited subsets among the resets resolved to.
   */
  start(subs: string[], resets?: string[], subsets?: ResolvedSubset[]): this {
    this.head = resets && resets.length > 0 ? { subs, resets } : { subs };
    if (subsets && subsets.length > 0) this.head.subsets = subsets;
    return this;
  }

  /** Whether an op can be sent at all (fits in a frame on its own). */
  fits(op: string): boolean {
    return utf8Length(op) <= this.frameBudget;
  }

  /**
   * Adds one serialized op. Returns false (and adds nothing) if the op alone
   * cannot fit in a frame: the caller reports `MESSAGE_TOO_LARGE` for it.
   */
  add(op: string): boolean {
    const bytes = utf8Length(op);
    if (bytes > this.frameBudget) return false;
    const separator = this.part.length > 0 ? 1 : 0;
    if (this.partBytes + separator + bytes > this.frameBudget) this.flushPart();
    this.partBytes += (this.part.length > 0 ? 1 : 0) + bytes;
    this.part.push(op);
    return true;
  }

  end(cursor: Cursor, mutations?: MutationResult[]): void {
    const tail: Record<string, unknown> = { cursor };
    if (mutations && mutations.length > 0) tail.mutations = mutations;
    if (!this.split) {
      const head = this.headFields();
      const whole = `{"type":"poke",${head},"ops":[${this.part.join(",")}],${JSON.stringify(tail).slice(1)}`;
      if (utf8Length(whole) <= this.maxFrameBytes) {
        this.emit(whole);
        this.part = [];
        return;
      }
    }
    this.flushPart();
    this.emit(`{"type":"pokeEnd","pokeId":${JSON.stringify(this.pokeId)},${JSON.stringify(tail).slice(1)}`);
  }

  private headFields(): string {
    const head = this.head ?? { subs: [] };
    return `"pokeId":${JSON.stringify(this.pokeId)},${JSON.stringify(head).slice(1, -1)}`;
  }

  private flushPart(): void {
    if (!this.split) {
      this.split = true;
      this.emit(`{"type":"pokeStart",${this.headFields()}}`);
    }
    if (this.part.length === 0) return;
    this.emit(`${this.partHeader}${this.part.join(",")}]}`);
    this.part = [];
    this.partBytes = 0;
  }

  private emit(frame: string): void {
    this.frames++;
    this.send(frame);
  }
}

/**
 * The subscription-independent tail of a row op, e.g.
 * `"key":"m1","row":{…}}`; {@link encodeRowOp} prepends the op and the
 * subscription id.
 */
export function encodePutTail(key: string | number, row: Record<string, unknown>): string {
  return `"key":${JSON.stringify(key)},"row":${JSON.stringify(row)}}`;
}

export function encodeDelTail(key: string | number): string {
  return `"key":${JSON.stringify(key)}}`;
}

export function encodeRowOp(op: "put" | "del", sub: string, tail: string): string {
  return `{"op":"${op}","sub":${JSON.stringify(sub)},${tail}`;
}
