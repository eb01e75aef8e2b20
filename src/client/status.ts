/**
 * Connection status of one room's socket.
 *
 * - `connecting`: a connection attempt is under way, or the socket is open
 *   but the room has not said `hello` yet (subscriptions are not live).
 * - `connected`: the socket is open and the room said `hello`.
 * - `offline`: the socket is closed and waiting to retry, or gave up for
 *   good (protocol version mismatch).
 */
export type RoomStatus = "connecting" | "connected" | "offline";

/**
 * Aggregate status of a {@link LunoraClient}: `idle` while it holds no room,
 * else the worst status among its rooms (`offline` > `connecting` >
 * `connected`) — leaving out rooms that are offline for a reason of their own
 * (a refused token, a throwing auth provider) as long as some other room is
 * not: those are reported through `onError`, and
 * one such room must not show a working client as `offline`.
 */
export type ConnectionStatus = "idle" | RoomStatus;

/** One room as the aggregate sees it. */
export interface RoomStatusEntry {
  status: RoomStatus;
  /** Offline because the room refuses this client's token (or there is none to send), not because of the network. */
  refusing: boolean;
}

/** Folds room statuses into the client's aggregate status. */
export function aggregateStatus(rooms: Iterable<RoomStatusEntry>): ConnectionStatus {
  const all = [...rooms];
  const counted = all.filter((room) => !room.refusing);
  return worstStatus((counted.length > 0 ? counted : all).map((room) => room.status));
}

function worstStatus(rooms: RoomStatus[]): ConnectionStatus {
  let result: ConnectionStatus = "idle";
  for (const status of rooms) {
    if (status === "offline") return "offline";
    if (status === "connecting") result = "connecting";
    else if (result === "idle") result = "connected";
  }
  return result;
}
