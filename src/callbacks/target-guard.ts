import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from "node:dns";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/** A callback URL or address the service refuses to call (SSRF guard). */
export class CallbackTargetRefused extends Error {
  override name = "CallbackTargetRefused";
}

/**
 * Only public unicast addresses: not loopback, private, link-local (cloud metadata at 169.254.169.254 and
 * fd00:ec2::254 included), carrier-grade NAT, multicast, reserved or unspecified. IPv4-mapped IPv6 addresses
 * are judged as the IPv4 address they carry.
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  return ipaddr.process(address).range() === "unicast";
}

/**
 * Checked when an endpoint is added and before each delivery: https only, and a literal address must be
 * public, unless private targets are allowed (development, or a deployment inside a private network).
 */
export function checkCallbackUrl(raw: string, allowPrivate: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CallbackTargetRefused("not a URL");
  }
  if (url.protocol !== "https:" && !(allowPrivate && url.protocol === "http:")) {
    throw new CallbackTargetRefused(allowPrivate ? "must be an http(s) URL" : "must be an https URL");
  }
  if (url.username || url.password) throw new CallbackTargetRefused("must not carry credentials");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (!allowPrivate && isIP(host) && !isPublicAddress(host)) {
    throw new CallbackTargetRefused(`address ${host} is not public`);
  }
  return url;
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http(s).request that resolves the name and refuses it if any address is not public. The
 * check is on the addresses the connection will use, at delivery time, so a name that later resolves to a
 * private address (DNS rebinding) is refused too.
 */
export function publicOnlyLookup(hostname: string, options: LookupAllOptions | object, callback: LookupCallback) {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, []);
    const refused = addresses.find((entry) => !isPublicAddress(entry.address));
    if (refused) {
      return callback(new CallbackTargetRefused(`${hostname} resolves to ${refused.address}, which is not public`), []);
    }
    if ((options as LookupAllOptions).all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(new CallbackTargetRefused(`${hostname} has no address`), []);
    callback(null, first.address, first.family);
  });
}
