/**
 * `npm run lint:sql`: SQL stays in each folder's repository file. Fails naming any other file under src/ that runs
 * a query or holds a statement, so the rule of the README's Code layout stays true.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

/** Where SQL belongs: each folder's repository, the ops page's queries, the event store, and the database layer. */
const ALLOWED = /^src\/([^/]+\/repository|ops\/page\/queries|tracking\/apply|db\/[^/]+|live\/notifier)\.ts$/;
const SQL =
  /\.query\s*[<(]|\$(queryRaw|executeRaw)|\b(SELECT\s+[\w*"(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b/;

const files = (await readdir("src", { recursive: true }))
  .map((file) => path.join("src", file))
  .filter((file) => file.endsWith(".ts") && !file.startsWith("src/generated/"));
const misplaced: string[] = [];
for (const file of files) {
  if (ALLOWED.test(file)) continue;
  const lines = (await readFile(file, "utf8")).split("\n");
  lines.forEach((line, index) => {
    if (SQL.test(line)) misplaced.push(`${file}:${index + 1}: ${line.trim()}`);
  });
}
if (misplaced.length > 0) {
  console.error(`SQL outside a repository file (move it to the folder's repository.ts):\n${misplaced.join("\n")}`);
  process.exit(1);
}
console.log(`SQL placement: ${files.length} files checked`);
