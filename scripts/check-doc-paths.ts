/**
 * Part of `npm run lint:docs`: every repository file the README and docs/ name (`src/...`, `test/...`, `bench/...`,
 * `scripts/...`, `prisma/...`) exists, so a page cannot keep pointing at a file that moved.
 */
import { access, readdir, readFile } from "node:fs/promises";
import path from "node:path";

const NAMED = /\b(?:src|test|bench|scripts|prisma)\/[\w./-]*\w\.(?:ts|sql|cjs|json|prisma|html|css|js)\b/g;

const pages = [
  "README.md",
  ...(await readdir("docs", { recursive: true }))
    .filter((file) => file.endsWith(".md"))
    .map((file) => path.join("docs", file)),
];
const missing: string[] = [];
for (const page of pages) {
  const text = await readFile(page, "utf8");
  for (const named of new Set(text.match(NAMED) ?? [])) {
    await access(named).catch(() => missing.push(`${page}: ${named}`));
  }
}
if (missing.length > 0) {
  console.error(`Docs name files that do not exist:\n${missing.join("\n")}`);
  process.exit(1);
}
console.log(`doc paths: ${pages.length} pages checked`);
