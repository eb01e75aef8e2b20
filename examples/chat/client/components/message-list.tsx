import { eq } from "@tanstack/db";
import { useLiveInfiniteQuery, useLiveQuery } from "@tanstack/react-db";
import { useEffect, useRef, useState, type FormEvent } from "react";
import { useMutator } from "@lunora/db/react";
import { useChat } from "../chat-context";

/** Messages shown at first, and added by each "load older messages". */
export const MESSAGE_PAGE_SIZE = 30;

/**
 * The channel's messages with their authors' names, on the client: messages
 * come from the channel's room, users from the lobby room. Rows with
 * `$hasPendingWrites` are optimistic (not yet confirmed by the server).
 *
 * The messages collection syncs on demand: this query's `where`, `orderBy`
 * and `limit` go to the room, which sends the latest page of the channel
 * (and keeps it live), not its whole history. "Load older messages" widens
 * the window by a page; TanStack DB asks the room for the rows after the
 * last one it has (a cursor), so older history arrives only when read.
 */
export function MessageList({ channelId }: { channelId: string }) {
  const { chat } = useChat();
  const { data: newestFirst, fetchNextPage, hasNextPage, isFetchingNextPage } = useLiveInfiniteQuery(
    (q) =>
      q
        .from({ message: chat.collections.messages })
        // The scope already limits the collection to this channel; the filter
        // also hides optimistic rows still pending in another channel.
        .where(({ message }) => eq(message.channelId, channelId))
        .orderBy(({ message }) => message.createdAt, "desc")
        .orderBy(({ message }) => message.id, "desc")
        .select(({ message }) => ({
          id: message.id,
          channelId: message.channelId,
          authorId: message.authorId,
          text: message.text,
          createdAt: message.createdAt,
          editedAt: message.editedAt,
          kind: message.kind,
          pending: message.$hasPendingWrites,
        })),
    { pageSize: MESSAGE_PAGE_SIZE },
    [channelId],
  );
  // Authors come from the lobby's (eager, small) users list, looked up here
  // rather than joined in the query: the window query then stays a plain
  // where + orderBy + limit that the room answers page by page.
  const { data: users } = useLiveQuery((q) => q.from({ user: chat.collections.users }));
  const names = new Map(users.map((user) => [user.id, user.name]));
  const messages = [...newestFirst].reverse().map((message) => ({ ...message, authorName: names.get(message.authorId) }));

  // Follow new messages at the bottom, but not when older ones were loaded above.
  const bottom = useRef<HTMLLIElement>(null);
  const newest = newestFirst[0]?.id;
  useEffect(() => {
    bottom.current?.scrollIntoView({ block: "end" });
  }, [newest]);

  return (
    <ol className="messages" data-testid="message-list" data-channel={channelId}>
      {hasNextPage && (
        <li className="older">
          <button className="link" data-testid="load-older" disabled={isFetchingNextPage} onClick={() => void fetchNextPage()}>
            {isFetchingNextPage ? "loading…" : "load older messages"}
          </button>
        </li>
      )}
      {messages.map((message) => (
        <MessageItem key={message.id} message={message} />
      ))}
      <li ref={bottom} className="bottom" aria-hidden />
    </ol>
  );
}

interface MessageView {
  id: string;
  channelId: string;
  authorId: string;
  authorName: string | undefined;
  text: string;
  createdAt: number;
  editedAt: number | null;
  kind: "user" | "system";
  pending: boolean;
}

/**
 * Edit and delete are offered on every message on purpose: the client does
 * not guess permissions. The room's rule (only the author may change a
 * message) decides, and a refused change rolls back with a toast.
 */
function MessageItem({ message }: { message: MessageView }) {
  const { chat, session } = useChat();
  const [draft, setDraft] = useState<string | null>(null);
  const edit = useMutator(chat.mutators.editMessage);
  const remove = useMutator(chat.mutators.deleteMessage);

  const save = (event: FormEvent) => {
    event.preventDefault();
    if (draft !== null && draft.trim() !== "" && draft !== message.text) {
      edit.mutate({ id: message.id, channelId: message.channelId, text: draft.trim() });
    }
    setDraft(null);
  };

  return (
    <li
      className={`message message-${message.kind}${message.authorId === session.userId ? " mine" : ""}${message.pending ? " pending" : ""}`}
      data-testid="message"
      data-message-id={message.id}
      data-author={message.authorId}
      data-pending={message.pending ? "true" : "false"}
    >
      <span className="author" data-testid="message-author">
        {message.kind === "system" ? "announcement" : (message.authorName ?? message.authorId)}
      </span>
      {draft === null ? (
        <span className="text">
          <span data-testid="message-text">{message.text}</span>
          {message.editedAt !== null && <em className="edited"> (edited)</em>}
        </span>
      ) : (
        <form className="edit" onSubmit={save}>
          <input data-testid="message-edit-input" autoFocus value={draft} onChange={(event) => setDraft(event.target.value)} />
          <button data-testid="message-edit-save">Save</button>
          <button type="button" onClick={() => setDraft(null)}>
            Cancel
          </button>
        </form>
      )}
      <span className="actions">
        {message.pending && (
          <span className="sending" title="not yet confirmed by the server">
            sending…
          </span>
        )}
        <button className="link" data-testid="message-edit" onClick={() => setDraft(message.text)}>
          edit
        </button>
        <button className="link" data-testid="message-delete" onClick={() => remove.mutate({ id: message.id, channelId: message.channelId })}>
          delete
        </button>
      </span>
    </li>
  );
}
