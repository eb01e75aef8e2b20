import type { Collection, Transaction } from "@tanstack/db";
import { IDBFactory } from "fake-indexeddb";
import { WebSocket } from "ws";
import {
  LunoraClient,
  createIndexedDbPersistence,
  createIndexedDbQueryCache,
  defineCollections,
  type WriteRejectedEvent,
} from "../src/index.js";
import { bindMutators, defineMutator } from "../src/mutators/index.js";
import type { LocalWorker } from "../src/testing/index.js";
import { TcpProxy } from "../test/helpers/tcp-proxy.js";
import { LIST_IDS, type Scenario, type Step } from "./schedule.js";

type Item = { id: string; listId: string; title: string; rank: number };
type Note = { id: string; ownerId: string; body: string };

/** A write the simulated app made, and what became of it. */
export interface WriteRecord {
  step: number;
  client: number;
  user: string;
  mutator: string;
  /** The row the write is about (inserted, renamed, bumped, noted). */
  id: string;
  /** Whether the server must reject it whatever happens (an empty title). */
  mustReject: boolean;
  /** Identity switches of its device before it was made: only a later switch may drop it (IDENTITY_CHANGED). */
  switchesBefore: number;
  rejections: string[];
}

export interface Failure {
  invariant: string;
  detail: string;
}

const plain = <T>(row: object): T => Object.fromEntries(Object.entries(row).filter(([key]) => !key.startsWith("$"))) as T;

/** One simulated device: its own IndexedDB, its own network path (a proxy it can lose), its user. */
class Device {
  readonly idb = new IDBFactory();
  user: string;
  scope: string = LIST_IDS[0];
  session: Session | undefined;
  /** While the app is switching accounts (between the token change and `refreshAuth()` resolving). */
  switching = false;
  dropAfterNextPush = false;
  /** Identity switches so far (completed `refreshAuth()` calls that changed the user). */
  switches = 0;

  constructor(
    readonly index: number,
    readonly proxy: TcpProxy,
  ) {
    this.user = `u${index}`;
  }
}

interface Session {
  client: LunoraClient;
  items: Collection<Item, string>;
  notes: Collection<Note, string>;
  actions: { items: (input: { listId: string; title: string }) => { id: string; transaction: Transaction<any> } };
  mutators: {
    rename: (args: { id: string; title: string }) => Transaction<any>;
    bump: (args: { id: string }) => Transaction<any>;
    note: (args: { id: string; body: string }) => Transaction<any>;
  };
  scope: (args?: Record<string, unknown>) => void;
  /** Resolves when every write made so far is in the device's IndexedDB. */
  whenStored(): Promise<void>;
  close(): void;
}

/**
 * Runs one scenario against a real room and checks the invariants once
 * everything has settled. Returns the failures (empty when the seed passes).
 */
export class World {
  readonly writes: WriteRecord[] = [];
  readonly failures: Failure[] = [];
  readonly rejectedEvents: Array<{ client: number; event: WriteRejectedEvent }> = [];
  private readonly devices: Device[] = [];
  /** Row ids in creation order; steps pick rows by position. */
  private readonly known: string[] = [];
  private readonly rawIds: string[] = [];
  private rawCounter = 0;
  readonly executed: number[] = [];

  constructor(
    private readonly worker: LocalWorker,
    readonly room: string,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  async run(scenario: Scenario, only?: ReadonlySet<number>): Promise<Failure[]> {
    try {
      for (let i = 0; i < scenario.clients; i++) {
        const device = new Device(i, await TcpProxy.start(this.worker.port));
        this.devices.push(device);
        this.open(device);
      }
      for (const [index, step] of scenario.steps.entries()) {
        if (only && !only.has(index)) continue;
        this.executed.push(index);
        await this.execute(index, step);
      }
      await this.settle();
      await this.check();
    } catch (error) {
      this.failures.push({ invariant: "the simulation ran", detail: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    } finally {
      for (const device of this.devices) {
        device.session?.close();
        await device.proxy.stop();
      }
    }
    return this.failures;
  }

  // ------------------------------------------------------------------ sessions

  private open(device: Device): void {
    const proxy = device.proxy;
    // A socket that cuts its own connection right after a push went out: the
    // room commits the write, the client never sees the answer.
    const tapped = class extends WebSocket {
      override send(data: any, ...rest: any[]): void {
        (super.send as (...args: unknown[]) => void)(data, ...rest);
        if (device.dropAfterNextPush && typeof data === "string" && data.startsWith('{"type":"push"')) {
          device.dropAfterNextPush = false;
          setImmediate(() => proxy.drop());
        }
      }
    };
    const client = new LunoraClient({
      host: proxy.host,
      party: "room",
      auth: () => `user:${device.user}`,
      WebSocket: tapped,
      reconnect: { minDelayMs: 20, maxDelayMs: 250 },
      pingIntervalMs: 0,
      persistence: createIndexedDbPersistence({ indexedDB: device.idb }),
      queryCache: createIndexedDbQueryCache({ indexedDB: device.idb, debounceMs: 20 }),
    });
    const onWriteRejected = (event: WriteRejectedEvent) => {
      this.rejectedEvents.push({ client: device.index, event });
      const id = (event.args as { id?: string } | undefined)?.id ?? (event.row as { id?: string } | undefined)?.id;
      // Several writes can share args (two bumps of one row): give the event to one not yet reported.
      const candidates = this.writes.filter((write) => write.client === device.index && write.mutator === event.mutator && write.id === id && matchesArgs(write, event.args));
      const record = candidates.find((write) => write.rejections.length === 0) ?? candidates.at(-1);
      if (record) record.rejections.push(event.code);
      else this.failures.push({ invariant: "every rejection belongs to a write", detail: `client ${device.index}: ${event.mutator} ${JSON.stringify(event.args)} (${event.code})` });
    };
    const db = defineCollections(
      client,
      {
        items: {
          shape: { name: "itemsByList" },
          scopeBy: "listId",
          shardKey: this.room,
          insert: {
            mutation: "items:create",
            optimistic: (input: { listId: string; title: string }, id: string): Item => ({ id, listId: input.listId, title: input.title, rank: 0 }),
            toArgs: (row: Item) => ({ id: row.id, listId: row.listId, title: row.title }),
          },
        },
        notes: { list: "notes", shardKey: this.room, load: "eager" },
      },
      { onWriteRejected },
    );
    const collections = db.collections as unknown as { items: Collection<Item, string>; notes: Collection<Note, string> };
    const room = this.room;
    const mutators = bindMutators(client, { collections: collections as never }, {
      rename: defineMutator<{ id: string; title: string }>({
        serverRef: "items:rename",
        room,
        apply: ({ collections: c }, { id, title }) => {
          const items = c.items as Collection<Item, string>;
          if (items.has(id)) items.update(id, (draft) => void (draft.title = title));
        },
      }),
      bump: defineMutator<{ id: string }>({
        serverRef: "items:bump",
        room,
        apply: ({ collections: c }, { id }) => {
          const items = c.items as Collection<Item, string>;
          if (items.has(id)) items.update(id, (draft) => void (draft.rank += 1));
        },
      }),
      note: defineMutator<{ id: string; body: string }>({
        serverRef: "notes:add",
        room,
        apply: ({ collections: c }, { id, body }) => {
          (c.notes as Collection<Note, string>).insert({ id, ownerId: device.user, body });
        },
      }),
    });
    // Invariant 7, observed live: once this session's user is set, no row of
    // another owner may enter its notes.
    const watch = collections.notes.subscribeChanges(
      (changes) => {
        if (device.switching) return;
        for (const change of changes) {
          if (change.type === "delete") continue;
          const note = plain<Note>(change.value);
          if (note.ownerId !== device.user) {
            this.failures.push({ invariant: "nothing of identity A is shown under identity B", detail: `client ${device.index} as ${device.user} shown note of ${note.ownerId}` });
          }
        }
      },
      { includeInitialState: true },
    );
    // The app's screen: a live reader keeps the scoped collection syncing.
    const screen = collections.items.subscribeChanges(() => undefined);
    db.scope.items({ listId: device.scope });
    device.session = {
      client,
      items: collections.items,
      notes: collections.notes,
      actions: db.actions as unknown as Session["actions"],
      mutators: mutators as unknown as Session["mutators"],
      scope: db.scope.items,
      whenStored: () => db.executor.whenStored(),
      close: () => {
        watch.unsubscribe();
        screen.unsubscribe();
        db.executor.dispose();
        collections.items.cleanup();
        collections.notes.cleanup();
        client.close();
      },
    };
  }

  // ------------------------------------------------------------------ steps

  private async execute(index: number, step: Step): Promise<void> {
    this.log(`  #${index} ${JSON.stringify(step)}`);
    const device = "client" in step ? this.devices[step.client] : undefined;
    const session = device?.session;
    const settleQuietly = (transaction: Transaction<any>) => transaction.isPersisted.promise.catch(() => undefined);
    switch (step.kind) {
      case "insert": {
        const { id, transaction } = session!.actions.items({ listId: device!.scope, title: step.title });
        this.writes.push({ step: index, client: device!.index, user: device!.user, switchesBefore: device!.switches, mutator: "items:create", id, mustReject: step.title === "", rejections: [] });
        this.known.push(id);
        void settleQuietly(transaction);
        break;
      }
      case "rename":
      case "bump": {
        if (this.known.length === 0) break;
        const id = this.known[step.pick % this.known.length];
        const mutator = step.kind === "rename" ? "items:rename" : "items:bump";
        const title = step.kind === "rename" ? `${step.title}#${index}` : undefined;
        this.writes.push({ step: index, client: device!.index, user: device!.user, switchesBefore: device!.switches, mutator, id, mustReject: false, rejections: [], ...(title ? { title } : {}) } as WriteRecord);
        const transaction = step.kind === "rename" ? session!.mutators.rename({ id, title: title! }) : session!.mutators.bump({ id });
        void settleQuietly(transaction);
        break;
      }
      case "note": {
        const id = crypto.randomUUID();
        this.writes.push({ step: index, client: device!.index, user: device!.user, switchesBefore: device!.switches, mutator: "notes:add", id, mustReject: false, rejections: [] });
        void settleQuietly(session!.mutators.note({ id, body: step.body }));
        break;
      }
      case "raw": {
        // The room's own code, writing with plain sql.exec through its own routes.
        const call = (route: string, body: unknown) => this.worker.fetch(`/rooms/${this.room}${route}`, { method: "POST", body: JSON.stringify(body) });
        if (step.op === "put" || this.rawIds.length === 0) {
          const id = `raw-${this.rawCounter++}`;
          this.rawIds.push(id);
          this.known.push(id);
          await call("/items/put", { id, listId: step.listId, title: step.title });
        } else {
          const id = this.rawIds[step.pick % this.rawIds.length];
          if (step.op === "delete") await call("/items/delete", { id });
          else if (step.op === "update" && step.pick % 3 === 0) {
            // A column round trip (protocol 4 sends updates as column patches):
            // the title changes and changes back while the rank moves, so a
            // client resuming over both writes must still get the title — a
            // patch carries every column any write of the stretch changed, not
            // only those whose final value differs.
            const rows = await (await this.worker.fetch(`/rooms/${this.room}/items`)).json() as Array<{ id: string; title: string; rank: number }>;
            const row = rows.find((candidate) => candidate.id === id);
            if (row) {
              await call("/items/update", { id, title: `${row.title}~`, rank: row.rank + 1 });
              await call("/items/update", { id, title: row.title });
            }
          } else await call("/items/update", step.op === "lock" ? { id, title: `locked ${step.title}` } : { id, title: step.title, listId: step.listId });
        }
        break;
      }
      case "offline":
        device!.proxy.setOnline(false);
        break;
      case "online":
        device!.proxy.setOnline(true);
        break;
      case "reload":
        // A reload after the app's writes were stored: a page closed within
        // the few milliseconds before that loses them, which no storage API
        // can prevent (see `whenStored`).
        await session!.whenStored();
        session!.close();
        this.open(device!);
        break;
      case "drop":
        if (step.at === "now") device!.proxy.drop();
        else device!.dropAfterNextPush = true;
        break;
      case "restart":
        await this.worker.restart();
        break;
      case "identity": {
        const previous = device!.user;
        device!.switching = true;
        device!.user = previous.endsWith("x") ? previous.slice(0, -1) : `${previous}x`;
        await session!.client.refreshAuth();
        device!.switching = false;
        device!.switches++;
        // From here on, nothing of the previous user may be on screen.
        for (const row of session!.notes.state.values()) {
          const note = plain<Note>(row);
          if (note.ownerId !== device!.user) {
            const virtual = Object.fromEntries(Object.entries(row as object).filter(([key]) => key.startsWith("$")));
            this.failures.push({
              invariant: "nothing of identity A is shown under identity B",
              detail: `client ${device!.index} still shows ${note.ownerId}'s note after switching to ${device!.user} (${JSON.stringify(virtual)})`,
            });
          }
        }
        break;
      }
      case "scope":
        device!.scope = step.listId;
        session!.scope({ listId: step.listId });
        break;
      case "trim":
        await this.worker.fetch(`/rooms/${this.room}/lunora/sweep`);
        break;
      case "pause":
        await new Promise((resolve) => setTimeout(resolve, step.ms));
        break;
    }
  }

  // ------------------------------------------------------------------ checks

  /** Everyone online, every outbox drained, every collection equal to the room. */
  private async settle(timeoutMs = 30_000): Promise<void> {
    for (const device of this.devices) {
      device.dropAfterNextPush = false;
      device.proxy.setOnline(true);
    }
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const differences = await this.convergence();
      const pending = this.devices.map((device) => device.session!.client.pendingWrites);
      if (differences.length === 0 && pending.every((count) => count === 0)) return;
      last = [...differences, `pending writes ${JSON.stringify(pending)}`].join("; ");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.failures.push({ invariant: "every client converges to the room's rows for its shapes", detail: last });
  }

  private async serverRows(): Promise<{ items: Item[]; notes: Note[]; bumps: string[] }> {
    const get = async <T>(route: string) => (await (await this.worker.fetch(`/rooms/${this.room}${route}`)).json()) as T;
    const items = await get<Array<Item & { secret: number }>>("/items");
    const bumps = await get<string[]>("/bumps");
    const notes = await get<Note[]>("/notes");
    return { items: items.map(({ id, listId, title, rank }) => ({ id, listId, title, rank })), notes, bumps };
  }

  private async convergence(): Promise<string[]> {
    const server = await this.serverRows();
    const differences: string[] = [];
    for (const device of this.devices) {
      const session = device.session!;
      const expectedItems = server.items.filter((item) => item.listId === device.scope).sort(byId);
      const actualItems = [...session.items.state.values()].map((row) => plain<Item>(row)).sort(byId);
      if (JSON.stringify(expectedItems) !== JSON.stringify(actualItems)) {
        differences.push(`client ${device.index} items(${device.scope}): expected ${expectedItems.length} rows, has ${actualItems.length}${diffSummary(expectedItems, actualItems)}`);
      }
      const expectedNotes = server.notes.filter((note) => note.ownerId === device.user).sort(byId);
      const actualNotes = [...session.notes.state.values()].map((row) => plain<Note>(row)).sort(byId);
      if (JSON.stringify(expectedNotes) !== JSON.stringify(actualNotes)) {
        differences.push(`client ${device.index} notes(${device.user}): expected ${expectedNotes.length}, has ${actualNotes.length}`);
      }
    }
    return differences;
  }

  private async check(): Promise<void> {
    const server = await this.serverRows();
    const serverIds = new Set(server.items.map((item) => item.id));
    const noteIds = new Set(server.notes.map((note) => note.id));
    // Exactly once: no (clientId, clientSeq) ran twice.
    const seen = new Set<string>();
    for (const bump of server.bumps) {
      if (seen.has(bump)) this.failures.push({ invariant: "a client write runs at most once", detail: `${bump} ran twice` });
      seen.add(bump);
    }
    // Nothing lost: every bump not reported as dropped ran.
    const bumps = this.writes.filter((write) => write.mutator === "items:bump");
    const droppedBumps = bumps.filter((write) => write.rejections.includes("IDENTITY_CHANGED")).length;
    if (server.bumps.length < bumps.length - droppedBumps || server.bumps.length > bumps.length) {
      this.failures.push({
        invariant: "every write the client considered accepted is in the room, once",
        detail: `${bumps.length} bumps made, ${droppedBumps} dropped on identity change, ${server.bumps.length} ran`,
      });
    }
    for (const write of this.writes) {
      // Rejections are reported once, and only for writes that were rejected.
      if (write.rejections.length > 1) {
        this.failures.push({ invariant: "every rejected write is reported once", detail: `${write.mutator} ${write.id} reported ${JSON.stringify(write.rejections)}` });
      }
      const dropped = write.rejections.includes("IDENTITY_CHANGED");
      // A write made after the last identity switch of its device belongs to the current identity: it must be sent, not dropped.
      if (dropped && write.switchesBefore === this.devices[write.client].switches) {
        this.failures.push({
          invariant: "a write of the current identity is never dropped",
          detail: `${write.mutator} ${write.id} (client ${write.client}, step ${write.step}, made after its device's last identity switch) reported IDENTITY_CHANGED`,
        });
      }
      if (write.mutator === "items:create") {
        if (write.mustReject && !dropped && write.rejections.length !== 1) {
          this.failures.push({ invariant: "every rejected write is reported once", detail: `insert ${write.id} (empty title) reported ${write.rejections.length} times` });
        }
        if (write.mustReject && serverIds.has(write.id)) this.failures.push({ invariant: "a rejected write leaves nothing", detail: `insert ${write.id} is in the room` });
        if (!write.mustReject && write.rejections.length === 0 && !serverIds.has(write.id)) {
          this.failures.push({ invariant: "every write the client considered accepted is in the room", detail: `insert ${write.id} (client ${write.client}, step ${write.step}) is missing` });
        }
        if (!write.mustReject && write.rejections.some((code) => code !== "IDENTITY_CHANGED")) {
          this.failures.push({ invariant: "transient failures are never reported as rejections", detail: `insert ${write.id} rejected with ${write.rejections}` });
        }
      }
      if (write.mutator === "notes:add" && write.rejections.length === 0 && !noteIds.has(write.id)) {
        this.failures.push({ invariant: "every write the client considered accepted is in the room", detail: `note ${write.id} is missing` });
      }
      if (write.mutator === "items:bump" && write.rejections.some((code) => code !== "IDENTITY_CHANGED")) {
        this.failures.push({ invariant: "transient failures are never reported as rejections", detail: `bump of ${write.id} rejected with ${write.rejections}` });
      }
    }
  }
}

function matchesArgs(write: WriteRecord, args: unknown): boolean {
  const title = (write as WriteRecord & { title?: string }).title;
  return title === undefined || (args as { title?: string } | undefined)?.title === title;
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function diffSummary(expected: Item[], actual: Item[]): string {
  const have = new Map(actual.map((item) => [item.id, item]));
  const want = new Map(expected.map((item) => [item.id, item]));
  const missing = expected.filter((item) => !have.has(item.id)).map((item) => item.id.slice(0, 8));
  const extra = actual.filter((item) => !want.has(item.id)).map((item) => item.id.slice(0, 8));
  const changed = expected.filter((item) => have.has(item.id) && JSON.stringify(have.get(item.id)) !== JSON.stringify(item)).map((item) => item.id.slice(0, 8));
  return ` (missing ${missing.join(",") || "-"}; extra ${extra.join(",") || "-"}; different ${changed.join(",") || "-"})`;
}
