/**
 * The app's Lunora stack, built once per signed-in session: the client (one
 * socket per room, both IndexedDB adapters), the collections with their
 * write actions, and the custom mutators.
 *
 * Types come from the Worker's definitions with `import type`, so a renamed
 * column or a changed mutator argument is a compile error here — no codegen.
 */
import { LunoraClient, createIndexedDbPersistence, createIndexedDbQueryCache, defineCollections } from "@lunora/db";
import { bindMutators, defineMutator } from "@lunora/db/mutators";
import type { InferLunoraApi } from "@lunora/db/server-kit";
import type { ChannelRow, MessageRow, lunora } from "../worker/lunora";
import { LOBBY } from "../shared/names";
import type { Session } from "./session";

export type ChatApi = InferLunoraApi<typeof lunora>;
/** A server mutator's argument type, as the Worker declares it. */
type MutatorArgs<Name extends keyof ChatApi["mutators"]> = ChatApi["mutators"][Name]["args"];

export interface ChatCallbacks {
  /** A write the server refused for good (its optimistic change is being rolled back). */
  onWriteRejected(event: { collection: string; code: string; message: string }): void;
  /** IndexedDB could not keep a write: it still goes out while online, but would not survive a reload. */
  onStorageFailure(event: { code: string; message: string }): void;
}

/** `Date.now()`, but strictly increasing: messages sent in the same millisecond keep their order. */
let lastTime = 0;
function monotonicNow(): number {
  lastTime = Math.max(Date.now(), lastTime + 1);
  return lastTime;
}

export function createChat(session: Session, callbacks: ChatCallbacks) {
  const client = new LunoraClient<ChatApi>({
    // The Worker that served this page also serves the sync sockets.
    host: location.host,
    protocol: location.protocol === "https:" ? "wss" : "ws",
    party: "chat-room",
    auth: () => session.token,
    // Durable outbox: writes made offline survive a reload and run once.
    persistence: createIndexedDbPersistence(),
    // Durable read cache: a reload renders the last rows before any socket opens.
    queryCache: createIndexedDbQueryCache(),
  });

  const db = defineCollections(
    client,
    {
      channels: {
        list: "channels",
        shardKey: LOBBY,
        load: "eager",
        insert: {
          mutation: "channels:create",
          optimistic: (input: { name: string }, id: string): ChannelRow => ({
            id,
            name: input.name,
            createdBy: session.userId,
            createdAt: Date.now(),
          }),
          toArgs: (row: ChannelRow) => ({ id: row.id, name: row.name }),
        },
      },
      users: { list: "users", shardKey: LOBBY, load: "eager" },
      messages: {
        shape: { name: "messagesByChannel" },
        // Scoped: nothing syncs until `db.scope.messages({ channelId })`, and
        // the channel id names the room (one room per channel).
        scopeBy: "channelId",
        // A channel's history can be long: only what the message list shows
        // (the latest page, more on "load older") is synced and kept live.
        syncMode: "on-demand",
        insert: {
          mutation: "messages:send",
          optimistic: (input: { channelId: string; text: string }, id: string): MessageRow => ({
            id,
            channelId: input.channelId,
            authorId: session.userId,
            text: input.text,
            createdAt: monotonicNow(),
            editedAt: null,
            kind: "user",
          }),
          toArgs: (row: MessageRow) => ({ id: row.id, channelId: row.channelId, text: row.text }),
        },
      },
    },
    {
      onWriteRejected: ({ collection, error, code }) => callbacks.onWriteRejected({ collection, code, message: error.message }),
      onStorageFailure: ({ code, message }) => callbacks.onStorageFailure({ code, message }),
    },
  );

  /**
   * Custom mutators: an optimistic body that runs at once against the local
   * collections, and the server mutator (`serverRef`) that decides. If the
   * server refuses (e.g. FORBIDDEN: not your message), the change rolls back.
   */
  const mutators = bindMutators(client, { collections: db.collections }, {
    editMessage: defineMutator<MutatorArgs<"messages:edit">, "messages:edit">({
      serverRef: "messages:edit",
      room: ({ channelId }) => channelId,
      apply: ({ collections }, { id, text }) => {
        collections.messages.update(id, (draft: MessageRow) => {
          draft.text = text;
          draft.editedAt = Date.now();
        });
      },
    }),
    deleteMessage: defineMutator<MutatorArgs<"messages:delete">, "messages:delete">({
      serverRef: "messages:delete",
      room: ({ channelId }) => channelId,
      apply: ({ collections }, { id }) => {
        collections.messages.delete(id);
      },
    }),
  });

  return { client, ...db, mutators };
}

export type Chat = ReturnType<typeof createChat>;
