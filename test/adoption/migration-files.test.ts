// The migration files as files: released ones append-only, and the layout of issue 14.
// Covers:
//  - every migration recorded in supabase/released-migrations.json is unchanged (SHA-256) and
//    every unreleased one sorts after the last released one; the rule itself, on a made-up record
//    (a changed, a removed and an out-of-order file are each reported by name);
//  - each function or procedure of the bundle is defined in one migration of a release only (a
//    later release may replace it, once: released files are history), and no migration calls a
//    function that a later migration defines (comments and string literals, such as the hints of
//    error messages, do not count).
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  appendOnlyViolations, currentMigrations, migrationFiles, MIGRATIONS_DIR, readReleasedMigrations,
} from "../../scripts/lib/released-migrations.ts";

describe("released migrations are append-only", () => {
  it("every released migration is unchanged, and new ones come after them", () => {
    const record = readReleasedMigrations();
    expect(record.releases.length).toBeGreaterThan(0);
    expect(appendOnlyViolations(record)).toEqual([]);
  });

  it("reports a changed, a removed and an out-of-order migration by name", () => {
    const files = [
      { file: "20250101000000_a.sql", sha256: "1" },
      { file: "20250101000100_b.sql", sha256: "2-changed" },
      { file: "20250101000050_new_but_early.sql", sha256: "4" },
      { file: "20250101000300_new.sql", sha256: "5" },
    ];
    const record = {
      releases: [{
        version: "0.1.0",
        migrations: [
          { file: "20250101000000_a.sql", sha256: "1" },
          { file: "20250101000100_b.sql", sha256: "2" },
          { file: "20250101000200_c.sql", sha256: "3" },
        ],
      }],
    };
    expect(appendOnlyViolations(record, files)).toEqual([
      "20250101000100_b.sql (released in 0.1.0) changed: put the change in a new migration after the last released one",
      "20250101000200_c.sql (released in 0.1.0) is gone: released migrations stay; undo its objects in a new migration",
      "20250101000050_new_but_early.sql is new but sorts before the released 20250101000200_c.sql: name it with a later timestamp",
    ]);
    // a withdrawn release (never installed anywhere) may be re-cut by the next one
    expect(appendOnlyViolations({ releases: [{ ...record.releases[0]!, withdrawn: "never installed" }] }, files)).toEqual([]);
  });
});

/** The SQL that runs: without comments, and with string literals emptied. */
function code(sql: string): string {
  return sql.replace(/--[^\n]*/g, "").replace(/'(?:[^']|'')*'/g, "''");
}

describe("migration layout", () => {
  it("every migration's first statement sets a short lock_timeout (a DDL that waits queues the app behind it)", () => {
    const files = migrationFiles();
    expect(files.length).toBeGreaterThan(10);
    const first = files.map((f) => {
      const statement = readFileSync(join(MIGRATIONS_DIR, f), "utf8").replace(/--[^\n]*/g, "").trim().split(";")[0]?.trim() ?? "";
      return { file: f, statement };
    });
    expect(first.filter((x) => !/^set lock_timeout = '\d{1,3}ms'$/.test(x.statement))).toEqual([]);
  });

  const files = migrationFiles();
  const definedIn = new Map<string, string[]>();
  for (const f of files) {
    const sql = readFileSync(join(MIGRATIONS_DIR, f), "utf8");
    for (const m of sql.matchAll(/^create (?:or replace )?(?:function|procedure) (\w+)\.(\w+)\(/gm)) {
      const name = `${m[1]}.${m[2]}`;
      definedIn.set(name, [...(definedIn.get(name) ?? []), f]);
    }
  }

  // the release a file belongs to (unreleased files: the next one)
  const releaseOf = new Map<string, string>();
  for (const r of readReleasedMigrations().releases) for (const m of r.migrations) releaseOf.set(m.file, r.version);
  const release = (f: string) => releaseOf.get(f) ?? "unreleased";

  it("defines each function in one migration of a release only", () => {
    expect(files.length).toBe(currentMigrations().length);
    expect(definedIn.size).toBeGreaterThan(100);
    const twice = [...definedIn].filter(([, fs]) => new Set(fs.map(release)).size < fs.length);
    expect(twice).toEqual([]);
  });

  it("calls no function a later migration defines", () => {
    const forward: string[] = [];
    files.forEach((f, i) => {
      const body = code(readFileSync(join(MIGRATIONS_DIR, f), "utf8"));
      for (const [name, [where]] of definedIn) {
        const later = files.indexOf(where!) > i;
        const [schema, fn] = name.split(".");
        if (later && new RegExp(`\\b${schema}\\.${fn}\\s*\\(`).test(body)) forward.push(`${f} calls ${name} (defined in ${where})`);
      }
    });
    expect(forward).toEqual([]);
  });
});
