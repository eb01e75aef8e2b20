import {
  MAX_FRAME_BYTES,
  utf8Length,
  type Binding,
  type Cursor,
  type MutationResult,
  type OpKind,
  type ResolvedSubset,
} from "../src/protocol/index.js";

/** What a `pokeStart` (or a single `poke`) says besides its ops. */
export interface PokeHead {
  /** Subscriptions this poke starts, with their groups. */
  bind?: Binding[];
  /** Subscriptions that drop their rows first (a snapshot follows). */
  resets?: string[];
  /** What the limited subsets among `resets` resolved to. */
  subsets?: ResolvedSubset[];
}

/**
 * Writes one poke (protocol 4). Ops are added one item at a time with their
 * group and kind; consecutive items of one group and kind share a block
 * `[group, kind, item, item…]`, and a new block opens when either changes.
 * A poke that fits in one frame is a single `poke` frame, a bigger one
 * `pokeStart`, `pokePart`… (a new part whenever the next item would push a
 * frame past `maxFrameBytes`; a block cut by a part boundary is closed and
 * opened again, `[group, kind,`, in the next part), `pokeEnd`.
 *
 * Items arrive as JSON text: a row shared by many subscribers is
 * stringified once per flush, and a flush's frames are built once for
 * every socket reading the same groups (see fan-out.ts).
 */
export class PokeWriter {
  /** The current part's text, in pieces (blocks are left open until the next block or the part's end). */
  private part: string[] = [];
  private partBytes = 0;
  /** The block open at the end of `part`: its group and kind. */
  private block: { group: string; kind: OpKind } | undefined;
  private readonly partHeader: string;
  private readonly frameBudget: number;
  private head: PokeHead = {};
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

  /** Opens the poke: the subscriptions it binds, those it resets, and what the limited subsets among the resets resolved to. */
  start(head: PokeHead = {}): this {
    this.head = {};
    if (head.bind && head.bind.length > 0) this.head.bind = head.bind;
    if (head.resets && head.resets.length > 0) this.head.resets = head.resets;
    if (head.subsets && head.subsets.length > 0) this.head.subsets = head.subsets;
    return this;
  }

  /** Whether an item can be sent at all: its block, holding it alone, fits in a part. */
  fits(group: string, item: string, bytes = utf8Length(item)): boolean {
    return blockHeaderBytes(group) + bytes + 1 <= this.frameBudget;
  }

  /**
   * Adds one item (JSON) to the block of `group` and `kind`. Returns false
   * (and adds nothing) when it cannot fit in a frame even alone: the caller
   * reports `MESSAGE_TOO_LARGE`. `bytes`: the item's UTF-8 length, when the
   * caller already knows it.
   */
  add(group: string, kind: OpKind, item: string, bytes = utf8Length(item)): boolean {
    if (!this.fits(group, item, bytes)) return false;
    const sameBlock = this.block !== undefined && this.block.group === group && this.block.kind === kind;
    // A new block costs its header, a comma after the previous block and its
    // closing bracket (counted now, written when the block closes).
    const need = sameBlock ? 1 + bytes : (this.part.length > 0 ? 1 : 0) + blockHeaderBytes(group) + bytes + 1;
    if (this.partBytes + need > this.frameBudget) {
      this.flushPart();
      this.openBlock(group, kind);
    } else if (!sameBlock) {
      this.openBlock(group, kind);
    } else {
      this.part.push(",");
      this.partBytes += 1;
    }
    this.part.push(item);
    this.partBytes += bytes;
    return true;
  }

  end(cursor: Cursor, mutations?: MutationResult[]): void {
    const tail: Record<string, unknown> = { cursor };
    if (mutations && mutations.length > 0) tail.mutations = mutations;
    this.closeBlock();
    if (!this.split) {
      const whole = `{"type":"poke",${this.headFields()},"ops":[${this.part.join("")}],${JSON.stringify(tail).slice(1)}`;
      if (utf8Length(whole) <= this.maxFrameBytes) {
        this.emit(whole);
        this.part = [];
        this.partBytes = 0;
        return;
      }
    }
    this.flushPart();
    this.emit(`{"type":"pokeEnd","pokeId":${JSON.stringify(this.pokeId)},${JSON.stringify(tail).slice(1)}`);
  }

  private openBlock(group: string, kind: OpKind): void {
    this.closeBlock();
    const header = `${this.part.length > 0 ? "," : ""}[${JSON.stringify(group)},"${kind}",`;
    this.part.push(header);
    // The closing bracket is counted with the header.
    this.partBytes += utf8Length(header) + 1;
    this.block = { group, kind };
  }

  private closeBlock(): void {
    if (this.block === undefined) return;
    this.part.push("]");
    this.block = undefined;
  }

  private headFields(): string {
    const fields = JSON.stringify(this.head).slice(1, -1);
    return `"pokeId":${JSON.stringify(this.pokeId)}${fields.length > 0 ? `,${fields}` : ""}`;
  }

  private flushPart(): void {
    this.closeBlock();
    if (!this.split) {
      this.split = true;
      this.emit(`{"type":"pokeStart",${this.headFields()}}`);
    }
    if (this.part.length === 0) return;
    this.emit(`${this.partHeader}${this.part.join("")}]}`);
    this.part = [];
    this.partBytes = 0;
  }

  private emit(frame: string): void {
    this.frames++;
    this.send(frame);
  }
}

/** Bytes of a block's opening `["group","k",` (the kind is one ASCII letter). */
function blockHeaderBytes(group: string): number {
  return utf8Length(JSON.stringify(group)) + 6;
}
