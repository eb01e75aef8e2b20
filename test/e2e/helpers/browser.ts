/**
 * Debian's chromium, driven by playwright-core (see TOOLCHAIN.md: playwright
 * cannot download its own browser here).
 */
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** One user's window: a fresh browser context (own IndexedDB, own service worker) on the app. */
export interface ChatWindow {
  context: BrowserContext;
  page: Page;
  /** Messages in the open channel. */
  messages: Locator;
  /** The message whose text is exactly `text`. */
  message(text: string): Locator;
  /** Resolves when the pending-writes counter shows `count`. */
  waitForPending(count: number): Promise<void>;
  /** Resolves when the connection badge shows `status`. */
  waitForStatus(status: "connected" | "offline" | "connecting"): Promise<void>;
  send(text: string): Promise<void>;
  /** Uncaught exceptions and unhandled rejections in the page so far (expected: none). */
  pageErrors: string[];
}

export async function openChatWindow(browser: Browser, baseUrl: string, user: string): Promise<ChatWindow> {
  const context = await browser.newContext({ baseURL: baseUrl, viewport: { width: 640, height: 560 } });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.stack ?? error.message));
  await page.goto("/");
  await page.getByTestId("sign-in-name").fill(user);
  await page.getByTestId("sign-in-submit").click();
  const window = chatWindow(context, page, pageErrors);
  await window.waitForStatus("connected");
  return window;
}

export function chatWindow(context: BrowserContext, page: Page, pageErrors: string[] = []): ChatWindow {
  const messages = page.getByTestId("message-list").getByTestId("message");
  return {
    context,
    page,
    messages,
    pageErrors,
    message: (text) => messages.filter({ has: page.getByTestId("message-text").getByText(text, { exact: true }) }),
    waitForPending: (count) => page.locator(`[data-testid="pending-writes"][data-count="${count}"]`).waitFor(),
    waitForStatus: (status) => page.locator(`[data-testid="connection-status"][data-status="${status}"]`).waitFor(),
    send: async (text) => {
      await page.getByTestId("composer-input").fill(text);
      await page.getByTestId("composer-send").click();
    },
  };
}
