import path from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalWorker, type LocalWorker, type StartLocalWorkerOptions } from "../../src/testing/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Starts the benchmark room (bench/fixtures/room) in real local workerd. */
export function startBenchRoom(options: Partial<StartLocalWorkerOptions> = {}): Promise<LocalWorker> {
  return startLocalWorker({ config: path.join(here, "../fixtures/room/wrangler.jsonc"), ...options });
}

export interface BenchItem {
  id: string;
  listId: string;
  title: string;
  rank: number;
}

/** Calls one of the bench room's own routes (`/rooms/:room/...`). */
export async function roomCall<T = unknown>(worker: LocalWorker, room: string, route: string, body?: unknown): Promise<T> {
  const response = await worker.fetch(
    `/rooms/${encodeURIComponent(room)}${route}`,
    body === undefined ? {} : { method: "POST", body: JSON.stringify(body) },
  );
  if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** Upserts rows with plain `sql.exec` in one transaction (one flush, one poke per subscriber). */
export async function putItems(worker: LocalWorker, room: string, items: BenchItem[]): Promise<void> {
  // Large loads go in slices so one request stays well under workerd's body limits.
  for (let i = 0; i < items.length; i += 5_000) await roomCall(worker, room, "/items/put", items.slice(i, i + 5_000));
}

export interface Wakes {
  constructed: number;
  handlerCalls: number;
  byHandler: Record<string, number>;
}

/** The room's wake counters, read from the Worker without touching the object. */
export async function readWakes(worker: LocalWorker): Promise<Wakes> {
  const response = await worker.fetch("/bench/wakes");
  return (await response.json()) as Wakes;
}
