import { parsePhoneNumberFromString } from "libphonenumber-js/max";

/**
 * Normalises a phone number given with or without `+`, spaces, dashes, dots or parentheses to E.164
 * digits without `+` (Betatel's format), or returns undefined when libphonenumber says it is not a valid
 * international number.
 */
export function normalizePhone(input: string): string | undefined {
  const trimmed = input.trim();
  if (!/^\+?[\d\s\-().]{4,32}$/.test(trimmed)) return undefined;
  const digits = trimmed.replace(/\D/g, "");
  if (digits.length > 15) return undefined;
  const parsed = parsePhoneNumberFromString(`+${digits}`);
  if (!parsed?.isValid()) return undefined;
  return parsed.number.slice(1);
}

/** A number for logs: country code and the last two digits kept, the rest masked (`387*******55`). */
export function maskPhone(digits: string): string {
  const parsed = parsePhoneNumberFromString(`+${digits}`);
  const countryCode = parsed?.countryCallingCode ?? digits.slice(0, 1);
  const hidden = Math.max(digits.length - countryCode.length - 2, 0);
  return `${countryCode}${"*".repeat(hidden)}${digits.slice(countryCode.length + hidden)}`;
}
