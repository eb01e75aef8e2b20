import {
  LunoraError,
  isRowKey,
  type Binding,
  type Cursor,
  type MutationResult,
  type OpBlock,
  type Poke,
  type PokeEnd,
  type PokePart,
  type PokeStart,
  type Row,
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
  /** Row ops (block items: rows, patches, keys) buffered for the open poke. */
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

const NO_BLOCKS: readonly OpBlock[] = Object.freeze([]) as readonly OpBlock[];

const IGNORED: PokeStep = { kind: "ignored" };
const PENDING: PokeStep = { kind: "pending" };

/**
 * How many subscription ids the client unbound itself are remembered, so a
 * poke that crossed the unsubscribe (or re-subscribe) and still resets them
 * is not taken for a violation.
 */
const REMEMBERED_RELEASED_SUBS = 1024;

/** One subscription a complete poke covers, with what it receives. */
export interface CoveredSubscription {
  id: string;
  /** Its key column: a put's or patch's key is `row[keyColumn]`. */
  keyColumn: string;
  /**
   * The blocks of its group, in wire order. The same array for every
   * subscription bound to the group: read it, never change it.
   */
  blocks: readonly OpBlock[];
}

/** A poke whose `pokeEnd` arrived: ready to apply in one synchronous step. */
export interface CompletePoke {
  pokeId: string;
  /** Every subscription bound on the socket when the poke ended: all are at `cursor` once it is applied. */
  subs: readonly CoveredSubscription[];
  resets: ReadonlySet<string>;
  /** Limited subsets reset by this poke → the predicate the room resolved each to. */
  resolved: ReadonlyMap<string, Where>;
  cursor: Cursor;
  mutations: MutationResult[] | undefined;
}

/** What the connection must do after feeding a frame to the buffer. */
export type PokeStep =
  /** Buffered; wait for more frames. */
  | { kind: "pending" }
  /**
   * A leftover frame of a poke that was already dropped. `mutations`: the
   * outcomes its `pokeEnd` carried — the room cannot know the client dropped
   * the poke, so nothing else will answer those pushes.
   */
  | { kind: "ignored"; mutations?: MutationResult[] | undefined }
  /** Apply it. */
  | { kind: "complete"; poke: CompletePoke }
  /**
   * The open poke was dropped (protocol violation or bound hit). Nothing of it
   * may be applied; `subs` must be reset and subscribed again without cursor.
   */
  | { kind: "dropped"; subs: string[]; error: LunoraError; resets?: string[] };

/** What a group's subscriptions read: one key column and one column set (the group id names them). */
interface GroupBinding {
  readonly key: string;
  readonly columns: readonly string[];
  readonly columnSet: ReadonlySet<string>;
  /** Subscriptions of the socket bound to the group. */
  readonly subs: Set<string>;
}

interface OpenPoke {
  pokeId: string;
  resets: Set<string>;
  resolved: Map<string, Where>;
  /** Group → its blocks in wire order (only groups bound when the block arrived). */
  blocks: Map<string, OpBlock[]>;
  chars: number;
  ops: number;
}

const hasOwn = (row: Row, column: string): boolean => Object.prototype.hasOwnProperty.call(row, column);

/**
 * Reassembles `pokeStart` / `pokePart` / `pokeEnd` frames of one socket into
 * whole pokes and keeps the socket's bindings (protocol 4, see
 * `src/protocol/poke.ts`): which group, key column and columns each
 * subscription reads.
 *
 * It enforces the framing contract — one open poke at a time, parts and end
 * name the open poke, `resets` name bound subscriptions — and checks every
 * item of a bound group against its binding without copying it: a put has
 * every column of the binding and a string or finite-number key, a patch has
 * the key column and no column outside the binding. Blocks of groups no
 * subscription is bound to are dropped unread (they may follow an
 * unsubscribe the room had not seen yet).
 */
export class PokeBuffer {
  readonly #limits: PokeBufferLimits;
  /** Whether the connection still has subscription `id` (a bind for one it dropped is stale, not bound). */
  readonly #isSubscribed: (id: string) => boolean;
  #open: OpenPoke | undefined;
  readonly #dropped: string[] = [];
  /** Subscription id → its group. Maps, not objects: ids and groups come from the wire (`__proto__`…). */
  readonly #bindings = new Map<string, string>();
  readonly #groups = new Map<string, GroupBinding>();
  /** Subscriptions the client unbound itself on this socket and that were not bound again (oldest first). */
  readonly #released = new Set<string>();

  constructor(limits: PokeBufferLimits = DEFAULT_POKE_BUFFER_LIMITS, isSubscribed: (id: string) => boolean = () => true) {
    this.#limits = limits;
    this.#isSubscribed = isSubscribed;
  }

  /** Whether a poke is being buffered. */
  get isOpen(): boolean {
    return this.#open !== undefined;
  }

  /** The group subscription `id` is bound to, if any. */
  groupOf(id: string): string | undefined {
    return this.#bindings.get(id);
  }

  /**
   * Forgets subscription `id`'s binding at once: it was unsubscribed,
   * subscribed again or failed. Ops for its group that arrive later (the
   * room had not read the `unsubscribe` yet) no longer reach it; the poke
   * answering a new `subscribe` binds it again.
   */
  unbind(id: string): void {
    this.#released.delete(id);
    this.#released.add(id);
    if (this.#released.size > REMEMBERED_RELEASED_SUBS) this.#released.delete(this.#released.values().next().value!);
    const group = this.#bindings.get(id);
    if (group === undefined) return;
    this.#bindings.delete(id);
    const binding = this.#groups.get(group);
    if (!binding) return;
    binding.subs.delete(id);
    if (binding.subs.size === 0) this.#groups.delete(group);
  }

  /** Each step also takes a whole `poke` frame, reading that step's fields of it. */
  start(frame: PokeStart | Poke): PokeStep {
    const binds = frame.bind ?? [];
    // Neither poke can be trusted: the open one is incomplete and the new one
    // may carry deltas that assume the open one was applied.
    if (this.#open) return this.#outOfTurn(frame.pokeId, "pokeStart", binds);
    this.#forget(frame.pokeId);
    const violation = (problem: string): PokeStep => {
      this.#remember(frame.pokeId);
      return dropped(this.#coveredBy(binds), new LunoraError("PROTOCOL_ERROR", `poke "${frame.pokeId}" ${problem}`));
    };

    // Check every binding before any takes effect.
    const named = new Set<string>();
    const live: Binding[] = [];
    for (const binding of binds) {
      if (named.has(binding.sub)) return violation(`binds subscription "${binding.sub}" twice`);
      named.add(binding.sub);
      if (!binding.columns.includes(binding.key)) return violation(`binds "${binding.sub}" with key column "${binding.key}" outside its columns`);
      // The answer to a subscribe the client has dropped since: nothing to bind.
      if (!this.#isSubscribed(binding.sub)) continue;
      // A group id names what its subscriptions read: the same id with other
      // columns (than its other bound subscriptions, or another binding of
      // this poke) would let one subscription's rows be checked against
      // another's projection.
      const group = this.#groups.get(binding.group);
      if (
        (group && [...group.subs].some((sub) => sub !== binding.sub) && !sameColumns(group, binding)) ||
        live.some((other) => other.group === binding.group && !sameColumns(other, binding))
      ) {
        return violation(`binds "${binding.sub}" to group "${binding.group}" with other columns than its other subscriptions`);
      }
      live.push(binding);
    }
    for (const sub of frame.resets ?? []) {
      // A stale answer (unsubscribed since) may reset what it binds, and a
      // poke that crossed the client's unsubscribe or re-subscribe may reset
      // what the client unbound itself (nothing of it is applied); anything
      // else the poke resets must be bound, or the room and the client
      // disagree on what this socket reads.
      if (!this.#bindings.has(sub) && !named.has(sub) && !this.#released.has(sub)) return violation(`resets subscription "${sub}" that is not bound`);
    }
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
      if (problem !== undefined) return violation(`subsets ${problem}`);
      resolved.set(sub, where as Where);
    }

    for (const binding of live) this.#bind(binding);
    this.#open = { pokeId: frame.pokeId, resets, resolved, blocks: new Map(), chars: 0, ops: 0 };
    return PENDING;
  }

  /** `chars` is the length of the frame's text, counted against {@link PokeBufferLimits.maxChars}. */
  part(frame: PokePart | Poke, chars: number): PokeStep {
    if (this.#dropped.includes(frame.pokeId)) return IGNORED;
    const poke = this.#open;
    if (poke?.pokeId !== frame.pokeId) return this.#outOfTurn(frame.pokeId, "pokePart");

    // Blocks are filed under their group as they pass the check: a failure
    // (here or at the bound below) drops the whole poke with them.
    let ops = 0;
    for (let i = 0; i < frame.ops.length; i++) {
      const block = frame.ops[i];
      const group = block[0];
      ops += block.length - 2;
      const binding = this.#groups.get(group);
      if (binding === undefined) continue; // nobody reads it (any more): ignored
      const problem = checkBlock(block, binding);
      if (problem !== undefined) {
        return this.#dropOpen(new LunoraError("PROTOCOL_ERROR", `poke "${poke.pokeId}" ops.${i} (group "${group.slice(0, 40)}"): ${problem}`));
      }
      let blocks = poke.blocks.get(group);
      if (!blocks) poke.blocks.set(group, (blocks = []));
      blocks.push(block);
    }

    poke.chars += chars;
    poke.ops += ops;
    const { maxChars, maxOps } = this.#limits;
    if (poke.chars > maxChars || poke.ops > maxOps) {
      // The subscriptions it resets are the ones whose snapshot is too big.
      return this.#dropOpen(new LunoraError("QUOTA_EXCEEDED", `poke "${poke.pokeId}" exceeds the client's poke buffer bound`, { maxChars, maxOps }), [
        ...poke.resets,
      ]);
    }
    return PENDING;
  }

  end(frame: PokeEnd | Poke): PokeStep {
    if (this.#dropped.includes(frame.pokeId)) {
      // The dropped poke is over; its id may be reused later.
      this.#forget(frame.pokeId);
      return { kind: "ignored", mutations: frame.mutations };
    }
    const poke = this.#open;
    if (poke?.pokeId !== frame.pokeId) return this.#outOfTurn(frame.pokeId, "pokeEnd");
    this.#open = undefined;
    const subs: CoveredSubscription[] = [];
    for (const [id, group] of this.#bindings) {
      subs.push({ id, keyColumn: this.#groups.get(group)!.key, blocks: poke.blocks.get(group) ?? NO_BLOCKS });
    }
    return {
      kind: "complete",
      poke: { pokeId: poke.pokeId, subs, resets: poke.resets, resolved: poke.resolved, cursor: frame.cursor, mutations: frame.mutations },
    };
  }

  /**
   * Whether the open poke covers subscription `sub` (every bound subscription
   * is covered) or resets it: also one the client unbound since, whose
   * snapshot the room may still end with an `error` instead of a `pokeEnd`.
   */
  covers(sub: string): boolean {
    return this.#open !== undefined && (this.#bindings.has(sub) || this.#open.resets.has(sub));
  }

  /**
   * Drops the open poke because of something outside it (an unreadable frame
   * that may have been one of its parts).
   */
  abort(error: LunoraError): PokeStep {
    return this.#open ? this.#dropOpen(error) : IGNORED;
  }

  /** Drops the open poke: every bound subscription starts over (`resets`: those it was resetting). */
  #dropOpen(error: LunoraError, resets?: string[]): PokeStep {
    this.#drop(this.#open!.pokeId);
    return { kind: "dropped", subs: [...this.#bindings.keys()], error, resets };
  }

  /** Forgets everything, bindings included: a new socket starts with nothing bound, and a poke cut off by a disconnect is never applied. */
  clear(): void {
    this.#open = undefined;
    this.#dropped.length = 0;
    this.#bindings.clear();
    this.#groups.clear();
    this.#released.clear();
  }

  /** The bound subscriptions, plus those a broken `pokeStart` was binding: all must start over. */
  #coveredBy(binds: readonly Binding[]): string[] {
    const subs = [...this.#bindings.keys()];
    for (const { sub } of binds) if (this.#isSubscribed(sub)) subs.push(sub);
    return subs;
  }

  #bind(binding: Binding): void {
    this.unbind(binding.sub);
    this.#released.delete(binding.sub);
    let group = this.#groups.get(binding.group);
    if (!group) this.#groups.set(binding.group, (group = groupBinding(binding)));
    group.subs.add(binding.sub);
    this.#bindings.set(binding.sub, binding.group);
  }

  /**
   * A `type` frame of poke `pokeId` that does not belong to the open poke
   * (or comes with none open). The open poke is dropped with what it
   * covers, plus the subscriptions `binds` of a `pokeStart` was binding;
   * `pokeId` is remembered, so its further frames are skipped quietly.
   */
  #outOfTurn(pokeId: string, type: string, binds: readonly Binding[] = []): PokeStep {
    const open = this.#open;
    const subs = open ? this.#coveredBy(binds) : [];
    if (open) this.#drop(open.pokeId);
    this.#remember(pokeId);
    return dropped(
      subs,
      new LunoraError("PROTOCOL_ERROR", `${type} for poke "${pokeId}" ${open ? `while poke "${open.pokeId}" was open` : "without a pokeStart"}`),
    );
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

function groupBinding(binding: Binding): GroupBinding {
  return { key: binding.key, columns: binding.columns, columnSet: new Set(binding.columns), subs: new Set() };
}

/** Same key column and the same set of columns (in any order). */
function sameColumns(a: { key: string; columns: readonly string[] }, b: Binding): boolean {
  const columns = new Set(b.columns);
  return a.key === b.key && new Set(a.columns).size === columns.size && a.columns.every((column) => columns.has(column));
}

/**
 * Checks a bound group's block against its binding, reading each item in
 * place (rows are handed to the collection as received, never rebuilt).
 * Returns the first problem, or `undefined`.
 */
function checkBlock(block: OpBlock, group: GroupBinding): string | undefined {
  const key = group.key;
  switch (block[1]) {
    case "p":
      for (let j = 2; j < block.length; j++) {
        const row = block[j] as Row;
        for (const column of group.columns) if (!hasOwn(row, column)) return `put ${j} lacks column "${column.slice(0, 40)}" of its binding`;
        if (!isRowKey(row[key])) return `put ${j} has no string or finite-number key in "${key.slice(0, 40)}"`;
      }
      return undefined;
    case "u":
      for (let j = 2; j < block.length; j++) {
        const patch = block[j] as Row;
        if (!hasOwn(patch, key) || !isRowKey(patch[key])) return `patch ${j} has no string or finite-number key in "${key.slice(0, 40)}"`;
        for (const column in patch) if (!group.columnSet.has(column)) return `patch ${j} names column "${column.slice(0, 40)}" outside its binding`;
      }
      return undefined;
    default:
      return undefined; // delete keys were type-checked with the frame
  }
}

function dropped(subs: Iterable<string>, error: LunoraError): PokeStep {
  return { kind: "dropped", subs: [...new Set(subs)], error };
}

function isWhere(value: unknown): boolean {
  return typeof value === "boolean" || (typeof value === "object" && value !== null && !Array.isArray(value));
}
