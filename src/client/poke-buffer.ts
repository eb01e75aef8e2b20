import {
  LunoraError,
  type Cursor,
  type MutationResult,
  type PokeEnd,
  type PokePart,
  type PokeStart,
  type RowOp,
  type Where,
} from "../protocol/index.js";

/**
 * Bounds of one socket's open poke. A poke is buffered whole before it is
 * applied (that is what makes it atomic), so without a bound a misbehaving
 * room could grow the buffer without limit.
 */
export interface PokeBufferLimits {
  /** Characters of `pokePart` frame text buffered for the open poke. */
  maxChars: number;
  /** Row ops buffered for the open poke. */
  maxOps: number;
}

/**
 * 512 Mi characters of part text or 8,000,000 ops, whichever comes first: a
 * snapshot is one poke, so this is also the largest shape a client accepts
 * (a 1,000,000-row, ~100 MB shape fits). Lower it on small devices
 * (`limits.maxPokeChars` / `maxPokeOps` of `LunoraClient`).
 */
export const DEFAULT_POKE_BUFFER_LIMITS: PokeBufferLimits = { maxChars: 512 * 1024 * 1024, maxOps: 8_000_000 };

/**
 * How many dropped poke ids are remembered so their remaining frames are
 * skipped quietly instead of each being reported as a new violation.
 */
const REMEMBERED_DROPPED_POKES = 16;

/** A poke whose `pokeEnd` arrived: ready to apply in one synchronous step. */
export interface CompletePoke {
  pokeId: string;
  subs: readonly string[];
  resets: ReadonlySet<string>;
  /** Ops grouped per subscription, in wire order. */
  opsBySub: ReadonlyMap<string, RowOp[]>;
  /** Limited subsets reset by this poke → the predicate the room resolved each to. */
  resolved: ReadonlyMap<string, Where>;
  cursor: Cursor;
  mutations: MutationResult[] | undefined;
}

/** What the connection must do after feeding a frame to the buffer. */
export type PokeStep =
  /** Buffered; wait for more frames. */
  | { kind: "pending" }
  /** A leftover frame of a poke that was already dropped. */
  | { kind: "ignored" }
  /** Apply it. */
  | { kind: "complete"; poke: CompletePoke }
  /**
   * The open poke was dropped (protocol violation or bound hit). Nothing of it
   * may be applied; `subs` must be reset and subscribed again without cursor.
   */
  | { kind: "dropped"; subs: string[]; error: LunoraError; resets?: string[] };

interface OpenPoke {
  pokeId: string;
  subs: Set<string>;
  resets: Set<string>;
  resolved: Map<string, Where>;
  opsBySub: Map<string, RowOp[]>;
  chars: number;
  ops: number;
}

/**
 * Reassembles `pokeStart` / `pokePart` / `pokeEnd` frames of one socket into
 * whole pokes, enforcing the framing contract of `src/protocol/poke.ts`: one
 * open poke at a time, parts and end name the open poke, ops name a
 * subscription the poke listed.
 */
export class PokeBuffer {
  readonly #limits: PokeBufferLimits;
  #open: OpenPoke | undefined;
  readonly #dropped: string[] = [];

  constructor(limits: PokeBufferLimits = DEFAULT_POKE_BUFFER_LIMITS) {
    this.#limits = limits;
  }

  /** Whether a poke is being buffered. */
  get isOpen(): boolean {
    return this.#open !== undefined;
  }

  start(frame: PokeStart): PokeStep {
    const open = this.#open;
    if (open) {
      // Neither poke can be trusted: the open one is incomplete and the new one
      // may carry deltas that assume the open one was applied.
      const subs = union(open.subs, frame.subs);
      this.#drop(open.pokeId);
      this.#remember(frame.pokeId);
      return dropped(
        subs,
        new LunoraError("PROTOCOL_ERROR", `poke "${frame.pokeId}" started while poke "${open.pokeId}" was open`),
      );
    }
    this.#forget(frame.pokeId);
    const subs = new Set(frame.subs);
    const resets = new Set(frame.resets ?? []);
    const resolved = new Map<string, Where>();
    for (const { sub, where } of frame.subsets ?? []) {
      // A resolved predicate only starts a subscription the poke resets; one
      // for anything else, or twice, or that is no predicate, cannot be trusted.
      const problem = !resets.has(sub)
        ? `names subscription "${sub}" it does not reset`
        : resolved.has(sub)
          ? `names subscription "${sub}" twice`
          : !isWhere(where)
            ? `has a resolved predicate for "${sub}" that is not an object or boolean`
            : undefined;
      if (problem !== undefined) {
        this.#remember(frame.pokeId);
        return dropped(union(subs, [sub]), new LunoraError("PROTOCOL_ERROR", `poke "${frame.pokeId}" subsets ${problem}`));
      }
      resolved.set(sub, where as Where);
    }
    this.#open = {
      pokeId: frame.pokeId,
      subs,
      resets,
      resolved,
      opsBySub: new Map(),
      chars: 0,
      ops: 0,
    };
    return { kind: "pending" };
  }

  /** `chars` is the length of the frame's text, counted against {@link PokeBufferLimits.maxChars}. */
  part(frame: PokePart, chars: number): PokeStep {
    const open = this.#matchOpen(frame.pokeId, "pokePart");
    if (open.kind !== "open") return open.step;
    const poke = open.poke;

    for (const op of frame.ops) {
      if (!poke.subs.has(op.sub)) {
        this.#drop(poke.pokeId);
        return dropped(
          union(poke.subs, [op.sub]),
          new LunoraError("PROTOCOL_ERROR", `poke "${poke.pokeId}" has an op for subscription "${op.sub}" it did not list`),
        );
      }
    }

    poke.chars += chars;
    poke.ops += frame.ops.length;
    if (poke.chars > this.#limits.maxChars || poke.ops > this.#limits.maxOps) {
      this.#drop(poke.pokeId);
      const step = dropped(
        [...poke.subs],
        new LunoraError("QUOTA_EXCEEDED", `poke "${poke.pokeId}" exceeds the client's poke buffer bound`, {
          maxChars: this.#limits.maxChars,
          maxOps: this.#limits.maxOps,
        }),
      );
      // The subscriptions it resets are the ones whose snapshot is too big.
      return { ...step, resets: [...poke.resets] } as PokeStep;
    }

    for (const op of frame.ops) {
      let ops = poke.opsBySub.get(op.sub);
      if (!ops) poke.opsBySub.set(op.sub, (ops = []));
      ops.push(op);
    }
    return { kind: "pending" };
  }

  end(frame: PokeEnd): PokeStep {
    if (this.#dropped.includes(frame.pokeId)) {
      // The dropped poke is over; its id may be reused later.
      this.#forget(frame.pokeId);
      return { kind: "ignored" };
    }
    const open = this.#matchOpen(frame.pokeId, "pokeEnd");
    if (open.kind !== "open") return open.step;
    const poke = open.poke;
    this.#open = undefined;
    return {
      kind: "complete",
      poke: {
        pokeId: poke.pokeId,
        subs: [...poke.subs],
        resets: poke.resets,
        resolved: poke.resolved,
        opsBySub: poke.opsBySub,
        cursor: frame.cursor,
        mutations: frame.mutations,
      },
    };
  }

  /** Whether the open poke covers subscription `sub`. */
  covers(sub: string): boolean {
    return this.#open?.subs.has(sub) ?? false;
  }

  /**
   * Drops the open poke because of something outside it (an unreadable frame
   * that may have been one of its parts).
   */
  abort(error: LunoraError): PokeStep {
    const open = this.#open;
    if (!open) return { kind: "ignored" };
    this.#drop(open.pokeId);
    return dropped(open.subs, error);
  }

  /** Forgets everything; a poke cut off by a disconnect is never applied. */
  clear(): void {
    this.#open = undefined;
    this.#dropped.length = 0;
  }

  #matchOpen(pokeId: string, type: string): { kind: "open"; poke: OpenPoke } | { kind: "step"; step: PokeStep } {
    if (this.#dropped.includes(pokeId)) return { kind: "step", step: { kind: "ignored" } };
    const open = this.#open;
    if (open && open.pokeId === pokeId) return { kind: "open", poke: open };
    const subs = open ? [...open.subs] : [];
    if (open) this.#drop(open.pokeId);
    this.#remember(pokeId);
    return {
      kind: "step",
      step: dropped(
        subs,
        new LunoraError(
          "PROTOCOL_ERROR",
          open
            ? `${type} for poke "${pokeId}" while poke "${open.pokeId}" was open`
            : `${type} for poke "${pokeId}" without a pokeStart`,
        ),
      ),
    };
  }

  #drop(pokeId: string): void {
    this.#open = undefined;
    this.#remember(pokeId);
  }

  #remember(pokeId: string): void {
    if (this.#dropped.includes(pokeId)) return;
    this.#dropped.push(pokeId);
    if (this.#dropped.length > REMEMBERED_DROPPED_POKES) this.#dropped.shift();
  }

  #forget(pokeId: string): void {
    const index = this.#dropped.indexOf(pokeId);
    if (index >= 0) this.#dropped.splice(index, 1);
  }
}

function dropped(subs: Iterable<string>, error: LunoraError): PokeStep {
  return { kind: "dropped", subs: [...new Set(subs)], error };
}

function isWhere(value: unknown): boolean {
  return typeof value === "boolean" || (typeof value === "object" && value !== null && !Array.isArray(value));
}

function union(a: Iterable<string>, b: Iterable<string>): string[] {
  return [...new Set([...a, ...b])];
}
