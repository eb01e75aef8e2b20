import type { Collection, Transaction } from "@tanstack/db";
import type { LunoraClient } from "../client/lunora-client.js";
import type { Checkpoints } from "../collections/checkpoints.js";
import { DEFAULT_ROOM } from "../collections/lunora-collection-options.js";
import { outboxFor, type OutboxOptions } from "../outbox/outbox.js";
import type { MutatorInput, MutatorName } from "../collections/types.js";
import type { LunoraApi } from "../protocol/index.js";

/** What `apply` receives: the local collections the mutator was bound with. */
export interface MutatorContext {
  collections: Record<string, Collection<any, any, any, any, any>>;
}

/** A client-side custom mutator: an optimistic body and the server mutator it pushes to. */
export interface MutatorDefinition<Args = unknown, Ref extends string = string> {
  /** Name of the server-side `defineMutator` (`"messages:send"`); it receives the same args. */
  serverRef: Ref;
  /** The optimistic body: writes to the local collections (insert/update/delete), synchronously. */
  apply: (context: MutatorContext, args: Args) => void;
  /** The room the write goes to: a name or a function of the args. Default `"default"`. */
  room?: string | ((args: Args) => string);
  /** The party (Durable Object binding); defaults to the client's. */
  party?: string;
}

/**
 * A bound mutator: calling it opens a TanStack DB optimistic transaction,
 * runs `apply`, queues the server write in the durable outbox and returns
 * the transaction (`isPersisted.promise` resolves once the room applied it,
 * rejects with a `LunoraError` on a permanent rejection).
 */
export type BoundMutator<Args> = (args: Args) => Transaction<any>;

/** Args of a definition: its own `Args`, else the server mutator's from the client's `Api`. */
export type MutatorArgs<Api extends LunoraApi, D> =
  D extends MutatorDefinition<infer Args, infer Ref>
    ? unknown extends Args
      ? Ref extends MutatorName<Api>
        ? MutatorInput<Api, Ref>
        : unknown
      : Args
    : never;

/**
 * What `bindMutators` requires of one definition, given the client's `Api`:
 * `serverRef` is one of the room's mutators (a literal: a `string` cannot be
 * checked), and args the client declares are assignable to that mutator's
 * input (what the client sends is what the server validates). The failing
 * case asks for a `serverRef` no definition has, so the error names the cause.
 * An untyped client (`MutatorName` is `string`) accepts every definition.
 */
export type CheckedMutator<Api extends LunoraApi, D> =
  string extends MutatorName<Api>
    ? unknown
    : D extends MutatorDefinition<infer Args, infer Ref>
      ? string extends Ref
        ? { serverRef: "(serverRef is a string, not a literal name: annotate apply's args parameter instead of passing defineMutator<Args>, or pass the name too: defineMutator<Args, \"items:rename\">)" }
        : Ref extends MutatorName<Api>
          ? unknown extends Args
            ? unknown
            : [Args] extends [MutatorInput<Api, Ref>]
              ? unknown
              : { serverRef: `${Ref} (the client's args are not assignable to this server mutator's args)` }
          : { serverRef: MutatorName<Api> }
      : unknown;

/**
 * Declares a custom mutator's optimistic body.
 *
 * @example
 * ```ts
 * import { defineMutator } from "@lunora/db/mutators";
 *
 * // Args declared on `apply` (not as `defineMutator<Args>`): `serverRef`
 * // stays the literal "items:rename", which `bindMutators` checks against
 * // the room's mutators when the client is typed.
 * const renameItem = defineMutator({
 *   serverRef: "items:rename",
 *   room: "default",
 *   apply: ({ collections }, { id, title }: { id: string; title: string }) => {
 *     collections.items.update(id, (draft) => { draft.title = title; });
 *   },
 * });
 * ```
 *
 * Passing `Args` explicitly (`defineMutator<Args>(…)`) widens `serverRef`
 * to `string` (TypeScript infers no type argument once one is given), which a
 * typed client's `bindMutators` rejects: pass the name too,
 * `defineMutator<Args, "items:rename">(…)`.
 */
export function defineMutator<Args = unknown, const Ref extends string = string>(
  definition: MutatorDefinition<Args, Ref>,
): MutatorDefinition<Args, Ref> {
  return definition;
}

/**
 * Binds mutators to a client and its collections. Each handle writes
 * through the client's durable outbox (the same one `defineCollections`
 * uses): the write is persisted with its `clientSeq`, survives a reload and
 * runs on the server exactly once.
 *
 * `collections` are the collections `apply` may touch; their names must be
 * the same in every session (a queued write records them) and they must be
 * bound in the same task as `defineCollections` (the outbox's registry is
 * fixed when it starts). `checkpoints` is accepted for API symmetry with
 * `lunoraCollectionOptions`: the outbox settles a write from the same
 * signal (the poke carrying its outcome, handed to `commit()`), so the
 * overlay is always held until the server rows arrive — there is no
 * "drop at once" mode.
 *
 * With a typed client (`LunoraClient<InferLunoraApi<typeof lunora>>`), each
 * `serverRef` must be a literal name of one of the room's mutators, args a
 * definition declares must be assignable to that mutator's input, and a
 * definition that declares none takes the server mutator's input
 * (see {@link CheckedMutator}). An untyped client accepts any definition.
 *
 * @example
 * ```ts
 * import { bindMutators } from "@lunora/db/mutators";
 *
 * const bumpItem = defineMutator({ serverRef: "items:bump", apply: () => {} });
 * const mutate = bindMutators(client, { collections: db.collections }, { renameItem, bumpItem });
 * const tx = mutate.renameItem({ id, title: "new" });
 * mutate.bumpItem({ id }); // items:bump's input, from the room's definitions
 * // mutate.renameItem({ id, title: 1 }); // compile error
 * await tx.isPersisted.promise;
 * ```
 */
export function bindMutators<
  Api extends LunoraApi,
  const M extends Record<string, MutatorDefinition<any, any>>,
>(
  client: LunoraClient<Api>,
  bindings: { collections: Record<string, Collection<any, any, any, any, any>>; checkpoints?: Checkpoints },
  mutators: M & { [K in keyof M]: NoInfer<CheckedMutator<Api, M[K]>> },
  options: OutboxOptions = {},
): { [K in keyof M]: BoundMutator<MutatorArgs<Api, M[K]>> } {
  const outbox = outboxFor(client, options);
  outbox.registerCollections(bindings.collections);
  const context: MutatorContext = { collections: bindings.collections };
  const handles: Record<string, BoundMutator<unknown>> = {};
  for (const [key, definition] of Object.entries(mutators)) {
    handles[key] = (args) => {
      const room =
        typeof definition.room === "function" ? definition.room(args) : (definition.room ?? DEFAULT_ROOM);
      return outbox.enqueue({
        kind: "mutator",
        name: definition.serverRef,
        args,
        room,
        party: definition.party,
        apply: () => definition.apply(context, args),
      });
    };
  }
  return handles as { [K in keyof M]: BoundMutator<MutatorArgs<Api, M[K]>> };
}
