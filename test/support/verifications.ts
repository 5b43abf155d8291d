import type { Express } from "express";
import request from "supertest";
import type { FakeBetatel } from "./fake-betatel.ts";

/** The code in the last text the fake Betatel was asked to send to `to`. */
export function lastCodeSentTo(betatel: FakeBetatel, to: string): string {
  const sent = betatel.requests.filter((r) => (r.json as { to?: string } | undefined)?.to === to);
  const text = (sent.at(-1)?.json as { text?: string } | undefined)?.text ?? "";
  const code = /code is (\d+)/.exec(text)?.[1];
  if (!code) throw new Error(`no code was sent to ${to}`);
  return code;
}

/** Every code sent to `to`, in order. */
export const codesSentTo = (betatel: FakeBetatel, to: string) =>
  betatel.requests
    .filter((r) => (r.json as { to?: string } | undefined)?.to === to)
    .map((r) => /code is (\d+)/.exec((r.json as { text: string }).text)?.[1]);

export const startVerification = (app: Express, auth: Record<string, string>, to: string) =>
  request(app).post("/v1/verifications").set(auth).send({ to });

export const checkCode = (app: Express, auth: Record<string, string>, id: string, code: string) =>
  request(app).post(`/v1/verifications/${id}/check`).set(auth).send({ code });

/** A code other than `code`, of the same length. */
export const wrongCode = (code: string, n = 1) =>
  String((Number(code) + n) % 10 ** code.length).padStart(code.length, "0");
