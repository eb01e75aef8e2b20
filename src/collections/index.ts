/**
 * `@lunora/db/collections`: TanStack DB collection sources backed by Lunora rooms.
 */
export { lunoraCollectionOptions, DEFAULT_ROOM } from "./lunora-collection-options.js";
export { CURSOR_METADATA_KEY } from "./collection-sync.js";
export { checkpointsFor, MAX_RETAINED_RESULTS_PER_ROOM } from "./checkpoints.js";
export type { Checkpoints } from "./checkpoints.js";
export type {
  ListName,
  ShapeName,
  ShapeArgs,
  ShapeScopeArgs,
  ShapeRef,
  MutatorName,
  MutatorInput,
  LunoraCollectionBaseOptions,
  LunoraListCollectionOptions,
  LunoraShapeCollectionOptions,
  LunoraCollectionUtils,
  LunoraCollectionConfig,
  LunoraCollectionOptionsResult,
} from "./types.js";
