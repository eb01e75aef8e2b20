/**
 * Group ids: the short names ops travel under (protocol 4, "Groups and
 * bindings" in docs/protocol.md).
 *
 * A subscription's group is what it reads — table, resolved predicate,
 * projection — as one JSON string (`ResolvedSubscription.group`). Frames
 * name groups, not subscriptions, so that every socket reading the same
 * groups can be sent the very same strings. The definition itself is too
 * long to repeat in every block, so a block carries a 64-bit hash of it.
 *
 * The hash must be the same after hibernation and after a restart (a
 * client keeps its bindings across a wake of the object; a resumed
 * subscription is bound again, and a stable id keeps resumes and live
 * frames of one shape shareable), so it is a plain deterministic hash of
 * the definition — FNV-1a, 64 bits — and not a counter or a random id.
 * A hash can collide; the {@link GroupRegistry} makes a collision a coded
 * error on the subscription that meets it, never two groups sharing frames.
 */
import { LunoraError } from "../src/protocol/index.js";

const utf8 = new TextEncoder();

/**
 * FNV-1a over the UTF-8 bytes of `definition`, 64 bits, in base 36 (at most
 * 13 characters). Computed in two 32-bit halves: the 64-bit prime is
 * 2^40 + 0x1b3, so `h × prime` is `h × 0x1b3 + (h << 40)`, and `h << 40`
 * only touches the high half.
 */
export function groupId(definition: string): string {
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (const byte of utf8.encode(definition)) {
    lo = (lo ^ byte) >>> 0;
    // lo × 0x1b3 < 2^41: exact in a double, so its carry into the high half is too.
    const low = lo * 0x1b3;
    const carry = Math.floor(low / 0x1_0000_0000);
    hi = (Math.imul(hi, 0x1b3) + (lo << 8) + carry) >>> 0;
    lo = low >>> 0;
  }
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString(36);
}

/** Below this many ids the registry is never pruned (pruning walks every socket). */
const MIN_PRUNE_AT = 256;

/**
 * The room's map from group id to the definition it stands for, while the
 * object is awake. Registering a definition whose id is already taken by
 * another definition throws `INTERNAL` (a hash collision): the subscription
 * that meets it is ended with that error, so two groups never share an id —
 * and so never share frames.
 *
 * Bounded: ids no live subscription uses are dropped once the registry holds
 * more than twice the ids in use (and at least {@link MIN_PRUNE_AT}).
 */
export class GroupRegistry {
  private readonly definitions = new Map<string, string>();
  private pruneAt = MIN_PRUNE_AT;

  constructor(
    /** The ids live subscriptions use right now (walks the room's sockets). */
    private readonly liveIds: () => Iterable<string>,
    /** The hash; replaceable so tests can force a collision. */
    public idOf: (definition: string) => string = groupId,
  ) {}

  /** Ids currently registered. */
  get size(): number {
    return this.definitions.size;
  }

  /**
   * Claims the id of a group definition for a subscription that is about to
   * be served; throws `INTERNAL` when another definition holds that id.
   * Call it right before the subscription joins the socket's live ones
   * (nothing may register in between: a prune would not see it as live).
   */
  register(definition: string, id = this.idOf(definition)): string {
    const known = this.definitions.get(id);
    if (known === definition) return id;
    if (known !== undefined) {
      throw new LunoraError("INTERNAL", `group id "${id}" is taken by another subscription group (hash collision); this subscription cannot be served`);
    }
    if (this.definitions.size >= this.pruneAt) this.prune(id);
    this.definitions.set(id, definition);
    return id;
  }

  /** Drops ids no live subscription uses (`keep`: the one being registered). */
  private prune(keep: string): void {
    const live = new Set(this.liveIds());
    live.add(keep);
    for (const id of this.definitions.keys()) if (!live.has(id)) this.definitions.delete(id);
    this.pruneAt = Math.max(MIN_PRUNE_AT, 2 * live.size);
  }
}
