/**
 * Who is signed in. DEMO ONLY: the lobby's join route answers with a token
 * that is the user name itself (see `authenticate` in worker/lunora.ts). The
 * session lives in localStorage so a reload — online or not — stays signed in.
 */
export interface Session {
  userId: string;
  token: string;
}

const KEY = "lunora-chat:session";

export function readSession(): Session | null {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) ?? "null") as Session | null;
    return value && typeof value.userId === "string" && typeof value.token === "string" ? value : null;
  } catch {
    return null;
  }
}

/** Joins the lobby (a route of the room's own, not Lunora's) and keeps the token. */
export async function signIn(name: string): Promise<Session> {
  const response = await fetch("/rooms/lobby/join", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  const body = (await response.json().catch(() => ({}))) as Partial<Session> & { error?: string };
  if (!response.ok || typeof body.token !== "string" || typeof body.userId !== "string") {
    throw new Error(body.error ?? `sign-in failed (${response.status})`);
  }
  const session = { userId: body.userId, token: body.token };
  localStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function signOut(): void {
  localStorage.removeItem(KEY);
}
