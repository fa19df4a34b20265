// `npm run admin -- <action> [--table petri] [options]`: the partition-admin edge function from a
// terminal, with the service role key (from the environment or .env.local). Readable tables for
// checks, validation, stats and health; a progress bar for backfill, which loops until done.
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { AdminError, adminFunctionUrl, adminSupabase, describeAdminError, invokeAdmin } from "../client/admin-client.ts";
import {
  ADMIN_ACTIONS, ADMIN_DEFAULTS, type AdminAction, type AdminOutcome, type AdminRequest, AdminRequestSchema, CONFIRMED_ACTIONS, DEFAULT_BACKFILL_SECONDS,
  READ_ONLY_ACTIONS,
} from "../supabase/functions/_shared/admin-contract.ts";
import { describeFieldIssues, fieldIssues } from "../supabase/functions/_shared/validation.ts";
import { CliFailure, commandLine, runCli, UsageError } from "./lib/cli.ts";
import { readEnvFile } from "./lib/env-file.ts";
import { type MonitorRow, progressBar } from "./lib/migration-progress.ts";
import { DEV_STACK } from "./lib/stack.ts";

const NAME = "npm run admin";
const USAGE = `usage: npm run admin -- <action> [--table <key|name>] [options]

actions: ${ADMIN_ACTIONS.join(", ")}
  after supabase db push: setup runs the steps the push left to run online (company_id of the
  existing rows in short batches, the index on it, company isolation, the first metrics) until none
  is left; --once takes one
  the whole migration: step --table <t> [--swap] takes every step (prepare, sync, backfill,
  validate, and the swap with --swap) until done; --once takes one
  phase by phase: precheck, plan, prepare, sync-on, backfill, validate, swap, finalize (or rollback,
  then validate-references when foreign keys reference the table)

It acts on SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY (the environment, else .env.local, which
npm start writes) and names that project before it sends anything. ${CONFIRMED_ACTIONS.join(", ")} and
step --swap ask for confirmation on a terminal; without one they run only with --yes.

options:
  --table <t>          petri | gasifier | petri_observations | … (required by the phase actions)
  --batch-size <n>     backfill: rows per batch (default ${ADMIN_DEFAULTS.backfill.batch_size}); step: at most this many
                       (default ${ADMIN_DEFAULTS.step.batch_size}; sized by time below it)
  --max-batches <n>    backfill: batches per call (default: as many as --max-seconds allows)
  --max-seconds <s>    backfill: seconds of batches per call (default ${DEFAULT_BACKFILL_SECONDS}, at most 20); setup: 0.25, at most 2
  --once               setup, backfill, prepare: one call instead of looping until done
  --lock-timeout <d>   swap, rollback, sync-off, step: lock_timeout per attempt ("${ADMIN_DEFAULTS.swap.lock_timeout}")
  --attempts <n>       swap, rollback, sync-off, step: attempts at the lock (${ADMIN_DEFAULTS.swap.attempts})
  --no-postpone        plan: show the swap as not postponed
  --swap               step: take the swap too (otherwise stop validated)
  -y, --yes            run ${CONFIRMED_ACTIONS.join(", ")} and step --swap without asking (scripts, CI)
  --json               raw JSON answers
  -h, --help           this help`;

/** What each confirmed action does to the app's tables, for the question. */
const CONSEQUENCES: Record<string, string> = {
  swap: "the partitioned copy takes the table's name and the app reads and writes it from then on; the legacy table stays, renamed to <name>_old (rollback swaps back)",
  step: "takes every step left, the swap included: the app reads and writes the partitioned table afterwards (rollback swaps back)",
  rollback: "the legacy table takes the table's name again, with every write made since, and the partitioned copy is emptied",
  finalize: "drops the legacy table (<name>_old): there is no way back after it",
  "sync-off": "stops the sync and empties the partitioned copy: the migration starts over",
  "finish-rollback": "empties the partitioned copy left by a rollback",
};

type Row = Record<string, unknown>;

/** SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY from the environment, else from .env.local (npm start writes it). */
function adminEnv(): { url: string; serviceRoleKey: string; source: string } {
  const fromFile = existsSync(DEV_STACK.envFile) ? readEnvFile(DEV_STACK.envFile) : {};
  const url = process.env.SUPABASE_URL || fromFile.SUPABASE_URL;
  const serviceRoleKey = process.env.SUPABASE_SERVICE_ROLE_KEY || fromFile.SUPABASE_SERVICE_ROLE_KEY;
  if (!url || !serviceRoleKey) {
    throw new CliFailure(`${url ? "SUPABASE_SERVICE_ROLE_KEY is" : serviceRoleKey ? "SUPABASE_URL is" : "SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are"} not set`, [
      "what to do: export your project's (SUPABASE_URL=https://<project-ref>.supabase.co and its service role key), or run npm start, which writes .env.local",
    ]);
  }
  const source = process.env.SUPABASE_URL ? "the environment" : DEV_STACK.envFile.replace(/^.*\//, "");
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (!parsed || !/^https?:$/.test(parsed.protocol)) {
    throw new CliFailure(`SUPABASE_URL (from ${source}) is not an http(s) URL: "${url}"`, ["what to do: set it to your project's URL, https://<project-ref>.supabase.co"]);
  }
  return { url, serviceRoleKey, source };
}

/** Asks on the terminal; true only for "yes" or "y". Ctrl-D or Ctrl-C count as no. */
function confirm(question: string): Promise<boolean> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    let answered = false;
    rl.on("line", (line) => {
      answered = true;
      rl.close();
      resolve(/^(y|yes)$/i.test(line.trim()));
    });
    rl.on("SIGINT", () => rl.close());
    rl.on("close", () => {
      if (!answered) {
        process.stderr.write("\n");
        resolve(false);
      }
    });
    rl.setPrompt(question);
    rl.prompt();
  });
}

/** The command line's request, checked with the function's own schema: a bad flag is a usage error naming it. */
function requestFrom(action: string, values: Record<string, string | boolean | undefined>): AdminRequest {
  const str = (k: string) => values[k] as string | undefined;
  const num = (v: string | undefined) => (v === undefined ? undefined : v.trim() === "" ? Number.NaN : Number(v));
  const request = {
    action,
    ...(str("table") !== undefined ? { table: str("table") } : {}),
    ...(str("batch-size") !== undefined ? { batch_size: num(str("batch-size")) } : {}),
    ...(str("max-seconds") !== undefined ? { max_seconds: num(str("max-seconds")) } : {}),
    ...(str("max-batches") !== undefined ? { max_batches: num(str("max-batches")) } : {}),
    ...(str("lock-timeout") !== undefined ? { lock_timeout: str("lock-timeout") } : {}),
    ...(str("attempts") !== undefined ? { attempts: num(str("attempts")) } : {}),
    ...(values["no-postpone"] ? { postpone_swap: false } : {}),
    ...(values.swap ? { swap: true } : {}),
  } as AdminRequest;
  const parsed = AdminRequestSchema.safeParse(request);
  if (!parsed.success) {
    // "batch_size: must be an integer from 1 to 100000" -> "--batch-size: must be …"
    const issues = fieldIssues(parsed.error.issues).map((i) => ({ ...i, field: i.field === "postpone_swap" ? "--no-postpone" : `--${i.field.replaceAll("_", "-")}` }));
    throw new UsageError(describeFieldIssues(issues));
  }
  return request;
}

/** Keeps tables narrow: long texts are cut, objects shown as JSON. */
function printable(rows: Row[], columns?: string[]): Row[] {
  return rows.map((r) => {
    const out: Row = {};
    for (const key of columns ?? Object.keys(r)) {
      const v = r[key];
      const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
      out[key] = s.length > 110 ? `${s.slice(0, 107)}...` : s;
    }
    return out;
  });
}

function printRows(title: string, rows: unknown, columns?: string[]): void {
  if (!Array.isArray(rows)) return;
  console.log(title);
  if (rows.length === 0) console.log("  (none)");
  else console.table(printable(rows as Row[], columns));
}

function printOutcome(o: Pick<AdminOutcome, "action" | "table_key" | "phase" | "result">): void {
  const r = o.result ?? {};
  const where = o.table_key ? ` ${o.table_key}` : "";
  switch (o.action as AdminAction) {
    case "status":
      printRows("migrations", r.migrations, ["table_key", "phase", "rows_scanned", "rows_total", "percent", "rows_per_second", "eta", "postpone_swap", "last_error"]);
      printRows("recent phase changes", r.log);
      break;
    case "monitor":
      printRows("migrations", r.rows, ["table_key", "phase", "rows_copied", "rows_scanned", "rows_total", "percent", "rows_per_second", "eta", "pending_in_defaults", "batches", "last_error"]);
      break;
    case "precheck":
      printRows(`pre-migration checks${where}`, r.rows, ["table_key", "check_name", "status", "detail"]);
      break;
    case "plan":
      printRows(`plan${where} (dry run: nothing changed)`, r.rows, ["step", "phase", "action", "status", "detail"]);
      break;
    case "validate":
      printRows(`validation${where}`, r.rows, ["check_name", "status", "legacy_value", "partitioned_value", "detail"]);
      break;
    case "swap":
      printRows(`swap${where}`, r.rows);
      break;
    case "maintenance":
      printRows(`maintenance run ${String(r.run_id ?? "")}`, r.rows, ["table_key", "action", "status", "partitions_touched", "rows_moved", "error"]);
      break;
    case "health":
      printRows("health findings", r.rows, ["severity", "finding", "table_key", "detail"]);
      break;
    default:
      if (typeof r.message === "string") console.log(r.message);
      else console.log(JSON.stringify(r, null, 2));
  }
  if (o.phase) console.log(`phase of ${o.table_key}: ${o.phase}`);
}

function asMonitorRow(p: Row): MonitorRow {
  const s = (v: unknown) => (v === null || v === undefined ? null : String(v));
  return {
    table_key: String(p.table_key), phase: String(p.phase), rows_copied: String(p.rows_copied ?? 0), rows_scanned: String(p.rows_scanned ?? 0),
    rows_total: s(p.rows_total), percent: String(p.percent ?? 0), rows_per_second: s(p.rows_per_second), eta: s(p.eta),
    pending_in_defaults: String(p.pending_in_defaults ?? 0), batches: String(p.batches ?? 0), last_error: s(p.last_error), swap_lock_ms: s(p.swap_lock_ms),
  };
}

/** Takes steps until the migration is done (validated, or swapped with --swap): one line per step, a progress bar while it backfills. */
async function stepLoop(send: (r: AdminRequest) => Promise<AdminOutcome>, request: AdminRequest, once: boolean, json: boolean): Promise<AdminOutcome> {
  let drawing = false;
  for (;;) {
    const o = await send(request);
    const r = o.result ?? {};
    const progress = r.progress as Row | undefined;
    if (json) console.log(JSON.stringify(o));
    else if (r.step === "backfill" && progress) {
      const line = `${String(o.table_key).padEnd(10)} ${progressBar(asMonitorRow(progress))}`;
      if (process.stdout.isTTY) process.stdout.write(`\r${line}`);
      else console.log(line);
      drawing = process.stdout.isTTY;
    } else {
      if (drawing) process.stdout.write("\n");
      drawing = false;
      const detail = r.result as Row | null | undefined;
      console.log(`${String(o.table_key)}: ${String(r.step)} -> phase ${String(r.phase)}${typeof detail?.message === "string" ? `: ${detail.message}` : ""}`);
      if (r.step === "validate" || r.step === "swap") printRows(`${String(r.step)} ${String(o.table_key)}`, detail?.rows);
    }
    if (r.next_step === "done" || (r.next_step === "swap" && request.swap !== true) || once) {
      if (drawing) process.stdout.write("\n");
      if (!json) {
        const swapHint = r.next_step === "done" && r.phase === "validated" ? " (validated: the swap is taken with --swap)" : "";
        console.log(`next step of ${o.table_key}: ${String(r.next_step)}${swapHint}`);
      }
      return o;
    }
  }
}

/** Calls setup until no step is left: one line per task (redrawn on a terminal while its batches run). */
async function setupLoop(send: (r: AdminRequest) => Promise<AdminOutcome>, request: AdminRequest, once: boolean, json: boolean): Promise<AdminOutcome> {
  let drawing = false;
  for (;;) {
    const o = await send(request);
    const r = o.result ?? {};
    if (json) console.log(JSON.stringify(o));
    else if (r.state !== "idle") {
      const ran = typeof r.ran === "string" ? `: ran ${r.ran} (${String(r.ran_ms)} ms)` : "";
      const line = `${String(r.task).padEnd(28)} ${String(r.state)}${ran}${r.detail ? `: ${String(r.detail)}` : ""}`;
      if (process.stdout.isTTY && r.state === "running") {
        process.stdout.write(`\r${line.slice(0, (process.stdout.columns || 120) - 1)}`);
        drawing = true;
      } else {
        if (drawing) process.stdout.write("\n");
        drawing = false;
        console.log(line);
      }
    }
    if (r.state === "idle" || once) {
      if (drawing) process.stdout.write("\n");
      if (!json && r.state === "idle") console.log("setup: nothing pending");
      return o;
    }
    if (r.state === "busy") await new Promise((res) => setTimeout(res, 500));
  }
}

/** Calls backfill until the copy is complete, redrawing the progress bar after every call. */
async function backfillLoop(send: (r: AdminRequest) => Promise<AdminOutcome>, request: AdminRequest, once: boolean, json: boolean): Promise<AdminOutcome> {
  for (;;) {
    const o = await send(request);
    const progress = o.result?.progress as Row | undefined;
    if (json) console.log(JSON.stringify(o));
    else if (progress) {
      const line = `${String(o.table_key).padEnd(10)} ${progressBar(asMonitorRow(progress))}`;
      if (process.stdout.isTTY) process.stdout.write(`\r${line}`);
      else console.log(line);
    }
    if (o.result?.done === true || once) {
      if (!json && process.stdout.isTTY) process.stdout.write("\n");
      if (!json && o.result?.done === true) console.log(`backfill of ${o.table_key} complete: phase ${o.phase}; next: validate`);
      return o;
    }
  }
}

async function main(): Promise<number> {
  const { values, positionals } = commandLine({
    name: NAME,
    usage: USAGE,
    maxPositionals: 1,
    options: {
      table: { type: "string", short: "t" },
      "batch-size": { type: "string" },
      "max-seconds": { type: "string" },
      "max-batches": { type: "string" },
      "lock-timeout": { type: "string" },
      attempts: { type: "string" },
      "no-postpone": { type: "boolean" },
      swap: { type: "boolean" },
      once: { type: "boolean" },
      yes: { type: "boolean", short: "y" },
      json: { type: "boolean" },
    },
  });
  const action = positionals[0];
  if (!action) throw new UsageError("no action given");
  if (!(ADMIN_ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown action ${action}; actions: ${ADMIN_ACTIONS.join(", ")}`);
  const request = requestFrom(action, values);

  const env = adminEnv();
  const host = new URL(env.url).host;
  const table = values.table ?? null;
  const changesState = !READ_ONLY_ACTIONS.includes(action as AdminAction);
  // the project and the table, before anything is sent (stderr, so --json keeps stdout JSON)
  console.error(`project ${host} (${adminFunctionUrl(env.url)}; SUPABASE_URL from ${env.source}), ${table ? `table ${table}` : "every managed table"}: ${action}${changesState ? "" : " (read only)"}`);
  const asks = CONFIRMED_ACTIONS.includes(action as AdminAction) || (action === "step" && values.swap === true);
  if (asks && values.yes !== true) {
    const what = `${action}${action === "step" ? " --swap" : ""} of ${table} on ${host}`;
    if (!process.stdin.isTTY) {
      console.error(`${NAME}: ${what} needs confirmation and there is no terminal to ask on: pass --yes to run it from a script or CI`);
      return 2;
    }
    console.error(`${action}: ${CONSEQUENCES[action] ?? ""}`);
    if (!(await confirm(`Type yes to run ${what}: `))) {
      console.error("not confirmed: nothing was sent");
      return 1;
    }
  }

  const supabase = adminSupabase(env.url, env.serviceRoleKey);
  const send = (r: AdminRequest) => invokeAdmin(supabase, r);
  try {
    const looped = action === "backfill" || action === "step" || action === "setup";
    let outcome = action === "setup"
      ? await setupLoop(send, request, values.once === true, values.json === true)
      : action === "backfill"
      ? await backfillLoop(send, request, values.once === true, values.json === true)
      : action === "step"
        ? await stepLoop(send, request, values.once === true, values.json === true)
        : await send(request);
    // prepare creates partitions within each call's lock budget: call until it is done
    while (action === "prepare" && outcome.phase === "preparing" && values.once !== true) {
      if (!values.json) console.log(String(outcome.result?.message ?? ""));
      outcome = await send(request);
    }
    if (values.json) {
      if (!looped) console.log(JSON.stringify(outcome, null, 2));
    } else if (!looped) {
      printOutcome(outcome);
    }
    return 0;
  } catch (err) {
    if (!(err instanceof AdminError)) throw err;
    if (process.stdout.isTTY && (action === "backfill" || action === "step" || action === "setup")) process.stdout.write("\n");
    const d = err.details ?? {};
    if (values.json) {
      console.log(JSON.stringify({ error: { status: err.status, code: err.code, message: err.message, url: err.url, next_step: err.nextStep, details: d } }, null, 2));
    } else if (d.result && typeof d.action === "string") {
      // checks with blockers, a failed validation: the rows say why
      printOutcome({ action: d.action, table_key: (d.table_key as string | null) ?? null, phase: (d.phase as string | null) ?? null, result: d.result as Row });
    }
    for (const line of describeAdminError(err)) console.error(line);
    return 1;
  }
}

await runCli(NAME, USAGE, main);
