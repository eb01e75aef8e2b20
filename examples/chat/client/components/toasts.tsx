import { useSyncExternalStore } from "react";

export interface Toast {
  id: number;
  kind: "error" | "warning";
  code: string;
  text: string;
}

/** How long a toast stays up unless clicked away. */
const TOAST_MS = 8_000;
/** At most this many at once; the oldest go first. */
const MAX_TOASTS = 5;

// A tiny store outside React, so code that is not a component (the Lunora
// callbacks in lunora.ts) can raise a toast.
let toasts: Toast[] = [];
let nextId = 0;
const listeners = new Set<() => void>();

function publish(next: Toast[]): void {
  toasts = next;
  for (const listener of listeners) listener();
}

export function pushToast(toast: Omit<Toast, "id">): void {
  const id = nextId++;
  publish([...toasts.slice(-(MAX_TOASTS - 1)), { ...toast, id }]);
  setTimeout(() => dismissToast(id), TOAST_MS);
}

export function dismissToast(id: number): void {
  if (toasts.some((toast) => toast.id === id)) publish(toasts.filter((toast) => toast.id !== id));
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function Toasts() {
  const current = useSyncExternalStore(subscribe, () => toasts);
  return (
    <div className="toasts" aria-live="polite">
      {current.map((toast) => (
        <div key={toast.id} className={`toast toast-${toast.kind}`} data-testid="toast" data-code={toast.code} onClick={() => dismissToast(toast.id)}>
          <code>{toast.code}</code> {toast.text}
        </div>
      ))}
    </div>
  );
}
