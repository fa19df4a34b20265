/**
 * The HTTP contract of partition-admin: the operator actions and their parameters.
 *
 * Imported by the edge function (Deno) and by the Node CLI (scripts/admin.ts), so it
 * imports nothing but "zod". Each action is one call of the SQL API through
 * partition_mgmt.admin_run (migration 20250102000700_admin_api.sql).
 */
import { z } from "zod";

export const ADMIN_FUNCTION = "partition-admin";

/**
 * Actions, in the order an operator runs them. This list, TABLE_ACTIONS, FRESH_SESSION_ACTIONS,
 * READ_ONLY_ACTIONS, CONFIRMED_ACTIONS and ADMIN_DEFAULTS are the rows of the table
 * partition_mgmt.admin_action (migration 0700), which admin_run dispatches with;
 * test/edge/admin-actions-contract.test.ts fails when they differ, in either direction.
 */
export const ADMIN_ACTIONS = [
  "status",
  "precheck",
  "setup",
  "plan",
  "step",
  "prepare",
  "sync-on",
  "sync-off",
  "backfill",
  "monitor",
  "validate",
  "swap",
  "rollback",
  "finish-rollback",
  "validate-references",
  "finalize",
  "maintenance",
  "health",
] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];

/** Actions that work on one table (the others accept one, or act on every managed table). */
export const TABLE_ACTIONS: readonly AdminAction[] = [
  "plan",
  "step",
  "prepare",
  "sync-on",
  "sync-off",
  "backfill",
  "validate",
  "swap",
  "rollback",
  "finish-rollback",
  "validate-references",
  "finalize",
];

/**
 * Actions that rename or re-trigger a whole tree under ACCESS EXCLUSIVE run in a session of their
 * own (step: it may be the swap).
 */
export const FRESH_SESSION_ACTIONS: readonly AdminAction[] = ["step", "sync-off", "swap", "rollback", "finalize"];

/** Actions that only read (none takes the table's lock); every other one changes state. */
export const READ_ONLY_ACTIONS: readonly AdminAction[] = ["status", "precheck", "plan", "monitor", "health"];

/**
 * Actions that change which table the app reads and writes, or drop or empty one: the CLI asks
 * before it sends them (--yes for scripts and CI), and so does step when it may take the swap.
 */
export const CONFIRMED_ACTIONS: readonly AdminAction[] = ["swap", "rollback", "finalize", "sync-off", "finish-rollback"];

/**
 * Defaults of the parameters, per action (admin_action.defaults; an action without any is left
 * out). step's are partition_mgmt.step_defaults(), which migration_step takes for a null parameter:
 * a step never swaps unless asked.
 */
export const ADMIN_DEFAULTS = {
  plan: { postpone_swap: true },
  step: { swap: false, batch_size: 5000, lock_timeout: "1s", attempts: 10 },
  "sync-off": { lock_timeout: "1s", attempts: 10 },
  backfill: { batch_size: 5000, max_seconds: 5 },
  swap: { lock_timeout: "1s", attempts: 10 },
  rollback: { lock_timeout: "1s", attempts: 10 },
} as const satisfies Partial<Record<AdminAction, Partial<Record<keyof AdminRequest, unknown>>>>;

/** A backfill call runs batches for at most this long, so every HTTP call stays short. */
export const MAX_BACKFILL_SECONDS = 20;
export const DEFAULT_BACKFILL_SECONDS = ADMIN_DEFAULTS.backfill.max_seconds;
export const MAX_BATCH_SIZE = 100_000;
export const MAX_BODY_BYTES = 4 * 1024;

export const AdminRequestSchema = z
  .strictObject({
    action: z.enum(ADMIN_ACTIONS, { error: `must be one of: ${ADMIN_ACTIONS.join(", ")}` }),
    /** A table key ("petri") or table name ("petri_observations", "public.petri_observations"). */
    table: z
      .string({ error: "must be a string: a managed table key or name" })
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/, "must be a table key or [schema.]table name")
      .optional(),
    /** backfill: rows per keyset batch; step: the most rows of its batch (sized by time below it). */
    batch_size: z
      .int({ error: `must be an integer from 1 to ${MAX_BATCH_SIZE}` })
      .min(1, `must be an integer from 1 to ${MAX_BATCH_SIZE}`)
      .max(MAX_BATCH_SIZE, `must be an integer from 1 to ${MAX_BATCH_SIZE}`)
      .optional(),
    /** backfill: at most this many batches in this call (default: as many as max_seconds allows). */
    max_batches: z
      .int({ error: "must be an integer from 1 to 1000000" })
      .min(1, "must be an integer from 1 to 1000000")
      .max(1_000_000, "must be an integer from 1 to 1000000")
      .optional(),
    /** backfill: run batches for at most this many seconds in this call; setup: its batches (at most 2, default 0.5). */
    max_seconds: z
      .number({ error: `must be a number of seconds from 0.1 to ${MAX_BACKFILL_SECONDS}` })
      .min(0.1, `must be a number of seconds from 0.1 to ${MAX_BACKFILL_SECONDS}`)
      .max(MAX_BACKFILL_SECONDS, `must be a number of seconds from 0.1 to ${MAX_BACKFILL_SECONDS}`)
      .optional(),
    /** swap, rollback, sync-off, step (its swap): lock_timeout per attempt at ACCESS EXCLUSIVE ("500ms", "1s"). */
    lock_timeout: z.string().regex(/^\d{1,5}(ms|s)$/, 'must be a duration like "500ms" or "2s"').optional(),
    /** swap, rollback, sync-off, step (its swap): attempts at the lock, with backoff. */
    attempts: z.int({ error: "must be an integer from 1 to 50" }).min(1, "must be an integer from 1 to 50").max(50, "must be an integer from 1 to 50").optional(),
    /** plan: show the swap as postponed (default true). */
    postpone_swap: z.boolean({ error: "must be true or false" }).optional(),
    /** step: take the swap when it is the next step (default false: stop validated). */
    swap: z.boolean({ error: "must be true or false" }).optional(),
  })
  .superRefine((value, ctx) => {
    if (value.table === undefined && TABLE_ACTIONS.includes(value.action)) {
      ctx.addIssue({ code: "custom", path: ["table"], message: `is required for action "${value.action}"` });
    }
  });

export type AdminRequest = z.input<typeof AdminRequestSchema>;
export type ParsedAdminRequest = z.output<typeof AdminRequestSchema>;

/** What partition_mgmt.admin_run returns (and a 200 answers with). */
export interface AdminOutcome {
  status: "ok" | "error" | "busy" | "invalid";
  action: string;
  table_key: string | null;
  phase?: string | null;
  /** The action's result: { rows } (checks, validation, …), { message } (phases), or backfill's { done, step, progress }. */
  result?: Record<string, unknown> | null;
  error?: { sqlstate: string | null; message: string; hint?: string | null } | null;
  duration_ms: number;
  audit_id: number | null;
}
