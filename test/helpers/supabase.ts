// supabase-js clients for the suites, as a frontend creates them: anon key plus the user's token.
import { createClient, type SupabaseClient, type WebSocketLikeConstructor } from "@supabase/supabase-js";
import { testEnv } from "./env.ts";

// Node 20 has no global WebSocket and supabase-js builds its realtime client eagerly; the suites
// never open a realtime channel, so a transport that refuses to connect is enough.
class NoRealtime {
  constructor() {
    throw new Error("realtime is not available in the test suites");
  }
}

/** o.fetch: the fetch supabase-js sends every request with (to count or watch them). */
/** o.url / o.anonKey: another API than the test stack's (a functions server of a suite's own). */
export function supabaseAs(token: string, o: { fetch?: typeof fetch; url?: string; anonKey?: string } = {}): SupabaseClient {
  return createClient(o.url ?? testEnv.supabaseUrl, o.anonKey ?? testEnv.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { headers: { Authorization: `Bearer ${token}` }, ...(o.fetch ? { fetch: o.fetch } : {}) },
    realtime: { transport: NoRealtime as unknown as WebSocketLikeConstructor },
  });
}
