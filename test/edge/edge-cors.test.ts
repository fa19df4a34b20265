// CORS of every edge function is supabase-js's own (@supabase/supabase-js/cors, imported by
// supabase/functions/_shared/cors.ts through the import map at package-lock's version): the
// preflight allows exactly the headers the SDK lists, and every header our clients really send
// (captured from supabase-js's functions.invoke, the way client/ calls the functions) is among them.
// Methods stay ours: the functions answer GET and POST only.
import { createClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import { corsHeaders as sdkCorsHeaders } from "@supabase/supabase-js/cors";
import { describe, expect, it } from "vitest";
import { testEnv } from "../helpers/env.ts";

const FUNCTIONS = ["health", "get-observations-optimized", "partition-admin"];
const list = (v: string | null | undefined) => (v ?? "").split(",").map((h) => h.trim().toLowerCase()).filter(Boolean).sort();
// what a browser may send without a preflight (CORS-safelisted), never listed
const SAFELISTED = new Set(["accept", "accept-language", "content-language"]);

// Node 20 has no global WebSocket and supabase-js builds its realtime client eagerly; never used here.
class NoRealtime {
  constructor() {
    throw new Error("realtime is not used here");
  }
}

/** The header names supabase-js sends when a browser app calls a function. */
async function headersSupabaseJsSends(fn: string): Promise<string[]> {
  let sent: string[] = [];
  const spy: typeof fetch = async (input, init) => {
    sent = [...new Headers(init?.headers).keys()];
    return fetch(input, init);
  };
  const supabase = createClient(testEnv.supabaseUrl, testEnv.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch: spy },
    realtime: { transport: NoRealtime as unknown as WebSocketLikeConstructor },
  });
  await supabase.functions.invoke(fn, { body: { probe: true } });
  return sent.map((h) => h.toLowerCase()).filter((h) => !SAFELISTED.has(h)).sort();
}

describe("CORS of the edge functions", () => {
  for (const fn of FUNCTIONS) {
    it(`${fn}: the preflight allows supabase-js's headers, any origin, our methods`, async () => {
      const res = await fetch(`${testEnv.functionsUrl}/${fn}`, {
        method: "OPTIONS",
        headers: { Origin: "http://localhost:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sdkCorsHeaders["Access-Control-Allow-Headers"] ?? "" },
      });
      expect([200, 204]).toContain(res.status);
      expect(list(res.headers.get("access-control-allow-headers"))).toEqual(list(sdkCorsHeaders["Access-Control-Allow-Headers"]));
      expect(res.headers.get("access-control-allow-origin")).toBe(sdkCorsHeaders["Access-Control-Allow-Origin"]);
      expect(list(res.headers.get("access-control-allow-methods"))).toEqual(["get", "options", "post"]);
    });

    it(`${fn}: every header supabase-js sends is allowed`, async () => {
      const sent = await headersSupabaseJsSends(fn);
      expect(sent).toEqual(expect.arrayContaining(["apikey", "authorization", "content-type", "x-client-info"]));
      const res = await fetch(`${testEnv.functionsUrl}/${fn}`, { method: "OPTIONS", headers: { Origin: "http://localhost:3000", "Access-Control-Request-Method": "POST" } });
      const allowed = list(res.headers.get("access-control-allow-headers"));
      expect(sent.filter((h) => !allowed.includes(h))).toEqual([]);
    });
  }
});
