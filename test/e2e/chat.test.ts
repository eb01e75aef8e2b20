/**
 * The chat example in real Chromium: two users, live sync both ways, the
 * room's own routes and sockets beside Lunora's, and a write the server
 * refuses.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/chat-server.js";
import { announce, startTwoWindows, type TwoWindows } from "./helpers/two-windows.js";

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

describe("chat example", () => {
  it("a message sent in one window appears in the other, with its author joined from the lobby's users", async () => {
    const { alice, bob } = chat;
    await alice.send("hello from alice");
    await bob.message("hello from alice").waitFor();
    expect(await bob.message("hello from alice").getByTestId("message-author").textContent()).toBe("alice");

    await bob.send("hi alice, bob here");
    await alice.message("hi alice, bob here").waitFor();
    expect(await alice.message("hi alice, bob here").getByTestId("message-author").textContent()).toBe("bob");

    // Settled: nothing pending, each message once in each window.
    await alice.waitForPending(0);
    await bob.waitForPending(0);
    for (const window of [alice, bob]) {
      expect(await window.message("hello from alice").count()).toBe(1);
      expect(await window.message("hi alice, bob here").count()).toBe(1);
    }
  });

  it("a new channel appears for both users, and its messages live in its own room", async () => {
    const { alice, bob } = chat;
    await alice.page.getByTestId("new-channel-name").fill("design");
    await alice.page.getByTestId("new-channel-name").press("Enter");
    await bob.page.getByTestId("channel-design").click();
    await alice.page.locator('[data-testid="channel-design"].active').waitFor();

    await alice.send("first message in #design");
    await bob.message("first message in #design").waitFor();
    expect(await bob.messages.count()).toBe(1);

    for (const window of [alice, bob]) {
      await window.page.getByTestId("channel-general").click();
      await window.message("hello from alice").waitFor();
      expect(await window.message("first message in #design").count()).toBe(0);
    }
  });

  it("the room's own typing socket still works beside the sync socket", async () => {
    const { alice, bob } = chat;
    for (const window of [alice, bob]) await window.page.locator('[data-testid="typing-indicator"][data-connected="true"]').waitFor();
    await alice.page.getByTestId("composer-input").pressSequentially("abc");
    await bob.page.getByTestId("typing-indicator").getByText("alice is typing…").waitFor();
    await alice.page.getByTestId("composer-input").fill("");
  });

  it("an announcement POSTed to the room's own route appears live in both windows", async () => {
    const { alice, bob, server } = chat;
    await announce(server, "general", "Maintenance at noon, save your work");
    for (const window of [alice, bob]) {
      const message = window.message("Maintenance at noon, save your work");
      await message.waitFor();
      expect(await message.getAttribute("data-author")).toBe("system");
    }
  });

  it("a long history loads on demand: the latest page first, older pages on request, new messages live", async () => {
    const { alice, bob, server } = chat;
    await alice.page.getByTestId("new-channel-name").fill("history");
    await alice.page.getByTestId("new-channel-name").press("Enter");
    await alice.page.locator('[data-testid="channel-history"].active').waitFor();
    // A channel's room is named by its id, not its name.
    const channelId = (await alice.page.locator('[data-testid="message-list"]').getAttribute("data-channel"))!;
    const total = 75;
    for (let i = 1; i <= total; i++) await announce(server, channelId, `history ${String(i).padStart(3, "0")}`);

    await bob.page.getByTestId("channel-history").click();
    await bob.message("history 075").waitFor();
    // The latest page only, and only it was synced: the collection holds one page, not the history.
    await bob.page.locator('[data-testid="message"]').nth(29).waitFor();
    expect(await bob.messages.count()).toBe(30);
    expect(await bob.message("history 045").count()).toBe(0);
    const held = () => bob.page.evaluate(() => (window as any).lunoraChat.collections.messages.size as number);
    // Bob switched here from another channel: the switch must not load the whole history either.
    expect(await held()).toBeLessThan(total);

    await bob.page.getByTestId("load-older").click();
    await bob.message("history 016").waitFor();
    expect(await bob.messages.count()).toBe(60);
    await bob.page.getByTestId("load-older").click();
    await bob.message("history 001").waitFor();
    expect(await bob.messages.count()).toBe(total);
    await bob.page.getByTestId("load-older").waitFor({ state: "detached" });

    // The loaded window stays live: a new message arrives at the bottom.
    await alice.send("after the history");
    await bob.message("after the history").waitFor();
    expect(await bob.messages.last().getByTestId("message-text").textContent()).toBe("after the history");
    await bob.page.getByTestId("channel-general").click();
    await alice.page.getByTestId("channel-general").click();
  });

  it("editing someone else's message shows at once, then rolls back with the server's FORBIDDEN in a toast", async () => {
    const { alice, bob } = chat;
    await bob.send("only bob may edit this");
    await alice.message("only bob may edit this").waitFor();

    // Offline, the optimistic edit stays visible (and pending) until the room can answer.
    await chat.goOffline();
    await alice.waitForStatus("offline");
    const original = alice.message("only bob may edit this");
    await original.getByTestId("message-edit").click();
    await alice.page.getByTestId("message-edit-input").fill("alice was here");
    await alice.page.getByTestId("message-edit-save").click();
    const edited = alice.message("alice was here");
    await edited.waitFor();
    expect(await edited.getAttribute("data-pending")).toBe("true");
    await alice.waitForPending(1);

    // Online: the room refuses (only the author may edit); the edit is undone and reported.
    await chat.goOnline();
    const toast = alice.page.locator('[data-testid="toast"][data-code="FORBIDDEN"]');
    await toast.waitFor();
    expect(await toast.textContent()).toContain("only the author may change this message");
    await alice.message("only bob may edit this").waitFor();
    await edited.waitFor({ state: "detached" });
    await alice.waitForPending(0);
    expect(await bob.message("alice was here").count()).toBe(0);
    expect(await bob.message("only bob may edit this").count()).toBe(1);

    // The author may.
    await bob.message("only bob may edit this").getByTestId("message-edit").click();
    await bob.page.getByTestId("message-edit-input").fill("bob edited this");
    await bob.page.getByTestId("message-edit-save").click();
    await alice.message("bob edited this").waitFor();
  });

  it("a screenshot of both windows is saved: alice offline with an unsaved message, bob live", async () => {
    const { alice, bob, browser } = chat;
    await bob.send("Anyone on the train today?");
    await alice.message("Anyone on the train today?").waitFor();
    await chat.goOffline();
    await alice.waitForStatus("offline");
    await alice.send("Yes! No signal here, this goes out later");
    await alice.waitForPending(1);

    const png = await sideBySide(browser, [
      { title: "alice (offline)", image: await alice.page.screenshot() },
      { title: "bob", image: await bob.page.screenshot() },
    ]);
    await mkdir(path.join(REPO_ROOT, "test-results/e2e"), { recursive: true });
    await writeFile(path.join(REPO_ROOT, "test-results/e2e/two-windows.png"), png);
    // The README's picture is only rewritten on request, so a test run leaves the tree clean.
    const committed = path.join(REPO_ROOT, "docs/screenshot.png");
    if (process.env.UPDATE_SCREENSHOT === "1" || !existsSync(committed)) await writeFile(committed, png);
    expect(png.byteLength).toBeGreaterThan(10_000);

    await chat.goOnline();
    await bob.message("Yes! No signal here, this goes out later").waitFor();
    await alice.waitForPending(0);
  });
});

/** Puts page screenshots next to each other, with a caption each, in one PNG. */
async function sideBySide(browser: TwoWindows["browser"], shots: Array<{ title: string; image: Buffer }>): Promise<Buffer> {
  const page = await browser.newPage({ viewport: { width: 1320, height: 620 } });
  try {
    const figures = shots
      .map(
        ({ title, image }) =>
          `<figure><figcaption>${title}</figcaption><img src="data:image/png;base64,${image.toString("base64")}"></figure>`,
      )
      .join("");
    await page.setContent(
      `<style>body{margin:0;padding:12px;display:flex;gap:16px;background:#e5e7eb;font:600 14px system-ui}
       figure{margin:0}figcaption{margin:0 0 6px 2px}img{display:block;border:1px solid #9ca3af;border-radius:6px}</style>${figures}`,
    );
    await page.locator("img").last().evaluate((img: HTMLImageElement) => img.decode());
    return await page.screenshot({ fullPage: true });
  } finally {
    await page.close();
  }
}
