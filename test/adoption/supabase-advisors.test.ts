// Supabase's own checks, with the real CLI (no Docker needed with --remote): `supabase db advisors`
// (the security and performance lints of Studio's Advisors page) and `supabase db lint`
// (plpgsql_check over every function of the bundle's schemas), on a database with demo data, both
// tables migrated and swapped, then both rolled back. Neither may report a WARN or an ERROR. The
// INFO findings that remain are the by-design kinds docs/deploying.md lists ("What Supabase's advisors
// say"), each checked here to be of that kind, and counted.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateOnline, rollback } from "../../scripts/lib/migration-driver.ts";
import { asSuperuser, freshDatabase, type FreshDb } from "../helpers/db.ts";
import { loadSmallDemo } from "../helpers/migration.ts";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { run } from "../helpers/processes.ts";

const SUPABASE_CLI = path.join(REPO_ROOT, "node_modules", ".bin", "supabase");

interface AdvisorFinding {
  name: string;
  level: "INFO" | "WARN" | "ERROR";
  detail: string;
  metadata: { schema?: string; name?: string; type?: string; fkey_name?: string; fkey_columns?: number[] };
}

interface LintIssue { level: string; message: string }
interface LintResult { function: string; issues: LintIssue[] }

/** The CLI's JSON answer; a non-zero exit (--fail-on) still prints it, so it is read either way. */
async function cli<T>(args: string[]): Promise<T> {
  try {
    const { stdout } = await run(SUPABASE_CLI, [...args, "--output-format", "json", "--workdir", REPO_ROOT], { maxBuffer: 64 * 1024 * 1024 });
    return JSON.parse(stdout) as T;
  } catch (err) {
    const stdout = (err as { stdout?: string }).stdout;
    if (stdout?.trim().startsWith("{")) return JSON.parse(stdout) as T;
    throw err;
  }
}

async function advisors(url: string): Promise<AdvisorFinding[]> {
  return (await cli<{ results: AdvisorFinding[] }>(["db", "advisors", `--remote=${url}`, "--level", "info", "--fail-on", "warn"])).results;
}

async function lint(url: string): Promise<LintResult[]> {
  return (await cli<{ results: LintResult[] }>(["db", "lint", `--remote=${url}`, "--level", "warning", "--fail-on", "error",
    "-s", "public,partition_mgmt,private,analytics"])).results;
}

/** INFO findings the bundle leaves by design (docs/deploying.md, "What Supabase's advisors say"). */
function byDesign(f: AdvisorFinding): boolean {
  const schema = f.metadata.schema ?? "";
  const table = f.metadata.name ?? "";
  switch (f.name) {
    case "unused_index":
      return true;   // counted since the statistics were reset; new indexes are unused until queried
    case "unindexed_foreign_keys":
      // the partition keys' foreign keys on the tree (constant within a leaf) and the app's own
      // submissions.program_id (the baseline replica of the user's schema)
      return (schema === "partitions" || /^(petri|gasifier)_observations(_old|_partitioned)?$/.test(table)) && /_(program|site)_id_fkey$/.test(f.metadata.fkey_name ?? "")
        || (schema === "public" && table === "submissions");
    default:
      return false;
  }
}

function lintProblems(results: LintResult[]): string[] {
  return results.flatMap((r) => r.issues.filter((i) => i.level === "error" || i.level === "warning").map((i) => `${r.function}: ${i.level}: ${i.message}`));
}

function counts(findings: AdvisorFinding[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of findings) out[`${f.level} ${f.name}`] = (out[`${f.level} ${f.name}`] ?? 0) + 1;
  return out;
}

describe("Supabase's advisors and plpgsql lint", () => {
  let db: FreshDb;
  beforeAll(async () => {
    db = await freshDatabase("advisors", { targetRowsPerLeaf: 100 });
    await loadSmallDemo(db.sql);
    // plpgsql_check, as `supabase db lint` expects it on a hosted project (Dashboard > Extensions;
    // there supautils lets postgres create it, here the superuser does)
    await asSuperuser((admin) => admin`create extension if not exists plpgsql_check schema extensions`, db.name);
  }, 120_000);
  afterAll(async () => {
    await db?.drop();
  });

  /** No WARN or ERROR from either tool; INFO only of the kinds docs/deploying.md explains. */
  async function expectClean(label: string): Promise<void> {
    const findings = await advisors(db.url);
    console.log(`[advisors] ${label}: ${JSON.stringify(counts(findings))}`);
    expect(findings.filter((f) => f.level !== "INFO").map((f) => `${f.level} ${f.name}: ${f.detail}`)).toEqual([]);
    expect(findings.filter((f) => !byDesign(f)).map((f) => `${f.name}: ${f.detail}`)).toEqual([]);
    expect(lintProblems(await lint(db.url))).toEqual([]);
  }

  it("after both tables are migrated and swapped: no WARN or ERROR; INFO only of the kinds docs/deploying.md explains", async () => {
    for (const table of ["petri_observations", "gasifier_observations"]) {
      expect((await migrateOnline(db.sql, table, { batchSize: 1000, swap: true })).phase).toBe("swapped");
    }
    await expectClean("after the swap");
  }, 300_000);

  it("after both are rolled back: the same", async () => {
    for (const table of ["petri_observations", "gasifier_observations"]) {
      await rollback(db.sql, table);
    }
    await expectClean("after the rollback");
  }, 300_000);
});
