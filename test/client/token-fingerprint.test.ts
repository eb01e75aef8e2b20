/**
 * `tokenFingerprint` names the identity every cached read, queued write and
 * synced row is stamped with. It keeps the last digest (the outbox asks
 * before every send): switching tokens back and forth must never answer
 * with another token's fingerprint.
 */
import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { ANONYMOUS_IDENTITY, tokenFingerprint } from "../../src/index.js";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("tokenFingerprint", () => {
  test("is the SHA-256 of the token, for tokens switched back and forth", async () => {
    const seen: string[] = [];
    for (const token of ["user:alice", "user:bob", "user:alice", "user:alice", "user:bob", "__proto__", "constructor"]) {
      const fingerprint = await tokenFingerprint(token);
      expect(fingerprint).toBe(sha256(token));
      seen.push(fingerprint);
    }
    expect(new Set(seen).size).toBe(4);
    expect(await tokenFingerprint(undefined)).toBe(ANONYMOUS_IDENTITY);
  });

  test("with identify, is the SHA-256 of the user key it names, whatever token asked last", async () => {
    const identify = (token: string) => token.split(".")[0];
    expect(await tokenFingerprint("alice.t1", identify)).toBe(sha256("identity:alice"));
    expect(await tokenFingerprint("alice.t2", identify)).toBe(sha256("identity:alice"));
    // The raw token "identity:alice" hashes to the same key as identify's
    // answer above: the fingerprint is of the key, by design.
    expect(await tokenFingerprint("identity:alice")).toBe(sha256("identity:alice"));
    expect(await tokenFingerprint("bob.t1", identify)).toBe(sha256("identity:bob"));
    expect(await tokenFingerprint("alice.t3", identify)).toBe(sha256("identity:alice"));
  });
});
