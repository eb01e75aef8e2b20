import { LunoraProvider } from "@lunora/db/react";
import { useCallback, useEffect, useState } from "react";
import { ChatContext } from "./chat-context";
import { ChannelList } from "./components/channel-list";
import { Composer } from "./components/composer";
import { MessageList } from "./components/message-list";
import { SignIn } from "./components/sign-in";
import { StatusBar } from "./components/status-bar";
import { Toasts, pushToast } from "./components/toasts";
import { createChat, type Chat } from "./lunora";
import { readSession, signOut, type Session } from "./session";

declare global {
  interface Window {
    /** The running chat stack, for poking around in devtools. */
    lunoraChat?: Chat;
  }
}

/**
 * The Lunora stack of the signed-in session. It lives outside React: it owns
 * sockets, the outbox and the cache, and must be built exactly once per
 * session (not per render, nor twice under StrictMode).
 */
let open: { token: string; chat: Chat } | undefined;

function chatFor(session: Session): Chat {
  if (open?.token !== session.token) {
    closeChat();
    const chat = createChat(session, {
      onWriteRejected: ({ code, message }) => pushToast({ kind: "error", code, text: `Your change was undone: ${message}` }),
      onStorageFailure: ({ code }) =>
        pushToast({
          kind: "warning",
          code,
          text: code === "UNREADABLE_WRITE" ? "A change saved earlier could not be read and was discarded." : "Changes made now may not survive a reload (storage unavailable).",
        }),
    });
    open = { token: session.token, chat };
    window.lunoraChat = chat;
  }
  return open.chat;
}

function closeChat(): void {
  if (!open) return;
  open.chat.executor.dispose();
  open.chat.client.close();
  open = undefined;
  delete window.lunoraChat;
}

export function App() {
  const [session, setSession] = useState<Session | null>(readSession);
  return (
    <>
      {session ? (
        <ChatScreen
          session={session}
          onSignOut={() => {
            closeChat();
            signOut();
            setSession(null);
          }}
        />
      ) : (
        <SignIn onSignedIn={setSession} />
      )}
      <Toasts />
    </>
  );
}

function ChatScreen({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const chat = chatFor(session);
  const channelId = useHashChannel("general");
  useEffect(() => {
    // Point the sharded messages collection at this channel's room.
    chat.scope.messages({ channelId });
  }, [chat, channelId]);

  const selectChannel = useCallback((id: string) => {
    location.hash = `#${encodeURIComponent(id)}`;
  }, []);

  return (
    <LunoraProvider client={chat.client}>
      <ChatContext.Provider value={{ chat, session }}>
        <div className="layout">
          <StatusBar onSignOut={onSignOut} />
          <ChannelList activeId={channelId} onSelect={selectChannel} />
          <main className="channel">
            <MessageList channelId={channelId} />
            <Composer channelId={channelId} />
          </main>
        </div>
      </ChatContext.Provider>
    </LunoraProvider>
  );
}

/** The channel in the URL hash (`#general`), so a reload stays where it was. */
function useHashChannel(fallback: string): string {
  const read = () => {
    try {
      return decodeURIComponent(location.hash.slice(1)) || fallback;
    } catch {
      return fallback; // a malformed hash
    }
  };
  const [channelId, setChannelId] = useState(read);
  useEffect(() => {
    const onChange = () => setChannelId(read());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, [fallback]);
  return channelId;
}
