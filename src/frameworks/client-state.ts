/**
 * The two client values every framework binding shows — connection status
 * and the pending-write count — as "read now" + "subscribe to changes"
 * pairs, the shape every framework's external-store primitive takes
 * (React's `useSyncExternalStore`, a Vue ref, a Solid signal, a Svelte
 * `readable`).
 */
import type { LunoraClient } from "../client/lunora-client.js";
import type { ConnectionStatus } from "../client/status.js";

/** Which status to follow: the client's aggregate, or one room's with `room`. */
export interface ConnectionStatusOptions {
  /** One room's status instead of the aggregate. */
  room?: string;
  /** The room's party; defaults to the client's. */
  party?: string;
}

/** A value of the client that changes over time. */
export interface ClientValue<T> {
  read(): T;
  /** Calls `onChange` after the value may have changed. Returns a function that stops it. */
  subscribe(onChange: () => void): () => void;
}

/** The aggregate connection status, or one room's. */
export function connectionStatusOf(client: LunoraClient<any>, options: ConnectionStatusOptions = {}): ClientValue<ConnectionStatus> {
  const { room } = options;
  const party = options.party ?? client.party;
  return {
    read: () => (room === undefined ? client.status : client.roomStatus(room, party)),
    subscribe: (onChange) =>
      room === undefined
        ? client.onStatusChange(() => onChange())
        : client.onRoomStatusChange((changed, _status, changedParty) => {
            if (changed === room && changedParty === party) onChange();
          }),
  };
}

/** What the write path adds to the client: the number of writes not yet confirmed, and its change event. */
interface PendingWritesSource {
  readonly pendingWrites?: number;
  onPendingWritesChange?(listener: (count: number) => void): () => void;
}

/**
 * Writes of the signed-in identity queued or in flight (this tab's and those
 * other tabs left in the shared outbox). `0` on a client-like object without
 * the write path.
 */
export function pendingWritesOf(client: LunoraClient<any>): ClientValue<number> {
  const source = client as unknown as PendingWritesSource;
  return {
    read: () => source.pendingWrites ?? 0,
    subscribe: (onChange) => source.onPendingWritesChange?.(() => onChange()) ?? noop,
  };
}

function noop(): void {}
