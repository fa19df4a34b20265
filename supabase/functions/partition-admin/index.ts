/**
 * Operator actions on the partition migration (status, checks, each phase, maintenance,
 * health) for the service role only; each maps to the SQL API through
 * partition_mgmt.admin_run, guarded per table and audited. Contract:
 * ../_shared/admin-contract.ts; pipeline: ../_shared/admin.ts.
 */
import { handleAdminRequest } from "../_shared/admin.ts";
import { handlePreflight } from "../_shared/cors.ts";
import { errorResponse } from "../_shared/errors.ts";

Deno.serve(async (req) => {
  const preflight = handlePreflight(req);
  if (preflight) return preflight;
  try {
    return await handleAdminRequest(req);
  } catch (err) {
    return errorResponse(err);
  }
});
