-- =============================================================================
-- Admin API: partition_mgmt.admin_run(action, table, args), the single SQL entry point of the
-- partition-admin edge function, and admin_actions(), the one list of operator actions.
--
-- Each action is one call of the existing SQL API (migration 0400-0470, promotion, maintenance),
-- guarded by a per-table try-lock for the actions that change a migration (a second call answers
-- 'busy'), audited in admin_audit (a failing action is undone at a savepoint, its audit row kept),
-- and never raises: the outcome is in the returned jsonb, which the function maps to HTTP.
-- SECURITY DEFINER (owner postgres, which owns the tables) and executable by service_role only.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

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
-- Actions: the one list. Name, whether it needs a table, whether it takes the table's lock,
-- whether the edge function runs it in a session of its own (statements that rename or
-- re-trigger a whole tree under ACCESS EXCLUSIVE: a pooled session that has touched every leaf
-- processes each catalog change slowly), the defaults of its parameters, and the SQL API it calls.
-- The TypeScript contract (supabase/functions/_shared/admin-contract.ts) is tested against it
-- (test/admin-actions-contract.test.ts).
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.admin_actions()
returns table (action text, table_required boolean, exclusive boolean, fresh_session boolean, defaults jsonb, sql_api text)
language sql immutable
set search_path = ''
as $$
  values
    ('status',      false, false, false, '{}'::jsonb, 'monitor_migration(table) + migration_log'),
    ('precheck',    false, false, false, '{}'::jsonb, 'pre_migration_check(table)'),
    ('setup',       false, false, false, '{}'::jsonb,
                    'setup_step(least(max_seconds, 2); default its own, 0.25 s) + setup_tasks(): one bounded step of what the push left to run online; a create index concurrently it returns is run by the edge function outside a transaction; callers repeat it until state is idle'),
    ('plan',        true,  false, false, '{"postpone_swap": true}'::jsonb, 'safe_migrate_table(table, p_dry_run => true, postpone_swap)'),
    ('step',        true,  true,  true,  '{"swap": false, "batch_size": 5000, "lock_timeout": "1s", "attempts": 10}'::jsonb,
                    'migration_step(table, swap, batch_size, 1, null, lock_timeout, attempts): the next step of the migration (prepare, sync, one backfill batch sized to partition_mgmt.backfill_batch_ms with batch_size at most, validate, swap); callers repeat it until next_step is done'),
    ('prepare',     true,  true,  false, '{}'::jsonb, 'prepare_migration(table)'),
    ('sync-on',     true,  true,  false, '{}'::jsonb, 'start_sync(table)'),
    ('sync-off',    true,  true,  true,  '{"lock_timeout": "1s", "attempts": 10}'::jsonb, 'rollback_migration(table) before the swap (there is no separate stop-sync)'),
    ('backfill',    true,  true,  false, '{"batch_size": 5000, "max_seconds": 5}'::jsonb,
                    'migrate_to_partitioned(batch_size, null, table, max_batches, least(max_seconds, 20)) + monitor_migration(table)'),
    ('monitor',     false, false, false, '{}'::jsonb, 'monitor_migration(table)'),
    ('validate',    true,  true,  false, '{}'::jsonb, 'post_migration_validation(table)'),
    ('swap',        true,  true,  true,  '{"lock_timeout": "1s", "attempts": 10}'::jsonb, 'swap_tables(table, lock_timeout, attempts)'),
    ('rollback',    true,  true,  true,  '{"lock_timeout": "1s", "attempts": 10}'::jsonb, 'rollback_migration(table, lock_timeout, attempts)'),
    ('finish-rollback', true, true, false, '{}'::jsonb,
                    'finish_rollback(table): empties the copy after a rollback (the function calls it after rollback and sync-off, in a transaction of its own)'),
    ('validate-references', true, true, false, '{}'::jsonb, 'validate_restored_references(table), after a rollback that declared foreign keys again'),
    ('finalize',    true,  true,  true,  '{}'::jsonb, 'finalize_migration(table)'),
    ('maintenance', false, false, false, '{}'::jsonb, 'schedule_maintenance(table) + its maintenance_log rows'),
    ('health',      false, false, false, '{}'::jsonb, 'health()')
$$;

-- One action through the SQL API. Raises as the API does; returns the action's result, with
-- "ok": false when the API reported a failure without raising (blockers, mismatches, a failed
-- batch, maintenance errors).
create or replace function partition_mgmt.admin_dispatch(p_action text, p_key text, p_args jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_rows jsonb;
  v_step jsonb;
  v_run uuid;
  -- the caller's arguments over the action's defaults
  v_args jsonb := coalesce((select x.defaults from partition_mgmt.admin_actions() x where x.action = p_action), '{}'::jsonb) || coalesce(p_args, '{}'::jsonb);
  v_lock_timeout text := v_args ->> 'lock_timeout';
  v_attempts integer := (v_args ->> 'attempts')::integer;
begin
  case p_action
  when 'status' then
    return jsonb_build_object(
      'setup', partition_mgmt.admin_rows('select ord, task, table_key, done, progress from partition_mgmt.setup_tasks() order by ord'),
      'migrations', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_key)),
      'log', partition_mgmt.admin_rows(format(
        'select table_key, at, from_phase, to_phase, detail from partition_mgmt.migration_log where %L is null or table_key = %L order by id desc limit 20', p_key, p_key)));
  when 'setup' then
    select to_jsonb(s) into v_step from partition_mgmt.setup_step(least((v_args ->> 'max_seconds')::numeric, 2)) s;
    return v_step || jsonb_build_object('tasks', partition_mgmt.admin_rows('select * from partition_mgmt.setup_tasks() order by ord'));
  when 'precheck' then
    v_rows := partition_mgmt.admin_rows(format('select * from partition_mgmt.pre_migration_check(%L)', p_key));
    return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "blocker")'), 'rows', v_rows);
  when 'plan' then
    v_rows := partition_mgmt.admin_rows(format('select * from partition_mgmt.safe_migrate_table(%L, true, %L)', p_key,
      (v_args ->> 'postpone_swap')::boolean));
    return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "blocker")'), 'rows', v_rows);
  when 'step' then
    select to_jsonb(m) into v_step
    from partition_mgmt.migration_step(p_key, (v_args ->> 'swap')::boolean, (v_args ->> 'batch_size')::integer, 1, null,
                                       v_lock_timeout, v_attempts) m;
    return v_step || jsonb_build_object('progress', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_key)) -> 0);
  when 'prepare' then
    return jsonb_build_object('message', partition_mgmt.prepare_migration(p_key));
  when 'sync-on' then
    return jsonb_build_object('message', partition_mgmt.start_sync(p_key));
  when 'sync-off' then
    if partition_mgmt.migration_phase(p_key) = 'swapped' then
      raise exception 'cannot turn the sync of "%" off: the tables are swapped and the reverse sync keeps the legacy table exact', p_key
        using hint = 'Use rollback (swaps back with every write made since) or finalize (drops the legacy table).';
    end if;
    return jsonb_build_object('message', partition_mgmt.rollback_migration(p_key, v_lock_timeout, v_attempts));
  when 'backfill' then
    select to_jsonb(m) into v_step
    from partition_mgmt.migrate_to_partitioned((v_args ->> 'batch_size')::integer, null, p_key,
                                               coalesce((v_args ->> 'max_batches')::integer, 1000000),
                                               least((v_args ->> 'max_seconds')::numeric, 20)) m;
    if v_step is null then
      raise exception 'no migration of "%" is in progress', p_key
        using hint = 'Run prepare and sync-on first.';
    end if;
    return jsonb_build_object('ok', v_step ->> 'error' is null, 'done', coalesce((v_step ->> 'done')::boolean, false),
      'error', v_step ->> 'error', 'step', v_step,
      'progress', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_key)) -> 0);
  when 'monitor' then
    return jsonb_build_object('rows', partition_mgmt.admin_rows(format('select * from partition_mgmt.monitor_migration(%L)', p_key)));
  when 'validate' then
    v_rows := partition_mgmt.admin_rows(format('select * from partition_mgmt.post_migration_validation(%L)', p_key));
    return jsonb_build_object('ok', jsonb_array_length(v_rows) > 0 and not jsonb_path_exists(v_rows, '$[*] ? (@.status != "ok")'), 'rows', v_rows);
  when 'swap' then
    return jsonb_build_object('rows', partition_mgmt.admin_rows(format('select * from partition_mgmt.swap_tables(%L, %L, %s)', p_key, v_lock_timeout, v_attempts)));
  when 'rollback' then
    return jsonb_build_object('message', partition_mgmt.rollback_migration(p_key, v_lock_timeout, v_attempts));
  when 'finish-rollback' then
    return jsonb_build_object('message', partition_mgmt.finish_rollback(p_key));
  when 'finalize' then
    return jsonb_build_object('message', partition_mgmt.finalize_migration(p_key));
  when 'validate-references' then
    -- a call of its own: the scans run without the swap's lock (migration 0250)
    return jsonb_build_object('validated', to_jsonb(partition_mgmt.validate_restored_references(p_key)));
  when 'maintenance' then
    v_run := partition_mgmt.schedule_maintenance(p_key);
    v_rows := partition_mgmt.admin_rows(format(
      'select id, table_key, action, status, partitions_touched, rows_moved, error, started_at, finished_at, detail from partition_mgmt.maintenance_log where run_id = %L order by id', v_run));
    return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.status == "error")'), 'run_id', v_run, 'rows', v_rows);
  when 'health' then
    v_rows := partition_mgmt.admin_rows('select * from partition_mgmt.health()');
    return jsonb_build_object('ok', not jsonb_path_exists(v_rows, '$[*] ? (@.severity == "error")'), 'rows', v_rows);
  else
    raise exception 'unknown admin action "%"', p_action using errcode = 'invalid_parameter_value';
  end case;
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
  select * into a from partition_mgmt.admin_actions() x where x.action = p_action;
  if not found then
    v_error := jsonb_build_object('sqlstate', '22023', 'message', format('unknown action "%s"', p_action),
      'hint', format('Actions: %s.', (select string_agg(x.action, ', ') from partition_mgmt.admin_actions() x)));
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
revoke all on function partition_mgmt.admin_lock_key(text), partition_mgmt.admin_record(text, text, jsonb, text, jsonb, text, numeric, jsonb),
  partition_mgmt.admin_rows(text), partition_mgmt.admin_actions(), partition_mgmt.admin_dispatch(text, text, jsonb),
  partition_mgmt.admin_run(text, text, jsonb)
  from public, anon, authenticated;
grant execute on function partition_mgmt.admin_run(text, text, jsonb), partition_mgmt.admin_actions(),
  partition_mgmt.admin_lock_key(text) to service_role;

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
