// The installer's command line: `supabase-partitioning install [--dry-run] <repo>` (the package's
// bin) and `npm run install-bundle -- [--dry-run] <repo>` (a checkout). Exit 0 when installed, up to
// date or dry-run; 1 when it refuses (nothing changed); 2 on a bad command line or a path that is
// not a Supabase project, with one line saying what was wrong and the usage.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../cluster.ts";
import { type Bundle, INSTALL_RECORD_FILE, INSTALLED_SHARED_DIR, loadBundle } from "./bundle.ts";
import { applyInstall, type ChangeKind, type InstallOptions, type InstallPlan, planInstall, supabaseProjectProblem } from "./install.ts";
import { InstallRefusal } from "./refusal.ts";

export const PROGRAM = "supabase-partitioning";

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export function usage(bundle: Pick<Bundle, "name" | "version" | "functions">): string {
  const what: [string, string][] = [
    ["supabase/migrations/<timestamp>_partitioning_<name>.sql", "the bundle's migrations, dated after your latest one"],
    ["supabase/functions/<name>/", `its edge functions: ${bundle.functions.map((f) => f.name).join(", ")}`],
    [`supabase/${INSTALLED_SHARED_DIR}/`, "their shared code and import map"],
    ["supabase/config.toml", "a [functions.<name>] section per function, appended"],
    [`supabase/${INSTALL_RECORD_FILE}`, "what was installed (the next install reads it)"],
  ];
  const width = Math.max(...what.map(([path]) => path.length)) + 2;
  return `usage: ${PROGRAM} install [--dry-run] <repo>
       npm run install-bundle -- [--dry-run] <repo>     (from a checkout of the bundle)

Installs ${bundle.name} ${bundle.version} into the Supabase project at <repo> (the directory that
holds supabase/config.toml), or upgrades an earlier install there to this release:
${what.map(([path, why]) => `  ${path.padEnd(width)}${why}`).join("\n")}
Files of yours are never changed: a conflict with one stops the install before it writes anything.
Then: supabase db push --dry-run, supabase db push, supabase functions deploy.

options:
  --dry-run    print what it would do, write nothing
  -h, --help   print this help`;
}

class UsageError extends Error {}

interface Command {
  help: boolean;
  dryRun: boolean;
  repo?: string;
}

function parseCommand(argv: string[]): Command {
  const { tokens } = parseArgs({
    args: argv,
    options: { "dry-run": { type: "boolean" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  const command: Command = { help: false, dryRun: false };
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === "positional") positionals.push(t.value);
    else if (t.kind === "option") {
      if (t.name === "help") command.help = true;
      else if (t.name === "dry-run" && t.value === undefined) command.dryRun = true;
      else if (t.name === "dry-run") throw new UsageError(`${t.rawName} takes no value`);
      else throw new UsageError(`unknown option ${t.rawName}`);
    }
  }
  if (command.help) return command;
  const [verb, repo, ...extra] = positionals;
  if (verb === undefined) throw new UsageError("no command given: the command is install");
  if (verb !== "install") throw new UsageError(`unknown command ${verb}: the command is install`);
  if (repo === undefined) throw new UsageError("no <repo> given: name the directory that holds your supabase/ folder");
  if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}: give one <repo>`);
  return { ...command, repo };
}

const HEADINGS: Record<ChangeKind, string> = { migration: "migrations", function: "functions", config: "config", record: "record" };
const SIGN = { create: "+", update: "~", delete: "-" } as const;

function printPlan(plan: InstallPlan, dryRun: boolean, functionNames: string[], io: Io): void {
  const from = plan.previousVersion === undefined ? "first install"
    : plan.previousVersion === plan.bundle.version ? `reinstall of ${plan.previousVersion}` : `upgrade from ${plan.previousVersion}`;
  io.out(`${plan.bundle.name} ${plan.bundle.version} -> ${plan.repo} (${from})${dryRun ? ": dry run, nothing is written" : ""}`);
  for (const kind of Object.keys(HEADINGS) as ChangeKind[]) {
    const changes = plan.changes.filter((c) => c.kind === kind);
    const adopted = kind === "migration" ? plan.adoptedMigrations : [];
    if (changes.length === 0 && adopted.length === 0) continue;
    const after = kind === "migration" && plan.latestMigration ? `, after your latest migration ${plan.latestMigration}` : "";
    io.out(`${HEADINGS[kind]}${after}:`);
    for (const f of adopted) io.out(`  = supabase/migrations/${f}  (already there, as an earlier install wrote it)`);
    for (const c of changes) io.out(`  ${SIGN[c.action]} ${c.path}${c.note ? `  (${c.note})` : ""}`);
  }
  for (const w of plan.warnings) io.out(`warning: ${w}`);
  const n = plan.newMigrations.length;
  io.out(n > 0 ? `supabase db push ${dryRun ? "would then apply" : "will apply"} the ${n} new migration(s) above` : "no new migrations");
  if (!dryRun) {
    io.out("next:");
    if (plan.newMigrations.length > 0) io.out("  supabase db push --dry-run   # lists exactly the new migrations above\n  supabase db push");
    if (plan.changes.some((c) => c.kind === "function")) io.out(`  supabase functions deploy ${functionNames.join(" ")}`);
  }
}

/** Runs the command line; returns the exit code. */
export function runInstaller(argv: string[], io: Io, options: InstallOptions & { cwd?: string } = {}): number {
  let bundle: Bundle | undefined;
  const theBundle = () => (bundle ??= options.bundle ?? loadBundle());
  try {
    const command = parseCommand(argv);
    if (command.help) {
      io.out(usage(theBundle()));
      return 0;
    }
    // `npm run install-bundle` runs in the bundle's checkout: a relative <repo> means where npm was run.
    const cwd = options.cwd ?? (process.cwd() === REPO_ROOT && process.env.INIT_CWD ? process.env.INIT_CWD : process.cwd());
    const repo = resolve(cwd, command.repo ?? ".");
    const problem = supabaseProjectProblem(repo);
    if (problem) throw new UsageError(problem);
    if (repo === REPO_ROOT) throw new UsageError(`${repo} is the bundle's own checkout: name your project's repo`);

    const plan = planInstall(repo, { ...options, bundle: theBundle() });
    if (plan.changes.length === 0) {
      for (const w of plan.warnings) io.out(`warning: ${w}`);
      io.out(`up to date: ${plan.bundle.name} ${plan.bundle.version} is installed in ${repo} `
        + `(${plan.record.migrations.length} migrations, ${plan.record.functions.length} functions); nothing to do`);
      return 0;
    }
    printPlan(plan, command.dryRun, theBundle().functions.map((f) => f.name), io);
    if (!command.dryRun) {
      applyInstall(plan);
      io.out(`installed: ${plan.changes.length} file(s) written or removed; ${INSTALL_RECORD_FILE} records the install`);
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${PROGRAM}: ${e.message}`);
      io.err("");
      io.err(usage(theBundle()));
      return 2;
    }
    if (e instanceof InstallRefusal) {
      io.err(`${PROGRAM}: ${e.message}`);
      io.err(`${PROGRAM}: nothing was changed`);
      return 1;
    }
    io.err(`${PROGRAM}: failed: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
