-- =============================================================================
-- Read and write API (the plan's "Application Code Updates"): by id
-- (get/update/delete_observation_by_id, routed to the one leaf that holds the row),
-- get_observations_optimized, aggregates and the submission-level views.
--
-- They read the LIVE table (legacy before the swap, the tree after it) with the partition keys as
-- literals, so the planner prunes at plan time; SECURITY INVOKER, so RLS decides what the caller
-- sees. Generated per managed table by partition_mgmt.install_read_api(), because their row type is
-- the live table's: the swap and the rollback call it again.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- Routed access by id: one leaf instead of planning every partition
-- -----------------------------------------------------------------------------

-- Keys of one observation (nothing of its content), for a caller who may see it: SECURITY
-- DEFINER so API roles can route without reading the key table, but only through the programs of
-- the caller's companies (private.user_company_ids(), as the tables' RLS) unless the caller's role
-- bypasses RLS. The caller's role is the one SET ROLE set (PostgREST, the edge functions), or the
-- session user: inside this function current_user is its owner. The statement that follows still
-- runs under RLS.

create or replace function partition_mgmt.route(p_table_key text, p_observation_id uuid,
  out program_id uuid, out site_id uuid, out created_at timestamptz)
language plpgsql stable
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
begin
  -- (PL/pgSQL, not SQL: a SQL function that cannot be inlined plans its statement on every call;
  -- this one plans it once per session, generic: a primary key probe whatever the id. The
  -- setting is needed: its callers force custom plans for their keyed statements, and a custom
  -- plan of this statement on every call costs more than the rest of the call.)
  select k.program_id, k.site_id, k.created_at into program_id, site_id, created_at
  from partition_mgmt.observation_keys k
  where k.table_key = p_table_key and k.observation_id = p_observation_id
    and (coalesce((select r.rolbypassrls from pg_catalog.pg_roles r
                   where r.rolname = coalesce(nullif(current_setting('role', true), 'none'), session_user)), false)
         or exists (select from public.pilot_programs p
                    where p.program_id = k.program_id and p.company_id = any ((select private.user_company_ids())::uuid[])));
end
$$;
revoke all on function partition_mgmt.route(text, uuid) from public;
grant execute on function partition_mgmt.route(text, uuid) to authenticated, service_role;
grant usage on schema partition_mgmt to authenticated;
grant select on partition_mgmt.managed_tables to authenticated, service_role;

-- The table the app reads and writes for a managed table right now: the partitioned parent once
-- it has been swapped in under the legacy name, the legacy table before that.
create or replace function partition_mgmt.live_table(p_table_key text)
returns regclass
language sql stable
set search_path = ''
as $$
  select format('%I.%I', source_schema, source_table)::regclass from partition_mgmt.managed_tables where table_key = p_table_key
$$;

-- The name of a managed table's generated routed function (install_read_api creates them):
-- <table_key>_fetch_by_id, _update_by_id, _delete_by_id.
create or replace function partition_mgmt.routed_function(p_table_key text, p_action text)
returns text
language sql immutable
set search_path = ''
as $$
  select format('partition_mgmt.%I', p_table_key || '_' || p_action || '_by_id')
$$;

-- Raises the API's error when a key of p_changes is not a column of p_table (called by the
-- generated update functions only when a statement failed or found no row: no check per call).
create or replace function partition_mgmt.assert_columns_exist(p_table regclass, p_changes jsonb)
returns void
language plpgsql stable
set search_path = ''
as $$
declare
  v_unknown text;
begin
  select string_agg(k, ', ') into v_unknown from jsonb_object_keys(p_changes) k
  where not exists (select from pg_catalog.pg_attribute a where a.attrelid = p_table and a.attname = k and a.attnum > 0 and not a.attisdropped);
  if v_unknown is not null then
    raise exception 'unknown column(s) for %: %', p_table, v_unknown using hint = 'Keys of p_changes must be column names of the table.';
  end if;
end
$$;

-- public API -------------------------------------------------------------------
-- Generated over every managed table by install_routed_dispatch() (install_read_api calls it):
-- the table's names as literals pick its generated function in a static call, whose plan
-- PL/pgSQL keeps for the session (no table resolution by query, no dynamic statement per call).
-- An unknown name gets resolve_table_key's error, which lists the managed tables.
create or replace function partition_mgmt.install_routed_dispatch()
returns void
language plpgsql
set search_path = ''
as $install$
declare
  v_action text;
  v_branches text;
  c partition_mgmt.managed_tables;
begin
  foreach v_action in array array['fetch', 'update', 'delete'] loop
    v_branches := '';
    for c in select * from partition_mgmt.managed_tables order by table_key loop
      -- every name resolve_table_key accepts for the table
      v_branches := v_branches || format($b$
      when %L, %L, %L, %L, %L then
        if p_observation_id is null then
          raise exception 'observation_id must not be null' using hint = 'Pass the id of the observation.';
        end if;
        return %s(p_observation_id%s);$b$,
        c.table_key, c.source_table, c.source_schema || '.' || c.source_table, c.partitioned_table, c.source_schema || '.' || c.partitioned_table,
        partition_mgmt.routed_function(c.table_key, v_action), case v_action when 'update' then ', p_changes' else '' end);
    end loop;
    execute format($f$
    create or replace function public.%1$s
    returns %2$s
    language plpgsql%3$s
    set search_path = ''
    as $fn$
    begin%4$s
      case p_table%5$s
      else
        perform partition_mgmt.resolve_table_key(p_table);
      end case;
      raise exception 'table "%%" has no routed functions', p_table using hint = 'Run select partition_mgmt.install_read_api(<table_key>).';
    end
    $fn$$f$,
      case v_action when 'fetch' then 'get_observation_by_id(p_table text, p_observation_id uuid)'
                    when 'update' then 'update_observation_by_id(p_table text, p_observation_id uuid, p_changes jsonb)'
                    else 'delete_observation_by_id(p_table text, p_observation_id uuid)' end,
      case v_action when 'delete' then 'boolean' else 'jsonb' end,
      case v_action when 'fetch' then ' stable' else '' end,
      case v_action when 'update' then $p$
      if p_changes is null or jsonb_typeof(p_changes) <> 'object' or p_changes = '{}'::jsonb then
        perform partition_mgmt.resolve_table_key(p_table);
        raise exception 'p_changes must be a non-empty JSON object of column -> new value, got %', coalesce(p_changes::text, 'null');
      end if;$p$ else '' end,
      v_branches);
  end loop;
end
$install$;
select partition_mgmt.install_routed_dispatch();
comment on function public.update_observation_by_id(text, uuid, jsonb) is
  'Routed update by id: looks up the row''s partition keys and updates with them, so only one leaf is planned. Use instead of .update().eq(''observation_id'', …) on a partitioned table. RLS applies.';
comment on function public.delete_observation_by_id(text, uuid) is
  'Routed delete by id (one leaf planned). RLS applies.';
comment on function public.get_observation_by_id(text, uuid) is
  'Routed fetch by id (one leaf planned), as JSON. RLS applies.';
revoke all on function public.get_observation_by_id(text, uuid) from public, anon;
revoke all on function public.update_observation_by_id(text, uuid, jsonb) from public, anon;
revoke all on function public.delete_observation_by_id(text, uuid) from public, anon;
grant execute on function public.get_observation_by_id(text, uuid) to authenticated, service_role;
grant execute on function public.update_observation_by_id(text, uuid, jsonb) to authenticated, service_role;
grant execute on function public.delete_observation_by_id(text, uuid) to authenticated, service_role;
grant execute on function partition_mgmt.live_table(text), partition_mgmt.assert_columns_exist(regclass, jsonb),
  partition_mgmt.routed_function(text, text) to authenticated, service_role;

-- Parses a keyset cursor "<created_at ISO-8601>|<observation_id>" or raises an error that says why.
create or replace function partition_mgmt.parse_cursor(p_cursor text, out cursor_ts timestamptz, out cursor_id uuid)
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_cursor is null then
    return;
  end if;
  if p_cursor !~ '^[^|]+\|[0-9a-fA-F-]{36}$' then
    raise exception 'invalid cursor "%"', left(p_cursor, 100)
      using errcode = '22023', hint = 'Pass the next_cursor value returned by the previous page unchanged.';
  end if;
  begin
    cursor_ts := split_part(p_cursor, '|', 1)::timestamptz;
    cursor_id := split_part(p_cursor, '|', 2)::uuid;
  exception when others then
    raise exception 'invalid cursor "%": %', left(p_cursor, 100), sqlerrm
      using errcode = '22023', hint = 'Pass the next_cursor value returned by the previous page unchanged.';
  end;
end
$$;

-- The caller may read p_company_id: a member of it, or a role that bypasses RLS (service_role).
create or replace function partition_mgmt.assert_company_access(p_company_id uuid)
returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if p_company_id is null then
    raise exception 'p_company_id must not be null' using errcode = '22004', hint = 'Pass the company whose observations you want.';
  end if;
  if (select rolbypassrls from pg_catalog.pg_roles where rolname = current_user) then
    return;
  end if;
  if not (p_company_id = any (private.user_company_ids())) then
    raise exception 'company % is not one of your companies', p_company_id
      using errcode = '42501', hint = 'Pass the company_id of your own company (public.users.company_id).';
  end if;
end
$$;

-- The filter both read statements share (the page and the aggregates), with every key as a
-- literal (plan-time pruning): the company, the program, and the site, submission and period when
-- given. Validates them (the caller's company, the program of that company, the period's order);
-- returns 'false' when a submission cannot match (another program or site, or none).
create or replace function partition_mgmt.observations_filter(
  p_table_key text,
  p_company_id uuid,
  p_program_id uuid,
  p_start_date timestamptz default null,
  p_end_date timestamptz default null,
  p_site_id uuid default null,
  p_submission_id uuid default null)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_where text[];
  v_site uuid := p_site_id;
  v_sub record;
begin
  perform partition_mgmt.assert_company_access(p_company_id);
  if p_program_id is null then
    raise exception 'p_program_id must not be null' using errcode = '22004', hint = 'Pass the program to read.';
  end if;
  if p_start_date is not null and p_end_date is not null and p_end_date < p_start_date then
    raise exception 'p_end_date % is before p_start_date %', p_end_date, p_start_date
      using errcode = '22023', hint = 'Swap them, or leave p_end_date null for "until now".';
  end if;
  if not exists (select from public.pilot_programs p where p.program_id = p_program_id and p.company_id = p_company_id) then
    raise exception 'program % does not belong to company % (or is not visible to you)', p_program_id, p_company_id
      using errcode = '42501', hint = 'Pass a program_id of the given company.';
  end if;
  if p_submission_id is not null then
    -- a submission pins the site: prune to it
    select s.site_id, s.program_id into v_sub from public.submissions s where s.submission_id = p_submission_id;
    if v_sub.site_id is null or v_sub.program_id <> p_program_id or (v_site is not null and v_sub.site_id <> v_site) then
      return 'false';
    end if;
    v_site := v_sub.site_id;
  end if;

  -- (the program belongs to the company, checked above; company_id itself is not read, so the rows
  -- written before the push read the same before the setup step filled their company_id)
  v_where := array[format('t.%I = %L', c.program_column, p_program_id)];
  if v_site is not null then
    v_where := v_where || format('t.%I = %L', c.site_column, v_site);
  end if;
  if p_start_date is not null then
    v_where := v_where || format('t.%I >= %L', c.time_column, p_start_date);
  end if;
  if p_end_date is not null then
    v_where := v_where || format('t.%I < %L', c.time_column, p_end_date);
  end if;
  if p_submission_id is not null then
    v_where := v_where || format('t.submission_id = %L', p_submission_id);
  end if;
  return array_to_string(v_where, ' and ');
end
$$;
grant execute on function partition_mgmt.observations_filter(text, uuid, uuid, timestamptz, timestamptz, uuid, uuid)
  to authenticated, service_role;

-- The statement get_observations_optimized runs: the shared filter, the cursor, newest first.
-- Validates the arguments; returns a statement that yields no rows when nothing can match.
-- Separate from the RPC so tests and operators can EXPLAIN exactly what runs.
create or replace function partition_mgmt.build_observations_query(
  p_table_key text,
  p_company_id uuid,
  p_program_id uuid,
  p_start_date timestamptz default null,
  p_end_date timestamptz default null,
  p_site_id uuid default null,
  p_submission_id uuid default null,
  p_limit integer default 100,
  p_cursor text default null)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_where text;
  v_cursor record;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'p_limit must be between 1 and 1000, got %', coalesce(p_limit::text, 'null') using errcode = '22023';
  end if;
  v_where := partition_mgmt.observations_filter(p_table_key, p_company_id, p_program_id, p_start_date, p_end_date, p_site_id, p_submission_id);
  select * into v_cursor from partition_mgmt.parse_cursor(p_cursor);
  if v_cursor.cursor_ts is not null then
    v_where := v_where || format(' and (t.%I, t.%I) < (%L::timestamptz, %L::uuid)', c.time_column, c.id_column, v_cursor.cursor_ts, v_cursor.cursor_id);
  end if;
  return format('select t.* from %s t where %s order by t.%I desc, t.%I desc limit %s',
    partition_mgmt.live_table(p_table_key), v_where, c.time_column, c.id_column, p_limit);
end
$$;
grant execute on function partition_mgmt.build_observations_query(text, uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text)
  to authenticated, service_role;

-- The statement get_observation_aggregates runs: counts and growth_index statistics per UTC day
-- or per site over the shared filter, at most p_limit groups in group order. EXPLAIN-able like
-- build_observations_query.
create or replace function partition_mgmt.build_aggregates_query(
  p_table_key text,
  p_company_id uuid,
  p_program_id uuid,
  p_group_by text default 'day',
  p_start_date timestamptz default null,
  p_end_date timestamptz default null,
  p_site_id uuid default null,
  p_submission_id uuid default null,
  p_limit integer default 1000)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_live regclass := partition_mgmt.live_table(p_table_key);
begin
  if p_group_by is null or p_group_by not in ('day', 'site') then
    raise exception 'p_group_by must be day or site, got %', coalesce(quote_literal(p_group_by), 'null')
      using errcode = '22023', hint = 'day: one row per UTC day; site: one row per site.';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    raise exception 'p_limit must be between 1 and 10000, got %', coalesce(p_limit::text, 'null') using errcode = '22023';
  end if;
  if not exists (select from pg_catalog.pg_attribute a where a.attrelid = v_live and a.attname = 'growth_index' and not a.attisdropped) then
    raise exception '% has no growth_index column to aggregate', v_live
      using errcode = '42703', hint = 'Aggregates are defined for the petri observations (table_key petri).';
  end if;
  return format(
    'select %s as day, %s as site_id, count(*) as observation_count, count(t.growth_index) as growth_index_count, '
    'avg(t.growth_index)::float8 as avg_growth_index, min(t.growth_index)::float8 as min_growth_index, '
    'max(t.growth_index)::float8 as max_growth_index, stddev_samp(t.growth_index)::float8 as stddev_growth_index, '
    'min(t.%3$I) as first_observation_at, max(t.%3$I) as last_observation_at '
    'from %4$s t where %5$s group by 1, 2 order by 1, 2 limit %6$s',
    case p_group_by when 'day' then format('(t.%I at time zone %L)::date', c.time_column, 'UTC') else 'null::date' end,
    case p_group_by when 'site' then format('t.%I', c.site_column) else 'null::uuid' end,
    c.time_column, v_live,
    partition_mgmt.observations_filter(p_table_key, p_company_id, p_program_id, p_start_date, p_end_date, p_site_id, p_submission_id),
    p_limit);
end
$$;
grant execute on function partition_mgmt.build_aggregates_query(text, uuid, uuid, text, timestamptz, timestamptz, uuid, uuid, integer)
  to authenticated, service_role;

-- Counts and growth_index statistics of the petri observations per UTC day or per site, read from
-- the live table as the caller (RLS applies; fresh, unlike analytics.mv_daily_metrics), pruned
-- like get_observations_optimized. What the edge function's aggregate mode returns.
create or replace function public.get_observation_aggregates(
  p_company_id uuid,
  p_program_id uuid,
  p_group_by text default 'day',
  p_start_date timestamptz default null,
  p_end_date timestamptz default null,
  p_site_id uuid default null,
  p_submission_id uuid default null,
  p_limit integer default 1000)
returns table (day date, site_id uuid, observation_count bigint, growth_index_count bigint, avg_growth_index float8,
  min_growth_index float8, max_growth_index float8, stddev_growth_index float8,
  first_observation_at timestamptz, last_observation_at timestamptz)
language plpgsql stable
set search_path = ''
as $$
begin
  return query execute partition_mgmt.build_aggregates_query('petri', p_company_id, p_program_id, p_group_by,
    p_start_date, p_end_date, p_site_id, p_submission_id, p_limit);
end
$$;
comment on function public.get_observation_aggregates(uuid, uuid, text, timestamptz, timestamptz, uuid, uuid, integer) is
  'Counts and growth_index statistics of petri_observations per UTC day (p_group_by day) or per site (site), at most p_limit groups in order; filters and checks as get_observations_optimized. RLS applies.';
revoke all on function public.get_observation_aggregates(uuid, uuid, text, timestamptz, timestamptz, uuid, uuid, integer) from public, anon;
grant execute on function public.get_observation_aggregates(uuid, uuid, text, timestamptz, timestamptz, uuid, uuid, integer) to authenticated, service_role;

create or replace function partition_mgmt.install_read_api(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_live regclass := partition_mgmt.live_table(p_table_key);
  v_fn text := case when c.table_key = 'petri' then 'get_observations_optimized' else format('get_%s_optimized', c.source_table) end;
  v_rows_fn text := format('%s_rows_for_submission', c.table_key);
  v_view text := format('%s_by_submission', c.source_table);
  v_view_cols text;
  v_partitioned boolean;
  v_route text;
  v_found text;
  v_keyed text;
  v_custom text;
  v_route_var text;
  v_action text;
begin
  -- ---------------------------------------------------------------------------
  -- get_observations_optimized (plan signature first, then the optional filters)
  -- ---------------------------------------------------------------------------
  execute format('drop function if exists public.%I(uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text)', v_fn);
  execute format($f$
    create function public.%1$I(
      p_company_id uuid,
      p_program_id uuid,
      p_start_date timestamptz default null,
      p_end_date timestamptz default null,
      p_site_id uuid default null,
      p_submission_id uuid default null,
      p_limit integer default 100,
      p_cursor text default null)
    returns setof %2$s
    language plpgsql stable
    set search_path = ''
    as $fn$
    begin
      return query execute partition_mgmt.build_observations_query(%3$L, p_company_id, p_program_id, p_start_date,
        p_end_date, p_site_id, p_submission_id, p_limit, p_cursor);
    end
    $fn$$f$, v_fn, v_live, c.table_key);
  execute format('comment on function public.%I(uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text) is %L', v_fn,
    format('Partition-aware read of %s: pruned to the program (and site/period when given), newest first, keyset-paginated '
           '(cursor = "<%s>|<%s>" of the last row). RLS applies; p_company_id must be one of the caller''s companies.',
           c.source_table, c.time_column, c.id_column));
  execute format('revoke all on function public.%I(uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text) from public, anon', v_fn);
  execute format('grant execute on function public.%I(uuid, uuid, timestamptz, timestamptz, uuid, uuid, integer, text) to authenticated, service_role', v_fn);

  -- ---------------------------------------------------------------------------
  -- Routed access by id: <key>_fetch_by_id, <key>_update_by_id, <key>_delete_by_id, with the live
  -- table and its columns in their text. Static statements: PL/pgSQL keeps their plans for the
  -- session. On the partitioned table the row's keys come from the key table (route(), which
  -- checks the caller's companies) and the statement carries them, so it reads one leaf; on an
  -- unpartitioned one the primary key finds the id. The swap and the swap back run this again.
  -- ---------------------------------------------------------------------------
  v_partitioned := (select relkind from pg_catalog.pg_class where oid = v_live) = 'p';
  -- an assignment, not SELECT … INTO: PL/pgSQL evaluates it as an expression, without starting a
  -- query for it
  v_route := case when v_partitioned then format('k := partition_mgmt.route(%L, p_observation_id);', c.table_key) else '' end;
  -- PL/pgSQL keeps a static statement prepared and, after five custom plans, may switch to a
  -- generic one: on a partitioned table that plan prunes only at run time, after locking every
  -- leaf (PostgreSQL 15 and 17), which a small tree's cost estimate can make look cheaper. So the
  -- routed statements are planned with their keys on every call (one leaf in the plan).
  v_custom := case when v_partitioned then 'set plan_cache_mode = force_custom_plan' else '' end;
  v_found := case when v_partitioned then 'k.program_id is not null' else 'true' end;
  v_route_var := case when v_partitioned then 'k record;  -- the row''s keys' else '' end;
  v_keyed := case when v_partitioned
    then format('t.%I = p_observation_id and t.%I = k.program_id and t.%I = k.site_id and t.%I = k.created_at',
      c.id_column, c.program_column, c.site_column, c.time_column)
    else format('t.%I = p_observation_id', c.id_column) end;
  execute format($f$
    create or replace function %1$s(p_observation_id uuid)
    returns jsonb
    language plpgsql stable
    set search_path = ''
    %6$s
    as $fn$
    declare
      %8$s
      v_row jsonb;
    begin
      %2$s
      if %3$s then
        select to_jsonb(t) into v_row from %4$s t where %5$s;
      end if;
      return v_row;
    end
    $fn$$f$, partition_mgmt.routed_function(c.table_key, 'fetch'), v_route, v_found, v_live, v_keyed, v_custom, null, v_route_var);

  -- an update or delete racing with an update that moves the row to another partition fails with
  -- 40001 ("tuple to be locked was already moved to another partition") where an unpartitioned
  -- table would wait: route again (the key table has the new keys) and retry. The update's column
  -- list is the caller's, so its statement is built per call, with the keys as parameters.
  execute format($f$
    create or replace function %1$s(p_observation_id uuid, p_changes jsonb)
    returns jsonb
    language plpgsql
    set search_path = ''
    as $fn$
    declare
      %8$s
      v_cols text := (select string_agg(format('%%I', c), ', ') from jsonb_object_keys(p_changes) c);
      v_row jsonb;
    begin
      for v_attempt in 1..5 loop
        begin
          %2$s
          if not (%3$s) then
            perform partition_mgmt.assert_columns_exist(%4$L, p_changes);
            return null;
          end if;
          execute format('update %4$s t set (%%1$s) = (select %%1$s from jsonb_populate_record(null::%4$s, $1)) where %6$s returning to_jsonb(t)', v_cols)
            into v_row using p_changes, p_observation_id%7$s;
          return v_row;
        exception
          when serialization_failure then
            if v_attempt = 5 then
              raise;
            end if;
          when undefined_column then
            perform partition_mgmt.assert_columns_exist(%4$L, p_changes);
            raise;
        end;
      end loop;
      return v_row;
    end
    $fn$$f$, partition_mgmt.routed_function(c.table_key, 'update'), v_route, v_found, v_live, null,
    case when v_partitioned
      then format('t.%I = $2 and t.%I = $3 and t.%I = $4 and t.%I = $5', c.id_column, c.program_column, c.site_column, c.time_column)
      else format('t.%I = $2', c.id_column) end,
    case when v_partitioned then ', k.program_id, k.site_id, k.created_at' else '' end, v_route_var);

  execute format($f$
    create or replace function %1$s(p_observation_id uuid)
    returns boolean
    language plpgsql
    set search_path = ''
    %6$s
    as $fn$
    declare
      %8$s
    begin
      for v_attempt in 1..5 loop
        begin
          %2$s
          if not (%3$s) then
            return false;
          end if;
          delete from %4$s t where %5$s;
          return found;
        exception when serialization_failure then
          if v_attempt = 5 then
            raise;
          end if;
        end;
      end loop;
      return false;
    end
    $fn$$f$, partition_mgmt.routed_function(c.table_key, 'delete'), v_route, v_found, v_live, v_keyed, v_custom, null, v_route_var);
  foreach v_action in array array['fetch', 'update', 'delete'] loop
    execute format('revoke all on function %s from public', partition_mgmt.routed_function(c.table_key, v_action)
      || case v_action when 'update' then '(uuid, jsonb)' else '(uuid)' end);
    execute format('grant execute on function %s to authenticated, service_role', partition_mgmt.routed_function(c.table_key, v_action)
      || case v_action when 'update' then '(uuid, jsonb)' else '(uuid)' end);
  end loop;

  -- ---------------------------------------------------------------------------
  -- <table>_by_submission: .eq('submission_id', …) prunes to the submission's site
  -- ---------------------------------------------------------------------------
  execute format('drop view if exists public.%I', v_view);
  execute format('drop function if exists partition_mgmt.%I(uuid, uuid, uuid)', v_rows_fn);
  execute format($f$
    create function partition_mgmt.%1$I(p_program_id uuid, p_site_id uuid, p_submission_id uuid)
    returns setof %2$s
    language plpgsql stable
    rows 50
    set search_path = ''
    %5$s
    as $fn$
    begin
      return query select t.* from %2$s t where t.%3$I = p_program_id and t.%4$I = p_site_id and t.submission_id = p_submission_id;
    end
    $fn$$f$, v_rows_fn, v_live, c.program_column, c.site_column, v_custom);
  execute format('revoke all on function partition_mgmt.%I(uuid, uuid, uuid) from public', v_rows_fn);
  execute format('grant execute on function partition_mgmt.%I(uuid, uuid, uuid) to authenticated, service_role', v_rows_fn);

  -- the view's submission_id is the submissions table's, so a filter on it reaches the primary key
  select string_agg(case when attname = 'submission_id' then 's.submission_id' else format('r.%I', attname) end, ', ' order by attnum)
    into v_view_cols
  from pg_catalog.pg_attribute where attrelid = v_live and attnum > 0 and not attisdropped;
  execute format('create view public.%I with (security_invoker = true) as
                  select %s from public.submissions s
                  cross join lateral partition_mgmt.%I(s.program_id, s.site_id, s.submission_id) r',
    v_view, v_view_cols, v_rows_fn);
  execute format('comment on view public.%I is %L', v_view,
    format('Submission-level access to %s: filter with .eq(''submission_id'', …); reads only the submission''s site partitions. RLS applies (security_invoker).', c.source_table));
  execute format('revoke all on public.%I from public, anon', v_view);
  execute format('grant select on public.%I to authenticated, service_role', v_view);

  -- the public functions, which name every managed table's generated ones
  perform partition_mgmt.install_routed_dispatch();
end
$install$;

grant execute on function partition_mgmt.parse_cursor(text), partition_mgmt.assert_company_access(uuid) to authenticated, service_role;

select partition_mgmt.install_read_api(table_key) from partition_mgmt.managed_tables order by table_key;

-- How many distinct partitions a statement's plan reads (plan-time pruning; partitions removed at
-- run time still count). For operators checking a query, and for the pruning tests.
create or replace function partition_mgmt.explain_partitions(p_sql text)
returns table (partitions_scanned integer, partition_names text[])
language plpgsql
set search_path = ''
as $$
declare
  v_plan jsonb;
begin
  execute 'explain (format json, costs off) ' || p_sql into v_plan;
  return query
    select count(distinct r.rel)::integer, array_agg(distinct r.rel order by r.rel)
    from (select n #>> '{}' as rel from jsonb_path_query(v_plan, 'strict $.**."Relation Name"') n) r
    where exists (select from partition_mgmt.partition_registry g where g.partition_name = r.rel);
end
$$;
grant execute on function partition_mgmt.explain_partitions(text) to service_role;

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
