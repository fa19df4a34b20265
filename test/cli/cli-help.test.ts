// Every script a user runs answers --help with its usage (exit 0) and a bad command line with one
// line saying what was wrong, then the usage (exit 2), never a stack trace: start, stop, admin,
// generate, bench, bench:adoption, bench:edge, bench:load, bench:scale, gen:types, db:diff, backup, serve-functions and install-bundle, each run as the README
// says (npm run …; the backup through tsx). `npm start` is run as its second half, scripts/start.ts:
// its first half, scripts/ensure-deps.sh, takes no arguments and may run npm ci, which must not
// replace node_modules under a running test.
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { capture, type Captured, STACK_LINE, TSX } from "../helpers/processes.ts";

interface Script {
  /** the name its messages start with */
  name: string;
  command: (args: string[]) => [string, string[]];
  usage: RegExp;
  /** bad values or arguments, and the one line each gets */
  bad: [string[], RegExp][];
}

const npmRun = (script: string) => (args: string[]): [string, string[]] => ["npm", ["run", "--silent", script, "--", ...args]];
const tsx = (file: string) => (args: string[]): [string, string[]] => [process.execPath, [TSX, file, ...args]];

const SCRIPTS: Script[] = [
  { name: "npm start", command: tsx("scripts/start.ts"), usage: /^usage: npm start$/m, bad: [[["now"], /^npm start: unexpected argument now: this command takes options only$/]] },
  { name: "npm run stop", command: npmRun("stop"), usage: /^usage: npm run stop$/m, bad: [[["--force"], /^npm run stop: unknown option --force$/]] },
  {
    name: "npm run admin", command: npmRun("admin"), usage: /^usage: npm run admin -- <action>/m,
    bad: [
      [[], /^npm run admin: no action given$/],
      [["explode"], /^npm run admin: unknown action explode; actions: status, precheck, /],
      [["swap", "--table", "petri", "--attempts", "0"], /^npm run admin: --attempts: must be an integer from 1 to 50$/],
      [["backfill", "--table", "petri", "--batch-size", "many"], /^npm run admin: --batch-size: must be an integer from 1 to 100000$/],
      [["prepare"], /^npm run admin: --table: is required for action "prepare"$/],
      [["status", "--table"], /^npm run admin: --table needs a value$/],
    ],
  },
  {
    name: "npm run generate", command: npmRun("generate"), usage: /^usage: npm run generate -- \[options\]$/m,
    bad: [[["--months", "0"], /^npm run generate: --months must be at least 1, got 0$/], [["--help-me"], /^npm run generate: unknown option --help-me$/]],
  },
  {
    name: "npm run bench", command: npmRun("bench"), usage: /^usage: npm run bench -- \[options\]$/m,
    bad: [[["--tree", "bushy"], /^npm run bench: --tree must be one of sized, literal, got "bushy"$/], [["--scale", "lots"], /^npm run bench: not a row count: "lots"/], [["--runs", "2"], /^npm run bench: --runs needs an odd whole number from 1 to 9 \(the median is then one run's figure\), got "2"$/]],
  },
  {
    name: "npm run bench:adoption", command: npmRun("bench:adoption"), usage: /^usage: npm run bench:adoption -- \[options\]$/m,
    bad: [[["--rows", "10"], /^npm run bench:adoption: --rows must be an integer of at least 2400, got "10"$/]],
  },
  {
    name: "npm run bench:edge", command: npmRun("bench:edge"), usage: /^usage: npm run bench:edge -- \[options\]$/m,
    bad: [[["--iterations", "3"], /^npm run bench:edge: --iterations must be an integer of at least 10, got "3"$/], [["--fast"], /^npm run bench:edge: unknown option --fast$/]],
  },
  {
    name: "npm run bench:scale", command: npmRun("bench:scale"), usage: /^usage: npm run bench:scale -- \[options\]$/m,
    bad: [[["--scales", "1m,lots"], /^npm run bench:scale: --scales: not a row count: "lots"/], [[], /^npm run bench:scale: nothing to do: give --scales \(or --quick\) to measure, or --with to report on earlier results$/],
      [["--only", "vacuum"], /^npm run bench:scale: --only: unknown section "vacuum"/]],
  },
  {
    name: "npm run bench:load", command: npmRun("bench:load"), usage: /^usage: npm run bench:load -- \[options\]$/m,
    bad: [[["--clients", "0"], /^npm run bench:load: --clients must be an integer from 1 to 2000, got "0"$/], [["--quick", "now"], /^npm run bench:load: unexpected argument now: this command takes options only$/]],
  },
  {
    name: "scripts/serve-functions.ts", command: tsx("scripts/serve-functions.ts"), usage: /^usage: npx tsx scripts\/serve-functions\.ts --env-file <path>/m,
    bad: [[[], /^scripts\/serve-functions\.ts: --env-file is required$/], [["--workers", "0"], /^scripts\/serve-functions\.ts: --workers must be an integer from 1 to 64, got "0"$/]],
  },
  { name: "npm run gen:types", command: npmRun("gen:types"), usage: /^usage: npm run gen:types/m, bad: [[["--admin-url"], /^npm run gen:types: --admin-url needs a value$/], [["--db-url", "x"], /^npm run gen:types: unknown option --db-url$/]] },
  {
    name: "npm run db:diff", command: npmRun("db:diff"), usage: /^usage: npm run db:diff -- --name <what_changed>/m,
    bad: [[["--name", "Bad Name"], /^npm run db:diff: --name needs lower case letters, digits and _ \(got "Bad Name"\)$/], [["--force"], /^npm run db:diff: unknown option --force$/]],
  },
  {
    name: "scripts/backup.ts", command: tsx("scripts/backup.ts"), usage: /^usage: npx tsx scripts\/backup\.ts/m,
    bad: [[["postgresql://a", "postgresql://b"], /^scripts\/backup\.ts: unexpected argument postgresql:\/\/b$/], [["mysql://x"], /^scripts\/backup\.ts: not a postgresql:\/\/ URL: "mysql:\/\/x"$/]],
  },
  {
    name: "supabase-partitioning", command: npmRun("install-bundle"), usage: /^usage: supabase-partitioning install \[--dry-run\] <repo>$/m,
    bad: [[["--dry-run=yes", "../x"], /^supabase-partitioning: --dry-run takes no value$/]],
  },
];

async function runScript(s: Script, args: string[]): Promise<Captured> {
  const [cmd, argv] = s.command(args);
  // no project to act on: a script that ignored its command line would fail instead of acting
  const env = { ...process.env, SUPABASE_URL: "http://127.0.0.1:9", SUPABASE_DB_URL: "postgresql://nobody@127.0.0.1:9/none" };
  return capture(cmd, argv, { cwd: REPO_ROOT, env, timeout: 60_000 });
}

describe("every script's command line", () => {
  for (const s of SCRIPTS) {
    it(`${s.name}: --help and -h print the usage and exit 0`, async () => {
      for (const flag of ["--help", "-h"]) {
        const r = await runScript(s, [flag]);
        expect({ flag, code: r.code, stderr: r.stderr }).toEqual({ flag, code: 0, stderr: "" });
        expect(r.stdout).toMatch(s.usage);
      }
    });

    it(`${s.name}: an unknown option and bad values get one line, then the usage, exit 2`, async () => {
      const cases: [string[], RegExp][] = [[["--no-such-flag"], new RegExp(`^${s.name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: unknown option --no-such-flag$`)], ...s.bad];
      for (const [args, line] of cases) {
        const r = await runScript(s, args);
        expect({ args, code: r.code }).toEqual({ args, code: 2 });
        const lines = r.stderr.split("\n");
        expect(lines[0], `${s.name} ${args.join(" ")}:\n${r.stderr}`).toMatch(line);
        expect(lines[1], "a blank line, then the usage").toBe("");
        expect(r.stderr).toMatch(s.usage);
        expect(r.stderr).not.toMatch(STACK_LINE);
        expect(r.stdout).toBe("");
      }
    });
  }
});
