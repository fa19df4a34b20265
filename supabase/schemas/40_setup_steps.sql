-- =============================================================================
-- Setup steps: what the push must not do on a populated table (company_id of existing rows in
-- short batches, indexes built concurrently, the company isolation policy, the first metrics
-- refresh), run online, resumable and monitored: setup_step(), setup_runner() for psql, the admin
-- action `setup`. app_table_access() reports the app's other tables without changing them.
-- =============================================================================

create table if not exists partition_mgmt.setup_progress (
  task          text primary key,
  hwm           text,                 -- the sweep's next block
  sweep_end     bigint,               -- the table's blocks when the sweep started
  rows_seen     bigint not null default 0,
  rows_updated  bigint not null default 0,
  rows_corrected bigint not null default 0,
  batches       integer not null default 0,
  batch_rows    integer,
  started_at    timestamptz,
  finished_at   timestamptz,
  updated_at    timestamptz not null default now()
);
revoke all on partition_mgmt.setup_progress from public, anon, authenticated;
grant select on partition_mgmt.setup_progress to service_role;
comment on table partition_mgmt.setup_progress is
  'Progress of the batched setup steps (company_id of the rows that existed before the push): the next block of the sweep and where it ends, rows seen and updated, the batch size (blocks) the next call starts with.';
alter table partition_mgmt.setup_progress add column if not exists sweep_end bigint;
comment on column partition_mgmt.setup_progress.rows_corrected is
  'Rows whose company_id was set but differed from their program''s company (a column the project had before): set to the program''s, as the trigger does on every write.';

-- The company isolation policy of the plan, one expression for the check and the table.
create or replace function partition_mgmt.company_isolation_expression()
returns text
language sql immutable
set search_path = ''
as $$ select 'company_id = any ((select private.user_company_ids())::uuid[])'::text $$;

-- -----------------------------------------------------------------------------
-- The steps and their state
-- -----------------------------------------------------------------------------

-- The metrics index of the legacy table (see the task metrics_index).
create or replace function partition_mgmt.metrics_index_statement()
returns text
language sql immutable
set search_path = ''
as $$ select 'create index concurrently if not exists petri_observations_metrics_idx on public.petri_observations (program_id, site_id, created_at)'::text $$;

create or replace function partition_mgmt.setup_tasks()
returns table (ord integer, task text, table_key text, kind text, done boolean, progress text, detail text, statement text)
language plpgsql stable
set search_path = ''
as $$
declare
  m partition_mgmt.managed_tables;
  v_live regclass;
  v_partitioned boolean;
  v_rls boolean;
  p partition_mgmt.setup_progress;
  v_estimate bigint;
  v_index record;
  v_policies text;
  v_missing bigint;
begin
  ord := 0;
  for m in select * from partition_mgmt.managed_tables order by table_key loop
    v_live := to_regclass(format('%I.%I', m.source_schema, m.source_table));
    continue when v_live is null;
    select c.relkind = 'p', c.relrowsecurity, greatest(c.reltuples, 0)::bigint into v_partitioned, v_rls, v_estimate
    from pg_catalog.pg_class c where c.oid = v_live;
    table_key := m.table_key;

    -- company_id of the existing rows
    select * into p from partition_mgmt.setup_progress sp where sp.task = m.table_key || ':company_id';
    ord := ord + 1; task := m.table_key || ':company_id'; kind := 'backfill';
    done := v_partitioned or p.finished_at is not null;
    progress := case when v_partitioned then 'the table is partitioned: every row got company_id when it was copied'
                     when p.finished_at is not null then format('%s rows seen, %s updated (%s corrected) in %s batches', p.rows_seen, p.rows_updated, p.rows_corrected, p.batches)
                     when p.task is null then format('not started; about %s rows', v_estimate)
                     else format('block %s of %s (%s%%): %s rows seen, %s updated', p.hwm, p.sweep_end,
                                 case when p.sweep_end > 0 then least(100, round(100.0 * p.hwm::bigint / p.sweep_end)) else 100 end, p.rows_seen, p.rows_updated) end;
    detail := format('fills %s.company_id from the program of the rows written before the push, sweeping the table''s blocks in order (each call at most a moment: the rows it changed stay locked until it commits); new and changed rows get it from trigger set_company_id_from_program',
                     v_live);
    statement := 'select * from partition_mgmt.setup_step()';
    return next;

    -- the index on company_id (the policy's column)
    select i.indexrelid::regclass as name, i.indisvalid as valid into v_index
    from pg_catalog.pg_index i join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
    where i.indrelid = v_live and a.attname = 'company_id'
    order by i.indisvalid desc limit 1;
    ord := ord + 1; task := m.table_key || ':company_id_index'; kind := 'index';
    done := v_partitioned or coalesce(v_index.valid, false);
    progress := case when v_partitioned then 'the table is partitioned: its leaves have their own indexes'
                     when v_index.valid then format('%s exists', v_index.name)
                     when v_index.name is not null then format('%s is INVALID (a concurrent build was interrupted): it is dropped and built again', v_index.name)
                     else 'not built' end;
    detail := format('create index concurrently on %s (company_id): no lock that blocks the app''s writes; it runs outside a transaction, so the drivers run the statement themselves', v_live);
    statement := case when done then null
                      when v_index.name is not null then format('drop index concurrently if exists %s', v_index.name)
                      else format('create index concurrently if not exists %I on %s (company_id)', m.source_table || '_company_id_idx', v_live) end;
    return next;

    -- the rows the app moved behind the sweep, through the index
    ord := ord + 1; task := m.table_key || ':company_id_check'; kind := 'check';
    if v_partitioned then
      done := true; progress := 'the table is partitioned';
    elsif not coalesce(v_index.valid, false) then
      done := false; progress := 'waits for the index on company_id';
    else
      v_missing := partition_mgmt.rows_without_company(m.table_key, 1);
      done := v_missing = 0;
      progress := case when done then 'every row whose program has a company has its company_id' else 'rows without company_id remain' end;
    end if;
    detail := format('rows of %s whose company_id is still NULL though their program has a company (the app moved them behind the sweep while it ran), found through the index and filled in batches', v_live);
    statement := 'select * from partition_mgmt.setup_step()';
    return next;

    -- the company isolation policy
    select string_agg(format('%I (%s)', pol.polname, case when pol.polpermissive then 'permissive' else 'restrictive' end), ', ' order by pol.polname)
      into v_policies from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname <> 'company_isolation_' || m.table_key;
    ord := ord + 1; task := m.table_key || ':company_isolation'; kind := 'policy';
    -- (a policy of that name the project had is compared with the bundle's and reported first)
    done := exists (select from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname = 'company_isolation_' || m.table_key)
            and exists (select from private.deploy_report r where r.object = format('policy %s on %s', 'company_isolation_' || m.table_key, v_live));
    progress := case when done then format('policy company_isolation_%s exists', m.table_key)
                     when exists (select from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname = 'company_isolation_' || m.table_key)
                       then format('a policy company_isolation_%s of yours exists: to be compared with the bundle''s and reported (it is kept)', m.table_key)
                     else 'not created' end;
    detail := case when v_rls then
                     format('RLS is on with your policies %s: adds company_isolation_%s AS RESTRICTIVE for authenticated (ANDed with yours): a signed-in user reads and writes only rows of their own companies; anon, service_role and what your policies refuse stay as they are',
                            coalesce(v_policies, '(none)'), m.table_key)
                   else
                     format('RLS is OFF on %s: enables it with company_isolation_%s (permissive, for authenticated) as the only policy: a signed-in user then reads and writes only rows of their own companies, and anon NOTHING (today both read and write every row the grants allow). To keep anon access, add your own policy for anon before this step',
                            v_live, m.table_key) end;
    statement := 'select * from partition_mgmt.setup_step()';
    return next;
  end loop;

  -- the index the metrics' recompute finds a program, site and day through (a partitioned table
  -- has it: its leaves hold one site, in time order)
  v_live := to_regclass('public.petri_observations');
  if v_live is not null and to_regclass('analytics.metrics_state') is not null then
    v_partitioned := (select c.relkind = 'p' from pg_catalog.pg_class c where c.oid = v_live);
    select i.indexrelid::regclass as name, i.indisvalid as valid into v_index
    from pg_catalog.pg_index i
    where i.indrelid = v_live and i.indnkeyatts >= 3 and i.indpred is null
      and (select array_agg(a.attname::text order by k.ord) from unnest((i.indkey::int2[])[0:2]) with ordinality k(attnum, ord)
           join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum) = array['program_id', 'site_id', 'created_at']
    order by i.indisvalid desc limit 1;
    ord := ord + 1; task := 'metrics_index'; table_key := null; kind := 'index';
    done := v_partitioned or coalesce(v_index.valid, false);
    progress := case when v_partitioned then 'the table is partitioned: its leaves hold one site each, in time order'
                     when v_index.valid then format('%s exists', v_index.name)
                     when v_index.name is not null then format('%s is INVALID (a concurrent build was interrupted): it is dropped and built again', v_index.name)
                     else 'not built' end;
    detail := 'create index concurrently on public.petri_observations (program_id, site_id, created_at): the daily metrics are recomputed a program, site and day at a time through it (no lock that blocks the app''s writes; the migration does not carry it to the partitioned table, whose leaves serve the same reads)';
    statement := case when done then null
                      when v_index.name is not null then format('drop index concurrently if exists %s', v_index.name)
                      else partition_mgmt.metrics_index_statement() end;
    return next;

    ord := ord + 1; task := 'metrics'; table_key := null; kind := 'refresh';
    done := (select s.populated_at is not null from analytics.metrics_state s);
    progress := case when done then 'populated'
                     when (select s.rebuild_started_at is not null from analytics.metrics_state s)
                       then format('%s of %s program/site pairs left', (select count(*) from analytics.metrics_rebuild), (select s.rebuild_pairs from analytics.metrics_state s))
                     else 'empty: public.get_daily_metrics() refuses until it is populated' end;
    detail := 'the first computation of analytics.mv_daily_metrics: lists the program/site pairs of public.petri_observations through the metrics index, then computes one pair at a time (each call at most a moment); maintenance recomputes the groups written since, nightly';
    statement := 'select * from partition_mgmt.setup_step()';
    return next;
  end if;
end
$$;
comment on function partition_mgmt.setup_tasks() is
  'The setup steps the push leaves to run online, in order, with done, progress, what each does and the statement that runs it.';
create or replace function partition_mgmt.setup_pending(p_table_key text default null)
returns integer
language sql stable
set search_path = ''
as $$
  select count(*)::integer from partition_mgmt.setup_tasks() t
  where not t.done and (p_table_key is null or t.table_key = p_table_key)
$$;

-- -----------------------------------------------------------------------------
-- The steps' work
-- -----------------------------------------------------------------------------

-- The rows of a table whose company_id is NULL though their program (or their site's) has a
-- company, at most p_limit of them, as ctids: through the index on company_id (btree finds NULLs),
-- never a scan of the table (the planner's statistics may still say every row is NULL).
create or replace function partition_mgmt.rows_without_company_tids(p_table_key text, p_limit integer)
returns setof tid
language plpgsql stable
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  return query execute format(
    'select o.ctid from %1$s o
     where o.company_id is null
       and exists (select from public.pilot_programs p
                   where p.program_id = coalesce(o.%2$I, (select s.program_id from public.sites s where s.site_id = o.%3$I))
                     and p.company_id is not null)
     limit %4$s',
    partition_mgmt.live_table(p_table_key), c.program_column, c.site_column, p_limit);
end
$$;
create or replace function partition_mgmt.rows_without_company(p_table_key text, p_limit integer)
returns bigint
language sql stable
set search_path = ''
as $$ select count(*) from partition_mgmt.rows_without_company_tids(p_table_key, p_limit) $$;

-- company_id from the program (through the site when program_id is NULL) for the rows at the given
-- ctids, where it differs. The trigger derives it again on this update (it fires on UPDATE OF
-- company_id), so a row whose program the app changes meanwhile still ends up right; a row the app
-- updated since it was read has another ctid and is left to the check step. Returns (rows seen,
-- rows updated, rows corrected: they had another company).
create or replace function partition_mgmt.fill_company_id(p_table_key text, p_where text,
  out rows_seen bigint, out rows_updated bigint, out rows_corrected bigint)
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_live regclass := partition_mgmt.live_table(p_table_key);
begin
  execute format(
    'with r as materialized (select o.ctid as tid, o.company_id, o.%2$I as program_id, o.%3$I as site_id from %1$s o where %4$s)
     , b as (select r.tid, r.company_id as old, p.company_id as new
             from r join public.pilot_programs p on p.program_id = coalesce(r.program_id, (select s.program_id from public.sites s where s.site_id = r.site_id))
             where r.company_id is distinct from p.company_id)
     , u as (update %1$s o set company_id = b.new from b where o.ctid = b.tid returning b.old)
     select (select count(*) from r), count(*), count(*) filter (where old is not null) from u',
    v_live, c.program_column, c.site_column, p_where)
    into rows_seen, rows_updated, rows_corrected;
end
$$;

-- One table's sweep in physical order until p_max_seconds is spent (at least one batch): ranges
-- of blocks, each batch sized toward 50 ms by the last one's time. The sweep ends at the table's
-- size when it started (rows written since got company_id from the trigger). Returns true when
-- the sweep is done.
create or replace function partition_mgmt.setup_company_id_batches(p_table_key text, p_max_seconds numeric)
returns boolean
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_task text := p_table_key || ':company_id';
  v_live regclass := partition_mgmt.live_table(p_table_key);
  p partition_mgmt.setup_progress;
  v_started timestamptz := clock_timestamp();
  v_t0 timestamptz;
  v_from bigint;
  v_blocks integer;
  v_to bigint;
  f record;
  v_last boolean;
  v_ms numeric;
begin
  insert into partition_mgmt.setup_progress (task, started_at, hwm, sweep_end, batch_rows)
  values (v_task, clock_timestamp(), '0', pg_catalog.pg_relation_size(v_live) / current_setting('block_size')::bigint, 8)
  on conflict (task) do nothing;
  select * into p from partition_mgmt.setup_progress where task = v_task for update;
  if p.finished_at is not null then
    return true;
  end if;
  loop
    v_t0 := clock_timestamp();
    v_from := coalesce(p.hwm, '0')::bigint;
    v_blocks := coalesce(p.batch_rows, 8);
    v_to := least(v_from + v_blocks, coalesce(p.sweep_end, 0));
    v_last := v_to >= coalesce(p.sweep_end, 0);
    if v_to > v_from then
      select * into f from partition_mgmt.fill_company_id(p_table_key,
        format('o.ctid >= ''(%s,0)''::tid and o.ctid < ''(%s,0)''::tid', v_from, v_to));
    else
      select 0::bigint as rows_seen, 0::bigint as rows_updated, 0::bigint as rows_corrected into f;
    end if;
    v_ms := greatest(extract(epoch from clock_timestamp() - v_t0) * 1000, 1);
    update partition_mgmt.setup_progress sp
       set hwm = v_to::text, rows_seen = sp.rows_seen + f.rows_seen, rows_updated = sp.rows_updated + f.rows_updated,
           rows_corrected = sp.rows_corrected + f.rows_corrected, batches = sp.batches + 1,
           batch_rows = least(4096, greatest(1, round(v_blocks * 50 / v_ms)::integer)),
           finished_at = case when v_last then clock_timestamp() end, updated_at = now()
     where sp.task = v_task
     returning * into p;
    exit when v_last or clock_timestamp() - v_started >= make_interval(secs => p_max_seconds);
  end loop;
  if v_last then
    perform private.report_deploy(format('rows of %s', v_live), 'company_id filled',
      format('%s rows seen, %s updated (%s had another company than their program''s and were corrected) in %s batches of blocks',
             p.rows_seen, p.rows_updated, p.rows_corrected, p.batches));
  end if;
  return v_last;
end
$$;

-- The check step: the rows the app moved behind the sweep, through the index, in batches of 1,000
-- until p_max_seconds is spent. Returns true when none is left.
create or replace function partition_mgmt.setup_company_id_stragglers(p_table_key text, p_max_seconds numeric)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_started timestamptz := clock_timestamp();
  f record;
begin
  loop
    select * into f from partition_mgmt.fill_company_id(p_table_key,
      format('o.ctid = any (array(select partition_mgmt.rows_without_company_tids(%L, 1000)))', p_table_key));
    exit when f.rows_seen < 1000 or clock_timestamp() - v_started >= make_interval(secs => p_max_seconds);
  end loop;
  return partition_mgmt.rows_without_company(p_table_key, 1) = 0;
end
$$;

-- The plan's company_isolation_<key> policy on the table, never widening what the project's own
-- policies allow: RESTRICTIVE where RLS is on. A policy of that name the project already has is
-- kept (reported when it differs from the bundle's). Where RLS is off, enabling it is what the plan
-- needs on the observation tables; it is reported with what changes.
create or replace function partition_mgmt.ensure_company_isolation(p_table_key text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_live regclass := partition_mgmt.live_table(p_table_key);
  v_name text := 'company_isolation_' || p_table_key;
  v_expr text := partition_mgmt.company_isolation_expression();
  v_probe text := left(v_name, 50) || '__bundle';
  v_existing record;
  v_exists boolean;
  v_wanted record;
  v_rls boolean;
  v_action text;
  v_detail text;
  v_policies text;
begin
  select pol.polcmd, pol.polroles, pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) as qual,
         pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) as chk, pol.polpermissive
    into v_existing from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname = v_name;
  v_exists := found;
  select c.relrowsecurity into v_rls from pg_catalog.pg_class c where c.oid = v_live;
  select string_agg(format('%I', pol.polname), ', ' order by pol.polname) into v_policies
  from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname <> v_name;
  perform private.lock_for_ddl(array[v_live::text]);
  if v_exists then
    -- the bundle's policy under a probe name, deparsed the same way, then compared
    execute format('create policy %I on %s as restrictive for all to authenticated using (%s) with check (%s)', v_probe, v_live, v_expr, v_expr);
    select pol.polcmd, pol.polroles, pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) as qual,
           pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) as chk, pol.polpermissive
      into v_wanted from pg_catalog.pg_policy pol where pol.polrelid = v_live and pol.polname = v_probe;
    execute format('drop policy %I on %s', v_probe, v_live);
    if (v_existing.polcmd, v_existing.polroles, v_existing.qual, v_existing.chk, v_existing.polpermissive)
       is not distinct from (v_wanted.polcmd, v_wanted.polroles, v_wanted.qual, v_wanted.chk, v_wanted.polpermissive) then
      v_action := 'kept (same as the bundle''s)';
    else
      v_action := 'kept (differs)';
      v_detail := format('yours: %s using (%s) with check (%s); the bundle''s: restrictive using (%s) with check (%s)',
                         case when v_existing.polpermissive then 'permissive' else 'restrictive' end,
                         coalesce(v_existing.qual, '-'), coalesce(v_existing.chk, '-'), coalesce(v_wanted.qual, '-'), coalesce(v_wanted.chk, '-'));
      raise notice 'policy % on % exists and differs from the bundle''s; it is kept. %', v_name, v_live, v_detail;
    end if;
  elsif v_rls then
    execute format('create policy %I on %s as restrictive for all to authenticated using (%s) with check (%s)', v_name, v_live, v_expr, v_expr);
    v_action := 'added (restrictive)';
    v_detail := format('ANDed with your policies (%s): a signed-in user reads and writes only rows of their own companies (public.users.company_id), wherever your policies allowed more; anon, service_role and whatever your policies refuse are unchanged',
                       coalesce(v_policies, 'none'));
  else
    execute format('alter table %s enable row level security', v_live);
    execute format('create policy %I on %s as permissive for all to authenticated using (%s) with check (%s)', v_name, v_live, v_expr, v_expr);
    v_action := 'RLS enabled, added (permissive)';
    v_detail := 'RLS was off: anon and authenticated read and wrote every row their grants allowed. Now a signed-in user reads and writes only rows of their own companies, and anon nothing (service_role and the table owner bypass RLS). Add a policy of your own for anon if the app reads this table signed out';
  end if;
  if not v_exists then
    execute format('comment on policy %I on %s is %L', v_name, v_live,
      'Company isolation (partition_mgmt): a signed-in user reads and writes only rows of their own companies. Carried to the partitioned table at the swap.');
  end if;
  perform private.report_deploy(format('policy %s on %s', v_name, v_live), v_action, v_detail);
  return v_action;
end
$$;

-- One bounded step of the first pending setup task (or of p_task), in the caller's transaction.
-- state: 'running' (call again), 'done' (that task is done), 'statement' (run
-- run_outside_transaction yourself, outside any transaction block, then call again), 'busy'
-- (another session is running a step), 'idle' (nothing pending).
-- p_max_seconds: how long one call's batches may run (NULL: 0.25 s, the default every driver uses).
-- The rows a call changed stay locked until its transaction commits, so this bounds how long an app
-- statement may wait for one of them.
create or replace function partition_mgmt.setup_step(p_max_seconds numeric default null, p_task text default null)
returns table (task text, kind text, state text, detail text, run_outside_transaction text, pending integer)
language plpgsql
set search_path = ''
as $$
declare
  t record;
  v_done boolean;
  v_seconds numeric := coalesce(p_max_seconds, 0.25);
begin
  if v_seconds <= 0 or v_seconds > 60 then
    raise exception 'setup_step: p_max_seconds must be between 0 and 60, got %', p_max_seconds
      using errcode = 'invalid_parameter_value', hint = 'Each call holds the rows it changed until it commits: keep it short (the default, NULL, is 0.25 s) and call again.';
  end if;
  if p_task is not null and not exists (select from partition_mgmt.setup_tasks() x where x.task = p_task) then
    raise exception 'setup_step: no setup task %', p_task
      using errcode = 'invalid_parameter_value',
            hint = format('The tasks: %s', (select string_agg(x.task, ', ' order by x.ord) from partition_mgmt.setup_tasks() x));
  end if;
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('partition_mgmt:setup', 0)) then
    return query select p_task, null::text, 'busy'::text, 'another session is running a setup step; call again when it committed'::text, null::text,
                        partition_mgmt.setup_pending();
    return;
  end if;
  select * into t from partition_mgmt.setup_tasks() x where not x.done and (p_task is null or x.task = p_task) order by x.ord limit 1;
  if t.task is null then
    return query select p_task, null::text, 'idle'::text, 'nothing pending'::text, null::text, partition_mgmt.setup_pending();
    return;
  end if;
  if t.kind = 'backfill' then
    v_done := partition_mgmt.setup_company_id_batches(t.table_key, v_seconds);
    return query select t.task, t.kind, case when v_done then 'done' else 'running' end,
      (select x.progress from partition_mgmt.setup_tasks() x where x.task = t.task), null::text, partition_mgmt.setup_pending();
  elsif t.kind = 'index' then
    return query select t.task, t.kind, 'statement'::text, t.progress, t.statement, partition_mgmt.setup_pending();
  elsif t.kind = 'check' then
    v_done := partition_mgmt.setup_company_id_stragglers(t.table_key, v_seconds);
    return query select t.task, t.kind, case when v_done then 'done' else 'running' end,
      (select x.progress from partition_mgmt.setup_tasks() x where x.task = t.task), null::text, partition_mgmt.setup_pending();
  elsif t.kind = 'policy' then
    return query select t.task, t.kind, 'done'::text, partition_mgmt.ensure_company_isolation(t.table_key), null::text, partition_mgmt.setup_pending();
  else
    v_done := analytics.populate_daily_metrics(v_seconds);
    if v_done then
      perform private.report_deploy('table analytics.daily_metrics (read as analytics.mv_daily_metrics)', 'populated',
        'first computation by the setup step metrics; maintenance recomputes the groups written since, nightly');
    end if;
    return query select t.task, t.kind, case when v_done then 'done' else 'running' end,
      (select x.progress from partition_mgmt.setup_tasks() x where x.task = t.task), null::text, partition_mgmt.setup_pending();
  end if;
end
$$;
comment on function partition_mgmt.setup_step(numeric, text) is
  'One bounded step of the setup the push left to run online (see partition_mgmt.setup_tasks()). Call it in a transaction of its own until state is idle; '
  'when state is statement, run run_outside_transaction (create index concurrently) outside any transaction, then call again.';

-- For psql: select partition_mgmt.setup_runner() \gexec runs every pending step, each statement at
-- the top level (the batches in a DO block that commits between calls; the index builds as
-- statements of their own).
create or replace function partition_mgmt.setup_runner()
returns setof text
language plpgsql stable
set search_path = ''
as $fn$
declare
  t record;
begin
  for t in select * from partition_mgmt.setup_tasks() x where not x.done order by x.ord loop
    if t.kind in ('backfill', 'check') then
      return next format($do$do $run$ declare r record; begin loop select * into r from partition_mgmt.setup_step(null, %L); exit when r.state not in ('running', 'busy'); commit; end loop; end $run$$do$, t.task);
    elsif t.kind = 'index' then
      if t.statement like 'drop index%' then
        return next t.statement;
      end if;
      if t.task = 'metrics_index' then
        return next partition_mgmt.metrics_index_statement();
      else
        return next format('create index concurrently if not exists %I on %s (company_id)',
                           (select m.source_table from partition_mgmt.managed_tables m where m.table_key = t.table_key) || '_company_id_idx',
                           partition_mgmt.live_table(t.table_key));
      end if;
    elsif t.kind = 'refresh' then
      return next format($do$do $run$ declare r record; begin loop select * into r from partition_mgmt.setup_step(null, %L); exit when r.state not in ('running', 'busy'); commit; end loop; end $run$$do$, t.task);
    else
      return next format('select * from partition_mgmt.setup_step(null, %L)', t.task);
    end if;
  end loop;
end
$fn$;

-- -----------------------------------------------------------------------------
-- The app's other tables: access the bundle does not change, and what to run to opt in
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.app_table_access()
returns table (table_name text, rls_enabled boolean, policies text, status text, detail text, opt_in_sql text)
language plpgsql stable
set search_path = ''
as $$
declare
  r record;
  v_expr text := partition_mgmt.company_isolation_expression();
  v_using text;
begin
  for r in select x.t, x.expr from (values
             ('public.companies', 'company_id = any ((select private.user_company_ids())::uuid[])'),
             ('public.users', 'id = (select auth.uid()) or company_id = any ((select private.user_company_ids())::uuid[])'),
             ('public.pilot_programs', v_expr),
             ('public.sites', 'program_id in (select p.program_id from public.pilot_programs p where p.company_id = any ((select private.user_company_ids())::uuid[]))'),
             ('public.submissions', 'program_id in (select p.program_id from public.pilot_programs p where p.company_id = any ((select private.user_company_ids())::uuid[]))'))
           as x(t, expr) where to_regclass(x.t) is not null loop
    table_name := r.t;
    select c.relrowsecurity into rls_enabled from pg_catalog.pg_class c where c.oid = r.t::regclass;
    select string_agg(format('%I (%s %s)', pol.polname, case when pol.polpermissive then 'permissive' else 'restrictive' end,
                             case pol.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end),
                      ', ' order by pol.polname)
      into policies from pg_catalog.pg_policy pol where pol.polrelid = r.t::regclass;
    v_using := r.expr;
    if rls_enabled then
      status := 'ok';
      detail := format('RLS on with your policies %s; the bundle adds none here and changes no answer. Company isolation as a second guard (restrictive: it can only narrow what your policies allow) is yours to add', coalesce(policies, '(none: nobody but the owner and service_role reads it)'));
      opt_in_sql := format('create policy %I on %s as restrictive for all to authenticated using (%s);', 'company_isolation_' || split_part(r.t, '.', 2), r.t, v_using);
    else
      status := 'warning';
      detail := format('RLS is OFF: anon and authenticated read and write every row their grants allow; the bundle leaves it so (turning it on would change what your app''s calls return). To isolate companies, run the opt-in SQL after adding the policies your app needs');
      opt_in_sql := format('alter table %s enable row level security; create policy %I on %s for all to authenticated using (%s);',
                           r.t, 'company_isolation_' || split_part(r.t, '.', 2), r.t, v_using);
    end if;
    if r.t = 'public.users' and (not rls_enabled or exists (
          select from pg_catalog.pg_policy pol where pol.polrelid = 'public.users'::regclass and pol.polpermissive and pol.polcmd in ('w', '*')))
       and pg_catalog.has_column_privilege('authenticated', 'public.users', 'company_id', 'UPDATE') then
      status := 'warning';
      detail := detail || '. Company isolation trusts public.users.company_id: authenticated may UPDATE that column, so make sure your policies (or a trigger) stop a user from changing their own company';
    end if;
    return next;
  end loop;
end
$$;
comment on function partition_mgmt.app_table_access() is
  'The app''s tables the bundle reads but does not change: RLS state, the project''s policies, and the SQL to opt in to company isolation there.';

-- What the push leaves: one row per app table in the deploy report
select private.report_deploy(format('access of %s', a.table_name), 'unchanged',
         format('%s Opt in: %s', a.detail, a.opt_in_sql))
from partition_mgmt.app_table_access() a;
revoke all on function partition_mgmt.company_isolation_expression() from public, anon, authenticated;
revoke all on function partition_mgmt.metrics_index_statement() from public, anon, authenticated;
revoke all on function partition_mgmt.setup_tasks() from public, anon, authenticated;
revoke all on function partition_mgmt.setup_pending(text) from public, anon, authenticated;
revoke all on function partition_mgmt.setup_company_id_batches(text, numeric) from public, anon, authenticated;
revoke all on function partition_mgmt.ensure_company_isolation(text) from public, anon, authenticated;
revoke all on function partition_mgmt.rows_without_company_tids(text, integer) from public, anon, authenticated;
revoke all on function partition_mgmt.rows_without_company(text, integer) from public, anon, authenticated;
revoke all on function partition_mgmt.fill_company_id(text, text) from public, anon, authenticated;
revoke all on function partition_mgmt.setup_company_id_stragglers(text, numeric) from public, anon, authenticated;
revoke all on function partition_mgmt.setup_step(numeric, text) from public, anon, authenticated;
revoke all on function partition_mgmt.setup_runner() from public, anon, authenticated;
revoke all on function partition_mgmt.app_table_access() from public, anon, authenticated;
grant execute on function partition_mgmt.setup_tasks() to service_role;
grant execute on function partition_mgmt.setup_pending(text) to service_role;
grant execute on function partition_mgmt.setup_step(numeric, text) to service_role;
grant execute on function partition_mgmt.setup_runner() to service_role;
grant execute on function partition_mgmt.app_table_access() to service_role;
