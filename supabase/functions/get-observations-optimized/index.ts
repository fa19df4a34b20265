/**
 * Partition-aware read of petri observations for frontends and dashboards:
 * pages of rows (keyset cursor) or per-day / per-site aggregates, run as the
 * caller so RLS decides. Contract: ../_shared/observations-contract.ts;
 * the reads: ./observations.ts.
 */
import { handlePreflight } from "../_shared/cors.ts";
import { errorResponse, jsonTextResponse } from "../_shared/errors.ts";
import { readClaims, requireUserOrService } from "../_shared/jwt.ts";
import { requireMethod } from "../_shared/request.ts";
import { ServerTiming } from "../_shared/server-timing.ts";
import { readObservations, readObservationsRequest } from "./observations.ts";

Deno.serve(async (req) => {
  const preflight = handlePreflight(req);
  if (preflight) return preflight;
  const timing = new ServerTiming();
  try {
    requireMethod(req, ["GET", "POST"]);
    const caller = requireUserOrService(await readClaims(req));
    timing.mark("jwt");
    const params = await readObservationsRequest(req);
    timing.mark("validate");
    const body = await readObservations(caller, params, timing);
    // which database answered, for logs and curl (browsers read meta.served_by)
    return jsonTextResponse(body.json, 200, { "X-Served-By": body.servedBy }, timing);
  } catch (err) {
    return errorResponse(err);
  }
});
