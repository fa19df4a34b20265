// Runs the setup steps the push leaves to run online (migration 20250102000350_setup_steps.sql):
// each call of partition_mgmt.setup_step() in a transaction of its own, bounded in time, so the
// rows a batch changed are locked only for a moment; the index builds (create index concurrently)
// as statements of their own, outside any transaction, which is why a driver runs them and not
// the database.
import type { Sql } from "postgres";

export interface SetupStepRow {
  task: string | null;
  kind: string | null;
  state: "running" | "done" | "statement" | "busy" | "idle";
  detail: string | null;
  run_outside_transaction: string | null;
  pending: number;
}

export interface SetupTaskRow {
  ord: number;
  task: string;
  table_key: string | null;
  kind: string;
  done: boolean;
  progress: string;
  detail: string;
  statement: string | null;
}

export async function setupTasks(sql: Sql): Promise<SetupTaskRow[]> {
  return sql<SetupTaskRow[]>`select * from partition_mgmt.setup_tasks() order by ord`;
}

/** One step; a `statement` step's statement is run here, outside a transaction. maxSeconds: setup_step's own default when absent. */
export async function setupStep(sql: Sql, maxSeconds?: number): Promise<SetupStepRow> {
  const [r] = await sql<SetupStepRow[]>`select * from partition_mgmt.setup_step(${maxSeconds ?? null})`;
  if (!r) throw new Error("partition_mgmt.setup_step() returned nothing");
  if (r.state === "statement" && r.run_outside_transaction) await sql.unsafe(r.run_outside_transaction);
  return r;
}

export interface SetupRun { steps: number; tasks: string[]; seconds: number }

/** Every pending setup step, in order, until none is left. */
export async function runSetup(sql: Sql, o: { maxSeconds?: number; onStep?: (r: SetupStepRow) => void } = {}): Promise<SetupRun> {
  const t0 = performance.now();
  const tasks = new Set<string>();
  let steps = 0;
  let lastStatement: string | null = null;
  for (;;) {
    const r = await setupStep(sql, o.maxSeconds);
    if (r.state === "idle") break;
    if (r.state === "statement") {
      if (r.run_outside_transaction === lastStatement) {
        throw new Error(`setup step ${r.task}: ${lastStatement} ran but the step is still pending (${r.detail ?? ""}); see select * from partition_mgmt.setup_tasks()`);
      }
      lastStatement = r.run_outside_transaction;
    }
    steps++;
    if (r.task) tasks.add(r.task);
    o.onStep?.(r);
    if (r.state === "busy") await new Promise((res) => setTimeout(res, 200));
    if (steps > 1_000_000) throw new Error("setup did not finish after 1,000,000 steps");
  }
  return { steps, tasks: [...tasks], seconds: (performance.now() - t0) / 1000 };
}
