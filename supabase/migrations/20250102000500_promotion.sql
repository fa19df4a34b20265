-- =============================================================================
-- Promotion: a program or site of a sized tree gets partitions of its own, online.
--
-- A program shares the root's DEFAULT leaf, and a site its program's, until its rows fill a leaf
-- (the sizing rule: 20250102000200's "Periods and the sizing rule") or the site is pinned. Moving
-- its rows out under the DEFAULT's ACCESS EXCLUSIVE lock would stop every reader and writer of the
-- shared leaf, so the DEFAULT is split the way the online migration copies a table: start (the new partitions and a new DEFAULT built
-- standalone, a trigger applying every write), copy (committed keyset batches), cutover (a short
-- ACCESS EXCLUSIVE: detach the old DEFAULT, attach the new tables). Maintenance drives it through
-- partition_mgmt.promote_step, one promotion at a time per table.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

create table if not exists partition_mgmt.promotions (
  table_key    text primary key references partition_mgmt.managed_tables (table_key) on delete cascade,
  level        text not null check (level in ('program', 'site')),
  program_id   uuid not null,
  site_id      uuid,
  granularity  text check (granularity in ('week', 'month', 'quarter', 'year', 'none')),
  reason       text not null,
  parent       regclass not null,     -- the partitioned table whose DEFAULT is split
  old_default  regclass not null,
  new_child    regclass not null,     -- the promoted value's partition (standalone until the cutover)
  new_default  regclass not null,     -- the rest of the old DEFAULT's rows (standalone until the cutover)
  partitions   jsonb not null,        -- registry rows of the new partitions, inserted at the cutover
  phase        text not null default 'copying' check (phase in ('copying', 'copied')),
  high_water   uuid,
  rows_copied  bigint not null default 0,
  rows_total   bigint,
  started_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
comment on table partition_mgmt.promotions is
  'The promotion in progress per table (a program or site of a sized tree getting partitions of its own, online): what is split, what is built, how far the copy is.';
revoke all on partition_mgmt.promotions from public, anon, authenticated;
grant select on partition_mgmt.promotions to service_role;

-- A promotion the lock budget held back, and the budget it was held at: while the tree's keyless
-- locks, the lock table and the minimum stay as they were, a week at most, the promote step holds
-- again without counting the shared leaves (what it counted would not fit any better).
create table if not exists partition_mgmt.promotion_held (
  table_key      text primary key references partition_mgmt.managed_tables (table_key) on delete cascade,
  keyless_locks  bigint not null,
  lock_capacity  bigint not null,
  min_keyless    integer not null,
  least_needed   bigint not null,      -- the fewest locks a candidate would have added
  reason         text not null,
  held_at        timestamptz not null default now()
);
comment on table partition_mgmt.promotion_held is
  'Per table: the promotion the lock budget held back and the budget at the time; the promote step holds again without counting while they are unchanged (a week at most).';
revoke all on partition_mgmt.promotion_held from public, anon, authenticated;
grant select on partition_mgmt.promotion_held to service_role;

-- -----------------------------------------------------------------------------
-- What to promote
-- -----------------------------------------------------------------------------

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
  'Upper bound, from statistics, of the rows one value of the column has in the table (null without statistics): promotion counts a shared leaf only when it may come within promotion_margin() of the target (may_fill_leaf).';

revoke execute on function partition_mgmt.max_rows_per_value(regclass, text) from public, anon, authenticated;

-- Whether the daily metrics (analytics.daily_metrics, kept by what changed) can say how many rows
-- each program or site of this table's shared leaves holds: the table is the live
-- public.petri_observations with the metrics' column names, and the metrics were computed in full
-- and no full computation is under way.
create or replace function partition_mgmt.metrics_count_rows(p_table_key text)
returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce((
    select m.parent = to_regclass('public.petri_observations')
       and (m.program_column, m.site_column, m.time_column) = ('program_id', 'site_id', 'created_at')
       and exists (select from analytics.metrics_state s where s.populated_at is not null and s.rebuild_started_at is null)
       and not exists (select from analytics.metrics_rebuild)
    from partition_mgmt.managed_tables m where m.table_key = p_table_key), false)
$$;
comment on function partition_mgmt.metrics_count_rows(text) is
  'Whether promotion_candidates may take the rows per program or site of a shared leaf from the daily metrics (the table is the live public.petri_observations, the metrics are computed in full).';

-- The rows of every program (p_level 'program': the root's DEFAULT leaf) or every site of
-- p_program (p_level 'site': the program's DEFAULT leaf) in the shared leaf p_leaf, without
-- reading the leaf's other rows: a group (program, site, UTC day) no write touched since it was
-- computed counts its observation_count; a group written since (analytics.metrics_dirty) is counted
-- in the leaf, through its site index. Exact while the leaf holds every row of the values it
-- holds (the values without partitions of their own) and every write marks its group, which
-- promotion_candidates checks against the rows the leaf's last analyze found. The cost follows the
-- metrics' groups of the leaf's values and the rows written since the last refresh, not the leaf's
-- rows.
create or replace function partition_mgmt.rows_per_value_from_metrics(p_table_key text, p_leaf regclass, p_level text, p_program uuid)
returns table (value uuid, rows bigint)
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  if p_level not in ('program', 'site') or (p_level = 'site') <> (p_program is not null) then
    raise exception 'rows_per_value_from_metrics(%, %, %, %): the level is ''program'' (the root''s DEFAULT leaf, no program) or ''site'' (a program''s DEFAULT leaf, with its program)',
      p_table_key, p_leaf, p_level, p_program;
  end if;
  return query execute format($q$
    with changed as (
      select distinct d.program_id, d.site_id, d.day from analytics.metrics_dirty d
      where %5$s),
    held as (   -- the values with partitions of their own hold no rows here
      select case $2 when 'program' then r.program_id else r.site_id end as value
      from partition_mgmt.partition_registry r
      where r.table_key = $3 and r.level = $2 and not r.is_default and (r.level = 'program' or r.program_id = $1))
    select u.value, sum(u.n)::bigint
    from (
      select case $2 when 'program' then m.program_id else m.site_id end as value, m.observation_count as n
      from analytics.daily_metrics m
      where %6$s
        and not exists (select from changed d where d.program_id = m.program_id and d.site_id = m.site_id and d.day = m.day)
      union all
      select case $2 when 'program' then d.program_id else d.site_id end,
             (select count(*) from %1$s x
              where x.%2$I = d.site_id and x.%3$I = d.program_id
                and x.%4$I >= d.day::timestamp at time zone 'UTC' and x.%4$I < (d.day + 1)::timestamp at time zone 'UTC')
      from changed d) u
    where u.value not in (select h.value from held h where h.value is not null)
    group by u.value$q$,
    p_leaf, c.site_column, c.program_column, c.time_column,
    case when p_program is null then 'true' else 'd.program_id = $1' end,
    -- (through the metrics' index: the programs without partitions of their own, or the program)
    case when p_program is null
      then 'm.program_id = any (array(select p.program_id from public.pilot_programs p
                                      where p.program_id not in (select h.value from held h where h.value is not null)))'
      else 'm.program_id = $1' end)
  using p_program, p_level, p_table_key;
end
$$;
comment on function partition_mgmt.rows_per_value_from_metrics(text, regclass, text, uuid) is
  'Rows per program (root''s DEFAULT leaf) or per site of a program (its DEFAULT leaf) from the daily metrics, the groups written since their last refresh counted in the leaf: promotion_candidates counts a shared leaf only for the values this puts within promotion_margin() of the target.';

revoke execute on function partition_mgmt.metrics_count_rows(text), partition_mgmt.rows_per_value_from_metrics(text, regclass, text, uuid)
  from public, anon, authenticated;

-- Programs in the root's DEFAULT leaf and sites in a program's DEFAULT leaf that should have
-- partitions of their own: pinned sites (and their programs) first, then those whose rows fill a
-- leaf, largest first. Counts rows only in DEFAULT leaves whose statistics say one program or site
-- may fill a leaf (may_fill_leaf: the sizing rule in 20250102000200_partition_tree.sql), and there,
-- where the daily metrics give the rows per value (metrics_count_rows), only the values they put
-- within the margin: statistics bound every value by all the rows changed since the last analyze,
-- so a day of writes on a shared leaf would have it counted whole every night.
create or replace function partition_mgmt.promotion_candidates(p_table_key text)
returns table (level text, program_id uuid, site_id uuid, rows bigint, reason text)
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  d record;
  v_by_metrics boolean;
  v_values uuid[];
  v_rows bigint;
begin
  if c.tree_shape <> 'sized' or c.parent is null then
    return;
  end if;
  v_by_metrics := partition_mgmt.metrics_count_rows(p_table_key);
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
    select r.level, r.program_id, k.oid::regclass as leaf, greatest(k.reltuples, 0) as reltuples
    from partition_mgmt.partition_registry r
    join pg_catalog.pg_class k on k.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
    where r.table_key = p_table_key and r.is_default and r.level in ('program', 'site')
      and partition_mgmt.may_fill_leaf(greatest(k.reltuples, 0), c.target_rows_per_leaf)
      and coalesce(partition_mgmt.may_fill_leaf(partition_mgmt.max_rows_per_value(k.oid, case r.level when 'program' then c.program_column else c.site_column end),
                                                c.target_rows_per_leaf), true)
  loop
    v_values := null;
    if v_by_metrics then
      select array_agg(e.value) filter (where partition_mgmt.may_fill_leaf(e.rows, c.target_rows_per_leaf)), coalesce(sum(e.rows), 0)
      into v_values, v_rows
      from partition_mgmt.rows_per_value_from_metrics(p_table_key, d.leaf, d.level, case d.level when 'site' then d.program_id end) e;
      -- the metrics must account for the rows the leaf's last analyze found (a write that marked no
      -- group, under session_replication_role = replica, would hide a value that grew); if they do
      -- not, the leaf is counted as without them. (Not the live-row counter: a session's inserts
      -- reported after an analyze are counted twice there.)
      if v_rows >= d.reltuples * partition_mgmt.promotion_margin() then
        continue when v_values is null;
      else
        v_values := null;
      end if;
    end if;
    if d.level = 'program' then
      return query execute format(
        'select ''program''::text, x.%1$I, null::uuid, count(*)::bigint, format(''%%s rows in the root''''s DEFAULT leaf'', count(*))
         from %2$s x where exists (select from public.pilot_programs p where p.program_id = x.%1$I) %4$s
         group by x.%1$I having partition_mgmt.fills_leaf(count(*), %3$s) order by count(*) desc', c.program_column, d.leaf, c.target_rows_per_leaf,
        case when v_values is not null then format('and x.%I = any($1)', c.program_column) else '' end)
        using v_values;
    else
      return query execute format(
        'select ''site''::text, %1$L::uuid, x.%2$I, count(*)::bigint, format(''%%s rows in the program''''s DEFAULT leaf'', count(*))
         from %3$s x where exists (select from public.sites s where s.site_id = x.%2$I) %5$s
         group by x.%2$I having partition_mgmt.fills_leaf(count(*), %4$s) order by count(*) desc', d.program_id, c.site_column, d.leaf, c.target_rows_per_leaf,
        case when v_values is not null then format('and x.%I = any($1)', c.site_column) else '' end)
        using v_values;
    end if;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Start: build standalone, put the split trigger on the old DEFAULT
-- -----------------------------------------------------------------------------

-- The trigger function that keeps the split copies of a DEFAULT leaf exact, generated per table
-- with its column names (rows of the promoted value go to new_child, the rest to new_default; the
-- targets are read from the promotions row).
create or replace function partition_mgmt.install_promotion_sync(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_cols text := partition_mgmt.column_list(c.parent);
  v_set text := (select string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' order by a.attnum) from pg_catalog.pg_attribute a
                 where a.attrelid = c.parent and a.attnum > 0 and not a.attisdropped
                   and a.attname not in (c.id_column, c.program_column, c.site_column, c.time_column));
begin
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    declare
      p partition_mgmt.promotions;
      v_target regclass;
    begin
      select * into p from partition_mgmt.promotions x where x.table_key = %2$L;
      if not found then
        return null;
      end if;
      if tg_op <> 'INSERT' then
        v_target := case when (p.level = 'program' and old.%4$I = p.program_id) or (p.level = 'site' and old.%5$I = p.site_id)
                         then p.new_child else p.new_default end;
        execute format('delete from %%s t where t.%3$I = $1 and t.%4$I = $2 and t.%5$I = $3 and t.%6$I = $4', v_target)
          using old.%3$I, old.%4$I, old.%5$I, old.%6$I;
        if tg_op = 'DELETE' then
          return null;
        end if;
      end if;
      v_target := case when (p.level = 'program' and new.%4$I = p.program_id) or (p.level = 'site' and new.%5$I = p.site_id)
                       then p.new_child else p.new_default end;
      execute format('insert into %%s (%7$s) select %7$s from (select ($1).*) x on conflict (%3$I, %4$I, %5$I, %6$I) do update set %8$s', v_target)
        using new;
      return null;
    end
    $body$
    $f$, p_table_key || '_promotion_sync', p_table_key, c.id_column, c.program_column, c.site_column, c.time_column,
      v_cols, coalesce(v_set, format('%1$I = excluded.%1$I', c.id_column)));
  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_promotion_sync');
end
$install$;

-- Autovacuum off (or back on) for every plain table under p_rel: the standalone tables of a
-- promotion are filled by the copy, and an autovacuum run on one at the cutover would hold a lock
-- the cutover needs (maintenance analyzes them once they are attached).
create or replace function partition_mgmt.set_autovacuum(p_rel regclass, p_on boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  r record;
begin
  for r in select t.relid from partition_mgmt.tree_members(p_rel) t join pg_catalog.pg_class k on k.oid = t.relid where k.relkind = 'r' loop
    if p_on then
      execute format('alter table %s reset (autovacuum_enabled)', r.relid::regclass);
    else
      execute format('alter table %s set (autovacuum_enabled = false)', r.relid::regclass);
    end if;
  end loop;
end
$$;

create or replace function partition_mgmt.start_promotion(p_table_key text, p_level text, p_program_id uuid, p_site_id uuid default null, p_reason text default null)
returns text
language plpgsql
set search_path = ''
set jit = off
set timezone = 'UTC'
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass;
  v_old regclass;
  v_old_name text;
  v_child text;
  v_child_default text;
  v_new_default text;
  v_gran text;
  v_values text;
  v_rows bigint;
  v_first timestamptz;
  v_last timestamptz;
  v_parts jsonb := '[]'::jsonb;
  v_horizon timestamptz;
  v_prog record;
  v_range_start timestamptz;
  v_range_end timestamptz;
  v_locks bigint;
  v_adds bigint;
  r record;
begin
  if exists (select from partition_mgmt.promotions p where p.table_key = p_table_key) then
    raise exception 'a promotion of "%" is already in progress', p_table_key
      using hint = format('select * from partition_mgmt.promotions where table_key = %L; maintenance finishes it, abort_promotion(%L) drops it.', p_table_key, p_table_key);
  end if;
  if c.tree_shape <> 'sized' then
    raise exception 'promotion is for sized trees; "%" is %', p_table_key, c.tree_shape;
  end if;
  if p_level not in ('program', 'site') or (p_level = 'site') <> (p_site_id is not null) then
    raise exception 'promote a program (level program, no site) or a site (level site with its site_id), got level % site %', p_level, p_site_id;
  end if;
  if p_level = 'program' then
    v_parent := partition_mgmt.lock_parent(p_table_key);
    select format('%I.%I', r2.partition_schema, r2.partition_name)::regclass into v_old
    from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'program' and r2.is_default;
    if exists (select from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'program'
               and not r2.is_default and r2.program_id = p_program_id) then
      raise exception 'program % of "%" has partitions of its own already', p_program_id, p_table_key;
    end if;
  else
    select format('%I.%I', r2.partition_schema, r2.partition_name)::regclass into v_parent
    from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'program' and not r2.is_default and r2.program_id = p_program_id;
    if v_parent is null then
      raise exception 'site % of "%": its program % has no partition of its own yet', p_site_id, p_table_key, p_program_id
        using hint = 'Promote the program first.';
    end if;
    select format('%I.%I', r2.partition_schema, r2.partition_name)::regclass into v_old
    from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'site' and r2.is_default and r2.program_id = p_program_id;
    if exists (select from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'site'
               and not r2.is_default and r2.site_id = p_site_id) then
      raise exception 'site % of "%" has partitions of its own already', p_site_id, p_table_key;
    end if;
  end if;
  v_old_name := (select relname from pg_catalog.pg_class where oid = v_old);
  v_new_default := left(v_old_name, 50) || '_next';
  if to_regclass(format('partitions.%I', v_new_default)) is not null then
    execute format('drop table partitions.%I', v_new_default);
  end if;

  -- the promoted value's partitions, standalone
  if p_level = 'program' then
    v_child := format('%s_p_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id));
    v_child_default := v_child || '_default';
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage including indexes) partition by list (%I)',
      v_child, c.parent, c.site_column);
    execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_child, v_child || '_bound', c.program_column, p_program_id);
    execute format('create table partitions.%I partition of partitions.%I default', v_child_default, v_child);
    perform partition_mgmt.add_shared_leaf_indexes(p_table_key, format('partitions.%I', v_child_default)::regclass, 'site');
    v_parts := jsonb_build_array(
      jsonb_build_object('name', v_child, 'level', 'program', 'is_default', false, 'is_leaf', false, 'program_id', p_program_id),
      jsonb_build_object('name', v_child_default, 'level', 'site', 'is_default', true, 'is_leaf', true, 'program_id', p_program_id));
    select coalesce(string_agg(quote_literal(r2.program_id), ', '), '') into v_values
    from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'program' and not r2.is_default;
    v_values := concat_ws(', ', nullif(v_values, ''), quote_literal(p_program_id));
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage including indexes)',
      v_new_default, v_old);
    -- a DEFAULT that is itself the rest of an earlier promotion brings that promotion's constraint
    -- along under the same name: replaced by the one that names every promoted value
    execute format('alter table partitions.%I drop constraint if exists %I', v_new_default, left(v_new_default, 50) || '_others');
    execute format('alter table partitions.%I add constraint %I check (%I is not null and %I <> all (array[%s]::uuid[]))',
      v_new_default, left(v_new_default, 50) || '_others', c.program_column, c.program_column, v_values);
    execute format('select count(*) from %s where %I = %L', v_old, c.program_column, p_program_id) into v_rows;
  else
    execute format('select count(*), min(%1$I), max(%1$I) from %2$s where %3$I = %4$L', c.time_column, v_old, c.site_column, p_site_id)
      into v_rows, v_first, v_last;
    v_gran := coalesce((select g.granularity from partition_mgmt.site_granularity g where g.table_key = p_table_key and g.site_id = p_site_id),
                       partition_mgmt.granularity_for_rate(v_rows, v_last - v_first, c.target_rows_per_leaf));
    v_child := format('%s_p_%s_s_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id), partition_mgmt.alias_for(p_site_id));
    if v_gran = 'none' then
      execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage including indexes)',
        v_child, v_parent);
    else
      execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage including indexes) partition by range (%I)',
        v_child, v_parent, c.time_column);
    end if;
    execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_child, v_child || '_bound', c.site_column, p_site_id);
    v_parts := jsonb_build_array(jsonb_build_object('name', v_child, 'level', 'site', 'is_default', false, 'is_leaf', v_gran = 'none',
      'program_id', p_program_id, 'site_id', p_site_id, 'granularity', v_gran));
    if v_gran <> 'none' then
      v_child_default := v_child || '_default';
      execute format('create table partitions.%I partition of partitions.%I default', v_child_default, v_child);
      v_parts := v_parts || jsonb_build_object('name', v_child_default, 'level', 'period', 'is_default', true, 'is_leaf', true,
        'program_id', p_program_id, 'site_id', p_site_id);
      -- the periods of its rows, then up to the premake horizon while the program runs
      select * into v_prog from public.pilot_programs p where p.program_id = p_program_id;
      v_horizon := partition_mgmt.premake_horizon(c.premake_months, v_prog.end_date);
      for v_range_start, v_range_end in
        execute format('select distinct (partition_mgmt.period_bounds(%1$L, x.%2$I)).* from %3$s x where x.%4$I = %5$L
                        union select (partition_mgmt.period_bounds(%1$L, g)).* from generate_series(date_trunc(%1$L, now()), %6$L::timestamptz - interval ''1 microsecond'',
                          partition_mgmt.period_length(%1$L)) g
                        where %7$L::date >= current_date
                        order by 1', v_gran, c.time_column, v_old, c.site_column, p_site_id, v_horizon, v_prog.end_date)
      loop
        execute format('create table partitions.%I partition of partitions.%I for values from (%L) to (%L)',
          v_child || '_' || partition_mgmt.period_suffix(v_gran, v_range_start), v_child, v_range_start, v_range_end);
        v_parts := v_parts || jsonb_build_object('name', v_child || '_' || partition_mgmt.period_suffix(v_gran, v_range_start), 'level', 'period',
          'is_default', false, 'is_leaf', true, 'program_id', p_program_id, 'site_id', p_site_id, 'granularity', v_gran,
          'range_start', v_range_start, 'range_end', v_range_end);
      end loop;
    end if;
    select coalesce(string_agg(quote_literal(r2.site_id), ', '), '') into v_values
    from partition_mgmt.partition_registry r2 where r2.table_key = p_table_key and r2.level = 'site' and not r2.is_default and r2.program_id = p_program_id;
    v_values := concat_ws(', ', nullif(v_values, ''), quote_literal(p_site_id));
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage including indexes)',
      v_new_default, v_old);
    -- (the constraints of an earlier promotion out of the same DEFAULT: replaced, as for a program)
    execute format('alter table partitions.%I drop constraint if exists %I, drop constraint if exists %I', v_new_default,
      left(v_new_default, 50) || '_program', left(v_new_default, 50) || '_others');
    execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_new_default, left(v_new_default, 50) || '_program', c.program_column, p_program_id);
    execute format('alter table partitions.%I add constraint %I check (%I is not null and %I <> all (array[%s]::uuid[]))',
      v_new_default, left(v_new_default, 50) || '_others', c.site_column, c.site_column, v_values);
  end if;
  -- secured like every partition. No foreign keys: ATTACH adds and validates the parent's (a scan
  -- of the new tables under the lock, SHARE ROW EXCLUSIVE on the referenced tables). A foreign key
  -- made beforehand would be adopted instead, and adopting drops its triggers on the referenced
  -- tables, which takes ACCESS EXCLUSIVE on pilot_programs and sites: every app statement reads
  -- them, so the cutover would wait behind (and deadlock with) the whole app.
  for r in select t.relid from partition_mgmt.tree_members(format('partitions.%I', v_child)::regclass) t
           union all select format('partitions.%I', v_new_default)::regclass loop
    perform partition_mgmt.secure_partition('partitions', (select relname from pg_catalog.pg_class where oid = r.relid));
  end loop;
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_child)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_new_default)::regclass);
  perform partition_mgmt.set_autovacuum(format('partitions.%I', v_child)::regclass, false);
  perform partition_mgmt.set_autovacuum(format('partitions.%I', v_new_default)::regclass, false);
  -- the tree stays within its lock budget (lock_budget()): once attached, the new partitions add
  -- what a statement without the partition keys locks of them; the new DEFAULT replaces the old
  -- one lock for lock. Raised before anything is attached or triggered: the caller's transaction
  -- (or promote_step's subtransaction) takes the standalone tables back with it.
  v_locks := partition_mgmt.keyless_statement_locks(c.parent);
  v_adds := partition_mgmt.keyless_statement_locks(format('partitions.%I', v_child)::regclass);
  if v_locks + v_adds > partition_mgmt.keyless_lock_allowance(c.min_keyless_statements) then
    raise exception 'promoting % % of "%" would take the tree over its lock budget: a statement without the partition keys would lock % slots (% now, % more), so only % such statements would fit in the lock table (% slots) at once, fewer than the minimum of %',
      p_level, coalesce(p_site_id, p_program_id), p_table_key, v_locks + v_adds, v_locks, v_adds,
      partition_mgmt.lock_capacity() / (v_locks + v_adds), partition_mgmt.lock_capacity(), c.min_keyless_statements
      using errcode = '53400', detail = format('%s more locks', v_adds),
            hint = 'Its rows stay in the shared leaf, which serves them. For partitions of its own: raise target_rows_per_leaf (fewer, larger leaves), pin the site to longer periods (partition_mgmt.set_site_granularity), archive old periods (retention), or raise max_locks_per_transaction (supabase postgres-config update); managed_tables.min_keyless_statements is the minimum.';
  end if;

  insert into partition_mgmt.promotions (table_key, level, program_id, site_id, granularity, reason, parent, old_default, new_child, new_default,
                                         partitions, rows_total)
  values (p_table_key, p_level, p_program_id, p_site_id, v_gran, coalesce(p_reason, 'requested'), v_parent, v_old,
          format('partitions.%I', v_child)::regclass, format('partitions.%I', v_new_default)::regclass, v_parts,
          (select greatest(reltuples, 0)::bigint from pg_catalog.pg_class where oid = v_old));
  perform partition_mgmt.install_promotion_sync(p_table_key);
  -- CREATE TRIGGER waits for the writers in flight (SHARE ROW EXCLUSIVE, under lock_timeout): every
  -- row is then either committed before it (the copy takes it) or written through it
  perform partition_mgmt.run_ddl(format('create trigger partition_mgmt_promotion_sync after insert or update or delete on %s for each row execute function partition_mgmt.%I()',
    v_old, p_table_key || '_promotion_sync'));
  return format('%s: promoting %s %s (%s rows%s) out of %s', p_table_key, p_level, coalesce(p_site_id, p_program_id), v_rows,
    case when v_gran is not null then ', periods: ' || v_gran else '' end, v_old);
end
$$;

-- -----------------------------------------------------------------------------
-- Copy and cutover
-- -----------------------------------------------------------------------------

-- One batch of the copy in the caller's transaction. Returns the rows visited (0: copied).
create or replace function partition_mgmt.promotion_copy_batch(p_table_key text, p_batch_size integer default 10000)
returns bigint
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  p partition_mgmt.promotions;
  v_match text;
  v_cols text := partition_mgmt.column_list(c.parent);
  v_scanned bigint;
  v_upper uuid;
begin
  select * into p from partition_mgmt.promotions x where x.table_key = p_table_key for update;
  if not found or p.phase <> 'copying' then
    return 0;
  end if;
  v_match := case when p.level = 'program' then format('l.%I = %L', c.program_column, p.program_id)
                  else format('l.%I = %L', c.site_column, p.site_id) end;
  -- as in the migration's backfill: the batch's rows are locked FOR SHARE (a concurrent update or
  -- delete of them waits, then the split trigger applies it on top), and copied without
  -- overwriting what the trigger wrote already. A row that a concurrent update moves to another
  -- partition fails the lock with 40001: the batch is read again (the row is gone from this leaf).
  for v_attempt in 1..5 loop
    begin
      execute format($q$
        with src as (
          select l.* from %1$s l where ($1 is null or l.%2$I > $1) order by l.%2$I limit $2 for share
        ), to_child as (
          insert into %3$s (%5$s) select %5$s from src l where %6$s order by l.%7$I on conflict do nothing returning 1
        ), to_default as (
          insert into %4$s (%5$s) select %5$s from src l where not (%6$s) on conflict do nothing returning 1
        )
        select (select count(*) from src), (select l.%2$I from src l order by l.%2$I desc limit 1),
               (select count(*) from to_child) + (select count(*) from to_default) as written$q$,
        p.old_default, c.id_column, p.new_child, p.new_default, v_cols, v_match, c.time_column)
        into v_scanned, v_upper using p.high_water, p_batch_size;
      exit;
    exception when serialization_failure then
      if v_attempt = 5 then
        raise;
      end if;
    end;
  end loop;
  if v_scanned = 0 then
    update partition_mgmt.promotions x set phase = 'copied', updated_at = now() where x.table_key = p_table_key;
    return 0;
  end if;
  update partition_mgmt.promotions x set high_water = v_upper, rows_copied = x.rows_copied + v_scanned, updated_at = now()
  where x.table_key = p_table_key;
  return v_scanned;
end
$$;

-- Drops what a promotion built and its trigger; the tree is as before.
create or replace function partition_mgmt.abort_promotion(p_table_key text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  p partition_mgmt.promotions;
begin
  select * into p from partition_mgmt.promotions x where x.table_key = p_table_key for update;
  if not found then
    return format('%s: no promotion in progress', p_table_key);
  end if;
  perform partition_mgmt.run_ddl(format('drop trigger if exists partition_mgmt_promotion_sync on %s', p.old_default));
  execute format('drop table if exists %s', p.new_child);
  execute format('drop table if exists %s', p.new_default);
  delete from partition_mgmt.promotions x where x.table_key = p_table_key;
  return format('%s: promotion of %s %s aborted; nothing changed in the tree', p_table_key, p.level, coalesce(p.site_id, p.program_id));
end
$$;

-- The cutover, after the copy: compares the counts in one snapshot (outside any lock), then takes
-- ACCESS EXCLUSIVE on the parent (lock_timeout with retries) for the catalog changes only.
-- Returns the milliseconds the lock was held.
create or replace function partition_mgmt.promotion_cutover(p_table_key text)
returns numeric
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  p partition_mgmt.promotions;
  v_old_name text;
  v_value uuid;
  v_a bigint;
  v_b bigint;
  v_locked_at timestamptz;
  v_old_timeout text := current_setting('lock_timeout');
  v_timeout text := coalesce(nullif(current_setting('partition_mgmt.lock_timeout', true), ''), '500ms');
  v_attempts integer := coalesce(nullif(current_setting('partition_mgmt.ddl_attempts', true), '')::integer, 8);
  v_attempt integer := 0;
  v_referenced text;
  x jsonb;
begin
  select * into p from partition_mgmt.promotions y where y.table_key = p_table_key for update;
  if not found or p.phase <> 'copied' then
    raise exception 'no copied promotion of "%" to cut over', p_table_key;
  end if;
  execute format('select (select count(*) from %s), (select count(*) from %s) + (select count(*) from %s)',
    p.old_default, p.new_child, p.new_default) into v_a, v_b;
  if v_a <> v_b then
    raise exception 'promotion of "%": % holds % rows, its split copies %', p_table_key, p.old_default, v_a, v_b
      using errcode = 'data_exception', hint = format('Nothing changed. select partition_mgmt.abort_promotion(%L); maintenance starts it again.', p_table_key);
  end if;
  v_old_name := (select relname from pg_catalog.pg_class where oid = p.old_default);
  v_value := case when p.level = 'program' then p.program_id else p.site_id end;
  select string_agg(distinct con.confrelid::regclass::text, ', ') into v_referenced
  from pg_catalog.pg_constraint con where con.conrelid = c.parent and con.contype = 'f' and con.confrelid <> c.parent;
  -- Every lock in one attempt under lock_timeout, the parent first, then its DEFAULT and the
  -- standalone tables (statements lock a parent before its partitions, and reach the standalone
  -- tables only through the split trigger on the DEFAULT), then SHARE ROW EXCLUSIVE on the tables
  -- the foreign keys reference, for their validation; an attempt that cannot have them all is
  -- undone with its subtransaction, so the app never waits for more than one lock_timeout, and
  -- retried with backoff. The old DEFAULT is dropped while attached: detaching would give its
  -- foreign keys triggers of their own on the referenced tables, and dropping those takes ACCESS
  -- EXCLUSIVE on pilot_programs and sites.
  loop
    v_attempt := v_attempt + 1;
    begin
      perform set_config('lock_timeout', v_timeout, true);
      execute format('lock table only %s in access exclusive mode', p.parent);
      v_locked_at := clock_timestamp();
      execute format('lock table %s, %s, %s in access exclusive mode', p.old_default, p.new_default, p.new_child);
      if v_referenced is not null then
        execute format('lock table only %s in share row exclusive mode', v_referenced);
      end if;
      execute format('drop table %s', p.old_default);
      execute format('alter table %s attach partition %s for values in (%L)', p.parent, p.new_child, v_value);
      execute format('alter table %s rename to %I', p.new_default, v_old_name);
      execute format('alter table %s attach partition partitions.%I default', p.parent, v_old_name);
      perform partition_mgmt.set_autovacuum(p.new_child, true);
      perform partition_mgmt.set_autovacuum(p.new_default, true);
      perform set_config('lock_timeout', v_old_timeout, true);
      exit;
    exception when lock_not_available then
      perform set_config('lock_timeout', v_old_timeout, true);
      if v_attempt >= v_attempts then
        raise exception 'promotion of "%" could not get its locks within lock_timeout % after % attempts; held by: %', p_table_key, v_timeout, v_attempts,
          coalesce((select string_agg(distinct format('pid %s (%s on %s, %s %s/%s: %s)', l.pid, l.mode, l.relation::regclass, a.state, a.wait_event_type, a.wait_event, left(a.query, 80)), '; ')
                    from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid
                    where l.granted and l.pid <> pg_catalog.pg_backend_pid()
                      and (l.relation in (p.parent, p.old_default, p.new_default, p.new_child)
                           or (l.mode not in ('AccessShareLock', 'RowShareLock')
                               and l.relation in (select con.confrelid from pg_catalog.pg_constraint con where con.conrelid = c.parent and con.contype = 'f')))), 'nobody now')
          using errcode = 'lock_not_available', hint = 'A long transaction holds a lock on the program''s partitions: the next maintenance run tries again. Nothing changed.';
      end if;
      perform pg_sleep(least(5.0, 0.05 * power(2, least(v_attempt, 7))) * (0.5 + random() / 2));
    end;
  end loop;
  for x in select * from jsonb_array_elements(p.partitions) loop
    insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id,
                                                   granularity, range_start, range_end)
    values ('partitions', x ->> 'name', p_table_key, x ->> 'level', (x ->> 'is_default')::boolean, (x ->> 'is_leaf')::boolean,
            (x ->> 'program_id')::uuid, (x ->> 'site_id')::uuid, x ->> 'granularity', (x ->> 'range_start')::timestamptz, (x ->> 'range_end')::timestamptz);
  end loop;
  delete from partition_mgmt.promotions y where y.table_key = p_table_key;
  return round(extract(epoch from clock_timestamp() - v_locked_at) * 1000, 2);
end
$$;

-- One bounded step of promotion for maintenance: finish the copy of the promotion in progress (up
-- to p_max_seconds of batches), cut it over once copied, or start the next candidate. Returns what
-- it did and whether more remains; a table being migrated is left alone.
create or replace function partition_mgmt.promote_step(p_table_key text, p_batch_size integer default 10000, p_max_seconds numeric default 5,
  out action text, out detail text, out more boolean)
language plpgsql
set search_path = ''
as $$
declare
  p partition_mgmt.promotions;
  v_t0 timestamptz := clock_timestamp();
  v_n bigint;
  v_rows bigint := 0;
  v_ms numeric;
  cand record;
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_room bigint;
  v_least bigint;
  v_held text;
  v_hint text;
  v_tries integer := 0;
  v_detail text;
  v_least_adds bigint;
  v_locks bigint;
  h partition_mgmt.promotion_held;
begin
  more := false;
  if partition_mgmt.migration_busy(p_table_key) then
    action := 'none'; detail := 'the table is being migrated';
    return;
  end if;
  select * into p from partition_mgmt.promotions x where x.table_key = p_table_key;
  if found and p.phase = 'copying' then
    loop
      v_n := partition_mgmt.promotion_copy_batch(p_table_key, p_batch_size);
      v_rows := v_rows + v_n;
      exit when v_n = 0 or clock_timestamp() - v_t0 >= make_interval(secs => p_max_seconds);
    end loop;
    action := 'copy'; more := true;
    detail := format('%s %s: %s rows copied in this step, %s in all', p.level, coalesce(p.site_id, p.program_id), v_rows,
                     (select x.rows_copied from partition_mgmt.promotions x where x.table_key = p_table_key));
    return;
  elsif found then
    v_ms := partition_mgmt.promotion_cutover(p_table_key);
    action := 'cutover'; more := true;
    detail := format('%s %s has partitions of its own (%s); ACCESS EXCLUSIVE on %s held %s ms', p.level, coalesce(p.site_id, p.program_id),
                     p.new_child, p.parent, v_ms);
    return;
  end if;
  -- without room in the tree's lock budget for one more leaf (a site's single leaf and its
  -- indexes), no promotion can start: nothing is counted
  if c.tree_shape = 'sized' and c.parent is not null then
    v_locks := partition_mgmt.keyless_statement_locks(c.parent);
    v_room := partition_mgmt.keyless_lock_allowance(c.min_keyless_statements) - v_locks;
    -- held at this very budget within the week: the same answer, without counting
    select * into h from partition_mgmt.promotion_held x where x.table_key = p_table_key;
    if found and h.keyless_locks = v_locks and h.lock_capacity = partition_mgmt.lock_capacity() and h.min_keyless = c.min_keyless_statements
       and h.held_at > now() - interval '7 days' and v_room < h.least_needed then
      action := 'held';
      detail := h.reason || format(' (held since %s; counted again when the tree, the lock table or the minimum changes, or after 7 days)', date_trunc('second', h.held_at));
      return;
    end if;
    delete from partition_mgmt.promotion_held x where x.table_key = p_table_key;
    v_least := 1 + (select count(*) from pg_catalog.pg_index i where i.indrelid = c.parent);
    if v_room < v_least then
      action := 'held';
      detail := format('promotions of "%s" are held: the tree is at its lock budget (a statement without the partition keys locks %s slots; %s more would leave fewer than %s such statements in the lock table of %s slots at once, and one more leaf needs %s). '
                       'Programs and sites that fill a leaf keep sharing theirs. For partitions of their own: raise target_rows_per_leaf, pin sites to longer periods (partition_mgmt.set_site_granularity), archive old periods, or raise max_locks_per_transaction.',
                       p_table_key, v_locks, greatest(v_room, 0), c.min_keyless_statements, partition_mgmt.lock_capacity(), v_least);
      insert into partition_mgmt.promotion_held (table_key, keyless_locks, lock_capacity, min_keyless, least_needed, reason)
      values (p_table_key, v_locks, partition_mgmt.lock_capacity(), c.min_keyless_statements, v_least, detail);
      return;
    end if;
  end if;
  -- the first of the candidates (largest first) that fits in the lock budget: start_promotion
  -- refuses one that does not (53400), and its subtransaction takes back what it built; five tries
  for cand in select * from partition_mgmt.promotion_candidates(p_table_key) loop
    exit when v_tries >= 5;
    v_tries := v_tries + 1;
    begin
      detail := partition_mgmt.start_promotion(p_table_key, cand.level, cand.program_id, cand.site_id, cand.reason);
      action := 'start'; more := true;
      return;
    exception when sqlstate '53400' then
      get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
      v_held := coalesce(v_held, sqlerrm || '. ' || v_hint);
      v_least_adds := least(v_least_adds, nullif(substring(v_detail from '^(\d+) more locks'), '')::bigint);
    end;
  end loop;
  if v_held is not null then
    action := 'held'; detail := v_held;
    -- (what start_promotion built was taken back: the tree's locks are still v_locks)
    if v_least_adds is not null and v_locks is not null then
      insert into partition_mgmt.promotion_held (table_key, keyless_locks, lock_capacity, min_keyless, least_needed, reason)
      values (p_table_key, v_locks, partition_mgmt.lock_capacity(), c.min_keyless_statements, v_least_adds, v_held);
    end if;
  else
    action := 'none'; detail := 'no program or site to promote';
  end if;
end
$$;

-- -----------------------------------------------------------------------------
-- Where each site's rows live
-- -----------------------------------------------------------------------------

-- One row per site and managed table: where its rows live (partitions of its own, or its
-- program's or the root's shared DEFAULT leaf), its period, pin and leaves.
create or replace view partition_mgmt.v_site_state as
select m.table_key, s.program_id, s.site_id,
       case when own.site_id is not null then 'own partitions'
            when exists (select from partition_mgmt.promotions p where p.table_key = m.table_key and p.site_id = s.site_id) then 'being promoted'
            when prog.program_id is not null then 'shares its program''s leaf'
            else 'shares the root''s leaf' end as state,
       own.granularity,
       (select g.granularity from partition_mgmt.site_granularity g where g.table_key = m.table_key and g.site_id = s.site_id) as pinned_granularity,
       (select count(*) from partition_mgmt.partition_registry r where r.table_key = m.table_key and r.site_id = s.site_id and r.is_leaf) as leaves,
       (select coalesce(sum(v.rows_estimate), 0) from partition_mgmt.v_partition_stats v
        where v.table_key = m.table_key and v.site_id = s.site_id and v.is_leaf) as rows_in_own_leaves
from partition_mgmt.managed_tables m
cross join public.sites s
left join partition_mgmt.partition_registry own on own.table_key = m.table_key and own.level = 'site' and not own.is_default and own.site_id = s.site_id
left join partition_mgmt.partition_registry prog on prog.table_key = m.table_key and prog.level = 'program' and not prog.is_default and prog.program_id = s.program_id
where m.parent is not null;
comment on view partition_mgmt.v_site_state is
  'Per site and managed table: partitions of its own (with its period) or a shared DEFAULT leaf (its program''s or the root''s), being promoted, pinned granularity, leaves and estimated rows in its own leaves.';

revoke all on partition_mgmt.v_site_state from public, anon, authenticated;
grant select on partition_mgmt.v_site_state to service_role;

revoke all on function partition_mgmt.promotion_candidates(text), partition_mgmt.start_promotion(text, text, uuid, uuid, text),
  partition_mgmt.promotion_copy_batch(text, integer), partition_mgmt.abort_promotion(text), partition_mgmt.promotion_cutover(text),
  partition_mgmt.promote_step(text, integer, numeric), partition_mgmt.install_promotion_sync(text),
  partition_mgmt.set_autovacuum(regclass, boolean)
  from public, anon, authenticated;
grant execute on function partition_mgmt.promotion_candidates(text), partition_mgmt.abort_promotion(text),
  partition_mgmt.promote_step(text, integer, numeric) to service_role;

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
