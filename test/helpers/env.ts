// The environment `npm test` (scripts/test.ts) hands to vitest.
export function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suites through \`npm test\`, which starts the test stack`);
  return v;
}

export const testEnv = {
  get dbUrl() { return requireEnv("TEST_DB_URL"); },
  get adminUrl() { return requireEnv("TEST_DB_ADMIN_URL"); },
  get templateDb() { return requireEnv("TEST_TEMPLATE_DB"); },
  get functionsUrl() { return requireEnv("SUPABASE_FUNCTIONS_URL"); },
  get supabaseUrl() { return requireEnv("SUPABASE_URL"); },
  get anonKey() { return requireEnv("SUPABASE_ANON_KEY"); },
  get serviceRoleKey() { return requireEnv("SUPABASE_SERVICE_ROLE_KEY"); },
  get jwtSecret() { return requireEnv("JWT_SECRET"); },
};
