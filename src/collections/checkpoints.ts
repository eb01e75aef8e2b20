import { LunoraError, type MutationResult } from "../protocol/index.js";
import type { LunoraClient } from "../client/lunora-client.js";

/**
 * Outcomes kept per room. The write path asks for an outcome right after it
 * sends a write, so only recent ones matter; older ones answer from the
 * watermark alone.
 */
export const MAX_RETAINED_RESULTS_PER_ROOM = 1_024;

/**
 * Mutation outcomes as seen in synced state, per room.
 *
 * A room sends a write's outcome in the same poke as the rows the write
 * changed (`pokeEnd.mutations`). The client hands the poke's rows to
 * `commit()` first and only then records the outcomes here, so a write
 * resolved through {@link Checkpoints.waitFor} is one whose data core has
 * already accepted. That ordering is what lets the write path drop an
 * optimistic row in the same update that brings the server row (no flicker);
 * waiting for the rows to become *visible* instead would deadlock, because
 * core holds them until the write's own transaction settles.
 *
 * One instance per client, shared by all its collections
 * (`lunoraCollectionOptions(...).checkpoints`).
 *
 * @example
 * ```ts
 * const { checkpoints } = lunoraCollectionOptions({ client, list: "messages" });
 * const outcome = await checkpoints.waitFor("general", 7);
 * if (outcome.status === "rejected") rollback(outcome.error);
 * ```
 */
export interface Checkpoints {
  /**
   * Highest `clientSeq` of this client whose outcome (applied or rejected)
   * has been seen in `room`; `0` when none. `error` outcomes committed nothing
   * and do not move it.
   */
  watermark(room: string, party?: string): number;
  /** The recorded outcome of `clientSeq` in `room`, if still retained. */
  result(room: string, clientSeq: number, party?: string): MutationResult | undefined;
  /**
   * Resolves with the outcome of `clientSeq` once the poke carrying it has
   * been committed. Rejects with `NOT_FOUND` if the outcome was seen but is no
   * longer retained, with `IDENTITY_CHANGED` when the client switches
   * identity first (outcomes are per writer, and the writer changes with the
   * identity), and with `signal.reason` when `signal` aborts.
   */
  waitFor(room: string, clientSeq: number, options?: { party?: string; signal?: AbortSignal }): Promise<MutationResult>;
}

interface RoomCheckpoints {
  watermark: number;
  results: Map<number, MutationResult>;
  /** Settled with the outcome, or with an error when it can no longer come. */
  waiters: Map<number, Set<(result: MutationResult | LunoraError) => void>>;
}

const byClient = new WeakMap<LunoraClient<any>, Checkpoints>();

/** The {@link Checkpoints} of `client`, created on first use. */
export function checkpointsFor(client: LunoraClient<any>): Checkpoints {
  let checkpoints = byClient.get(client);
  if (!checkpoints) {
    checkpoints = createCheckpoints(client);
    byClient.set(client, checkpoints);
  }
  return checkpoints;
}

function createCheckpoints(client: LunoraClient<any>): Checkpoints {
  const rooms = new Map<string, RoomCheckpoints>();
  const keyOf = (room: string, party: string | undefined) => JSON.stringify([party ?? client.party, room]);
  /** Entries are made by outcomes and waiters only: reading a room never grows the map. */
  const roomOf = (room: string, party: string | undefined): RoomCheckpoints => {
    const key = keyOf(room, party);
    let state = rooms.get(key);
    if (!state) rooms.set(key, (state = { watermark: 0, results: new Map(), waiters: new Map() }));
    return state;
  };
  const peek = (room: string, party: string | undefined): RoomCheckpoints | undefined => rooms.get(keyOf(room, party));

  // Outcomes carry no writer id: after an identity switch the room answers
  // another writer (another clientId, its own clientSeq numbering), so the old
  // identity's outcomes and watermarks would be read as the new one's.
  // Forget them; a waiter of the old identity's write will get no answer.
  client.onIdentityChange(() => {
    const waiting = [...rooms.values()];
    rooms.clear();
    for (const state of waiting) {
      for (const [clientSeq, waiters] of state.waiters) {
        const error = new LunoraError("IDENTITY_CHANGED", `clientSeq ${clientSeq} was written under another identity`);
        for (const settle of waiters) settle(error);
      }
    }
  });

  client.onMutationResults((room, results, party) => {
    const state = roomOf(room, party);
    for (const result of results) {
      if (result.status !== "error" && result.clientSeq > state.watermark) state.watermark = result.clientSeq;
      state.results.delete(result.clientSeq);
      state.results.set(result.clientSeq, result);
      if (state.results.size > MAX_RETAINED_RESULTS_PER_ROOM) {
        state.results.delete(state.results.keys().next().value!);
      }
      const waiters = state.waiters.get(result.clientSeq);
      if (waiters) {
        state.waiters.delete(result.clientSeq);
        for (const resolve of waiters) resolve(result);
      }
    }
  });

  return {
    watermark: (room, party) => peek(room, party)?.watermark ?? 0,
    result: (room, clientSeq, party) => peek(room, party)?.results.get(clientSeq),
    waitFor: (room, clientSeq, options = {}) => {
      const seen = peek(room, options.party);
      const known = seen?.results.get(clientSeq);
      if (known) return Promise.resolve(known);
      if (seen && clientSeq <= seen.watermark) {
        return Promise.reject(
          new LunoraError("NOT_FOUND", `outcome of clientSeq ${clientSeq} in room "${room}" is no longer retained`, {
            watermark: seen.watermark,
          }),
        );
      }
      return new Promise<MutationResult>((resolve, reject) => {
        const signal = options.signal;
        if (signal?.aborted) return reject(signal.reason);
        const state = roomOf(room, options.party);
        let waiters = state.waiters.get(clientSeq);
        if (!waiters) state.waiters.set(clientSeq, (waiters = new Set()));
        const settle = (result: MutationResult | LunoraError) => {
          signal?.removeEventListener("abort", abort);
          if (result instanceof LunoraError) reject(result);
          else resolve(result);
        };
        const abort = () => {
          waiters!.delete(settle);
          if (waiters!.size === 0) state.waiters.delete(clientSeq);
          reject(signal!.reason);
        };
        waiters.add(settle);
        signal?.addEventListener("abort", abort, { once: true });
      });
    },
  };
}
