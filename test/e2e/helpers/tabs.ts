/**
 * Several tabs of one user: pages of ONE browser context, so they share
 * IndexedDB, Web Locks and BroadcastChannel exactly as tabs of one browser
 * profile do (a second context would be another profile).
 */
import type { Browser, BrowserContext, Page } from "playwright-core";
import { chatWindow, openChatWindow, type ChatWindow } from "./browser.js";

export interface UserTabs {
  context: BrowserContext;
  tabs: ChatWindow[];
  /** Opens one more tab of the signed-in user (the session is in localStorage). */
  openTab(): Promise<ChatWindow>;
  /** Uncaught exceptions and unhandled rejections of every tab so far (expected: none). */
  pageErrors(): string[];
}

/** `user` signed in, in `count` tabs opened one after the other; the first tab is the outbox leader. */
export async function openUserTabs(browser: Browser, baseUrl: string, user: string, count: number): Promise<UserTabs> {
  const first = await openChatWindow(browser, baseUrl, user);
  const tabs = [first];
  const openTab = async () => {
    const page = await first.context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.stack ?? error.message));
    await page.goto("/");
    const tab = chatWindow(first.context, page, errors);
    await tab.waitForStatus("connected");
    await outboxStarted(page);
    tabs.push(tab);
    return tab;
  };
  await waitForLeadership(first.page, true);
  for (let i = 1; i < count; i++) await openTab();
  return { context: first.context, tabs, openTab, pageErrors: () => tabs.flatMap((tab) => tab.pageErrors) };
}

/** What the app puts on `window` (examples/chat/client/app.tsx): the outbox is `lunoraChat.executor`. */
interface AppHandle {
  lunoraChat?: { executor: { isLeader: boolean; waitForInit(): Promise<void> } };
}

export async function outboxStarted(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as unknown as AppHandle).lunoraChat !== undefined);
  await page.evaluate(() => (window as unknown as AppHandle).lunoraChat!.executor.waitForInit());
}

/** Resolves once the tab's outbox is (or is not) the one draining the shared queue. */
export async function waitForLeadership(page: Page, isLeader: boolean): Promise<void> {
  await page.waitForFunction((expected) => (window as unknown as AppHandle).lunoraChat?.executor.isLeader === expected, isLeader);
}

export async function isLeader(page: Page): Promise<boolean> {
  return page.evaluate(() => (window as unknown as AppHandle).lunoraChat?.executor.isLeader === true);
}

/**
 * Kills the tab's renderer process, as a crash does: no `pagehide`, no
 * `unload`, nothing the page could still run. The browser releases the dead
 * document's Web Locks.
 */
export async function crashTab(page: Page): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const crashed = new Promise<void>((resolve) => page.once("crash", () => resolve()));
  // Not awaited: the renderer dies before it can answer, so the call never settles.
  void cdp.send("Page.crash").catch(() => undefined);
  await crashed;
  await page.close().catch(() => undefined);
}
