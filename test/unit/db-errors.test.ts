import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/database.ts";
import { StorageUnavailableError, storageUnavailableReason } from "../../src/db/errors.ts";

/** A pg DatabaseError as the driver builds it from the server's message. */
const pgError = (code: string, message = "server said no") =>
  Object.assign(new Error(message), { code, severity: "ERROR", name: "error" });

/** How Prisma's driver adapter hands a pg error up: wrapped, the SQLSTATE as `originalCode` of its `cause`. */
const prismaWrapped = (prismaCode: string | undefined, cause: Record<string, unknown>) => {
  const adapterError = Object.assign(new Error("adapter"), { name: "DriverAdapterError", cause });
  return prismaCode
    ? Object.assign(new Error("prisma"), { code: prismaCode, meta: { driverAdapterError: adapterError } })
    : adapterError;
};

describe("storageUnavailableReason", () => {
  it.each([
    ["08006", "connection failure"],
    ["08001", "cannot establish a connection"],
    ["53300", "too many connections"],
    ["53100", "disk full"],
    ["57P01", "admin shutdown"],
    ["57P02", "crash shutdown"],
    ["57P03", "cannot connect now (starting up, in recovery)"],
    ["57014", "statement cancelled by a timeout"],
    ["58030", "I/O error"],
    ["55000", "database not accepting connections"],
    ["55P03", "lock not available"],
    ["25006", "read-only transaction"],
    ["40001", "serialization failure after retries"],
    ["40P01", "deadlock after retries"],
  ])("when pg reports SQLSTATE %s (%s), then unavailable", (code) => {
    expect(storageUnavailableReason(pgError(code))).toBe(code);
  });

  it.each([
    ["23505", "unique violation"],
    ["23514", "check violation"],
    ["22P02", "invalid input"],
    ["42P01", "undefined table"],
    ["42P05", "duplicate prepared statement"],
    ["42703", "undefined column"],
    ["XX000", "internal error"],
    ["P2002", "Prisma unique violation"],
  ])("when the error is %s (%s), then it is the query's fault, not the storage's", (code) => {
    expect(storageUnavailableReason(pgError(code))).toBeUndefined();
  });

  it.each([["ECONNREFUSED"], ["ECONNRESET"], ["ETIMEDOUT"], ["EHOSTUNREACH"], ["EAI_AGAIN"]])(
    "when the socket fails with %s, then unavailable",
    (code) => {
      expect(storageUnavailableReason(Object.assign(new Error(`connect ${code}`), { code }))).toBe(code);
    },
  );

  it.each([
    ["Connection terminated unexpectedly"],
    ["Connection terminated due to connection timeout"],
    ["timeout exceeded when trying to connect"],
    ["Client has encountered a connection error and is not queryable"],
    ["Client was closed and is not queryable"],
    ["Cannot use a pool after calling end on the pool"],
  ])("when pg says %j, then unavailable", (message) => {
    expect(storageUnavailableReason(new Error(message))).toBeDefined();
  });

  it.each([
    ["P1001", { kind: "DatabaseNotReachable" }],
    ["P1017", { kind: "ConnectionClosed" }],
    ["P1008", { kind: "SocketTimeout" }],
    ["P2037", { kind: "TooManyConnections", originalCode: "53300" }],
    ["P2034", { kind: "TransactionWriteConflict", originalCode: "40001" }],
    ["P2024", {}],
    ["P2028", {}],
  ])("when Prisma wraps it as %s, then unavailable", (code, cause) => {
    expect(storageUnavailableReason(prismaWrapped(code, cause))).toBeDefined();
  });

  it("when Prisma passes a pg error through unmapped, then its SQLSTATE decides", () => {
    expect(storageUnavailableReason(prismaWrapped(undefined, { kind: "postgres", code: "57P01" }))).toBe("57P01");
    expect(storageUnavailableReason(prismaWrapped(undefined, { kind: "postgres", code: "23514" }))).toBeUndefined();
    expect(storageUnavailableReason(prismaWrapped("P2010", { kind: "postgres", originalCode: "55000" }))).toBe("55000");
  });

  it("when the cause is deep, in an AggregateError, or cyclic, then it is still found, and nothing loops", () => {
    const inner = new AggregateError([new Error("x"), Object.assign(new Error("refused"), { code: "ECONNREFUSED" })]);
    expect(storageUnavailableReason(inner)).toBe("ECONNREFUSED");
    const cyclic: { cause?: unknown; message: string } = { message: "a" };
    cyclic.cause = { message: "b", cause: cyclic };
    expect(storageUnavailableReason(cyclic)).toBeUndefined();
    expect(storageUnavailableReason(undefined)).toBeUndefined();
    expect(
      storageUnavailableReason(new Error("wrapped", { cause: new StorageUnavailableError({ reason: "read-only" }) })),
    ).toBe("read-only");
    expect(storageUnavailableReason("Connection terminated")).toBeUndefined();
  });
});

describe("real driver errors against a port where nothing listens", () => {
  it("when pg and Prisma cannot connect, then both errors are classified unavailable", async () => {
    const db = await openDatabase({ url: "postgresql://postgres@127.0.0.1:9/none", dataDir: "", poolSize: 1 });
    try {
      const fromPg = await db.pool.query("SELECT 1").catch((error: unknown) => error);
      expect(storageUnavailableReason(fromPg)).toBeDefined();
      const fromPrisma = await db.prisma.message.findFirst().catch((error: unknown) => error);
      expect(fromPrisma).toBeInstanceOf(Error);
      expect(storageUnavailableReason(fromPrisma)).toBeDefined();
    } finally {
      await db.close();
    }
  });
});
