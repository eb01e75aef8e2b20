/**
 * `tokenFingerprint` names the identity every cached read, queued write and
 * synced row is stamped with. A client remembers the last token's
 * fingerprint (`fingerprinter`; the outbox asks before every send):
 * switching tokens back and forth must never answer with another token's
 * fingerprint, and a signed-out client keeps no token.
 */
import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { ANONYMOUS_IDENTITY, tokenFingerprint } from "../../src/index.js";
import { fingerprinter } from "../../src/client/identity.js";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("tokenFingerprint", () => {
  test("is the SHA-256 of the token, or of the user key identify names", async () => {
    expect(await tokenFingerprint("user:alice")).toBe(sha256("user:alice"));
    expect(await tokenFingerprint(undefined)).toBe(ANONYMOUS_IDENTITY);
    const identify = (token: string) => token.split(".")[0];
    expect(await tokenFingerprint("alice.t1", identify)).toBe(sha256("identity:alice"));
    expect(await tokenFingerprint("alice.t2", identify)).toBe(sha256("identity:alice"));
  });
});

describe("a client's fingerprinter", () => {
  test("answers each token's own fingerprint, for tokens switched back and forth and interleaved", async () => {
    const fingerprint = fingerprinter();
    const tokens = ["user:alice", "user:bob", "user:alice", "user:alice", undefined, "user:bob", "__proto__", "constructor", "user:alice"];
    for (const token of tokens) expect(await fingerprint(token)).toBe(token === undefined ? ANONYMOUS_IDENTITY : sha256(token));
    // Asked at once, without waiting in between.
    const all = await Promise.all(tokens.map((token) => fingerprint(token)));
    expect(all).toEqual(tokens.map((token) => (token === undefined ? ANONYMOUS_IDENTITY : sha256(token))));
  });

  test("asks identify once per change of token, and again after it failed", async () => {
    const asked: string[] = [];
    let failing = false;
    const fingerprint = fingerprinter((token) => {
      asked.push(token);
      if (failing) throw new Error("offline");
      return token.split(".")[0];
    });
    expect(await fingerprint("alice.t1")).toBe(sha256("identity:alice"));
    expect(await fingerprint("alice.t1")).toBe(sha256("identity:alice"));
    expect(asked).toEqual(["alice.t1"]);
    expect(await fingerprint("bob.t1")).toBe(sha256("identity:bob"));
    expect(await fingerprint("alice.t1")).toBe(sha256("identity:alice"));
    expect(asked).toEqual(["alice.t1", "bob.t1", "alice.t1"]);

    failing = true;
    await expect(fingerprint("carol.t1")).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    failing = false;
    expect(await fingerprint("carol.t1")).toBe(sha256("identity:carol"));
    expect(asked).toEqual(["alice.t1", "bob.t1", "alice.t1", "carol.t1", "carol.t1"]);
  });
});
