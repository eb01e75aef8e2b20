/**
 * What the chat syncs, and who may do what. This module is imported by the
 * Durable Object (values) and by the browser client (`import type` only, so
 * row, shape and mutator types reach the client without a codegen step).
 *
 * Sharding: every room is a `ChatRoom` object, named by its shard key.
 * - The room named "lobby" holds the small, app-wide tables: `channels` and
 *   `users`. Every client reads both in full (a "list").
 * - Each channel has its own room, named by the channel id, holding that
 *   channel's `messages`. A client syncs only the channel it looks at
 *   (`messagesByChannel`), so one busy channel never slows another and the app
 *   grows by adding objects, which Cloudflare places for us.
 * The same class serves both kinds of room; the mutators check that a write
 * lands in the right one.
 */
import * as v from "valibot";
import { LunoraError, defineLunora, defineMutator, defineShape, type LunoraContext, type MutationContext } from "@lunora/db/server-kit";
import { LOBBY, USER_NAME } from "../shared/names";

/** Demo-only identity: the token IS the user name. Use a signed token (JWT, session id) in a real app. */
export interface ChatAuth {
  userId: string;
}

const Channel = v.object({ id: v.string(), name: v.string(), createdBy: v.string(), createdAt: v.number() });
const User = v.object({ id: v.string(), name: v.string(), joinedAt: v.number() });
const Message = v.object({
  id: v.string(),
  channelId: v.string(),
  authorId: v.string(),
  text: v.string(),
  createdAt: v.number(),
  editedAt: v.nullable(v.number()),
  /** "user" for messages sent by people, "system" for announcements made by the room's own route. */
  kind: v.picklist(["user", "system"]),
});

export type ChannelRow = v.InferOutput<typeof Channel>;
export type UserRow = v.InferOutput<typeof User>;
export type MessageRow = v.InferOutput<typeof Message>;

const Id = v.pipe(v.string(), v.uuid());
const ChannelId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
const Text = v.pipe(v.string(), v.trim(), v.minLength(1, "a message needs some text"), v.maxLength(2000));

/**
 * When a new message is created: now, but always after the channel's latest
 * message. The runtime's clock does not move while one request runs, so
 * messages replayed in one batch (a client coming back online) would
 * otherwise share a timestamp and lose their order.
 */
export function nextMessageTime(sql: MutationContext["sql"]): number {
  const { latest } = sql.exec(`SELECT MAX(createdAt) AS latest FROM messages`).one() as { latest: number | null };
  return Math.max(Date.now(), (latest ?? 0) + 1);
}

/** What the mutators below see: the identity `authenticate` returned. */
type Ctx = MutationContext<ChatAuth>;

/** Loads a message and checks that the caller wrote it: the rule behind edit and delete. */
function ownMessage(ctx: Ctx, id: string): MessageRow {
  const message = ctx.db.get<MessageRow>("messages", id);
  if (message === null) throw new LunoraError("NOT_FOUND", "this message no longer exists");
  if (message.authorId !== ctx.auth.userId) throw new LunoraError("FORBIDDEN", "only the author may change this message");
  return message;
}

const mutators = {
  "channels:create": defineMutator({
    args: v.object({ id: Id, name: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(32)) }),
    server: (ctx: Ctx, { id, name }) => {
      if (ctx.room !== LOBBY) throw new LunoraError("FORBIDDEN", "channels are created in the lobby");
      return ctx.db.insert("channels", { name, createdBy: ctx.auth.userId, createdAt: Date.now() }, { clientId: id });
    },
  }),
  "messages:send": defineMutator({
    args: v.object({ id: Id, channelId: ChannelId, text: Text }),
    server: (ctx: Ctx, { id, channelId, text }) => {
      if (channelId !== ctx.room) throw new LunoraError("FORBIDDEN", "a channel's messages live in the channel's room");
      return ctx.db.insert(
        "messages",
        { channelId, authorId: ctx.auth.userId, text, createdAt: nextMessageTime(ctx.sql), editedAt: null, kind: "user" },
        { clientId: id },
      );
    },
  }),
  "messages:edit": defineMutator({
    args: v.object({ id: v.string(), channelId: ChannelId, text: Text }),
    server: (ctx: Ctx, { id, text }) => {
      ownMessage(ctx, id);
      ctx.db.patch("messages", id, { text, editedAt: Date.now() });
    },
  }),
  "messages:delete": defineMutator({
    args: v.object({ id: v.string(), channelId: ChannelId }),
    server: (ctx: Ctx, { id }) => {
      ownMessage(ctx, id);
      ctx.db.delete("messages", id);
    },
  }),
};

export const lunora = defineLunora({
  tables: {
    // The lobby's small tables are read whole ("lists"): the room opts in and
    // names the columns a list may send.
    channels: { key: "id", row: Channel, list: true, columns: ["id", "name", "createdBy", "createdAt"] },
    users: { key: "id", row: User, list: true, columns: ["id", "name", "joinedAt"] },
    messages: { key: "id", row: Message },
  },
  shapes: {
    /** One channel's messages. The channel is the shard key: it must be read in its own room. */
    messagesByChannel: defineShape({
      table: "messages",
      args: v.object({ channelId: ChannelId }),
      where: (ctx: LunoraContext<ChatAuth>, { channelId }) => {
        if (channelId !== ctx.room) throw new LunoraError("FORBIDDEN", "a channel's messages are read in the channel's room");
        return { channelId };
      },
      columns: ["id", "channelId", "authorId", "text", "createdAt", "editedAt", "kind"],
    }),
  },
  mutators,
  /**
   * DEMO ONLY: the `token` query parameter is the user name, taken on trust.
   * A real app verifies a signed token here and returns the identity it names.
   */
  authenticate: (request: Request): ChatAuth | null => {
    const token = new URL(request.url).searchParams.get("token");
    return token !== null && USER_NAME.test(token) ? { userId: token.toLowerCase() } : null;
  },
});
