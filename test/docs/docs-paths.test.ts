// The documentation names only what exists. Scans README.md, CHANGELOG.md, client/README.md and
// docs/**/*.md for repository paths (in backticks, migrations and SQL sources also by file name)
// and relative links (with their #anchor, checked against the target page's headings), and the comments of the TypeScript
// and SQL sources for the `test/…`, `scripts/…`, `supabase/…`, `docs/…` paths they name; a missing
// one fails with the file, the line and the path. Also: README.md stays short enough to read.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";

const README_MAX_LINES = 250;
/** Top-level folders and files of this repository a doc may name by path. */
const REPO_ROOTS = ["supabase/", "scripts/", "test/", "docs/", "client/", "demo-app/", "bin/"];
const ROOT_FILES = new Set(["README.md", "CHANGELOG.md", "package.json", "package-lock.json", "tsconfig.json", "vitest.config.ts"]);
/** Paths the docs name in a user's repo after the install, not in this one. */
const USER_REPO_PATHS = new Set(["supabase/partitioning-bundle.json", "supabase/functions/_shared/partitioning/"]);
/** Files the changelog names as history: removed in the release it describes. */
const REMOVED_PATHS = new Set(["supabase/migrations/20250101000000_baseline_app_schema.sql", "docs/benchmarks/latest.md"]);

interface Finding { file: string; line: number; path: string; why: string }

function walk(dir: string, keep: (f: string) => boolean): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (name === "node_modules" || name.startsWith(".")) return [];
    return statSync(p).isDirectory() ? walk(p, keep) : keep(p) ? [p] : [];
  });
}

/** GitHub's heading anchor: lower case, punctuation but `-` and `_` dropped, spaces as `-`. */
export function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

function anchorsOf(mdFile: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of readFileSync(mdFile, "utf8").split("\n")) {
    if (line.startsWith("```")) fence = !fence;
    const m = !fence && /^#{1,6} (.+)$/.exec(line);
    if (m) out.add(slug(m[1]!));
  }
  return out;
}

/** A path as a doc wrote it, or null when it is no path of this repository (placeholders, elisions, globs). */
function repoPath(raw: string): string | null {
  const p = raw.trim().replace(/[.,;:)]+$/, "");
  if (/[<>*{}…\s$]/.test(p) || p.includes("://")) return null;
  if (ROOT_FILES.has(p)) return p;
  if (REPO_ROOTS.some((r) => p.startsWith(r))) return p;
  if (/^\d{14}_[\w-]+\.sql$/.test(p)) return `supabase/migrations/${p}`;
  if (/^\d{2}_[a-z0-9_]+\.sql$/.test(p)) return `supabase/schemas/${p}`;
  return null;
}

function exists(p: string): boolean {
  return USER_REPO_PATHS.has(p) || existsSync(join(REPO_ROOT, p));
}

/** Every path and relative link in one Markdown file that does not resolve. */
export function checkMarkdown(file: string): Finding[] {
  const rel = relative(REPO_ROOT, file);
  const findings: Finding[] = [];
  const lines = readFileSync(file, "utf8").split("\n");
  let fence = false;
  lines.forEach((line, i) => {
    if (line.startsWith("```")) { fence = !fence; return; }
    const at = { file: rel, line: i + 1 };
    // relative links: [text](target) outside code blocks
    if (!fence) {
      for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const [pathPart, anchor] = target.split("#") as [string, string | undefined];
        const abs = pathPart ? resolve(dirname(file), pathPart) : file;
        if (!existsSync(abs)) { findings.push({ ...at, path: target, why: "link target does not exist" }); continue; }
        if (anchor && abs.endsWith(".md") && !anchorsOf(abs).has(anchor)) {
          findings.push({ ...at, path: target, why: `no heading #${anchor} in ${relative(REPO_ROOT, abs)}` });
        }
      }
    }
    // repository paths in backticks (in code blocks too: the commands name real files)
    for (const m of line.matchAll(/`([^`]+)`/g)) {
      const p = repoPath(m[1]!);
      if (p && !exists(p) && !(rel === "CHANGELOG.md" && REMOVED_PATHS.has(p))) findings.push({ ...at, path: p, why: "no such file or folder" });
    }
  });
  return findings;
}

/** Paths named in the comments of a source file. */
export function checkComments(file: string): Finding[] {
  const rel = relative(REPO_ROOT, file);
  const comment = file.endsWith(".sql") ? /--(.*)$/ : /(?:\/\/|^\s*\*|\/\*)(.*)$/;
  const findings: Finding[] = [];
  readFileSync(file, "utf8").split("\n").forEach((line, i) => {
    const c = comment.exec(line)?.[1];
    if (!c) return;
    for (const m of c.matchAll(/(?:^|[\s`("'])((?:test|scripts|supabase|docs|client)\/[\w./-]+\.(?:ts|sql|md|json|sh|toml|mjs))/g)) {
      const p = repoPath(m[1]!);
      if (p && !exists(p)) findings.push({ file: rel, line: i + 1, path: p, why: "named in a comment, no such file" });
    }
  });
  return findings;
}

const report = (fs: Finding[]) => fs.map((f) => `${f.file}:${f.line}: ${f.path} (${f.why})`);

describe("the documentation", () => {
  const docs = [
    join(REPO_ROOT, "README.md"),
    join(REPO_ROOT, "CHANGELOG.md"),
    join(REPO_ROOT, "client", "README.md"),
    join(REPO_ROOT, "supabase", "schemas", "README.md"),
    ...walk(join(REPO_ROOT, "test"), (f) => f.endsWith("README.md")),
    ...walk(join(REPO_ROOT, "docs"), (f) => f.endsWith(".md")),
  ];

  it("names only paths, pages and headings that exist", () => {
    expect(docs.length).toBeGreaterThan(10);
    expect(report(docs.flatMap(checkMarkdown))).toEqual([]);
  });

  it("keeps README.md short", () => {
    const lines = readFileSync(join(REPO_ROOT, "README.md"), "utf8").trimEnd().split("\n").length;
    expect(lines, `README.md has ${lines} lines; move the detail into docs/`).toBeLessThanOrEqual(README_MAX_LINES);
  });

  it("is linked from the README: every page of docs/", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const pages = readdirSync(join(REPO_ROOT, "docs")).filter((f) => f.endsWith(".md"));
    expect(pages.filter((p) => !readme.includes(`(docs/${p})`))).toEqual([]);
  });
});

describe("source comments", () => {
  it("name only test, script, supabase and docs paths that exist", () => {
    const sources = [
      ...walk(join(REPO_ROOT, "scripts"), (f) => f.endsWith(".ts")),
      ...walk(join(REPO_ROOT, "test"), (f) => f.endsWith(".ts")),
      ...walk(join(REPO_ROOT, "client"), (f) => f.endsWith(".ts")),
      ...walk(join(REPO_ROOT, "supabase", "functions"), (f) => f.endsWith(".ts")),
      ...walk(join(REPO_ROOT, "supabase", "migrations"), (f) => f.endsWith(".sql")),
      ...walk(join(REPO_ROOT, "supabase", "schemas"), (f) => f.endsWith(".sql")),
      ...walk(join(REPO_ROOT, "supabase", "tests"), (f) => f.endsWith(".sql")),
    ];
    expect(sources.length).toBeGreaterThan(50);
    expect(report(sources.flatMap(checkComments))).toEqual([]);
  });
});
