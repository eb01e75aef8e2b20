/**
 * The type-level description of a room's API, derived from the server's
 * definitions (`InferLunoraApi<typeof options>` in server-kit) and carried by
 * `LunoraClient<Api>` so row and argument types reach collections and
 * mutators without codegen. Types only: nothing here exists at runtime.
 */
export interface LunoraApi {
  /** Table name → row type (lists). */
  tables: Record<string, Record<string, unknown>>;
  /** Shape name → its args (input of the args schema) and its projected row. */
  shapes: Record<string, { args: unknown; row: Record<string, unknown> }>;
  /** Mutator name → its args (input of the args schema) and its result. */
  mutators: Record<string, { args: unknown; result: unknown }>;
}

/** The API of a client that was not given one: every name is allowed, rows are records. */
export interface AnyLunoraApi extends LunoraApi {
  tables: Record<string, Record<string, unknown>>;
  shapes: Record<string, { args: any; row: Record<string, unknown> }>;
  mutators: Record<string, { args: any; result: unknown }>;
}
