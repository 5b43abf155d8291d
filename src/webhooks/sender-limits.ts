import { BlockList, isIP } from "node:net";
import type { Request } from "express";
import { AppError } from "../http/problem.ts";

/** `a.b.c.d/n`, `x::/n` or a bare address, as `{address, prefix, family}`; undefined when not one. */
export function parseCidr(text: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } | undefined {
  const [address = "", prefixText, ...rest] = text.trim().split("/");
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const bits = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= bits)) return undefined;
  return { address, prefix, family: version === 4 ? "ipv4" : "ipv6" };
}

/**
 * `WEBHOOK_ALLOWED_IPS`: when set, a webhook from any other client address (as Express sees it, so behind
 * `TRUST_PROXY` the forwarded one) is refused with 403 before its body is read. Defence in depth beside the
 * secret: a leaked secret alone cannot then write statuses from anywhere.
 */
export function checkWebhookClient(allowed: readonly string[] | undefined): (req: Request) => void {
  if (!allowed || allowed.length === 0) return () => {};
  const list = new BlockList();
  for (const entry of allowed) {
    const cidr = parseCidr(entry);
    if (cidr) list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return (req) => {
    const ip = req.ip ?? "";
    // An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d.
    const address = ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (isIP(address) === 0 || !list.check(address, family)) {
      throw new AppError({ code: "forbidden", detail: "This client address may not call the webhook." });
    }
  };
}

const WINDOW_MS = 60_000;

/**
 * How many buffered rows (statuses for uuids not stored yet) one sender, by client address, may create per
 * minute on this instance. Checked before a request and counted after it, so one request (at most 1,000 items)
 * can overshoot the limit once. `perMinute` 0 turns it off.
 */
export function bufferedBudget(perMinute: number, now: () => number = Date.now) {
  let windowStart = now();
  const used = new Map<string, number>();
  const roll = () => {
    if (now() - windowStart < WINDOW_MS) return;
    windowStart = now();
    used.clear();
  };
  return {
    exhausted(sender: string): boolean {
      if (perMinute === 0) return false;
      roll();
      return (used.get(sender) ?? 0) >= perMinute;
    },
    spend(sender: string, rows: number): void {
      if (perMinute === 0 || rows === 0) return;
      roll();
      used.set(sender, (used.get(sender) ?? 0) + rows);
    },
    refusal(): AppError {
      const seconds = Math.max(1, Math.ceil((windowStart + WINDOW_MS - now()) / 1000));
      return new AppError({
        code: "too_many_buffered",
        detail: `At most ${perMinute} statuses for unknown uuids per minute from one sender; retry after the time in Retry-After.`,
        headers: { "Retry-After": String(seconds) },
      });
    },
  };
}
