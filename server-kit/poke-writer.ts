import { MAX_FRAME_BYTES, utf8Length, type Cursor, type MutationResult, type PokeStart } from "../src/protocol/index.js";

/**
 * Writes one poke to one socket as `pokeStart`, `pokePart`…, `pokeEnd`,
 * starting a new part whenever the next op would push a frame past
 * `maxFrameBytes`. Ops arrive pre-serialized (see {@link encodeRowOp}) so a
 * row shared by many subscribers is stringified once per flush, not once per
 * socket.
 */
export class PokeWriter {
  private part: string[] = [];
  private partBytes = 0;
  private readonly partHeader: string;
  private readonly frameBudget: number;
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

  /** Sends `pokeStart`: the subscriptions the poke covers, and those it resets. */
  start(subs: string[], resets?: string[]): this {
    const frame: PokeStart = { type: "pokeStart", pokeId: this.pokeId, subs };
    if (resets && resets.length > 0) frame.resets = resets;
    this.emit(JSON.stringify(frame));
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
    this.flushPart();
    const frame: Record<string, unknown> = { type: "pokeEnd", pokeId: this.pokeId, cursor };
    if (mutations && mutations.length > 0) frame.mutations = mutations;
    this.emit(JSON.stringify(frame));
  }

  private flushPart(): void {
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
