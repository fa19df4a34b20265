-- =============================================================================
-- The admin API behind the partition-admin edge function: the actions, their dispatch and audit.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Audit
-- -----------------------------------------------------------------------------

create table if not exists partition_mgmt.admin_audit (
  id           bigint generated always as identity primary key,
  at           timestamptz not null default clock_timestamp(),
  actor_role   text,
  actor_sub    text,
  action       text not null,
  table_key    text,
  arguments    jsonb not null default '{}'::jsonb,
  status       text not null check (status in ('ok', 'error', 'busy', 'invalid', 'refused')),
  result       jsonb,
  error        text,
  duration_ms  numeric
);
create index if not exists admin_audit_at_idx on partition_mgmt.admin_audit (at desc);
create index if not exists admin_audit_table_idx on partition_mgmt.admin_audit (table_key, at desc);
comment on table partition_mgmt.admin_audit is
  'Every call of the partition-admin edge function: who (JWT role and sub), action, table, arguments, outcome (ok, error, busy = another call held the table, invalid, refused = not the service role), result (truncated to 16 kB), error and duration.';
revoke all on partition_mgmt.admin_audit from public, anon, authenticated;
grant select on partition_mgmt.admin_audit to service_role;

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

-- The advisory lock that serialises admin actions on one table (tests and operators can hold it).
create or replace function partition_mgmt.admin_lock_key(p_table_key text)
returns bigint
language sql immutable
set search_path = ''
as $$ select hashtextextended('partition_mgmt:admin:' || p_table_key, 0) $$;

-- One audit row. The actor defaults to the request's JWT claims (request.jwt.claims, as PostgREST
-- and withCallerContext set them); results above 16 kB are kept as a preview.
create or replace function partition_mgmt.admin_record(
  p_action text,
  p_table_key text,
  p_arguments jsonb,
  p_status text,
  p_result jsonb default null,
  p_error text default null,
  p_duration_ms numeric default null,
  p_actor jsonb default null)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_actor jsonb := coalesce(p_actor, nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}'::jsonb);
  v_size integer := octet_length(p_result::text);
  v_id bigint;
begin
  insert into partition_mgmt.admin_audit (actor_role, actor_sub, action, table_key, arguments, status, result, error, duration_ms)
  values (v_actor ->> 'role', v_actor ->> 'sub', left(coalesce(p_action, '?'), 100), p_table_key, coalesce(p_arguments, '{}'::jsonb), p_status,
          case when v_size > 16384 then jsonb_build_object('truncated', true, 'bytes', v_size, 'preview', left(p_result::text, 4096)) else p_result end,
          left(p_error, 4000), p_duration_ms)
  returning id into v_id;
  return v_id;
end
$$;

-- Set-returning SQL API results as a jsonb array of row objects.
create or replace function partition_mgmt.admin_rows(p_query text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v jsonb;
begin
  execute format('select coalesce(jsonb_agg(to_jsonb(r)), ''[]''::jsonb) from (%s) r', p_query) into v;
  return v;
end
$$;

-- -----------------------------------------------------------------------------
-- Actions: one handler each. Every handler has the same signature, (p_table_key text, p_args
-- jsonb) returns jsonb: the resolved table key (null when the action was called without one) and
-- the caller's parameters over the action's defaults. It calls the existing SQL API and returns
-- the action's result, with "ok": false when the API reported a failure without raising
-- (blockers, mismatches, a failed batch, maintenance errors). It runs as the owner (admin_run is
-- SECURITY DEFINER) and nobody else may execute it.
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.admin_action_status(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$
  select jsonb_build_object(
    'setup', partition_mgmt.admin_rows('select ord, task, table_key, done, progress from partition_mgmt.setup_tasks() order by ord'),
    'migrations', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_table_key)),
    'log', partition_mgmt.admin_rows(format(
      'select table_key, at, from_phase, to_phase, detail from partition_mgmt.migration_log where %L is null or table_key = %L order by id desc limit 20',
      p_table_key, p_table_key)))
$$;
create or replace function partition_mgmt.admin_action_precheck(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb := partition_mgmt.admin_rows(format('select * from partition_mgmt.pre_migration_check(%L)', p_table_key));
begin
  return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "blocker")'), 'rows', v_rows);
end
$$;
create or replace function partition_mgmt.admin_action_setup(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_step jsonb;
begin
  select to_jsonb(s) into v_step from partition_mgmt.setup_step(least((p_args ->> 'max_seconds')::numeric, 2)) s;
  return v_step || jsonb_build_object('tasks', partition_mgmt.admin_rows('select * from partition_mgmt.setup_tasks() order by ord'));
end
$$;
create or replace function partition_mgmt.admin_action_plan(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb := partition_mgmt.admin_rows(format('select * from partition_mgmt.safe_migrate_table(%L, true, %L)', p_table_key,
    (p_args ->> 'postpone_swap')::boolean));
begin
  return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "blocker")'), 'rows', v_rows);
end
$$;
create or replace function partition_mgmt.admin_action_step(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_step jsonb;
begin
  select to_jsonb(m) into v_step
  from partition_mgmt.migration_step(p_table_key, (p_args ->> 'swap')::boolean, (p_args ->> 'batch_size')::integer, 1, null,
                                     p_args ->> 'lock_timeout', (p_args ->> 'attempts')::integer) m;
  return v_step || jsonb_build_object('progress', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_table_key)) -> 0);
end
$$;
create or replace function partition_mgmt.admin_action_prepare(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('message', partition_mgmt.prepare_migration(p_table_key)) $$;
create or replace function partition_mgmt.admin_action_sync_on(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('message', partition_mgmt.start_sync(p_table_key)) $$;
create or replace function partition_mgmt.admin_action_sync_off(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  if partition_mgmt.migration_phase(p_table_key) = 'swapped' then
    raise exception 'cannot turn the sync of "%" off: the tables are swapped and the reverse sync keeps the legacy table exact', p_table_key
      using hint = 'Use rollback (swaps back with every write made since) or finalize (drops the legacy table).';
  end if;
  return jsonb_build_object('message', partition_mgmt.rollback_migration(p_table_key, p_args ->> 'lock_timeout', (p_args ->> 'attempts')::integer));
end
$$;
create or replace function partition_mgmt.admin_action_backfill(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_step jsonb;
begin
  select to_jsonb(m) into v_step
  from partition_mgmt.migrate_to_partitioned((p_args ->> 'batch_size')::integer, null, p_table_key,
                                             coalesce((p_args ->> 'max_batches')::integer, 1000000),
                                             least((p_args ->> 'max_seconds')::numeric, 20)) m;
  if v_step is null then
    raise exception 'no migration of "%" is in progress', p_table_key
      using hint = 'Run prepare and sync-on first.';
  end if;
  return jsonb_build_object('ok', v_step ->> 'error' is null, 'done', coalesce((v_step ->> 'done')::boolean, false),
    'error', v_step ->> 'error', 'step', v_step,
    'progress', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_table_key)) -> 0);
end
$$;
create or replace function partition_mgmt.admin_action_monitor(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('rows', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_table_key))) $$;
create or replace function partition_mgmt.admin_action_validate(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb := partition_mgmt.admin_rows(format('select * from partition_mgmt.post_migration_validation(%L)', p_table_key));
begin
  return jsonb_build_object('ok', jsonb_array_length(v_rows) > 0 and not jsonb_path_exists(v_rows, '$[*] ? (@.status != "ok")'), 'rows', v_rows);
end
$$;
create or replace function partition_mgmt.admin_action_swap(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$
  select jsonb_build_object('rows', partition_mgmt.admin_rows(format('select * from partition_mgmt.swap_tables(%L, %L, %L)',
    p_table_key, p_args ->> 'lock_timeout', (p_args ->> 'attempts')::integer)))
$$;
create or replace function partition_mgmt.admin_action_rollback(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$
  select jsonb_build_object('message', partition_mgmt.rollback_migration(p_table_key, p_args ->> 'lock_timeout', (p_args ->> 'attempts')::integer))
$$;
create or replace function partition_mgmt.admin_action_finish_rollback(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('message', partition_mgmt.finish_rollback(p_table_key)) $$;

-- a call of its own: the scans run without the swap's lock (migration 0250)
create or replace function partition_mgmt.admin_action_validate_references(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('validated', to_jsonb(partition_mgmt.validate_restored_references(p_table_key))) $$;
create or replace function partition_mgmt.admin_action_finalize(p_table_key text, p_args jsonb)
returns jsonb
language sql
set search_path = ''
as $$ select jsonb_build_object('message', partition_mgmt.finalize_migration(p_table_key)) $$;
create or replace function partition_mgmt.admin_action_maintenance(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_run uuid := partition_mgmt.schedule_maintenance(p_table_key);
  v_rows jsonb := partition_mgmt.admin_rows(format(
    'select id, table_key, action, status, partitions_touched, rows_moved, error, started_at, finished_at, detail from partition_mgmt.maintenance_log where run_id = %L order by id', v_run));
begin
  return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "error")'), 'run_id', v_run, 'rows', v_rows);
end
$$;
create or replace function partition_mgmt.admin_action_health(p_table_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb := partition_mgmt.admin_rows('select * from partition_mgmt.health()');
begin
  return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.severity == "error")'), 'rows', v_rows);
end
$$;

-- -----------------------------------------------------------------------------
-- Actions: the one list, a table. A new action is one handler function (above: (p_table_key
-- text, p_args jsonb) returns jsonb) plus one row here; admin_run, admin_dispatch and
-- admin_actions() read the row. Then the TypeScript contract
-- (supabase/functions/_shared/admin-contract.ts: ADMIN_ACTIONS, TABLE_ACTIONS,
-- FRESH_SESSION_ACTIONS, READ_ONLY_ACTIONS, CONFIRMED_ACTIONS, ADMIN_DEFAULTS, and the request
-- schema for a new parameter) says the same: test/edge/admin-actions-contract.test.ts fails until it
-- does, in either direction.
--   ord            the order an operator runs them (admin_actions(), the CLI's help)
--   table_required the action refuses to run without a table (the others act on every table)
--   exclusive      it changes a migration: it takes the table's try-lock (admin_lock_key)
--   fresh_session  the edge function runs it in a session of its own: statements that rename or
--                  re-trigger a whole tree under ACCESS EXCLUSIVE (a pooled session that has
--                  touched every leaf processes each catalog change slowly)
--   read_only      it changes nothing (the CLI says so); never exclusive
--   confirmed      it changes which table the app uses, or drops or empties one: the CLI asks
--                  first (--yes for scripts); always exclusive
--   defaults       its parameters' defaults, under the caller's parameters
--   handler        the function, by name, resolved with to_regprocedure(handler || '(text, jsonb)')
--                  at every call (a name and not a regprocedure: pg_upgrade refuses user tables
--                  with reg* columns other than regclass, regrole and regtype)
--   sql_api        what it calls, for operators
-- Only the owner writes it: admin_run (SECURITY DEFINER) calls the handler a row names, so a
-- role that could write a row could run any function as the owner. service_role reads it
-- (admin_actions()).
-- -----------------------------------------------------------------------------

create table if not exists partition_mgmt.admin_action (
  name           text primary key check (name ~ '^[a-z]+(-[a-z]+)*$'),
  ord            integer not null unique,
  table_required boolean not null,
  exclusive      boolean not null,
  fresh_session  boolean not null,
  read_only      boolean not null,
  confirmed      boolean not null,
  defaults       jsonb not null default '{}'::jsonb check (jsonb_typeof(defaults) = 'object'),
  handler        text not null check (handler ~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$'),
  sql_api        text not null,
  constraint admin_action_read_only_not_exclusive check (not (read_only and exclusive)),
  constraint admin_action_confirmed_exclusive check (not confirmed or exclusive)
);
comment on table partition_mgmt.admin_action is
  'The partition-admin actions, one row each: whether it needs a table, takes the table''s lock, runs in a session of its own, only reads, is confirmed by the CLI; its defaults; its handler (schema.function taking (text, jsonb), returning jsonb). A new action is a handler plus a row; the TypeScript contract is tested against this table.';
insert into partition_mgmt.admin_action as a (ord, name, table_required, exclusive, fresh_session, read_only, confirmed, defaults, handler, sql_api) values
  (1,  'status',      false, false, false, true,  false, '{}', 'partition_mgmt.admin_action_status',
       'monitor_migration(table) + migration_log + setup_tasks()'),
  (2,  'precheck',    false, false, false, true,  false, '{}', 'partition_mgmt.admin_action_precheck', 'pre_migration_check(table)'),
  (3,  'setup',       false, false, false, false, false, '{}', 'partition_mgmt.admin_action_setup',
       'setup_step(least(max_seconds, 2); default its own, 0.25 s) + setup_tasks(): one bounded step of what the push left to run online; a create index concurrently it returns is run by the edge function outside a transaction; callers repeat it until state is idle'),
  (4,  'plan',        true,  false, false, true,  false, '{"postpone_swap": true}', 'partition_mgmt.admin_action_plan',
       'safe_migrate_table(table, p_dry_run => true, postpone_swap)'),
  (5,  'step',        true,  true,  true,  false, false, partition_mgmt.step_defaults(), 'partition_mgmt.admin_action_step',
       'migration_step(table, swap, batch_size, 1, null, lock_timeout, attempts), defaults step_defaults(): the next step of the migration (prepare, sync, one backfill batch sized to partition_mgmt.backfill_batch_ms with batch_size at most, validate, swap); callers repeat it until next_step is done'),
  (6,  'prepare',     true,  true,  false, false, false, '{}', 'partition_mgmt.admin_action_prepare', 'prepare_migration(table)'),
  (7,  'sync-on',     true,  true,  false, false, false, '{}', 'partition_mgmt.admin_action_sync_on', 'start_sync(table)'),
  (8,  'sync-off',    true,  true,  true,  false, true,  '{"lock_timeout": "1s", "attempts": 10}', 'partition_mgmt.admin_action_sync_off',
       'rollback_migration(table) before the swap (there is no separate stop-sync)'),
  (9,  'backfill',    true,  true,  false, false, false, '{"batch_size": 5000, "max_seconds": 5}', 'partition_mgmt.admin_action_backfill',
       'migrate_to_partitioned(batch_size, null, table, max_batches, least(max_seconds, 20)) + monitor_migration(table)'),
  (10, 'monitor',     false, false, false, true,  false, '{}', 'partition_mgmt.admin_action_monitor', 'monitor_migration(table)'),
  (11, 'validate',    true,  true,  false, false, false, '{}', 'partition_mgmt.admin_action_validate', 'post_migration_validation(table)'),
  (12, 'swap',        true,  true,  true,  false, true,  '{"lock_timeout": "1s", "attempts": 10}', 'partition_mgmt.admin_action_swap',
       'swap_tables(table, lock_timeout, attempts)'),
  (13, 'rollback',    true,  true,  true,  false, true,  '{"lock_timeout": "1s", "attempts": 10}', 'partition_mgmt.admin_action_rollback',
       'rollback_migration(table, lock_timeout, attempts)'),
  (14, 'finish-rollback', true, true, false, false, true, '{}', 'partition_mgmt.admin_action_finish_rollback',
       'finish_rollback(table): empties the copy after a rollback (the function calls it after rollback and sync-off, in a transaction of its own)'),
  (15, 'validate-references', true, true, false, false, false, '{}', 'partition_mgmt.admin_action_validate_references',
       'validate_restored_references(table), after a rollback that declared foreign keys again'),
  (16, 'finalize',    true,  true,  true,  false, true,  '{}', 'partition_mgmt.admin_action_finalize', 'finalize_migration(table)'),
  (17, 'maintenance', false, false, false, false, false, '{}', 'partition_mgmt.admin_action_maintenance', 'schedule_maintenance(table) + its maintenance_log rows'),
  (18, 'health',      false, false, false, true,  false, '{}', 'partition_mgmt.admin_action_health', 'health()')
on conflict (name) do update set
  ord = excluded.ord, table_required = excluded.table_required, exclusive = excluded.exclusive, fresh_session = excluded.fresh_session,
  read_only = excluded.read_only, confirmed = excluded.confirmed, defaults = excluded.defaults, handler = excluded.handler, sql_api = excluded.sql_api;
revoke all on partition_mgmt.admin_action from public, anon, authenticated, service_role;
grant select on partition_mgmt.admin_action to service_role;

-- The handler of a row, or an error that says which row names a function that does not exist.
create or replace function partition_mgmt.admin_handler(p_action text)
returns regprocedure
language plpgsql stable
set search_path = ''
as $$
declare
  v_handler text;
  v_proc regprocedure;
begin
  select a.handler into v_handler from partition_mgmt.admin_action a where a.name = p_action;
  if not found then
    raise exception 'unknown admin action "%"', p_action
      using errcode = 'invalid_parameter_value',
            hint = format('Actions: %s.', (select string_agg(a.name, ', ' order by a.ord) from partition_mgmt.admin_action a));
  end if;
  v_proc := to_regprocedure(v_handler || '(text, jsonb)');
  if v_proc is null or (select p.prorettype from pg_catalog.pg_proc p where p.oid = v_proc) <> 'jsonb'::regtype then
    raise exception 'the handler of admin action "%", %(text, jsonb) returning jsonb, does not exist', p_action, v_handler
      using errcode = 'undefined_function',
            hint = format('Create the function, or set partition_mgmt.admin_action.handler of %L to one that exists.', p_action);
  end if;
  return v_proc;
end
$$;

-- Every row names a handler that exists (a migration that adds a row without its function fails here).
do $$
declare
  a record;
begin
  for a in select name from partition_mgmt.admin_action order by ord loop
    perform partition_mgmt.admin_handler(a.name);
  end loop;
end
$$;

-- The list, for clients and tests (service_role): the table in the operator's order.
create or replace function partition_mgmt.admin_actions()
returns table (action text, table_required boolean, exclusive boolean, fresh_session boolean, read_only boolean, confirmed boolean,
               defaults jsonb, handler text, sql_api text)
language sql stable
set search_path = ''
as $$
  select a.name, a.table_required, a.exclusive, a.fresh_session, a.read_only, a.confirmed, a.defaults, a.handler, a.sql_api
  from partition_mgmt.admin_action a
  order by a.ord
$$;

-- One action: its handler, called with the caller's parameters over the action's defaults. Raises
-- as the handler does (admin_run catches it at a savepoint).
create or replace function partition_mgmt.admin_dispatch(p_action text, p_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_handler regprocedure := partition_mgmt.admin_handler(p_action);
  v_args jsonb := (select a.defaults from partition_mgmt.admin_action a where a.name = p_action) || coalesce(p_args, '{}'::jsonb);
  v_result jsonb;
begin
  execute format('select %s($1, $2)', v_handler::oid::regproc) into v_result using p_key, v_args;
  return v_result;
end
$$;

-- -----------------------------------------------------------------------------
-- Public entry point of the edge function (service_role only)
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.admin_run(p_action text, p_table text default null, p_args jsonb default '{}'::jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_t0 timestamptz := clock_timestamp();
  v_args jsonb := coalesce(p_args, '{}'::jsonb);
  a record;
  v_key text;
  v_result jsonb;
  v_status text;
  v_error jsonb;
  v_message text;
  v_state text;
  v_hint text;
  v_ms numeric;
  v_audit bigint;
begin
  select * into a from partition_mgmt.admin_action x where x.name = p_action;
  if not found then
    v_error := jsonb_build_object('sqlstate', '22023', 'message', format('unknown action "%s"', p_action),
      'hint', format('Actions: %s.', (select string_agg(x.name, ', ' order by x.ord) from partition_mgmt.admin_action x)));
  elsif p_table is not null and not exists (select from partition_mgmt.managed_tables m
        where p_table in (m.table_key, m.source_table, m.source_schema || '.' || m.source_table, m.partitioned_table, m.source_schema || '.' || m.partitioned_table)) then
    v_error := jsonb_build_object('sqlstate', '22023', 'message', format('table "%s" is not managed by partition_mgmt', p_table),
      'hint', format('Use one of: %s.', (select string_agg(format('%s (%s)', m.table_key, m.source_table), ', ' order by m.table_key) from partition_mgmt.managed_tables m)));
  elsif p_table is null and a.table_required then
    v_error := jsonb_build_object('sqlstate', '22023', 'message', format('action "%s" needs a table', p_action),
      'hint', format('Pass one of: %s.', (select string_agg(m.table_key, ', ' order by m.table_key) from partition_mgmt.managed_tables m)));
  end if;
  if v_error is not null then
    v_ms := round(extract(epoch from clock_timestamp() - v_t0) * 1000, 1);
    v_audit := partition_mgmt.admin_record(p_action, null, v_args || jsonb_build_object('table', p_table), 'invalid', null, v_error ->> 'message', v_ms);
    return jsonb_build_object('status', 'invalid', 'action', p_action, 'table_key', null, 'error', v_error, 'duration_ms', v_ms, 'audit_id', v_audit);
  end if;

  v_key := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  if a.exclusive and not pg_try_advisory_xact_lock(partition_mgmt.admin_lock_key(v_key)) then
    v_error := jsonb_build_object('sqlstate', '55P03', 'message', format('another admin action on "%s" is already running', v_key),
      'hint', 'Wait for it to finish (see action status), then retry.');
    v_ms := round(extract(epoch from clock_timestamp() - v_t0) * 1000, 1);
    v_audit := partition_mgmt.admin_record(p_action, v_key, v_args, 'busy', null, v_error ->> 'message', v_ms);
    return jsonb_build_object('status', 'busy', 'action', p_action, 'table_key', v_key, 'error', v_error, 'duration_ms', v_ms, 'audit_id', v_audit);
  end if;

  begin
    v_result := partition_mgmt.admin_dispatch(p_action, v_key, v_args);
    v_status := case when coalesce((v_result ->> 'ok')::boolean, true) then 'ok' else 'error' end;
    if v_status = 'error' then
      v_error := jsonb_build_object('sqlstate', null, 'message', coalesce(v_result ->> 'error',
        format('%s of "%s" reported a failure (see result)', p_action, coalesce(v_key, 'all tables'))), 'hint', null);
    end if;
  exception when others then
    get stacked diagnostics v_message = message_text, v_state = returned_sqlstate, v_hint = pg_exception_hint;
    v_status := 'error';
    v_error := jsonb_build_object('sqlstate', v_state, 'message', v_message, 'hint', nullif(v_hint, ''));
  end;
  v_ms := round(extract(epoch from clock_timestamp() - v_t0) * 1000, 1);
  v_audit := partition_mgmt.admin_record(p_action, v_key, v_args, v_status, v_result, v_error ->> 'message', v_ms);
  return jsonb_build_object('status', v_status, 'action', p_action, 'table_key', v_key,
    'phase', case when v_key is not null then partition_mgmt.migration_phase(v_key) end,
    'result', v_result, 'error', v_error, 'duration_ms', v_ms, 'audit_id', v_audit);
end
$$;
comment on function partition_mgmt.admin_run(text, text, jsonb) is
  'Entry point of the partition-admin edge function: one operator action (see admin_actions()) through the SQL API, under a per-table try-lock for the actions that change a migration, audited in admin_audit. Never raises: status ok | error | busy | invalid in the result.';

-- -----------------------------------------------------------------------------
-- Privileges: service_role runs actions and reads the audit; helpers stay with the owner
-- -----------------------------------------------------------------------------

revoke all on function partition_mgmt.admin_lock_key(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_record(text, text, jsonb, text, jsonb, text, numeric, jsonb)  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_rows(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_actions()  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_handler(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_dispatch(text, text, jsonb)  from public, anon, authenticated;
revoke all on function partition_mgmt.admin_run(text, text, jsonb)  from public, anon, authenticated;

-- the handlers: the owner's alone (admin_run calls them as the owner)
do $$
declare
  f regprocedure;
begin
  for f in select partition_mgmt.admin_handler(a.name) from partition_mgmt.admin_action a loop
    execute format('revoke all on function %s from public, anon, authenticated, service_role', f);
  end loop;
end
$$;
grant execute on function partition_mgmt.admin_run(text, text, jsonb) to service_role;
grant execute on function partition_mgmt.admin_actions() to service_role;
grant execute on function partition_mgmt.admin_lock_key(text) to service_role;

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
