import { createContext, useContext } from "react";
import type { Chat } from "./lunora";
import type { Session } from "./session";

export const ChatContext = createContext<{ chat: Chat; session: Session } | null>(null);

export function useChat(): { chat: Chat; session: Session } {
  const value = useContext(ChatContext);
  if (!value) throw new Error("useChat outside <ChatContext.Provider>");
  return value;
}
