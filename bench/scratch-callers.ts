import { readFileSync } from "node:fs";

const p = JSON.parse(readFileSync(process.argv[2]!, "utf8"));
const target = process.argv[3]!;
const byId = new Map<number, any>(p.nodes.map((n: any) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const hits = new Map<number, number>();
for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
const agg = new Map<string, number>();
for (const n of p.nodes)
  if (n.callFrame.functionName === target) {
    const chain: string[] = [];
    let id = parent.get(n.id);
    for (let d = 0; d < 12 && id; d++) {
      const x = byId.get(id);
      chain.push(
        `${x.callFrame.functionName}@${x.callFrame.url.split("/").slice(-2).join("/")}:${x.callFrame.lineNumber + 1}`,
      );
      id = parent.get(id);
    }
    const k = chain.join(" < ");
    agg.set(k, (agg.get(k) ?? 0) + (hits.get(n.id) ?? 0));
  }
for (const [k, v] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(v, k);
