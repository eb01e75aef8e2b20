import { createContext, useContext, type ReactNode } from "react";
import type { LunoraClient } from "../client/lunora-client.js";
import { LunoraError, type AnyLunoraApi, type LunoraApi } from "../protocol/index.js";

const LunoraClientContext = createContext<LunoraClient<any> | undefined>(undefined);

/** Props of {@link LunoraProvider}. */
export interface LunoraProviderProps {
  client: LunoraClient<any>;
  children?: ReactNode;
}

/**
 * Puts a {@link LunoraClient} in context for the hooks below it. Build the
 * client once (not per render): it owns sockets and the query cache.
 *
 * @example
 * ```tsx
 * import { useState } from "react";
 * import { LunoraClient, createIndexedDbQueryCache } from "@lunora/db";
 * import { LunoraProvider } from "@lunora/db/react";
 *
 * export function Providers({ children }: { children: React.ReactNode }) {
 *   const [client] = useState(
 *     () => new LunoraClient({ host: "my-app.workers.dev", party: "chat-room", queryCache: createIndexedDbQueryCache() }),
 *   );
 *   return <LunoraProvider client={client}>{children}</LunoraProvider>;
 * }
 * ```
 */
export function LunoraProvider({ client, children }: LunoraProviderProps) {
  return <LunoraClientContext.Provider value={client}>{children}</LunoraClientContext.Provider>;
}

/**
 * The client of the nearest {@link LunoraProvider}. Throws `INVALID_ARGS`
 * outside one (a missing provider is a wiring bug, better loud than silent).
 *
 * @example
 * ```tsx
 * const client = useLunoraClient<ChatApi>();
 * ```
 */
export function useLunoraClient<Api extends LunoraApi = AnyLunoraApi>(): LunoraClient<Api> {
  const client = useContext(LunoraClientContext);
  if (!client) throw new LunoraError("INVALID_ARGS", "useLunoraClient: no <LunoraProvider client={…}> above this component");
  return client as LunoraClient<Api>;
}

/** The explicit client if given, else the provider's. */
export function useClientOrContext(client: LunoraClient<any> | undefined): LunoraClient<any> {
  const fromContext = useContext(LunoraClientContext);
  const chosen = client ?? fromContext;
  if (!chosen) throw new LunoraError("INVALID_ARGS", "no LunoraClient: pass `client` or render inside <LunoraProvider>");
  return chosen;
}
