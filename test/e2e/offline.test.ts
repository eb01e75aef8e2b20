/**
 * Offline in real Chromium: writes made with no network show at once, are
 * counted as pending, survive a reload served by the service worker and
 * IndexedDB, and reach the other user exactly once when the network returns.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTwoWindows, type TwoWindows } from "./helpers/two-windows.js";

let chat: TwoWindows;

beforeAll(async () => {
  chat = await startTwoWindows();
});

afterEach(() => {
  // The app never throws: offline, rejected and replayed writes are all handled.
  if (chat) expect([...chat.alice.pageErrors, ...chat.bob.pageErrors]).toEqual([]);
});

afterAll(async () => {
  await chat?.stop();
});

/** What the app puts on `window` for devtools (examples/chat/client/app.tsx). */
interface DevtoolsHandle {
  lunoraChat?: { client: { queryCache?: { flush(): Promise<void> } } };
}

const OFFLINE_MESSAGES = ["written offline 1", "written offline 2", "written offline 3"];

describe("chat example offline", () => {
  it("three messages sent offline survive a reload and reach the other window once each", async () => {
    const { alice, bob } = chat;
    await alice.send("sent while online");
    await bob.message("sent while online").waitFor();
    await alice.waitForPending(0);

    // Ready for a cold offline start: the service worker controls the page
    // (the app shell is cached) and the read cache has written what is on screen.
    await alice.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    await alice.page.evaluate(() => (window as unknown as DevtoolsHandle).lunoraChat?.client.queryCache?.flush());

    await chat.goOffline();
    await alice.waitForStatus("offline");
    for (const text of OFFLINE_MESSAGES) await alice.send(text);
    for (const text of OFFLINE_MESSAGES) {
      await alice.message(text).waitFor();
      expect(await alice.message(text).getAttribute("data-pending")).toBe("true");
    }
    await alice.waitForPending(3);

    // A reload with no network: the page comes from the service worker, the
    // synced rows from the query cache and the three writes from the outbox.
    await alice.page.reload();
    expect(await alice.page.evaluate(() => navigator.serviceWorker.controller?.scriptURL)).toMatch(/\/sw\.js$/);
    await alice.waitForStatus("offline");
    await alice.message("sent while online").waitFor();
    for (const text of OFFLINE_MESSAGES) await alice.message(text).waitFor();
    await alice.waitForPending(3);
    expect(await alice.messages.count()).toBe(4);
    for (const text of OFFLINE_MESSAGES) expect(await bob.message(text).count()).toBe(0);

    await chat.goOnline();
    await alice.waitForStatus("connected");
    await alice.waitForPending(0);

    // A message sent after the three arrives after them: once bob has it, he has everything before it.
    await alice.send("back online");
    await bob.message("back online").waitFor();
    const bobTexts = await bob.messages.getByTestId("message-text").allTextContents();
    expect(bobTexts).toEqual(["sent while online", ...OFFLINE_MESSAGES, "back online"]);
    await alice.waitForPending(0);
    const aliceTexts = await alice.messages.getByTestId("message-text").allTextContents();
    expect(aliceTexts).toEqual(["sent while online", ...OFFLINE_MESSAGES, "back online"]);
    for (const text of OFFLINE_MESSAGES) expect(await alice.message(text).getAttribute("data-pending")).toBe("false");
  });
});
