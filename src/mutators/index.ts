/**
 * `@lunora/db/mutators`: optimistic custom mutators that write through the
 * durable outbox.
 */
export { defineMutator, bindMutators } from "./mutators.js";
export type { MutatorDefinition, MutatorContext, BoundMutator, MutatorArgs, CheckedMutator } from "./mutators.js";
