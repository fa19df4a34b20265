/**
 * CORS for browser callers: supabase-js's own headers (@supabase/supabase-js/cors, at the version
 * package-lock.json installs), so every header the SDK sends (authorization, x-client-info, apikey,
 * content-type, x-retry-count) stays allowed as the SDK adds more.
 */
import { corsHeaders as supabaseCorsHeaders } from "@supabase/supabase-js/cors";

export const corsHeaders: Readonly<Record<string, string>> = Object.freeze({
  ...supabaseCorsHeaders,
  // Hand-written: our functions answer only these (others get 405); the SDK's list also allows PUT, PATCH and DELETE.
  "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
});

/** Answers a CORS preflight; returns null for every other method. */
export function handlePreflight(req: Request): Response | null {
  if (req.method !== "OPTIONS") return null;
  return new Response(null, { status: 204, headers: corsHeaders });
}
