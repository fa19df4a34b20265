-- =============================================================================
-- Company context (the plan's 001_add_company_context).
--
-- Every row of the tenant tables carries the company it belongs to, derived from
-- its program, so that Row Level Security can isolate companies with one
-- indexed comparison instead of a join per row:
--
--   company_id = any ((select private.user_company_ids())::uuid[])
--
-- The scalar subquery makes PostgreSQL evaluate the helper once per statement
-- (an InitPlan); the ::uuid[] cast is what makes ANY take it as one array, since
-- `any ((select ...))` would parse as ANY (subquery) and compare with each row.
--
-- Order: private schema and helpers, columns, back-fill, derivation triggers,
-- indexes, RLS policies. Every statement is safe to run again.
--
-- Rollback (manual, in this order): drop the policies and disable RLS, drop the
-- set_company_id_from_program triggers and the users_guard_self_update trigger,
-- drop the added company_id columns on sites/petri/gasifier (submissions had it
-- before), drop schema private cascade.
-- =============================================================================

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
-- Columns
-- programs and submissions already carry company_id; the other tenant tables get
-- it here. No foreign key: the value is derived from pilot_programs.company_id
-- (which has one) by the trigger below, and validating a new FK would scan the
-- large observation tables a second time inside the migration.
-- -----------------------------------------------------------------------------
alter table public.sites                 add column if not exists company_id uuid;
alter table public.submissions           add column if not exists company_id uuid;
alter table public.petri_observations    add column if not exists company_id uuid;
alter table public.gasifier_observations add column if not exists company_id uuid;

comment on column public.sites.company_id is
  'Company of the site''s program. Maintained by trigger set_company_id_from_program; used by RLS.';
comment on column public.submissions.company_id is
  'Company of the submission''s program. Maintained by trigger set_company_id_from_program; used by RLS.';
comment on column public.petri_observations.company_id is
  'Company of the observation''s program. Maintained by trigger set_company_id_from_program; used by RLS.';
comment on column public.gasifier_observations.company_id is
  'Company of the observation''s program (through the site when program_id is NULL). '
  'Maintained by trigger set_company_id_from_program; used by RLS.';

-- -----------------------------------------------------------------------------
-- Back-fill: private.backfill_company_id()
-- Plain UPDATEs, touching only rows whose company_id is missing or stale, so a
-- second run writes nothing. Kept as a function so the partition engine and the
-- tests can re-run exactly this logic instead of copying it.
-- -----------------------------------------------------------------------------
create or replace function private.backfill_company_id()
returns table (table_name text, rows_updated bigint)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows bigint;
begin
  update public.sites s
     set company_id = p.company_id
    from public.pilot_programs p
   where p.program_id = s.program_id
     and s.company_id is distinct from p.company_id;
  get diagnostics v_rows = row_count;
  table_name := 'public.sites'; rows_updated := v_rows; return next;

  -- submissions had company_id before this migration: only fill the gaps
  update public.submissions s
     set company_id = p.company_id
    from public.pilot_programs p
   where p.program_id = s.program_id
     and s.company_id is null
     and p.company_id is not null;
  get diagnostics v_rows = row_count;
  table_name := 'public.submissions'; rows_updated := v_rows; return next;

  update public.petri_observations o
     set company_id = p.company_id
    from public.pilot_programs p
   where p.program_id = o.program_id
     and o.company_id is distinct from p.company_id;
  get diagnostics v_rows = row_count;
  table_name := 'public.petri_observations'; rows_updated := v_rows; return next;

  -- older gasifier rows carry only the site: take the program from there
  update public.gasifier_observations o
     set company_id = p.company_id
    from public.sites s, public.pilot_programs p
   where s.site_id = o.site_id
     and p.program_id = coalesce(o.program_id, s.program_id)
     and o.company_id is distinct from p.company_id;
  get diagnostics v_rows = row_count;
  table_name := 'public.gasifier_observations'; rows_updated := v_rows; return next;
end;
$$;

revoke execute on function private.backfill_company_id() from public;

comment on function private.backfill_company_id() is
  'Sets company_id from the program on sites, submissions (NULLs only), petri and gasifier observations '
  '(gasifier: through the site when program_id is NULL). Idempotent; returns rows updated per table.';

select * from private.backfill_company_id();

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

create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.sites
  for each row execute function private.set_company_id_from_program();
create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.submissions
  for each row execute function private.set_company_id_from_program();
create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.petri_observations
  for each row execute function private.set_company_id_from_program();
create or replace trigger set_company_id_from_program
  before insert or update of program_id, site_id, company_id on public.gasifier_observations
  for each row execute function private.set_company_id_from_program();

-- -----------------------------------------------------------------------------
-- Guard: users cannot change their own company or privileges
-- The users_update_own policy lets a user edit their profile row; without this
-- guard they could also move themselves into another company (WITH CHECK stops
-- that too) or make themselves company admin. Updates of other users' rows (by
-- service_role, or by any admin policy the app has) are not affected.
-- SECURITY INVOKER on purpose: current_user must be the caller's role.
-- -----------------------------------------------------------------------------
create or replace function private.guard_user_self_update()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user = 'authenticated'
     and old.id = auth.uid()
     and (new.id, new.company_id, new.is_company_admin, new.is_active)
         is distinct from (old.id, old.company_id, old.is_company_admin, old.is_active) then
    raise exception 'user % may not change their own id, company_id, is_company_admin or is_active (company_id % -> %, is_company_admin % -> %, is_active % -> %)',
      old.id, old.company_id, new.company_id, old.is_company_admin, new.is_company_admin, old.is_active, new.is_active
      using errcode = 'insufficient_privilege',
            hint = 'A company admin or the service role changes these columns; users may edit their profile fields only.';
  end if;
  return new;
end;
$$;

revoke execute on function private.guard_user_self_update() from public;

create or replace trigger users_guard_self_update
  before update on public.users
  for each row execute function private.guard_user_self_update();

-- -----------------------------------------------------------------------------
-- Indexes on the policy columns
-- users.company_id and pilot_programs.company_id are indexed by the baseline.
-- -----------------------------------------------------------------------------
create index if not exists sites_company_id_idx                 on public.sites (company_id);
create index if not exists submissions_company_id_idx           on public.submissions (company_id);
create index if not exists petri_observations_company_id_idx    on public.petri_observations (company_id);
create index if not exists gasifier_observations_company_id_idx on public.gasifier_observations (company_id);

-- -----------------------------------------------------------------------------
-- Row Level Security
-- Policies are for authenticated only: anon has none and sees nothing;
-- service_role and postgres bypass RLS.
-- -----------------------------------------------------------------------------
alter table public.companies             enable row level security;
alter table public.users                 enable row level security;
alter table public.pilot_programs        enable row level security;
alter table public.sites                 enable row level security;
alter table public.submissions           enable row level security;
alter table public.petri_observations    enable row level security;
alter table public.gasifier_observations enable row level security;

-- Each policy is created when absent. A policy of the same name the project already has is kept
-- and never replaced with other semantics: when its definition differs from the bundle's, it is
-- recorded in private.deploy_report (and pre_migration_check reports it), so an operator can read
-- both and choose. private.deploy_report also lists every policy this migration created.
create table if not exists private.deploy_report (
  object      text primary key,
  action      text not null check (action in ('created', 'unchanged', 'kept (differs)', 'added', 'removed', 'replaced', 'restored')),
  detail      text,
  at          timestamptz not null default now()
);
revoke all on private.deploy_report from public, anon, authenticated;
grant select on private.deploy_report to service_role;
comment on table private.deploy_report is
  'What supabase db push did to the app''s own objects: policies created, or an existing policy of the same name kept because it differs from the bundle''s (both definitions in detail). Also what a migration''s swap did to publications (added, removed, replaced; restored by its rollback), one row per publication and table (partition_mgmt.swap_publications).';

create or replace function private.ensure_policy(p_table regclass, p_name text, p_command text, p_using text, p_check text, p_comment text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_existing record;
  v_wanted record;
  v_action text;
  v_detail text;
  v_probe text := left(p_name, 50) || '__bundle';
begin
  select p.polcmd, p.polroles, pg_catalog.pg_get_expr(p.polqual, p.polrelid) as qual,
         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as chk, p.polpermissive
    into v_existing from pg_catalog.pg_policy p where p.polrelid = p_table and p.polname = p_name;
  if not found then
    execute format('create policy %I on %s for %s to authenticated using (%s)%s', p_name, p_table, p_command, p_using,
      case when p_check is null then '' else format(' with check (%s)', p_check) end);
    execute format('comment on policy %I on %s is %L', p_name, p_table, p_comment);
    v_action := 'created';
  else
    -- the bundle's policy under a probe name, deparsed the same way, then compared
    execute format('create policy %I on %s for %s to authenticated using (%s)%s', v_probe, p_table, p_command, p_using,
      case when p_check is null then '' else format(' with check (%s)', p_check) end);
    select p.polcmd, p.polroles, pg_catalog.pg_get_expr(p.polqual, p.polrelid) as qual,
           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as chk, p.polpermissive
      into v_wanted from pg_catalog.pg_policy p where p.polrelid = p_table and p.polname = v_probe;
    execute format('drop policy %I on %s', v_probe, p_table);
    if (v_existing.polcmd, v_existing.polroles, v_existing.qual, v_existing.chk, v_existing.polpermissive)
       is not distinct from (v_wanted.polcmd, v_wanted.polroles, v_wanted.qual, v_wanted.chk, v_wanted.polpermissive) then
      v_action := 'unchanged';
    else
      v_action := 'kept (differs)';
      v_detail := format('yours: using (%s) with check (%s); the bundle''s: using (%s) with check (%s)',
                         coalesce(v_existing.qual, '-'), coalesce(v_existing.chk, '-'), coalesce(v_wanted.qual, '-'), coalesce(v_wanted.chk, '-'));
      raise notice 'policy % on % exists and differs from the bundle''s; it is kept. Yours: using (%) with check (%). The bundle''s: using (%) with check (%)',
        p_name, p_table, v_existing.qual, v_existing.chk, v_wanted.qual, v_wanted.chk;
    end if;
  end if;
  insert into private.deploy_report (object, action, detail)
  values (format('policy %s on %s', p_name, p_table), v_action, v_detail)
  on conflict (object) do update set action = excluded.action, detail = excluded.detail, at = now();
  return v_action;
end
$$;
revoke all on function private.ensure_policy(regclass, text, text, text, text, text) from public, anon, authenticated;

select private.ensure_policy('public.companies', 'companies_select_own', 'select', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, null,
  $q$Users see only the companies they belong to.$q$);
select private.ensure_policy('public.users', 'users_select_same_company', 'select', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, null,
  $q$Users see the users of their own companies.$q$);
select private.ensure_policy('public.users', 'users_update_own', 'update', $q$id = (select auth.uid())$q$, $q$id = (select auth.uid()) and company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users update only their own row and cannot move it to another company (see also trigger users_guard_self_update).$q$);
select private.ensure_policy('public.pilot_programs', 'company_isolation_programs', 'all', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, $q$company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users read and write only the programs of their own companies.$q$);
select private.ensure_policy('public.sites', 'company_isolation_sites', 'all', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, $q$company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users read and write only the sites of their own companies' programs.$q$);
select private.ensure_policy('public.submissions', 'company_isolation_submissions', 'all', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, $q$company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users read and write only the submissions of their own companies' programs.$q$);
select private.ensure_policy('public.petri_observations', 'company_isolation_petri', 'all', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, $q$company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users read and write only the petri observations of their own companies' programs.$q$);
select private.ensure_policy('public.gasifier_observations', 'company_isolation_gasifier', 'all', $q$company_id = any ((select private.user_company_ids())::uuid[])$q$, $q$company_id = any ((select private.user_company_ids())::uuid[])$q$,
  $q$Users read and write only the gasifier observations of their own companies' programs.$q$);
