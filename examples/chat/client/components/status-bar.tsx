import { useConnectionStatus, usePendingWrites } from "@lunora/db/react";
import { useChat } from "../chat-context";

const LABELS = { idle: "Idle", connecting: "Connecting…", connected: "Live", offline: "Offline" } as const;

/** Who I am, whether the sockets are up, and how many of my writes the server has not confirmed yet. */
export function StatusBar({ onSignOut }: { onSignOut: () => void }) {
  const { session } = useChat();
  const status = useConnectionStatus();
  const pending = usePendingWrites();
  return (
    <header className="status-bar">
      <strong>Lunora chat</strong>
      <span className={`badge badge-${status}`} data-testid="connection-status" data-status={status}>
        {LABELS[status]}
      </span>
      <span className="pending" data-testid="pending-writes" data-count={pending} title="writes not yet confirmed by the server">
        {pending === 0 ? "all saved" : `${pending} unsaved`}
      </span>
      <span className="me" data-testid="me">
        {session.userId}
      </span>
      <button className="link" onClick={onSignOut}>
        sign out
      </button>
    </header>
  );
}
