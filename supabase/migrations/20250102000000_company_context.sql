-- =============================================================================
-- Company context (the plan's 001_add_company_context), the part `supabase db push` applies.
--
-- Every observation row carries the company it belongs to, derived from its program, so that Row
-- Level Security isolates companies with one indexed comparison instead of a join per row:
--   company_id = any ((select private.user_company_ids())::uuid[])
-- (the scalar subquery is evaluated once per statement; the ::uuid[] cast makes ANY take one array).
-- The push reads and writes no row of the app's large tables: it adds the column (no default) and
-- the trigger that fills it, each under a lock taken in short tries (private.lock_for_ddl). Filling
-- the existing rows, the index and the isolation policies are setup steps
-- (20250102000350_setup_steps.sql). Every statement is safe to run again.
-- =============================================================================

-- A DDL statement that waits for a lock queues every later statement on the table behind it: the
-- file's DDL on the app's tables goes through private.lock_for_ddl (short tries); anything else
-- that would wait gives up quickly instead of stalling the app (the push stops; run it again).
set lock_timeout = '500ms';

-- Release 0.1.0 (withdrawn, never installed in a user's project) used the same file names with other
-- contents: its database cannot take 0.2.0 in place (README, "Upgrading a project that pushed an
-- earlier release").
do $$
begin
  if to_regprocedure('private.backfill_company_id()') is not null then
    raise exception 'this database has release 0.1.0 of the partitioning bundle (private.backfill_company_id() exists), which release 0.2.0 cannot upgrade in place; nothing was changed'
      using errcode = 'object_not_in_prerequisite_state',
            hint = 'Restore the backup taken before 0.1.0 was pushed (or recover to a point in time before it), then push 0.2.0: README, "Upgrading a project that pushed an earlier release".';
  end if;
end
$$;

-- -----------------------------------------------------------------------------
-- Private schema
-- Not in the Data API's exposed schemas: helpers used by policies and triggers
-- live here so that no client can call them as RPC endpoints.
-- -----------------------------------------------------------------------------
create schema if not exists private;
revoke all on schema private from public;
-- Policies are evaluated as the querying role, so the roles that are subject to
-- them must be able to reach the helper they call.
grant usage on schema private to authenticated, service_role;

comment on schema private is
  'Internal helpers for RLS policies and triggers. Not exposed through the Data API.';

-- -----------------------------------------------------------------------------
-- Helper: private.user_company_ids()
-- SECURITY DEFINER so that reading public.users from inside a policy does not
-- re-enter the policies of public.users (its owner, postgres, bypasses RLS).
-- Deactivated users (is_active = false) get no company: they see nothing.
-- -----------------------------------------------------------------------------
create or replace function private.user_company_ids()
returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(u.company_id), '{}'::uuid[])
  from public.users u
  where u.id = auth.uid()
    and u.company_id is not null
    and u.is_active
$$;

revoke execute on function private.user_company_ids() from public;
grant execute on function private.user_company_ids() to authenticated, service_role;

comment on function private.user_company_ids() is
  'Companies of the calling user (auth.uid()), empty for anon, unknown or deactivated users. '
  'Policies call it as (select private.user_company_ids()) so it runs once per statement.';

-- -----------------------------------------------------------------------------
-- Helper: private.lock_for_ddl(tables, mode)
-- Takes the locks DDL on the app's live tables needs, the way pgroll and pg_repack do: tries of a
-- short lock_timeout (a waiting ALTER blocks every app statement queued behind it, so each try
-- blocks the app for at most that long), with growing pauses and jitter between them, for at most
-- partition_mgmt.push_lock_wait (default 30 s, and never past the statement_timeout). The locks
-- stay held until the migration's transaction commits, so call it right before the DDL, at the end
-- of a file. When the tries run out it stops with the sessions that held the tables and what to
-- do: nothing of that migration was applied, and running the push again continues with it.
-- Settings (per role or database, e.g. alter role postgres set partition_mgmt.push_lock_wait =
-- '90s'): partition_mgmt.push_lock_timeout (per try, default 100ms), partition_mgmt.push_lock_wait.
-- -----------------------------------------------------------------------------
create or replace function private.lock_for_ddl(p_tables text[], p_mode text default 'access exclusive')
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_old_timeout text := current_setting('lock_timeout');
  v_try_timeout text := coalesce(nullif(current_setting('partition_mgmt.push_lock_timeout', true), ''), '100ms');
  v_wait interval := coalesce(nullif(current_setting('partition_mgmt.push_lock_wait', true), ''), '30s')::interval;
  v_statement_timeout interval := (case when current_setting('statement_timeout') in ('0', '')
                                        then '1 day' else current_setting('statement_timeout') end)::interval;
  v_deadline timestamptz;
  v_tables text;
  v_attempt integer := 0;
  v_holders text;
begin
  if lower(p_mode) not in ('access share', 'row share', 'row exclusive', 'share update exclusive', 'share',
                           'share row exclusive', 'exclusive', 'access exclusive') then
    raise exception 'lock_for_ddl: % is not a lock mode', p_mode
      using errcode = 'invalid_parameter_value', hint = 'Pass a LOCK TABLE mode, such as ''access exclusive'' or ''share row exclusive''.';
  end if;
  select string_agg(format('%s', t::regclass), ', ' order by ord) into v_tables
  from unnest(p_tables) with ordinality as x(t, ord);
  -- leave 10 s of the statement_timeout for the DDL after the locks and the error message
  v_deadline := clock_timestamp() + least(v_wait, greatest(v_statement_timeout - interval '10 seconds', interval '1 second'));
  loop
    v_attempt := v_attempt + 1;
    begin
      perform set_config('lock_timeout', v_try_timeout, true);
      execute format('lock table %s in %s mode', v_tables, lower(p_mode));
      perform set_config('lock_timeout', v_old_timeout, true);
      return v_attempt;
    exception when lock_not_available or deadlock_detected then
      perform set_config('lock_timeout', v_old_timeout, true);
    end;
    if clock_timestamp() >= v_deadline then
      select string_agg(format('pid %s (%s%s, %s, transaction open %s s%s): %s', h.pid,
                               coalesce(nullif(h.usename::text, ''), '?'), coalesce(' / ' || nullif(h.application_name, ''), ''),
                               coalesce(h.state, 'state not visible'),
                               coalesce(round(extract(epoch from clock_timestamp() - h.xact_start))::text, '?'),
                               coalesce(', holds ' || h.modes, ''),
                               coalesce(left(regexp_replace(h.query, '\s+', ' ', 'g'), 120), 'query not visible')), '; ' order by h.xact_start)
        into v_holders
      from (select a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query,
                   string_agg(distinct l.mode || ' on ' || l.relation::regclass::text, ', ') as modes
            from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid
            where l.granted and l.locktype = 'relation' and l.pid <> pg_catalog.pg_backend_pid()
              and l.relation = any (select t::regclass::oid from unnest(p_tables) t)
            group by a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query
            order by a.xact_start nulls last
            limit 5) h;
      raise exception 'could not lock % (% mode) for the migration''s DDL: % tries of lock_timeout % in % s were not enough; held by: %',
        v_tables, lower(p_mode), v_attempt, v_try_timeout, round(extract(epoch from v_wait)), coalesce(v_holders, 'no session now (the lock was freed just now)')
        using errcode = 'lock_not_available',
              hint = 'Nothing of this migration was applied (the ones before it were). Let that transaction finish, or end it (select pg_terminate_backend(<pid>)), then run supabase db push again: it continues with this migration. To wait longer: alter role postgres set partition_mgmt.push_lock_wait = ''90s''.';
    end if;
    -- 50 ms, 100 ms, ... up to 2 s between tries, with jitter, so the app runs in between
    perform pg_catalog.pg_sleep(least(2.0, 0.05 * power(2, least(v_attempt - 1, 6))) * (0.5 + random() / 2));
  end loop;
end
$$;

revoke execute on function private.lock_for_ddl(text[], text) from public;

comment on function private.lock_for_ddl(text[], text) is
  'Locks the app''s tables for DDL in tries of a short lock_timeout (partition_mgmt.push_lock_timeout, 100ms) for at most '
  'partition_mgmt.push_lock_wait (30 s); stops naming the sessions that held them. Returns the number of tries.';

-- -----------------------------------------------------------------------------
-- Derivation trigger: private.set_company_id_from_program()
-- One function for every table with program_id, site_id and company_id columns:
-- it reads NEW as jsonb, so the partition engine attaches this same function to
-- the partitioned observation tables. company_id is always derived, including
-- when a statement tries to set it directly (the triggers fire on UPDATE OF
-- company_id too), so it cannot drift from the program.
-- SECURITY DEFINER: the lookup must see the program even when RLS hides it from
-- the caller, so a row pointing at another company's program gets that
-- company's id and is then rejected by the policy's WITH CHECK.
-- -----------------------------------------------------------------------------
create or replace function private.set_company_id_from_program()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row        jsonb := pg_catalog.to_jsonb(new);
  v_program_id uuid  := (v_row ->> 'program_id')::uuid;
  v_site_id    uuid  := (v_row ->> 'site_id')::uuid;
  v_company_id uuid;
begin
  if not (v_row ? 'company_id' and v_row ? 'program_id' and v_row ? 'site_id') then
    raise exception 'set_company_id_from_program: table %.% lacks a program_id, site_id or company_id column',
      tg_table_schema, tg_table_name
      using errcode = 'undefined_column',
            hint = 'Attach this trigger only to tables that have program_id, site_id and company_id.';
  end if;

  if v_program_id is null then
    if v_site_id is null then
      raise exception '%.%: program_id and site_id are both NULL, cannot derive company_id',
        tg_table_schema, tg_table_name
        using errcode = 'not_null_violation',
              hint = 'Set program_id, or site_id of an existing site.';
    end if;
    select s.program_id into v_program_id from public.sites s where s.site_id = v_site_id;
    if not found then
      raise exception '%.%: site_id % does not exist (program_id is NULL), cannot derive company_id',
        tg_table_schema, tg_table_name, v_site_id
        using errcode = 'foreign_key_violation',
              hint = 'Create the site in public.sites first, or set program_id.';
    end if;
  end if;

  select p.company_id into v_company_id from public.pilot_programs p where p.program_id = v_program_id;
  if not found then
    raise exception '%.%: program_id % does not exist (site_id %), cannot derive company_id',
      tg_table_schema, tg_table_name, v_program_id, v_site_id
      using errcode = 'foreign_key_violation',
            hint = 'Create the program in public.pilot_programs first, or fix program_id/site_id.';
  end if;

  new := pg_catalog.jsonb_populate_record(new, pg_catalog.jsonb_build_object('company_id', v_company_id));
  return new;
end;
$$;

revoke execute on function private.set_company_id_from_program() from public;

comment on function private.set_company_id_from_program() is
  'BEFORE INSERT OR UPDATE OF program_id, site_id, company_id trigger: sets company_id from the program '
  '(through the site when program_id is NULL). Generic over any table with those three columns.';

-- -----------------------------------------------------------------------------
-- What the push did to the app's objects: private.deploy_report
-- One row per object of the app the bundle created or changed (here and in the setup steps), and
-- per app table whose access the bundle does NOT change with what to run to opt in.
-- -----------------------------------------------------------------------------
create table if not exists private.deploy_report (
  object      text primary key,
  action      text not null,
  detail      text,
  at          timestamptz not null default now()
);
alter table private.deploy_report drop constraint if exists deploy_report_action_check;   -- release 0.1.0's fixed list
revoke all on private.deploy_report from public, anon, authenticated;
grant select on private.deploy_report to service_role;
comment on table private.deploy_report is
  'What supabase db push and the setup steps did to the app''s own objects (columns, triggers, policies, RLS), what they left for you to opt in to, and what a migration''s swap did to publications (added, removed, replaced; restored by its rollback), one row per object.';

create or replace function private.report_deploy(p_object text, p_action text, p_detail text default null)
returns void
language sql
set search_path = ''
as $$
  insert into private.deploy_report (object, action, detail) values (p_object, p_action, p_detail)
  on conflict (object) do update set action = excluded.action, detail = excluded.detail, at = now();
$$;
revoke execute on function private.report_deploy(text, text, text) from public;

-- -----------------------------------------------------------------------------
-- The observation tables: column and trigger (catalog changes only, at the end of the file so the
-- locks are held for milliseconds: the transaction commits right after)
-- -----------------------------------------------------------------------------
select private.report_deploy(format('column %s.company_id', t),
         case when exists (select from pg_catalog.pg_attribute a where a.attrelid = t::regclass and a.attname = 'company_id' and not a.attisdropped)
              then 'kept (existed)' else 'added' end,
         'uuid, nullable, no default: filled by trigger set_company_id_from_program for new and changed rows, and for existing rows by the setup step company_id (batched, online)')
from unnest(array['public.petri_observations', 'public.gasifier_observations']) t;
select private.report_deploy(format('trigger set_company_id_from_program on %s', t),
         case when exists (select from pg_catalog.pg_trigger g where g.tgrelid = t::regclass and g.tgname = 'set_company_id_from_program')
              then 'kept (existed)' else 'added' end,
         'BEFORE INSERT OR UPDATE OF program_id, site_id, company_id: company_id follows the program (through the site when program_id is NULL)')
from unnest(array['public.petri_observations', 'public.gasifier_observations']) t;

select private.lock_for_ddl(array['public.petri_observations', 'public.gasifier_observations']);

alter table public.petri_observations    add column if not exists company_id uuid;
alter table public.gasifier_observations add column if not exists company_id uuid;

comment on column public.petri_observations.company_id is
  'Company of the observation''s program. Maintained by trigger set_company_id_from_program; used by RLS.';
comment on column public.gasifier_observations.company_id is
  'Company of the observation''s program (through the site when program_id is NULL). '
  'Maintained by trigger set_company_id_from_program; used by RLS.';

create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.petri_observations
  for each row execute function private.set_company_id_from_program();
create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.gasifier_observations
  for each row execute function private.set_company_id_from_program();
