import path from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalWorker, type LocalWorker, type StartLocalWorkerOptions } from "../../src/testing/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Starts the fixture room (test/fixtures/room) in real local workerd. */
export function startFixtureRoom(options: Partial<StartLocalWorkerOptions> = {}): Promise<LocalWorker> {
  return startLocalWorker({ config: path.join(here, "../fixtures/room/wrangler.jsonc"), ...options });
}

export interface ItemInput {
  id: string;
  listId: string;
  title: string;
  rank?: number;
  secret?: number;
}

/** Calls one of the room's own routes (`/rooms/:room/...`), which write with plain `sql.exec`. */
export async function roomCall<T = unknown>(worker: LocalWorker, room: string, route: string, body?: unknown): Promise<T> {
  const response = await worker.fetch(`/rooms/${encodeURIComponent(room)}${route}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export const putItems = (worker: LocalWorker, room: string, items: ItemInput | ItemInput[]) => roomCall(worker, room, "/items/put", items);
export const updateItem = (worker: LocalWorker, room: string, fields: Partial<ItemInput> & { id: string }) => roomCall(worker, room, "/items/update", fields);
export const deleteItem = (worker: LocalWorker, room: string, id: string) => roomCall(worker, room, "/items/delete", { id });
export const serverItems = (worker: LocalWorker, room: string) => roomCall<Array<Required<ItemInput>>>(worker, room, "/items");

/** A row of the fixture's `props` table (on-demand tests): every comparable type, NULLs, and a column the shape hides. */
export interface PropInput {
  id: string;
  grp: string;
  a: number | null;
  b: number | null;
  c: string | null;
  hidden?: string | null;
}

/** Upserts and deletes rows of `props` in one transaction, through the room's own route. */
export const putProps = (worker: LocalWorker, room: string, put: PropInput[] = [], del: string[] = []) => roomCall(worker, room, "/props/put", { put, del });
