import "fake-indexeddb/auto";
import type { Collection } from "@tanstack/db";
import { LunoraClient } from "../../src/index.js";
import type { QueryCache } from "../../src/cache/index.js";
import { recordingWebSocket, type FrameLog } from "../helpers/recording-websocket.js";

export type Item = { id: string; listId: string; title: string; rank: number; secret?: number };

let databases = 0;
/** A database name no other test uses (fake-indexeddb is one factory per process). */
export const freshDatabase = () => `lunora-test-${process.pid}-${databases++}`;

export interface TestClient {
  client: LunoraClient;
  log: FrameLog;
  /** WebSockets constructed so far (a socket is opened per room on its first subscription). */
  sockets: () => number;
}

/** A client over `ws` that records frames and counts socket constructions. */
export function newClient(options: { host: string; token?: string; queryCache?: QueryCache }): TestClient {
  const recording = recordingWebSocket();
  let sockets = 0;
  class CountingWebSocket extends recording.WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      sockets++;
    }
  }
  const client = new LunoraClient({
    host: options.host,
    party: "room",
    auth: options.token ?? "user:alice",
    WebSocket: CountingWebSocket,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    pingIntervalMs: 0,
    queryCache: options.queryCache,
  });
  return { client, log: recording.log, sockets: () => sockets };
}

/** The collection's rows without TanStack's virtual `$` properties. */
export function rowsOf(collection: Collection<any, any, any>): Map<string, Record<string, unknown>> {
  return new Map(
    [...collection.state.entries()].map(([key, row]) => [
      String(key),
      Object.fromEntries(Object.entries(row as object).filter(([k]) => !k.startsWith("$"))),
    ]),
  );
}

/** Counts IndexedDB read-write transactions (what a flush costs), independent of the cache's own counters. */
export function countReadWriteTransactions(): { count: () => number; restore: () => void } {
  const proto = (globalThis as unknown as { IDBDatabase: { prototype: IDBDatabase } }).IDBDatabase.prototype;
  const original = proto.transaction;
  let count = 0;
  proto.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase["transaction"]>) {
    if (args[1] === "readwrite") count++;
    return original.apply(this, args);
  } as IDBDatabase["transaction"];
  return { count: () => count, restore: () => void (proto.transaction = original) };
}
