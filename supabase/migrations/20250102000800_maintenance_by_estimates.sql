-- =============================================================================
-- Maintenance by estimates (issue 11): the nightly run reads what changed, not every row.
--
-- At the bench's full scale (5M petri rows, 21 leaves of about 250,000 rows) a maintenance run
-- took 17.5 s, and 9.9 s of it re-read tables that had barely changed:
--   * analyze: every leaf with any change since its last analyze was analyzed again (8.4 s for
--     20 leaves after a few thousand inserts). Autovacuum analyzes leaves itself once
--     n_mod_since_analyze passes its threshold (autovacuum_analyze_threshold +
--     autovacuum_analyze_scale_factor × reltuples); the run now analyzes only what autovacuum
--     would and has not yet, leaves never analyzed, and, where autovacuum is off for a leaf or the
--     server, any leaf that changed;
--   * promote: every shared DEFAULT leaf near the target was counted per program or site
--     (1.5 s). A leaf is now counted only when its statistics allow one value to reach 90% of
--     the target: the largest share a value can have (its most-common-value frequency, or all
--     the rows outside that list) times the row estimate, plus every row changed since the
--     statistics were taken. No statistics: counted, as before.
-- Released migrations are history: this one replaces the two functions of 0500 and 0600.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

-- Rows changed in p_rel since its last analyze beyond which it is analyzed again: autovacuum's own
-- threshold (the table's storage parameters first, then the server's settings), 0 when autovacuum
-- does not run on it.

create or replace function partition_mgmt.analyze_threshold(p_rel regclass)
returns double precision
language sql stable
set search_path = ''
as $$
  select case
    when not pg_catalog.current_setting('autovacuum')::boolean
      or coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_enabled')::boolean, true) = false then 0
    else coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_analyze_threshold')::double precision,
                  pg_catalog.current_setting('autovacuum_analyze_threshold')::double precision)
       + coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_analyze_scale_factor')::double precision,
                  pg_catalog.current_setting('autovacuum_analyze_scale_factor')::double precision)
         * greatest(k.reltuples, 0)
    end
  from pg_catalog.pg_class k
  where k.oid = p_rel
$$;
comment on function partition_mgmt.analyze_threshold(regclass) is
  'Rows changed since the last analyze beyond which maintenance analyzes the leaf: autovacuum''s analyze threshold (storage parameters, then server settings); 0 where autovacuum is off.';

-- The most rows one value of p_column can have in p_rel, from its statistics: the largest share
-- a value can have (the first most-common-value frequency, or every non-null row outside that
-- list) times the row estimate, plus every row changed since. Null without statistics.
create or replace function partition_mgmt.max_rows_per_value(p_rel regclass, p_column text)
returns double precision
language sql stable
set search_path = ''
as $$
  select greatest(coalesce(s.most_common_freqs[1], 0),
                  1 - s.null_frac - coalesce((select sum(f) from unnest(s.most_common_freqs) f), 0))
         * greatest(k.reltuples, 0)
         + coalesce(pg_catalog.pg_stat_get_mod_since_analyze(k.oid), 0)
  from pg_catalog.pg_class k
  join pg_catalog.pg_namespace n on n.oid = k.relnamespace
  join pg_catalog.pg_stats s on s.schemaname = n.nspname and s.tablename = k.relname
                            and s.attname = p_column and not s.inherited
  where k.oid = p_rel
$$;
comment on function partition_mgmt.max_rows_per_value(regclass, text) is
  'Upper bound, from statistics, of the rows one value of the column has in the table (null without statistics): promotion counts a shared leaf only when it can reach the target.';

revoke execute on function partition_mgmt.analyze_threshold(regclass), partition_mgmt.max_rows_per_value(regclass, text)
  from public, anon, authenticated;

-- -----------------------------------------------------------------------------
-- Analyze (replaces 0600's)
-- -----------------------------------------------------------------------------

-- Analyze leaves (of one table, or of all) that autovacuum would analyze and has not yet, or never
-- analyzed (and, with p_include_parents, the partitioned parents, whose statistics autovacuum
-- never gathers), within this transaction's lock budget. Returns tables analyzed.
create or replace function partition_mgmt.analyze_all_partitions(p_include_parents boolean default false, p_table_key text default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_count integer := 0;
begin
  for r in
    select g.partition_schema, g.partition_name
    from partition_mgmt.partition_registry g
    join pg_catalog.pg_stat_all_tables s on s.relid = to_regclass(format('%I.%I', g.partition_schema, g.partition_name))
    where g.is_leaf and (p_table_key is null or g.table_key = p_table_key)
      and s.n_live_tup + s.n_dead_tup + s.n_mod_since_analyze > 0
      and (coalesce(s.last_analyze, s.last_autoanalyze) is null
           or s.n_mod_since_analyze > partition_mgmt.analyze_threshold(s.relid))
    order by 1, 2
  loop
    -- each ANALYZE keeps its locks until commit: stop within the lock budget (maintenance commits
    -- and calls again)
    exit when partition_mgmt.ddl_budget_exhausted();
    execute format('analyze %I.%I', r.partition_schema, r.partition_name);
    v_count := v_count + 1;
  end loop;
  if p_include_parents and not partition_mgmt.budget_spent() then
    for r in select parent from partition_mgmt.managed_tables where parent is not null and (p_table_key is null or table_key = p_table_key) loop
      execute format('analyze %s', r.parent);
      v_count := v_count + 1;
    end loop;
  end if;
  return v_count;
end
$$;

-- -----------------------------------------------------------------------------
-- Promotion candidates (replaces 0500's)
-- -----------------------------------------------------------------------------

-- Programs in the root's DEFAULT leaf and sites in a program's DEFAULT leaf that should have
-- partitions of their own: pinned sites (and their programs) first, then by rows, largest first.
-- Counts rows only in DEFAULT leaves whose row estimate reaches the target and whose statistics
-- let one program or site reach it.
create or replace function partition_mgmt.promotion_candidates(p_table_key text)
returns table (level text, program_id uuid, site_id uuid, rows bigint, reason text)
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  d record;
begin
  if c.tree_shape <> 'sized' or c.parent is null then
    return;
  end if;
  -- pinned sites whose program still shares the root's leaf, then pinned sites themselves
  return query
    select 'program'::text, s.program_id, null::uuid, null::bigint, format('site %s is pinned to %s', g.site_id, g.granularity)
    from partition_mgmt.site_granularity g join public.sites s on s.site_id = g.site_id
    where g.table_key = p_table_key
      and not exists (select from partition_mgmt.partition_registry r where r.table_key = p_table_key and r.level = 'program'
                      and not r.is_default and r.program_id = s.program_id)
    union all
    select 'site', s.program_id, g.site_id, null, format('pinned to %s', g.granularity)
    from partition_mgmt.site_granularity g join public.sites s on s.site_id = g.site_id
    where g.table_key = p_table_key
      and exists (select from partition_mgmt.partition_registry r where r.table_key = p_table_key and r.level = 'program'
                  and not r.is_default and r.program_id = s.program_id)
      and not exists (select from partition_mgmt.partition_registry r where r.table_key = p_table_key and r.level = 'site'
                      and not r.is_default and r.site_id = g.site_id);
  for d in
    select r.level, r.program_id, k.oid::regclass as leaf
    from partition_mgmt.partition_registry r
    join pg_catalog.pg_class k on k.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
    where r.table_key = p_table_key and r.is_default and r.level in ('program', 'site')
      and greatest(k.reltuples, 0) >= c.target_rows_per_leaf * 0.9
      and coalesce(partition_mgmt.max_rows_per_value(k.oid, case r.level when 'program' then c.program_column else c.site_column end)
                   >= c.target_rows_per_leaf * 0.9, true)
  loop
    if d.level = 'program' then
      return query execute format(
        'select ''program''::text, x.%1$I, null::uuid, count(*)::bigint, format(''%%s rows in the root''''s DEFAULT leaf'', count(*))
         from %2$s x where exists (select from public.pilot_programs p where p.program_id = x.%1$I)
         group by x.%1$I having count(*) >= %3$s order by count(*) desc', c.program_column, d.leaf, c.target_rows_per_leaf);
    else
      return query execute format(
        'select ''site''::text, %1$L::uuid, x.%2$I, count(*)::bigint, format(''%%s rows in the program''''s DEFAULT leaf'', count(*))
         from %3$s x where exists (select from public.sites s where s.site_id = x.%2$I)
         group by x.%2$I having count(*) >= %4$s order by count(*) desc', d.program_id, c.site_column, d.leaf, c.target_rows_per_leaf);
    end if;
  end loop;
end
$$;
