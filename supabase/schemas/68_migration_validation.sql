-- =============================================================================
-- Migration phase 6: validation, that the partitioned table holds exactly the legacy rows.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Phase 6: validation
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.post_migration_validation(p_table text default null)
returns table (table_key text, check_name text, status text, legacy_value text, partitioned_value text, detail text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  m record;
  c partition_mgmt.managed_tables;
  v_legacy regclass;
  v_sel text;
  v_cols text;
  v_groups_sql text;
  v_a bigint; v_b bigint; v_bad bigint; v_detail text;
  v_ha numeric; v_hb numeric;
  v_ok boolean;
  v_diff text;
begin
  for m in select s.table_key, s.phase from partition_mgmt.migration_state s where v_key is null or s.table_key = v_key order by s.table_key loop
    c := partition_mgmt.config(m.table_key);
    v_legacy := partition_mgmt.legacy_table(m.table_key);
    v_sel := partition_mgmt.legacy_select_list(m.table_key, 'l');
    v_cols := partition_mgmt.column_list(c.parent, 'p');
    table_key := m.table_key;
    v_ok := true;

    -- every check reads both tables in one statement: one snapshot, so concurrent writes (applied
    -- to both tables in the writer's transaction) cannot make them look different
    execute format('select (select count(*) from %s), (select count(*) from %s)', v_legacy, c.parent) into v_a, v_b;
    v_ok := v_ok and v_a = v_b;
    return query select m.table_key, 'row count', case when v_a = v_b then 'ok' else 'mismatch' end, v_a::text, v_b::text,
      case when v_a = v_b then 'equal' else format('%s more row(s) in %s', abs(v_a - v_b), case when v_a > v_b then v_legacy::text else c.parent::text end) end;

    v_groups_sql := format($q$
      with l as (select x.program_id, x.site_id, x.month, count(*) as n from (
                   select %1$s as program_id, l.%2$I as site_id, date_trunc('month', l.%3$I at time zone 'UTC') as month from %4$s l) x
                 group by 1, 2, 3),
           p as (select p.%5$I as program_id, p.%2$I as site_id, date_trunc('month', p.%3$I at time zone 'UTC') as month, count(*) as n
                 from %6$s p group by 1, 2, 3)
      select count(*) filter (where l.n is distinct from p.n), count(*),
             string_agg(format('program %%s site %%s %%s: %%s vs %%s', coalesce(l.program_id, p.program_id), coalesce(l.site_id, p.site_id),
                               to_char(coalesce(l.month, p.month), 'YYYY-MM'), coalesce(l.n, 0), coalesce(p.n, 0)), '; ')
               filter (where l.n is distinct from p.n)
      from l full join p using (program_id, site_id, month)$q$,
      format('coalesce(l.%1$I, (select s.program_id from public.sites s where s.site_id = l.%2$I))', c.program_column, c.site_column),
      c.site_column, c.time_column, v_legacy, c.program_column, c.parent);
    execute v_groups_sql into v_bad, v_a, v_detail;
    v_ok := v_ok and v_bad = 0;
    return query select m.table_key, 'counts per program/site/month', case when v_bad = 0 then 'ok' else 'mismatch' end,
      v_a::text || ' groups', null::text,
      case when v_bad = 0 then 'every group has the same count' else format('%s group(s) differ, first: %s', v_bad, left(v_detail, 600)) end;

    -- order-independent checksum: the sum of a 60-bit hash of every row's text
    execute format($q$select (select coalesce(sum(('x' || left(md5(row(%1$s)::text), 15))::bit(60)::bigint), 0) from %2$s l),
                             (select coalesce(sum(('x' || left(md5(row(%3$s)::text), 15))::bit(60)::bigint), 0) from %4$s p)$q$,
                   v_sel, v_legacy, v_cols, c.parent) into v_ha, v_hb;
    v_ok := v_ok and v_ha = v_hb;
    return query select m.table_key, 'content checksum', case when v_ha = v_hb then 'ok' else 'mismatch' end, v_ha::text, v_hb::text,
      case when v_ha = v_hb then 'equal' else 'contents differ' end;

    -- the rows the legacy table holds without a program are exactly the listed ones (the copy holds
    -- their site's program, so the checks above cannot tell; the reverse sync needs the list)
    if partition_mgmt.legacy_program_nullable(m.table_key) then
      execute format($q$
        select count(*) filter (where l.id is not null), count(*) filter (where w.observation_id is not null),
               count(*) filter (where l.id is null or w.observation_id is null),
               string_agg(case when w.observation_id is null then 'not listed: ' || l.id else 'listed, not NULL in the legacy table: ' || w.observation_id end, ', ')
                 filter (where l.id is null or w.observation_id is null)
        from (select x.%1$I as id from %2$s x where x.%3$I is null) l
        full join (select r.observation_id from partition_mgmt.rows_without_program r where r.table_key = %4$L) w on w.observation_id = l.id$q$,
        c.id_column, v_legacy, c.program_column, m.table_key) into v_a, v_b, v_bad, v_detail;
      v_ok := v_ok and v_bad = 0;
      return query select m.table_key, 'rows without program_id', case when v_bad = 0 then 'ok' else 'mismatch' end, v_a::text, v_b::text,
        case when v_bad = 0 then format('%s row(s) without %s in %s, each listed in partition_mgmt.rows_without_program', v_a, c.program_column, v_legacy)
             else format('%s row(s) differ, first: %s', v_bad, left(v_detail, 600)) end;
    end if;

    if not v_ok then
      execute format($q$select string_agg(x.side || ' ' || x.id, ', ') from (
                         (select 'only in legacy:' as side, d.%1$I::text as id from (select %2$s from %3$s l except select %4$s from %5$s p) d order by 2 limit 10)
                         union all
                         (select 'only in partitioned:', d.%1$I::text from (select %4$s from %5$s p except select %2$s from %3$s l) d order by 2 limit 10)) x$q$,
                     c.id_column, v_sel, v_legacy, v_cols, c.parent) into v_diff;
      return query select m.table_key, 'first differing rows', 'mismatch', null::text, null::text, coalesce(v_diff, 'none found (rows changed while validating?)');
      update partition_mgmt.migration_state s set last_error = 'validation mismatch: ' || coalesce(left(v_diff, 400), ''), updated_at = now()
      where s.table_key = m.table_key;
    elsif m.phase in ('backfilled', 'validated') then
      update partition_mgmt.migration_state s set phase = 'validated', validated_at = now(), last_error = null, updated_at = now()
      where s.table_key = m.table_key;
      if m.phase = 'backfilled' then
        perform partition_mgmt.log_migration(m.table_key, 'backfilled', 'validated', jsonb_build_object('rows', v_b, 'checksum', v_hb));
      end if;
    end if;
  end loop;
end
$$;

-- Exact both-way EXCEPT of the legacy table and the partitioned table (the legacy side with its
-- derived program key), in one snapshot. For tests and for operators who can afford a full
-- comparison; post_migration_validation is the cheaper check.
create or replace function partition_mgmt.compare_tables(p_table text,
  out only_in_legacy bigint, out only_in_partitioned bigint, out sample text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_legacy regclass := partition_mgmt.legacy_table(v_key);
  v_sel text := partition_mgmt.legacy_select_list(v_key, 'l');
  v_cols text := partition_mgmt.column_list(c.parent, 'p');
begin
  execute format($q$
    with a as (select %2$s from %3$s l except all select %4$s from %5$s p),
         b as (select %4$s from %5$s p except all select %2$s from %3$s l)
    select (select count(*) from a), (select count(*) from b),
           (select string_agg(x, ', ') from (select 'legacy ' || a.%1$I from a limit 5) s(x)) || ' ' ||
           coalesce((select string_agg(x, ', ') from (select 'partitioned ' || b.%1$I from b limit 5) s(x)), '')$q$,
    c.id_column, v_sel, v_legacy, v_cols, c.parent) into only_in_legacy, only_in_partitioned, sample;
end
$$;
revoke all on function partition_mgmt.compare_tables(text) from public, anon, authenticated;
grant execute on function partition_mgmt.compare_tables(text) to service_role;

-- The row counts of the legacy table and the copy, in one snapshot; raises when they differ.
-- Taken just before the swap's lock (counting millions of rows under it would hold every reader
-- and writer that long): the two stay equal from then on because every write to one reaches the
-- other in the writer's transaction, which the checks under the lock make sure of.
create or replace function partition_mgmt.assert_equal_counts(p_table_key text, p_direction text)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := (select legacy_table from partition_mgmt.migration_state where table_key = p_table_key);
  v_a bigint;
  v_b bigint;
begin
  execute format('select (select count(*) from %s), (select count(*) from %s)', v_legacy, c.parent) into v_a, v_b;
  if v_a <> v_b then
    raise exception 'final check before the % swap failed for "%": % has % rows, % has %', p_direction, p_table_key, v_legacy, v_a, c.parent, v_b
      using errcode = 'data_exception', hint = format('Nothing was swapped. Run select * from partition_mgmt.post_migration_validation(%L).', p_table_key);
  end if;
  return v_a;
end
$$;
