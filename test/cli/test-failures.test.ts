// The end of `npm test` names what failed (scripts/lib/test-failures.ts): from pg_prove's real output
// on a file that fails, and from vitest's JSON report.
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runProgram } from "../../scripts/lib/processes.ts";
import { pgTapFailures, vitestFailures } from "../../scripts/lib/test-failures.ts";
import { testEnv } from "../helpers/env.ts";

const url = new URL(testEnv.adminUrl);

describe("the failures npm test prints last", () => {
  it("names each failed pgTAP assertion with its file, from pg_prove", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgtap-failures-"));
    mkdirSync(join(dir, "t"));
    const file = (name: string, body: string) => writeFileSync(join(dir, "t", name),
      `begin; set local search_path = extensions, public; ${body} select * from finish(); rollback;\n`);
    file("01_fails.sql", "select plan(3); select ok(true, 'passes'); select ok(false, 'second fails'); select is(1, 2, 'third fails');");
    file("02_passes.sql", "select plan(1); select ok(true, 'fine');");
    file("03_errors.sql", "select plan(2); select ok(true, 'one'); select no_such_function();");
    const prove = await runProgram("pg_prove", ["--ext", ".sql", "-r", "t", "--host", url.hostname, "--port", url.port,
      "--username", decodeURIComponent(url.username), "--dbname", "postgres"], {
      cwd: dir, env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
    });
    expect(prove.status, `${prove.stdout}\n${prove.stderr}`).toBe(1);
    expect(pgTapFailures(prove.stdout)).toEqual([
      `t/01_fails.sql: failed test 2: "second fails"`,
      `t/01_fails.sql: failed test 3: "third fails"`,
      "t/03_errors.sql: Non-zero exit status: 3",
    ]);
  });

  it("names each failed vitest test, and a file that failed without a test", () => {
    const root = "/repo";
    expect(vitestFailures({
      numPassedTests: 1, numFailedTests: 1,
      testResults: [
        { name: "/repo/test/a.test.ts", assertionResults: [
          { fullName: "suite ok", status: "passed" },
          { fullName: "suite breaks", status: "failed", failureMessages: ["AssertionError: expected 1 to be 2\n    at x"] },
        ] },
        { name: "/repo/test/b.test.ts", message: "Failed to load url ./missing.ts\nmore", assertionResults: [] },
      ],
    }, root)).toEqual([
      "test/a.test.ts > suite breaks: AssertionError: expected 1 to be 2",
      "test/b.test.ts: Failed to load url ./missing.ts",
    ]);
  });
});
