// The direction of imports between the folders of src/, checked by `npm run lint` (README: Code layout).
// The files at the top of src/ (app, server, config) wire the folders together; the folders never import them,
// except config.ts, which the command-line tools read.

/** Folders that hold a feature: they sit on top of tracking/, db/, http/ and the small shared folders. */
const FEATURES = "messages|webhooks|reconcile|live|ops|verifications|callbacks|limits|keys";

module.exports = {
  forbidden: [
    {
      name: "no-folder-cycles",
      comment: "Two folders that import each other are one module in two places: move the shared part down.",
      severity: "error",
      scope: "folder",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-module-cycles",
      severity: "error",
      from: { pathNot: "^src/generated/" },
      to: { circular: true },
    },
    {
      name: "folders-do-not-import-the-composition-root",
      comment: "app.ts and server.ts build the service from the folders; only config.ts may be read from below.",
      severity: "error",
      from: { path: "^src/[^/]+/" },
      to: { path: "^src/[^/]+\\.ts$", pathNot: "^src/config\\.ts$" },
    },
    {
      name: "tracking-is-the-core",
      comment:
        "Status tracking (statuses, the state machine, event times, the event store, settling) imports only db/: " +
        "webhooks, messages, reconcile, live and ops use it, never the other way round.",
      severity: "error",
      from: { path: "^src/tracking/" },
      to: { path: "^src/", pathNot: "^src/(tracking|db)/" },
    },
    {
      name: "db-imports-only-generated",
      comment: "The database layer knows nothing of HTTP or features (its command-line tool reads config.ts).",
      severity: "error",
      from: { path: "^src/db/", pathNot: "^src/db/migrate-cli\\.ts$" },
      to: { path: "^src/", pathNot: "^src/(db|generated)/" },
    },
    {
      name: "http-imports-no-feature",
      comment: "http/ holds the shared request plumbing (problems, validation, auth against keys/); features build on it.",
      severity: "error",
      from: { path: "^src/http/" },
      to: { path: `^src/(${FEATURES}|tracking|betatel|phone)/`, pathNot: "^src/keys/" },
    },
    {
      name: "betatel-imports-only-tracking",
      comment: "The Betatel client and its sandbox speak Betatel's API; they read statuses and times from tracking/.",
      severity: "error",
      from: { path: "^src/betatel/" },
      to: { path: "^src/", pathNot: "^src/(betatel|tracking)/" },
    },
    {
      name: "phone-is-a-leaf",
      severity: "error",
      from: { path: "^src/phone/" },
      to: { path: "^src/", pathNot: "^src/phone/" },
    },
    {
      name: "messages-does-not-import-its-consumers",
      comment: "Sending and reading messages knows nothing of who else reacts to statuses.",
      severity: "error",
      from: { path: "^src/messages/" },
      to: { path: "^src/(webhooks|reconcile|live|ops|verifications|callbacks)/" },
    },
    {
      name: "webhooks-and-reconcile-are-entry-points",
      comment: "Statuses arrive through webhooks/ or reconcile/; features share tracking/, not each other's intake.",
      severity: "error",
      from: { path: `^src/(${FEATURES})/`, pathNot: "^src/(webhooks|reconcile|ops)/" },
      to: { path: "^src/(webhooks|reconcile)/" },
    },
    {
      name: "reconcile-is-imported-by-no-feature",
      severity: "error",
      from: { path: "^src/[^/]+/", pathNot: "^src/reconcile/" },
      to: { path: "^src/reconcile/" },
    },
    {
      name: "live-does-not-import-its-producers",
      comment: "live/ streams what tracking/ stored; it does not reach into whoever stored it.",
      severity: "error",
      from: { path: "^src/live/" },
      to: { path: "^src/(webhooks|reconcile|ops|verifications|callbacks)/" },
    },
  ],
  options: {
    doNotFollow: { path: ["node_modules", "^src/generated/"] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
  },
};
