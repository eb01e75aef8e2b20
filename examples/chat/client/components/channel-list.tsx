import { useMutator } from "@lunora/db/react";
import { useLiveQuery } from "@tanstack/react-db";
import { useState, type FormEvent } from "react";
import { useChat } from "../chat-context";

/** Channels live in the lobby room and sync in full; a new one appears at once (optimistic) and everywhere after. */
export function ChannelList({ activeId, onSelect }: { activeId: string; onSelect: (id: string) => void }) {
  const { chat } = useChat();
  const { data: channels } = useLiveQuery({
    query: (q) => q.from({ channel: chat.collections.channels }).orderBy(({ channel }) => channel.createdAt, "asc"),
  });
  const createChannel = useMutator(chat.actions.channels);
  const [name, setName] = useState("");

  const create = (event: FormEvent) => {
    event.preventDefault();
    const trimmed = name.trim();
    if (trimmed === "") return;
    const { id } = createChannel.mutate({ name: trimmed });
    setName("");
    onSelect(id);
  };

  return (
    <nav className="channels" data-testid="channel-list">
      <h2>Channels</h2>
      <ul>
        {channels.map((channel) => (
          <li key={channel.id}>
            <button
              data-testid={`channel-${channel.name}`}
              className={channel.id === activeId ? "active" : ""}
              onClick={() => onSelect(channel.id)}
            >
              # {channel.name}
            </button>
          </li>
        ))}
      </ul>
      <form onSubmit={create}>
        <input data-testid="new-channel-name" placeholder="new channel" value={name} maxLength={32} onChange={(event) => setName(event.target.value)} />
      </form>
    </nav>
  );
}
