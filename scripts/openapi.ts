// `npm run openapi`: writes the service's OpenAPI document (as GET /openapi.json serves it) to a file, for
// linting (redocly) and for generating clients. Usage: tsx scripts/openapi.ts <file>
import { writeFile } from "node:fs/promises";
import { buildOpenApiDocument } from "../src/ops/openapi.ts";

const file = process.argv[2] ?? "openapi.json";
await writeFile(file, `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`);
console.log(`wrote ${file}`);
