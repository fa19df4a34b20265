/**
 * The one statement that makes a transaction the caller's, as PostgREST does: request.jwt.claims,
 * the role's own settings (`alter role … set`, which `set role` alone does not apply: hosted
 * Supabase bounds anon at 3 s and authenticated at 8 s with statement_timeout there), the
 * request's own settings over them, and the role (`set_config('role', …, true)` is SET LOCAL
 * ROLE). Everything is transaction-local, so it works through a transaction pooler.
 *
 * The statement carries no bind parameter, on purpose: with `prepare: false` (required behind a
 * transaction pooler) postgres.js sends every statement with parameters as Parse/Describe, waits,
 * then Bind/Execute, and sends nothing else meanwhile. Without parameters it costs no round trip
 * of its own: the caller's statement is pipelined right behind it. Values are dollar-quoted
 * (unaffected by standard_conforming_strings) with a tag they do not contain.
 *
 * Imports nothing Deno-only: `npm run bench:edge` sends the same statement as direct SQL.
 */

/** Roles a JWT may map to. Anything else (e.g. a forged "postgres") must never reach the role. */
export const CALLER_ROLES = ["anon", "authenticated", "service_role"] as const;
export type CallerRole = (typeof CALLER_ROLES)[number];

/** value as an SQL string literal that no content can end early. */
export function dollarQuoted(value: string): string {
  for (let n = 0; ; n++) {
    const tag = `$c${n}$`;
    // the literal ends at the first tag after the opening one: it must be the closing one
    if ((value + tag).indexOf(tag) === value.length) return `${tag}${value}${tag}`;
  }
}

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/**
 * The statement, for a role of CALLER_ROLES (checked again here), the claims' JSON, and settings
 * of the request's own (they win over the role's: a caller's bound, the reads' TimeZone).
 */
export function callerContextStatement(role: CallerRole, claimsJson: string, settings: Readonly<Record<string, string>> = {}): string {
  if (!CALLER_ROLES.includes(role)) throw new Error(`Role '${String(role)}' may not access the database`);
  const own = Object.entries(settings).map(([name, value]) => {
    if (!SETTING_NAME.test(name)) throw new Error(`not a setting name: ${name}`);
    return `(${dollarQuoted(name)}, ${dollarQuoted(value)}, 1)`;
  });
  // rank: the claims, then the request's own settings, then the role's for this database, then
  // its settings for every database; each name set once, by its first rank
  return `select count(set_config(s.name, s.value, true))::int as settings, set_config('role', ${dollarQuoted(role)}, true) as role
from (
  select distinct on (a.name) a.name, a.value from (
    select 'request.jwt.claims' as name, ${dollarQuoted(claimsJson)} as value, 0 as rank
    ${own.length ? `union all select * from (values ${own.join(", ")}) own (name, value, rank)` : ""}
    union all
    select split_part(c, '=', 1), substr(c, strpos(c, '=') + 1), case when r.setdatabase = 0 then 3 else 2 end
    from pg_catalog.pg_db_role_setting r
    cross join lateral unnest(r.setconfig) c
    join pg_catalog.pg_settings g on g.name = split_part(c, '=', 1) and g.context = 'user'
    where r.setrole = (select o.oid from pg_catalog.pg_roles o where o.rolname = ${dollarQuoted(role)})
      and r.setdatabase in (0, (select d.oid from pg_catalog.pg_database d where d.datname = current_database()))
  ) a
  order by a.name, a.rank
) s`;
}
