/**
 * Liveness of the function runtime and of the database path it uses:
 * verifies the caller's JWT, then queries Postgres as the caller's role.
 */
import { handlePreflight } from "../_shared/cors.ts";
import { withCallerContext } from "../_shared/db.ts";
import { errorResponse, jsonResponse } from "../_shared/errors.ts";
import { type Claims, readClaims } from "../_shared/jwt.ts";
import { requireMethod } from "../_shared/request.ts";

interface HealthRow {
  db_time: Date;
  version: string;
}

async function databaseHealth(claims: Claims) {
  const rows = await withCallerContext(claims, (tx) =>
    tx<HealthRow[]>`select now() as db_time, current_setting('server_version') as version`
  );
  const row = rows[0];
  if (!row) throw new Error("health query returned no row");
  return { ok: true, role: claims.role, db_time: row.db_time, version: row.version };
}

Deno.serve(async (req) => {
  const preflight = handlePreflight(req);
  if (preflight) return preflight;
  try {
    requireMethod(req, ["GET", "POST"]);
    const claims = await readClaims(req);
    return jsonResponse(await databaseHealth(claims));
  } catch (err) {
    return errorResponse(err);
  }
});
