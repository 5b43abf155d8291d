import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createWatchAccess, WATCH_TOKEN_TTL_MS } from "../../src/live/watch-token.ts";

const SECRET = "unit-test-watch-secret-0123456789abcdef";
const T0 = Date.UTC(2026, 10, 28, 9, 0, 0);
const at = (now: number) => createWatchAccess({ secret: SECRET, now: () => now });

describe("watch tokens", () => {
  it("when checked within 15 minutes, then valid; from the 15th minute on, expired", () => {
    const token = at(T0).issue("uuid-a");
    expect(token).toMatch(/^[0-9a-z]+\.[\w-]{24}$/);
    expect(at(T0 + WATCH_TOKEN_TTL_MS - 1).check(token, "uuid-a")).toBe("valid");
    expect(at(T0 + WATCH_TOKEN_TTL_MS).check(token, "uuid-a")).toBe("expired");
  });

  it("when any one character of a token is changed, or it is checked for another uuid, then it is invalid", () => {
    const token = at(T0).issue("uuid-a");
    fc.assert(
      fc.property(fc.nat(token.length - 1), fc.constantFrom(..."0123456789abcdefXYZ_-."), (index, char) => {
        fc.pre(token[index] !== char);
        const changed = `${token.slice(0, index)}${char}${token.slice(index + 1)}`;
        expect(at(T0).check(changed, "uuid-a")).toBe("invalid");
      }),
    );
    expect(at(T0).check(token, "uuid-b")).toBe("invalid");
    expect(at(T0).check(token, "uuid-a ")).toBe("invalid");
  });

  it("when watchUrl is built, then the uuid is encoded and PUBLIC_URL (without its trailing slash) prefixes it", () => {
    expect(at(T0).watchUrl("a:b")).toMatch(/^\/v1\/messages\/a%3Ab\/stream\?watch=/);
    const absolute = createWatchAccess({ secret: SECRET, publicUrl: "https://otp.example.com/" }).watchUrl("u1");
    expect(absolute).toMatch(/^https:\/\/otp\.example\.com\/v1\/messages\/u1\/stream\?watch=/);
  });
});
