/**
 * Retry of a read-only transaction that a hot standby cancelled to replay WAL.
 *
 * On a read replica, replaying our partition DDL (ACCESS EXCLUSIVE on a parent or leaf), a vacuum
 * cleanup record or a buffer-pin wait may cancel a reader once max_standby_streaming_delay has
 * passed: "canceling statement due to conflict with recovery", SQLSTATE 40001, or 40P01 when the
 * reader and the startup process deadlock on a buffer pin. A reader caught between two statements
 * of its transaction (the function sends several: claims, role, read) is not cancelled but
 * disconnected ("terminating connection due to conflict with recovery", FATAL 40001), and the
 * client often sees only the reset socket (ECONNRESET, or postgres.js's CONNECTION_CLOSED).
 * PostgreSQL's docs say such a transaction "may be retried immediately (after beginning a new
 * transaction)": it ran no write, so running it again is safe. Only read-only work may be passed
 * here: on the primary 40001 and 40P01 are a serialization failure and a deadlock, and a lost
 * connection may have committed, which a writer must handle itself.
 */

/** SQLSTATEs worth a new transaction (serialization_failure, deadlock_detected), and a lost connection. */
export const RECOVERY_CONFLICT_CODES: readonly string[] = ["40001", "40P01", "ECONNRESET", "CONNECTION_CLOSED"];

export interface RetryOptions {
  /** attempts in all, the first included (default 4) */
  attempts?: number;
  /** the wait before the second attempt, doubled before each next one (default 50 ms) */
  firstDelayMs?: number;
  /** told of each conflict that is retried (tests count them; the function may log them) */
  onRetry?: (attempt: number, err: unknown) => void;
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/** True for an error a hot standby causes when it cancels a query, or ends a session, for recovery. */
export function isRecoveryConflict(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && RECOVERY_CONFLICT_CODES.includes(code);
}

/**
 * Runs `read` (a whole transaction: it must begin its own) and runs it again, after a short
 * back-off, when it fails with a recovery conflict; any other error, or the last attempt's, is
 * thrown as it came.
 */
export async function retryRecoveryConflicts<T>(read: () => Promise<T>, o: RetryOptions = {}): Promise<T> {
  const attempts = Math.max(1, o.attempts ?? 4);
  let delay = o.firstDelayMs ?? 50;
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (attempt >= attempts || !isRecoveryConflict(err)) throw err;
      o.onRetry?.(attempt, err);
      // jitter, so readers cancelled together do not come back together
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
      delay *= 2;
    }
  }
}
