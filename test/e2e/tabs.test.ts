/**
 * Several tabs of one user in real Chromium (pages of one context: shared
 * IndexedDB, Web Locks, BroadcastChannel). One tab leads the durable outbox;
 * the tests close and crash it with writes queued, write in every tab while
 * offline, and check the room — through bob, another user watching the same
 * channel — receives every write exactly once, and that every tab counts
 * what is still undelivered anywhere until it is delivered.
 *
 * Alice's tabs reach the server through a TCP proxy so that the network can
 * really be cut (Chromium keeps open WebSockets across `setOffline`).
 */
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { chatWindow, launchChromium, openChatWindow, type ChatWindow } from "./helpers/browser.js";
import { startChatServer, type ChatServer } from "./helpers/chat-server.js";
import { outboxReports, putOutboxEntries, storedTabWriteKeys, waitForTabWrites, watchOutboxReports } from "./helpers/outbox-reports.js";
import { crashTab, isLeader, openUserTabs, outboxStarted, waitForLeadership, type UserTabs } from "./helpers/tabs.js";

let server: ChatServer;
let proxy: TcpProxy;
let browser: Browser;
/** Another user in the same channel: what he sees is what the room holds. */
let bob: ChatWindow;
let alice: UserTabs | undefined;

beforeAll(async () => {
  server = await startChatServer();
  proxy = await TcpProxy.start(server.port);
  browser = await launchChromium();
  bob = await openChatWindow(browser, server.url, "bob");
});

afterEach(async () => {
  const errors = [...(alice?.pageErrors() ?? []), ...bob.pageErrors];
  await alice?.context.close();
  alice = undefined;
  proxy.setOnline(true);
  expect(errors).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  await proxy?.stop();
  await server?.stop();
});

/**
 * The network is cut at the proxy only: `context.setOffline(false)` on a
 * context that holds a crashed page stalls for tens of seconds in this
 * Chromium, and the outbox waits for the room's socket, not for
 * `navigator.onLine`, so the proxy alone is a real network loss for it.
 */
async function goOffline(tabs: UserTabs): Promise<void> {
  proxy.setOnline(false);
  for (const tab of tabs.tabs) if (!tab.page.isClosed()) await tab.waitForStatus("offline");
}

function goOnline(): void {
  proxy.setOnline(true);
}

/** The room has `text` exactly once (bob's live view of the channel). */
async function expectDeliveredOnce(text: string): Promise<void> {
  await bob.message(text).waitFor();
  expect(await bob.message(text).count()).toBe(1);
}

describe("several tabs of one user", () => {
  it("a follower's write made offline is counted in every tab and reaches the room once when the network is back", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 2);
    const [leader, follower] = alice.tabs;
    expect(await isLeader(follower.page)).toBe(false);

    await goOffline(alice);
    await follower.send("from the follower tab");
    // No tab says "all saved" while the write is undelivered somewhere.
    await follower.waitForPending(1);
    await leader.waitForPending(1);

    goOnline();
    await expectDeliveredOnce("from the follower tab");
    await follower.waitForPending(0);
    await leader.waitForPending(0);
    for (const tab of alice.tabs) {
      // The leader tab shows it once its own socket, back online, has the poke.
      await tab.message("from the follower tab").waitFor();
      expect(await tab.message("from the follower tab").count()).toBe(1);
    }
  });

  it("the leader tab closes with a write queued offline: the other tab takes over and delivers it once", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 2);
    const [leader, follower] = alice.tabs;

    await goOffline(alice);
    await leader.send("queued in the closed leader tab");
    await leader.waitForPending(1);
    await follower.waitForPending(1);
    await leader.page.close({ runBeforeUnload: true });

    await waitForLeadership(follower.page, true);
    goOnline();
    await follower.waitForStatus("connected");
    await expectDeliveredOnce("queued in the closed leader tab");
    await follower.waitForPending(0);
    await follower.message("queued in the closed leader tab").waitFor();
    expect(await follower.message("queued in the closed leader tab").count()).toBe(1);
  });

  it("the leader tab crashes (no unload) with a write queued offline: the other tab takes over and delivers it once", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 2);
    const [leader, follower] = alice.tabs;

    await goOffline(alice);
    await leader.send("queued in the crashed leader tab");
    await leader.waitForPending(1);
    await follower.waitForPending(1);
    await crashTab(leader.page);

    await waitForLeadership(follower.page, true);
    goOnline();
    await follower.waitForStatus("connected");
    await expectDeliveredOnce("queued in the crashed leader tab");
    await follower.waitForPending(0);
  });

  it("a follower tab crashes with its write queued offline: the leader sends it once", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 2);
    const [leader, follower] = alice.tabs;

    await goOffline(alice);
    await follower.send("queued in the crashed follower tab");
    await follower.waitForPending(1);
    await leader.waitForPending(1);
    await crashTab(follower.page);

    goOnline();
    await expectDeliveredOnce("queued in the crashed follower tab");
    await leader.waitForPending(0);
    await leader.message("queued in the crashed follower tab").waitFor();
    expect(await leader.message("queued in the crashed follower tab").count()).toBe(1);
  });

  it("three tabs each write offline: every tab counts all three, each is delivered once, every counter returns to 0", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 3);
    const texts = ["offline in tab 1", "offline in tab 2", "offline in tab 3"];

    await goOffline(alice);
    for (const [i, tab] of alice.tabs.entries()) await tab.send(texts[i]);
    for (const tab of alice.tabs) await tab.waitForPending(3);

    goOnline();
    for (const text of texts) await expectDeliveredOnce(text);
    for (const tab of alice.tabs) {
      await tab.waitForPending(0);
      for (const text of texts) {
        await tab.message(text).waitFor();
        expect(await tab.message(text).count()).toBe(1);
      }
    }
  });

  it("with every timer of both tabs stopped (a hidden tab's are throttled), writes of the leader and of the follower reach the room once and every tab counts back to 0", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 2);
    const [leader, follower] = alice.tabs;
    expect(await isLeader(leader.page)).toBe(true);
    // Chromium fires a hidden page's timers late (aligned to 1 s, then 1 min);
    // headless pages always report visible, so stop them outright: no step
    // between a click and the room may wait on a timer. (Playwright's own
    // scripts run in an isolated world and keep theirs.)
    for (const tab of alice.tabs) {
      await tab.page.evaluate(() => {
        const parked: unknown[] = [];
        const park = (callback: unknown) => (parked.push(callback), 0);
        window.setTimeout = park as unknown as typeof window.setTimeout;
        window.setInterval = park as unknown as typeof window.setInterval;
      });
    }

    await leader.send("stopped timers: leader 1");
    await follower.send("stopped timers: follower");
    await leader.send("stopped timers: leader 2");
    await expectDeliveredOnce("stopped timers: leader 1");
    await expectDeliveredOnce("stopped timers: follower");
    await expectDeliveredOnce("stopped timers: leader 2");
    for (const tab of alice.tabs) {
      await tab.waitForPending(0);
      for (const text of ["stopped timers: leader 1", "stopped timers: follower", "stopped timers: leader 2"]) {
        await tab.message(text).waitFor();
        expect(await tab.message(text).count()).toBe(1);
      }
    }
  });

  it("three tabs: the leader closes while offline with writes of every tab queued; the next leader delivers them once and then the last tab takes over", async () => {
    alice = await openUserTabs(browser, `http://${proxy.host}`, "alice", 3);
    const [first, second, third] = alice.tabs;

    await goOffline(alice);
    await first.send("three tabs: from tab 1");
    await second.send("three tabs: from tab 2");
    for (const tab of alice.tabs) await tab.waitForPending(2);
    await first.page.close({ runBeforeUnload: true });
    await waitForLeadership(second.page, true);
    expect(await isLeader(third.page)).toBe(false);

    goOnline();
    await expectDeliveredOnce("three tabs: from tab 1");
    await expectDeliveredOnce("three tabs: from tab 2");
    await second.waitForPending(0);
    await third.waitForPending(0);

    await crashTab(second.page);
    await waitForLeadership(third.page, true);
    await third.send("three tabs: after both leaders left");
    await expectDeliveredOnce("three tabs: after both leaders left");
    await third.waitForPending(0);
  });
});

describe("the leader: writes left in storage, and the lock after dispose", () => {
  /** Tabs of one browser context, whoever is signed in in each. */
  let tabs: ChatWindow[] = [];

  afterEach(async () => {
    const errors = tabs.flatMap((tab) => tab.pageErrors);
    await tabs[0]?.context.close();
    tabs = [];
    expect(errors).toEqual([]);
  });

  /** One more tab in the context of `first`, signed in as `user` (the session is shared through localStorage, so sign out first). */
  async function openTabAs(first: ChatWindow, user: string): Promise<ChatWindow> {
    const page = await first.context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.stack ?? error.message));
    await page.goto("/");
    await page.getByRole("button", { name: "sign out" }).click();
    await page.getByTestId("sign-in-name").fill(user);
    await page.getByTestId("sign-in-submit").click();
    const tab = chatWindow(first.context, page, errors);
    await tab.waitForStatus("connected");
    await page.getByTestId("me").getByText(user, { exact: true }).waitFor();
    await outboxStarted(page);
    return tab;
  }

  it("a write of another user adopted from a closed tab: its record is gone before the drop is reported, reported once, and not again after a reload", async () => {
    const leader = await openChatWindow(browser, `http://${proxy.host}`, "bob");
    tabs.push(leader);
    await waitForLeadership(leader.page, true);
    const bobSession = await leader.page.evaluate(() => localStorage.getItem("lunora-chat:session"));
    const aliceTab = await openTabAs(leader, "alice");
    tabs.push(aliceTab);
    expect(await isLeader(aliceTab.page)).toBe(false);
    await watchOutboxReports(leader.page);

    proxy.setOnline(false);
    for (const tab of tabs) await tab.waitForStatus("offline");
    await aliceTab.send("alice's write, left in storage");
    await aliceTab.waitForPending(1);
    await waitForTabWrites(leader.page, true);
    // Alice's tab goes away with her write undelivered: bob's tab leads and adopts it — and must refuse it.
    await aliceTab.page.close({ runBeforeUnload: true });

    const [report] = await outboxReports(leader.page, 1);
    expect(report).toMatchObject({ kind: "rejected", code: "IDENTITY_CHANGED", args: { text: "alice's write, left in storage" } });
    // Deleted before it was reported: a reload can no longer find it.
    expect(report.tabWriteKeysAtReport).toEqual([]);
    expect(await storedTabWriteKeys(leader.page)).toEqual([]);

    proxy.setOnline(true);
    await leader.waitForStatus("connected");
    await leader.send("bob after the drop");
    await expectDeliveredOnce("bob after the drop");
    expect(await outboxReports(leader.page, 1)).toHaveLength(1);
    expect(await bob.message("alice's write, left in storage").count()).toBe(0);

    // A reload of the leader (as bob again) finds nothing to report.
    await leader.page.evaluate((session) => localStorage.setItem("lunora-chat:session", session!), bobSession);
    await leader.page.reload();
    await leader.waitForStatus("connected");
    await outboxStarted(leader.page);
    await waitForLeadership(leader.page, true);
    await leader.waitForPending(0);
    expect(await storedTabWriteKeys(leader.page)).toEqual([]);
    expect(await leader.page.locator('[data-testid="toast"][data-code="IDENTITY_CHANGED"]').count()).toBe(0);
  });

  it("unreadable tab-write records (corrupt, another version, hostile keys) are each deleted, then reported once as UNREADABLE_WRITE — one whose owner tab lives, once that tab is gone", async () => {
    const leader = await openChatWindow(browser, `http://${proxy.host}`, "alice");
    tabs.push(leader);
    await waitForLeadership(leader.page, true);
    await watchOutboxReports(leader.page);
    // A tab of a newer version, still open, sending a record this version cannot read: it holds its presence lock.
    const newerErrors: string[] = [];
    const newerTab = await leader.context.newPage();
    newerTab.on("pageerror", (error) => newerErrors.push(error.stack ?? error.message));
    tabs.push(chatWindow(leader.context, newerTab, newerErrors));
    await newerTab.goto("/");
    await newerTab.evaluate(
      () =>
        new Promise<void>((granted) => {
          void navigator.locks.request("lunora-outbox-tab:newer-tab", () => (granted(), new Promise<void>(() => undefined)));
        }),
    );
    // (First in key order, so the leader's pass has looked at it before it reports the others.)
    const liveOwnerKey = "lunora:tab-write:!live-owner";

    const meta = { v: 1, kind: "insert", name: "messages:send", args: { text: "never sent" }, party: "chat-room", room: "general", identity: "alice" };
    const assigned = { ...meta, clientId: "c-gone", clientSeq: 1 };
    const garbage: Array<[string, string]> = [
      ["lunora:tab-write:not-json", "{not json"],
      ["lunora:tab-write:empty", ""],
      ["lunora:tab-write:null", "null"],
      ["lunora:tab-write:array", JSON.stringify([1, 2, 3])],
      ["lunora:tab-write:number", "42"],
      ["lunora:tab-write:missing-meta", JSON.stringify({ v: 1, owner: "gone-tab-1", createdAt: 1 })],
      ["lunora:tab-write:wrong-types", JSON.stringify({ v: "1", owner: 7, createdAt: "yesterday", meta: "x" })],
      ["lunora:tab-write:newer-version", JSON.stringify({ v: 2, owner: "gone-tab-2", createdAt: 1, meta: assigned })],
      ["lunora:tab-write:unassigned", JSON.stringify({ v: 1, owner: "gone-tab-3", createdAt: 1, meta })],
      ["lunora:tab-write:seq-as-string", JSON.stringify({ v: 1, owner: "gone-tab-4", createdAt: 1, meta: { ...assigned, clientSeq: "1" } })],
      ["lunora:tab-write:__proto__", `{"__proto__":${JSON.stringify({ v: 1, owner: "gone-tab-5", createdAt: 1, meta: assigned })}}`],
      ["lunora:tab-write:constructor", JSON.stringify({ v: 1, owner: "__proto__", createdAt: 1, meta: { constructor: {} } })],
      ["lunora:tab-write:", JSON.stringify({ v: 1, owner: "constructor", createdAt: 1, meta: { ...assigned, v: "1" } })],
      // Too big for any push frame (over the room's 1,000,000-byte bound): sent, it would be refused without an outcome, forever.
      ["lunora:tab-write:too-big", JSON.stringify({ v: 1, owner: "gone-tab-6", createdAt: 1, meta: { ...assigned, args: { text: "x".repeat(1_100_000) } } })],
    ];
    await putOutboxEntries(leader.page, [...garbage, [liveOwnerKey, JSON.stringify({ v: 2, owner: "newer-tab", createdAt: 1, meta: assigned })]]);
    while ((await storedTabWriteKeys(leader.page)).length > 1) await new Promise((resolve) => setTimeout(resolve, 50));

    // Nothing lost silently: one report per record, each after its record was gone.
    expect(await leader.page.evaluate(() => (window as unknown as { outboxReports: unknown[] }).outboxReports.length)).toBe(garbage.length);
    let reports = await outboxReports(leader.page, garbage.length);
    for (const report of reports) {
      expect(report).toMatchObject({ kind: "storage", code: "UNREADABLE_WRITE" });
      expect(report.tabWriteKeysAtReport).not.toContain((report.data as { key: string }).key);
    }
    expect(reports.map((report) => (report.data as { key: string }).key).sort()).toEqual(garbage.map(([key]) => key).sort());
    // The record of a tab that lives is its own to send.
    expect(await storedTabWriteKeys(leader.page)).toEqual([liveOwnerKey]);

    await newerTab.close({ runBeforeUnload: true });
    reports = await outboxReports(leader.page, garbage.length + 1);
    expect(reports).toHaveLength(garbage.length + 1);
    expect(reports.at(-1)).toMatchObject({ kind: "storage", code: "UNREADABLE_WRITE", data: { key: liveOwnerKey } });
    expect(reports.at(-1)!.tabWriteKeysAtReport).toEqual([]);
    expect(await storedTabWriteKeys(leader.page)).toEqual([]);

    // The tab still writes, and reports nothing more.
    await leader.send("alice after the unreadable records");
    await expectDeliveredOnce("alice after the unreadable records");
    await leader.waitForPending(0);
    expect(await outboxReports(leader.page, 0)).toHaveLength(garbage.length + 1);
    await leader.page.reload();
    await leader.waitForStatus("connected");
    await outboxStarted(leader.page);
    await waitForLeadership(leader.page, true);
    expect(await storedTabWriteKeys(leader.page)).toEqual([]);
    expect(await leader.page.locator('[data-testid="toast"][data-code="UNREADABLE_WRITE"]').count()).toBe(0);
  });

  // A delete that fails still counts (the record is reported, docs/writes.md
  // step 5), but the record stays: every later pass of the page (each storage
  // change starts one) read it again and reported it again.
  it("an unreadable tab-write record whose delete fails is reported once, not once per later adoption pass", async () => {
    const leader = await openChatWindow(browser, `http://${proxy.host}`, "alice");
    tabs.push(leader);
    await waitForLeadership(leader.page, true);
    await watchOutboxReports(leader.page);
    const undeletable = "lunora:tab-write:a-undeletable";
    await leader.page.evaluate((key) => {
      const remove = IDBObjectStore.prototype.delete;
      IDBObjectStore.prototype.delete = function (this: IDBObjectStore, query: IDBValidKey | IDBKeyRange) {
        if (query === key) throw new DOMException("this record cannot be deleted (test)", "UnknownError");
        return remove.call(this, query);
      };
    }, undeletable);
    const unreadableReports = async (key: string) =>
      (await outboxReports(leader.page, 0)).filter((report) => report.code === "UNREADABLE_WRITE" && (report.data as { key: string }).key === key).length;

    await putOutboxEntries(leader.page, [[undeletable, "{not json"]]);
    while ((await unreadableReports(undeletable)) === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    // Another record, after it in key order: the pass that reports it has looked at the undeletable one again.
    const later = "lunora:tab-write:z-later";
    await putOutboxEntries(leader.page, [[later, "{not json"]]);
    while ((await unreadableReports(later)) === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    await leader.send("alice after the undeletable record");
    await expectDeliveredOnce("alice after the undeletable record");
    await leader.waitForPending(0);

    expect(await unreadableReports(undeletable)).toBe(1);
    expect(await unreadableReports(later)).toBe(1);
    expect(await storedTabWriteKeys(leader.page)).toEqual([undeletable]);
  });

  // Readable, of the leader's own identity, but naming a room the client
  // refuses: adopting it threw when it was registered, which ended the pass
  // there — on every pass, so the record stayed unreported for good and the
  // records after it in key order were never adopted.
  it("a tab-write record of this identity naming a room no client can open is deleted, then reported once as UNREADABLE_WRITE; the records after it are still adopted", async () => {
    const leader = await openChatWindow(browser, `http://${proxy.host}`, "alice");
    tabs.push(leader);
    await waitForLeadership(leader.page, true);
    await watchOutboxReports(leader.page);
    const identity = await leader.page.evaluate(() => (window as unknown as { lunoraChat: { client: { identity(): Promise<string> } } }).lunoraChat.client.identity());
    const meta = { v: 1, kind: "insert", name: "messages:send", args: { text: "never sent" }, party: "chat-room", room: "general", identity, clientId: "c-gone", clientSeq: 1 };
    const badRoom = "lunora:tab-write:a-room-with-slash";
    const after = "lunora:tab-write:z-unreadable";
    await putOutboxEntries(leader.page, [
      [badRoom, JSON.stringify({ v: 1, owner: "gone-tab-bad-room", createdAt: 1, meta: { ...meta, room: "general/x" } })],
      [after, "{not json"],
    ]);
    const reports = await outboxReports(leader.page, 2);
    expect(reports.map((report) => [report.code, (report.data as { key: string }).key]).sort()).toEqual([
      ["UNREADABLE_WRITE", badRoom],
      ["UNREADABLE_WRITE", after],
    ]);
    await waitForTabWrites(leader.page, false);
    expect(await outboxReports(leader.page, 0)).toHaveLength(2);
  });

  it("an outbox disposed while its executor is starting never keeps the leader lock: the next outbox of the origin leads", async () => {
    const tab = await openChatWindow(browser, `http://${proxy.host}`, "alice");
    tabs.push(tab);
    await waitForLeadership(tab.page, true);
    const nextLeads = await tab.page.evaluate(async () => {
      interface Outbox {
        waitForInit(): Promise<void>;
        dispose(): void;
        readonly isLeader: boolean;
      }
      const chat = (window as unknown as { lunoraChat: { client: unknown; executor: Outbox } }).lunoraChat;
      // The app's own outbox steps down: the leader lock is free.
      chat.executor.dispose();
      // The app's outbox class as bundled (the page exports no other handle on it): real Web Locks, real IndexedDB.
      const LunoraOutbox = chat.executor.constructor as new (client: unknown, options: object) => Outbox;
      const online = () => ({ subscribe: () => () => undefined, notifyOnline: () => undefined, isOnline: () => true, dispose: () => undefined });
      // Disposed between the executor's construction and the start of its
      // election (the library probes its storage first): a microtask window,
      // in which the online detector's subscribe is the app code that runs.
      const starting: Outbox = new LunoraOutbox(chat.client, { onlineDetector: { ...online(), subscribe: () => (starting.dispose(), () => undefined) } });
      await starting.waitForInit();
      const next = new LunoraOutbox(chat.client, { onlineDetector: online() });
      await next.waitForInit();
      const leads = next.isLeader;
      next.dispose();
      return leads;
    });
    expect(nextLeads).toBe(true);
  });
});
