import {
  MAX_FRAME_BYTES,
  utf8Length,
  type Binding,
  type Cursor,
  type MutationResult,
  type OpKind,
  type ResolvedSubset,
} from "../src/protocol/index.js";
import { boundedOutcome, type OutcomeText } from "./outcome-bounds.js";

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

  /**
   * Ends the poke at `cursor` with the outcomes of the socket's mutations it
   * confirms. Outcomes are bounded like ops: those that do not fit in the
   * poke's last frame go, in order, into further single-frame pokes without
   * ops at the same cursor (ids `<pokeId>.1`, `<pokeId>.2`…) — sent right
   * after this one, so a confirmation never arrives before its data — and
   * one too large for any frame goes in its too-large form (outcome-bounds.ts).
   */
  end(cursor: Cursor, mutations: MutationResult[] = []): void {
    this.closeBlock();
    const cursorField = `"cursor":${JSON.stringify(cursor)}`;
    const maxOutcomeBytes = this.maxOutcomeBytes(cursorField);
    const outcomes = mutations.map((outcome) => boundedOutcome(outcome, maxOutcomeBytes));
    if (!this.split) {
      const body = `{"type":"poke",${this.headFields()},"ops":[${this.part.join("")}],${cursorField}`;
      let bytes = utf8Length(body) + 1; // "}"
      for (const outcome of outcomes) bytes += outcome.bytes + 1;
      if (outcomes.length > 0) bytes += MUTATIONS_FIELD_BYTES - 1;
      if (bytes <= this.maxFrameBytes) {
        this.emit(`${body}${mutationsField(outcomes)}}`);
        this.part = [];
        this.partBytes = 0;
        return;
      }
    }
    this.flushPart();
    let rest = this.emitWithOutcomes(`{"type":"pokeEnd","pokeId":${JSON.stringify(this.pokeId)},${cursorField}`, outcomes);
    for (let n = 1; rest.length > 0; n++) {
      rest = this.emitWithOutcomes(`{"type":"poke","pokeId":${JSON.stringify(`${this.pokeId}.${n.toString(36)}`)},"ops":[],${cursorField}`, rest);
    }
  }

  /** Emits `head` closed with as many of `outcomes` as fit in the frame; returns the others. */
  private emitWithOutcomes(head: string, outcomes: OutcomeText[]): OutcomeText[] {
    let bytes = utf8Length(head) + 1; // "}"
    let taken = 0;
    for (const outcome of outcomes) {
      const need = (taken === 0 ? MUTATIONS_FIELD_BYTES : 1) + outcome.bytes;
      // The first always goes: `maxOutcomeBytes` made it fit in any frame of this poke.
      if (taken > 0 && bytes + need > this.maxFrameBytes) break;
      bytes += need;
      taken++;
    }
    this.emit(`${head}${mutationsField(outcomes.slice(0, taken))}}`);
    return outcomes.slice(taken);
  }

  /** The largest outcome an outcome-carrying frame of this poke can hold alone (a continuation poke's id is the longest). */
  private maxOutcomeBytes(cursorField: string): number {
    const emptiest = `{"type":"poke","pokeId":${JSON.stringify(`${this.pokeId}.zzzz`)},"ops":[],${cursorField}}`;
    return this.maxFrameBytes - utf8Length(emptiest) - MUTATIONS_FIELD_BYTES;
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

/** Bytes of `,"mutations":[` and `]`. */
const MUTATIONS_FIELD_BYTES = utf8Length(`,"mutations":[]`);

function mutationsField(outcomes: OutcomeText[]): string {
  return outcomes.length === 0 ? "" : `,"mutations":[${outcomes.map((outcome) => outcome.json).join(",")}]`;
}

/** Bytes of a block's opening `["group","k",` (the kind is one ASCII letter). */
function blockHeaderBytes(group: string): number {
  return utf8Length(JSON.stringify(group)) + 6;
}
