import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { maskPhone, normalizePhone } from "../../src/phone/phone.ts";

describe("normalizePhone", () => {
  it.each([
    ["38761444555", "38761444555"],
    ["+38761444555", "38761444555"],
    ["+387 61 444 555", "38761444555"],
    ["+387-61-444-555", "38761444555"],
    [" +387 (61) 444.555 ", "38761444555"],
    ["+1 (650) 253-0000", "16502530000"],
    ["+44 20 7946 0958", "442079460958"],
    ["+49 30 901820", "4930901820"],
  ])("%s → %s", (input, digits) => {
    expect(normalizePhone(input)).toBe(digits);
  });

  it.each([
    ["empty", ""],
    ["letters", "call me"],
    ["digits with letters", "+387 61 444 55a"],
    ["too short for its country", "+387 61"],
    ["no such country code", "+999 123 456 789"],
    ["more than 15 digits", "3876144455512345"],
    ["two plus signs", "++38761444555"],
    ["a plus in the middle", "387+61444555"],
    ["a national number without country code", "061 444 555"],
  ])("rejects %s (%s)", (_name, input) => {
    expect(normalizePhone(input)).toBeUndefined();
  });

  it("never returns anything but 1..15 digits, whatever the input", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (input) => {
        const digits = normalizePhone(input);
        return digits === undefined || /^\d{1,15}$/.test(digits);
      }),
    );
  });

  it("is stable: a normalised number normalises to itself, with or without +", () => {
    for (const input of ["+387 61 444 555", "+1 650 253 0000", "+44 20 7946 0958"]) {
      const digits = normalizePhone(input) ?? "";
      expect(normalizePhone(digits)).toBe(digits);
      expect(normalizePhone(`+${digits}`)).toBe(digits);
    }
  });
});

describe("maskPhone", () => {
  it.each([
    ["38761444555", "387******55"],
    ["16502530000", "1********00"],
    ["442079460958", "44********58"],
  ])("%s → %s (country code and last two digits kept)", (digits, masked) => {
    expect(maskPhone(digits)).toBe(masked);
  });

  it("keeps the length and never shows more than the country code and two digits", () => {
    const masked = maskPhone("38761444555");
    expect(masked).toHaveLength(11);
    expect(masked).not.toContain("444");
  });
});
