import { createRequire } from "node:module";
import path from "node:path";
import express, { type Request, type RequestHandler, type Response, Router } from "express";
import { rateLimit } from "express-rate-limit";
import type pg from "pg";
import { withStorage } from "../../db/errors.ts";
import { AppError, sendProblem, unauthorized as unauthorizedProblem, validationFailed } from "../../http/problem.ts";
import { teamNameSchema } from "../../keys/static-keys.ts";
import { newSession, type OpsAccess, requireOpsSession, setSessionCookie, tokenMatches } from "./access.ts";
import { readOverview, WINDOWS, type WindowName } from "./queries.ts";

const PUBLIC_DIR = path.join(import.meta.dirname, "public");
const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));

// Only our own files: no inline script or style, no other origin, no framing, forms post here only.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const unauthorized = (access: OpsAccess) =>
  unauthorizedProblem(
    access.locked
      ? "The ops page is locked: set OPS_TOKEN to use it."
      : "Sign in at /ops with OPS_TOKEN; the session cookie is sent with each request.",
  );

/** A refused sign-in: the form again, saying why, for a browser posting it; the problem for any other client. */
function refuseSignIn(req: Request, res: Response, message: string, problem: AppError): void {
  if (req.accepts(["json", "html"]) === "html") res.status(problem.status).type("html").send(loginPage(message));
  else sendProblem(res, problem);
}

/** The login form, answered with 401 to anyone without a session (no script; the message is ours, not input). */
function loginPage(message: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ops · sign in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/ops/assets/ops.css"></head>
<body class="login"><form method="post" action="/ops/login">
<h1>OTP delivery · ops</h1><p>${message}</p>
<label>Ops token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button></form></body></html>`;
}

export interface OpsPageOptions {
  pool: pg.Pool;
  access: OpsAccess;
  /** Messages unresolved for longer than this are shown as stuck (the reconciler's threshold). */
  stuckAfterMs: number;
}

/** GET /ops (the page), its static files, the sign-in form, and GET /ops/api/overview?window=&team= (its data). */
export function opsPageRouter({ pool, access, stuckAfterMs }: OpsPageOptions): Router {
  const router = Router();
  router.use((_req, res, next) => {
    res.set({ "Content-Security-Policy": CSP, "Cache-Control": "no-store" });
    next();
  });

  // Static files hold no data: served without a session so the login form has its style.
  router.use("/assets", express.static(PUBLIC_DIR, { index: false }));
  router.get(["/vendor/uPlot.iife.min.js", "/vendor/uPlot.min.css"], (req, res) => {
    res.sendFile(path.join(UPLOT_DIR, path.basename(req.path)));
  });

  const signInPage: RequestHandler = (_req, res) => {
    const message = access.locked
      ? "This page is locked: OPS_TOKEN is not set."
      : "Enter the ops token to see delivery health.";
    res.status(401).type("html").send(loginPage(message));
  };
  const signInProblem: RequestHandler = (_req, res) => sendProblem(res, unauthorized(access));

  router.post(
    "/login",
    rateLimit({
      windowMs: 60_000,
      limit: 10,
      standardHeaders: "draft-7",
      legacyHeaders: false,
      handler: (req, res) =>
        refuseSignIn(
          req,
          res,
          "Too many sign-in attempts. Wait a minute and try again.",
          new AppError({ code: "too_many_sign_ins", detail: "Wait a minute before signing in again." }),
        ),
    }),
    express.urlencoded({ extended: false, limit: "2kb" }),
    (req, res) => {
      if (access.token === undefined || !tokenMatches(access, req.body?.token)) {
        refuseSignIn(
          req,
          res,
          "That token is not right. Try again.",
          unauthorizedProblem("The ops token is not right."),
        );
        return;
      }
      setSessionCookie(res, access, newSession(access.token));
      res.redirect(303, "/ops");
    },
  );
  router.post("/logout", (_req, res) => {
    setSessionCookie(res, access, "", 0);
    res.redirect(303, "/ops");
  });

  router.get("/", requireOpsSession(access, signInPage), (_req, res) => {
    res.sendFile(path.join(PUBLIC_DIR, "index.html"));
  });

  router.get("/api/overview", requireOpsSession(access, signInProblem), async (req, res, next) => {
    const window = req.query.window ?? "24h";
    if (typeof window !== "string" || !Object.hasOwn(WINDOWS, window)) {
      return next(
        validationFailed(
          [{ path: "window", message: "must be one of 1h, 24h, 7d" }],
          "window must be one of 1h, 24h, 7d.",
        ),
      );
    }
    const team = req.query.team ?? "";
    if (typeof team !== "string" || (team !== "" && !teamNameSchema.safeParse(team).success)) {
      return next(
        validationFailed(
          [{ path: "team", message: "must be 1 to 64 letters, digits, dots, dashes or underscores" }],
          "team must be a team name, or empty for all.",
        ),
      );
    }
    try {
      res.json(
        await withStorage(() => readOverview(pool, { window: window as WindowName, team: team || null, stuckAfterMs })),
      );
    } catch (error) {
      next(error);
    }
  });
  return router;
}
