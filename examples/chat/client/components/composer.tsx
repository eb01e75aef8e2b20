import { useMutator } from "@lunora/db/react";
import { useState, type FormEvent } from "react";
import { useChat } from "../chat-context";
import { useTyping } from "../typing";

/**
 * Sends through the table action: the message shows at once (optimistic),
 * is queued in the IndexedDB outbox (so it survives a reload while offline)
 * and settles when the room confirms it.
 */
export function Composer({ channelId }: { channelId: string }) {
  const { chat, session } = useChat();
  const send = useMutator(chat.actions.messages);
  const { typing, connected, notifyTyping } = useTyping(channelId, session.userId);
  const [text, setText] = useState("");

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const trimmed = text.trim();
    if (trimmed === "") return;
    send.mutate({ channelId, text: trimmed });
    setText("");
  };

  return (
    <form className="composer" onSubmit={submit}>
      <div className="typing" data-testid="typing-indicator" data-connected={connected}>
        {typing.length > 0 && `${typing.join(", ")} ${typing.length === 1 ? "is" : "are"} typing…`}
      </div>
      <input
        data-testid="composer-input"
        placeholder="Write a message"
        value={text}
        maxLength={2000}
        onChange={(event) => {
          notifyTyping(text === "");
          setText(event.target.value);
        }}
      />
      <button data-testid="composer-send">Send</button>
    </form>
  );
}
