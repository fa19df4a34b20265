// No test worker blocks its event loop on another program. A worker that waits synchronously
// (spawnSync, execSync, execFileSync) for longer than vitest's 60 s RPC timeout, as `supabase db
// push`, initdb or `npm ci --dry-run` can on a loaded machine, ends the whole run red with
// "Timeout calling onTaskUpdate" though no test failed (vitest issues #6479, #8164). Scans every
// test file and every repository module a test file loads, import by import, for synchronous child
// processes; the one left is allow-listed below, by its exact call, with why it is short.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";

/** This file names the calls it looks for. */
const SELF = relative(REPO_ROOT, import.meta.filename);

const BLOCKING = /\b(spawnSync|execSync|execFileSync|Atomics\.wait)\b/g;

/** Synchronous calls that stay: a file, the exact start of the call, and why it cannot take long. */
const ALLOWED: readonly { file: string; call: string; why: string }[] = [
  {
    file: "scripts/lib/cluster.ts",
    call: `spawnSync("runuser", ["-u", "postgres", "--", "test", "-x", REPO_ROOT])`,
    why: "one access(2) by `test` as the postgres user, so that clusterFor stays synchronous: milliseconds",
  },
];

interface Finding { file: string; line: number; text: string }

/** Blocking calls in a module's source; comments do not count, import specifiers do not either. */
function blockingCalls(file: string, source: string): Finding[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " ")).replace(/(^|[^:"'`])\/\/.*$/gm, (c, pre: string) => pre + " ".repeat(c.length - pre.length));
  const findings: Finding[] = [];
  for (const m of code.matchAll(BLOCKING)) {
    const at = m.index;
    const lineStart = code.lastIndexOf("\n", at) + 1;
    const lineEnd = code.indexOf("\n", at);
    const line = code.slice(lineStart, lineEnd === -1 ? undefined : lineEnd);
    // `import { spawnSync } from "node:child_process"`: only its calls matter (an alias is a call site of its own)
    if (/^\s*import\s.*\bfrom\s+["']node:child_process["']/.test(line) && !new RegExp(`${m[0]}\\s+as\\s`).test(line)) continue;
    if (ALLOWED.some((a) => a.file === file && code.startsWith(a.call, at))) continue;
    findings.push({ file, line: code.slice(0, at).split("\n").length, text: line.trim() });
  }
  return findings;
}

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? testFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** Every repository module reachable from the test files through relative imports (static and dynamic). */
function loadedModules(): Map<string, string> {
  const seen = new Map<string, string>();
  const queue = testFiles(join(REPO_ROOT, "test"));
  while (queue.length > 0) {
    const file = queue.pop()!;
    const rel = relative(REPO_ROOT, file);
    if (rel === SELF || seen.has(rel) || !existsSync(file) || rel.startsWith("..") || rel.includes("node_modules")) continue;
    const source = readFileSync(file, "utf8");
    seen.set(rel, source);
    for (const m of source.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
      const target = resolve(dirname(file), m[1]!);
      queue.push(/\.[cm]?[jt]s$/.test(target) ? target : `${target}.ts`);
    }
  }
  return seen;
}

describe("synchronous child processes in test workers", () => {
  const modules = loadedModules();

  it("reaches the scripts the suites run in process", () => {
    // the walk follows imports: these are loaded by test files only through other modules or directly
    for (const f of ["scripts/lib/cluster.ts", "scripts/lib/push-migrations.ts", "scripts/lib/pooler.ts", "scripts/lib/backup.ts",
      "scripts/lib/database-types.ts", "scripts/build-client.ts", "scripts/lib/processes.ts", "test/helpers/pooler.ts"]) {
      expect(modules.has(f), f).toBe(true);
    }
  });

  it("finds none but the allow-listed, which are all still there", () => {
    const findings = [...modules].flatMap(([file, source]) => blockingCalls(file, source));
    expect(findings.map((f) => `${f.file}:${f.line}: ${f.text} (use runProgram from scripts/lib/processes.ts, and await it)`)).toEqual([]);
    for (const a of ALLOWED) expect(modules.get(a.file) ?? "", `${a.file} no longer has ${a.call}: drop it from ALLOWED`).toContain(a.call);
  });

  it("sees a synchronous call, an alias and a busy wait, not a comment or the import", () => {
    const source = [
      `import { execFileSync, spawnSync as run } from "node:child_process";`,
      `// spawnSync("sleep", ["1"]) in a comment`,
      `while (!ready()) spawnSync("sleep", ["0.1"]);`,
      `const out = execFileSync("npm", ["ci"]);`,
      `Atomics.wait(view, 0, 0, 100);`,
    ].join("\n");
    expect(blockingCalls("x.ts", source).map((f) => f.line)).toEqual([1, 3, 4, 5]);
  });
});
