/**
 * Operator actions on the partition migration (status, checks, each phase, maintenance,
 * health) for the service role only; each maps to the SQL API through
 * partition_mgmt.admin_run, guarded per table and audited. Contract:
 * ../_shared/admin-contract.ts; the dispatch and its HTTP answers: ./admin.ts.
 */
import { handlePreflight } from "../_shared/cors.ts";
import { errorResponse } from "../_shared/errors.ts";
import { requireMethod } from "../_shared/request.ts";
import { outcomeResponse, readAdminRequest, runAdminAction } from "./admin.ts";

Deno.serve(async (req) => {
  const preflight = handlePreflight(req);
  if (preflight) return preflight;
  const startedAt = performance.now();
  try {
    requireMethod(req, ["POST"]);
    const { caller, request } = await readAdminRequest(req, startedAt);
    return outcomeResponse(await runAdminAction(caller, request));
  } catch (err) {
    return errorResponse(err);
  }
});
