-- =============================================================================
-- Migration phases 1 and 2: the pre-check (blockers, warnings, what is pending) and prepare (the
-- state row, foreign keys, indexes, then the partitions plan_tree plans).
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Phase 1: pre-migration checks
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.pre_migration_check(p_table text default null)
returns table (table_key text, check_name text, status text, detail text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  m partition_mgmt.managed_tables;
  v_legacy regclass;
  v_n bigint;
  v_n2 bigint;
  v_text text;
  v_phase text;
  v_fk record;
  v_plan record;
  v_needed bigint;
  v_pubs text;
  v_denied text;
  v_feed_taken boolean;
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
begin
  for m in select * from partition_mgmt.managed_tables mt where v_key is null or mt.table_key = v_key order by mt.table_key loop
    table_key := m.table_key;
    v_phase := partition_mgmt.migration_phase(m.table_key);
    if v_phase = 'swapped' then
      return query select m.table_key, 'migration state', 'ok', 'already swapped: the partitioned table is live; finalize_migration or rollback_migration';
      continue;
    end if;
    begin
      v_legacy := partition_mgmt.legacy_table(m.table_key);
    exception when others then
      return query select m.table_key, 'legacy table', 'blocker', sqlerrm;
      continue;
    end;
    return query select m.table_key, 'migration state', 'ok', format('phase %s', v_phase);
    -- what the push left to run online must be done first: the rows need their company_id and
    -- the table its isolation policy before the copy is made and the policies carried
    return query select m.table_key, format('setup step %s', t.task), case when t.done then 'ok' else 'blocker' end,
                        case when t.done then t.progress
                             else format('pending: %s (%s). Hint: run npm run admin -- setup, or select partition_mgmt.setup_runner() \gexec in psql', t.progress, t.detail) end
                 from partition_mgmt.setup_tasks() t where t.table_key = m.table_key order by t.ord;

    -- primary key on the id alone: keyset batches and the reverse sync's upsert use it
    select string_agg(a.attname, ', ') into v_text
    from pg_catalog.pg_index i join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = v_legacy and i.indisprimary;
    return query select m.table_key, 'primary key',
      case when v_text = m.id_column then 'ok' else 'blocker' end,
      case when v_text = m.id_column then format('primary key (%s)', v_text)
           else format('%s has primary key (%s); the migration needs a primary key on %s alone. Hint: add it (or a unique index) before migrating.', v_legacy, coalesce(v_text, 'none'), m.id_column) end;

    if m.parent is null then
      return query select m.table_key, 'partitioned table', 'warning', format('none yet: prepare creates it (partition_mgmt.create_partitioned_table(%L))', m.table_key);
    else
      v_text := partition_mgmt.column_drift(m.table_key);
      return query select m.table_key, 'columns', case when v_text is null then 'ok' else 'blocker' end,
        case when v_text is not null then format('columns differ between %s and %s: %s. Hint: alter table %s add column … the same way, then re-run the check.', v_legacy, m.parent, v_text, m.parent)
             else format('%s and %s have the same columns', v_legacy, m.parent) end;
    end if;
    if to_regclass(format('%I.%I', m.source_schema, m.source_table || '_old')) is not null then
      return query select m.table_key, 'swap name free', 'blocker',
        format('%I.%I already exists; the swap renames the legacy table to it. Hint: drop or rename it.', m.source_schema, m.source_table || '_old');
    end if;

    -- partition keys
    execute format('select count(*) filter (where %1$I is null or %2$I is null),
                           count(*) filter (where %1$I is not null and %2$I is not null and %3$I is null
                                            and exists (select from public.sites s where s.site_id = t.%1$I)),
                           count(*) filter (where %1$I is not null and %2$I is not null and %3$I is null
                                            and not exists (select from public.sites s where s.site_id = t.%1$I))
                    from %4$s t', m.site_column, m.time_column, m.program_column, v_legacy) into v_n, v_n2, v_text;
    return query select m.table_key, 'partition keys',
      case when v_n > 0 or v_text::bigint > 0 then 'blocker' when v_n2 > 0 then 'warning' else 'ok' end,
      case when v_n > 0 or v_text::bigint > 0 then
             format('%s row(s) with NULL %s or %s and %s row(s) with NULL %s whose site is unknown cannot be placed. Hint: fix or delete them (select * from %s where %I is null or %I is null).',
                    v_n, m.site_column, m.time_column, v_text, m.program_column, v_legacy, m.site_column, m.time_column)
           when v_n2 > 0 then format('%s row(s) with NULL %s: the partitioned table holds their site''s program (a partition key is NOT NULL), and so will rows the app writes without it after the swap; %s_old and a rollback keep the NULL (README, "Gasifier rows without program_id")', v_n2, m.program_column, m.source_table)
           else 'every row has its partition keys' end;

    execute format('select count(*) from %s t left join public.pilot_programs p on p.program_id = coalesce(t.%I, (select s.program_id from public.sites s where s.site_id = t.%I))
                    where p.program_id is null or t.%I < p.start_date::timestamp at time zone ''UTC'' or t.%I >= (p.end_date + 1)::timestamp at time zone ''UTC''',
      v_legacy, m.program_column, m.site_column, m.time_column, m.time_column) into v_n;
    return query select m.table_key, 'rows outside program dates', case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'every row lies within its program''s start and end dates'
           else format('%s row(s) lie outside their program''s dates: prepare creates partitions for their months too', v_n) end;

    -- the tree the data asks for, against the server's lock table
    select * into v_plan from partition_mgmt.plan_lock_budget(m.table_key, v_legacy);
    return query select m.table_key, 'partition tree', 'ok',
      format('%s tree%s: %s program(s) with partitions of their own, %s site(s) with partitions of their own, %s leaves (%s relations)',
             m.tree_shape, case when m.tree_shape = 'sized' then format(' (a program or site gets partitions of its own at %s rows)', m.target_rows_per_leaf) else '' end,
             v_plan.programs, v_plan.own_sites, v_plan.leaves, v_plan.relations);
    -- the max_locks_per_transaction at which the minimum would fit
    v_needed := ceil(m.min_keyless_statements * v_plan.keyless_locks::numeric
                     / (v_plan.lock_capacity / current_setting('max_locks_per_transaction')::numeric));
    return query select m.table_key, 'lock budget',
      case when v_plan.keyless_at_once >= m.min_keyless_statements then 'ok' else 'blocker' end,
      format('a statement without the partition keys (what .eq(''%s'', …) sends) would take %s locks on the new tree (every partition, every index of every leaf); the lock table holds %s slots (max_locks_per_transaction %s), so %s such statements fit at once (minimum %s)%s',
             m.id_column, v_plan.keyless_locks, v_plan.lock_capacity, current_setting('max_locks_per_transaction'), v_plan.keyless_at_once, m.min_keyless_statements,
             case when v_plan.keyless_at_once >= m.min_keyless_statements then ''
                  else format('. Hint: fewer leaves: %s; or raise the server''s lock table: supabase --experimental postgres-config update --config max_locks_per_transaction=%s (restarts the database)',
                              case when m.tree_shape = 'literal' then format('use the sized tree (update partition_mgmt.managed_tables set tree_shape = ''sized'' where table_key = %L)', m.table_key)
                                   else format('raise target_rows_per_leaf (now %s) or pin coarser periods with set_site_granularity', m.target_rows_per_leaf) end,
                              v_needed) end);
    select count(*) filter (where l.carried), string_agg(format('%s (%s)', l.index_name, coalesce(l.reason, 'carried')), ', ')
      into v_n, v_text from partition_mgmt.legacy_indexes(m.table_key, v_legacy) l;
    return query select m.table_key, 'indexes per leaf', 'ok',
      format('%s index(es) on every leaf (every statement without the keys locks each one); of the legacy table''s plain indexes %s carried: %s',
             partition_mgmt.indexes_per_leaf(m.table_key, v_legacy), v_n, coalesce(v_text, 'none'));

    -- what hangs on the table
    -- carried at the swap as references enforced by triggers (migration 0250)
    select count(*), count(*) filter (where not f.supported), string_agg(format('%s.%s', f.child_table, f.constraint_name), ', ')
      into v_n, v_n2, v_text from partition_mgmt.referencing_foreign_keys(m.table_key, v_legacy) f;
    return query select m.table_key, 'foreign keys to the table', case when v_n2 > 0 then 'blocker' else 'ok' end,
      case when v_n = 0 then 'no foreign key references the table'
           else format('%s foreign key(s) reference %s: %s; %s of them cannot be carried (see the rows below)', v_n, v_legacy, v_text, v_n2) end;
    for v_fk in select * from partition_mgmt.referencing_foreign_keys(m.table_key, v_legacy) loop
      return query select m.table_key, format('foreign key %s', v_fk.constraint_name),
        case when not v_fk.supported then 'blocker' when not v_fk.child_indexed then 'warning' else 'ok' end,
        case when not v_fk.supported then
               format('%s on %s (%s) cannot be carried: %s', v_fk.constraint_name, v_fk.child_table, v_fk.definition, v_fk.reason)
             else format('%s on %s (%s): at the swap it becomes a reference enforced by triggers against partition_mgmt.observation_keys, with the same ON DELETE / ON UPDATE rule; rollback declares it again%s',
                         v_fk.constraint_name, v_fk.child_table, v_fk.definition,
                         case when v_fk.child_indexed then '' else format('. Hint: %s.%s has no index, so every delete of an observation scans %s: create index concurrently on %s (%I)',
                                                                        v_fk.child_table, v_fk.child_column, v_fk.child_table, v_fk.child_table, v_fk.child_column) end) end;
    end loop;
    select count(*), string_agg(c.conname, ', ') into v_n, v_text
    from pg_catalog.pg_constraint c where c.contype = 'f' and c.conrelid = v_legacy;
    return query select m.table_key, 'foreign keys from the table', 'ok',
      format('%s foreign key(s), added to the partitioned table at prepare: %s', v_n, coalesce(v_text, '-'));
    select count(*), string_agg(format('%s (%s)', d.view_name, case d.relkind when 'm' then 'materialized' else 'view' end), ', ') into v_n, v_text
    from partition_mgmt.dependent_views(v_legacy) d;
    return query select m.table_key, 'dependent views', 'ok',
      case when v_n = 0 then 'none' else format('%s, re-pointed at the swap (materialized views rebuilt just before it): %s', v_n, v_text) end;
    -- a view that reads the table with its owner's rights bypasses RLS (Supabase's advisor lint 0010)
    for v_fk in select d.view_name from partition_mgmt.dependent_views(v_legacy) d join pg_catalog.pg_class k on k.oid = d.view_oid
                where d.relkind = 'v' and not coalesce(k.reloptions @> array['security_invoker=true'], false)
                  and (has_table_privilege('anon', k.oid, 'select') or has_table_privilege('authenticated', k.oid, 'select')) loop
      return query select m.table_key, format('view %s', v_fk.view_name), 'warning',
        format('%s reads %s with its owner''s rights (no security_invoker), so RLS does not apply and every caller who may select from it sees every company''s rows (Supabase advisor lint 0010 security_definer_view). The swap keeps it so. Hint: alter view %s set (security_invoker = true)',
               v_fk.view_name, v_legacy, v_fk.view_name);
    end loop;
    select count(*), string_agg(t.tgname, ', ') into v_n, v_text from pg_catalog.pg_trigger t where t.tgrelid = v_legacy and not t.tgisinternal;
    return query select m.table_key, 'triggers', 'ok', format('%s trigger(s), carried at the swap: %s', v_n, coalesce(v_text, '-'));
    -- new ids: time-ordered where the legacy ones are random (create_partitioned_table)
    return query select m.table_key, 'new ids', 'ok',
      case when partition_mgmt.random_uuid_default(v_legacy, m.id_column) and m.time_ordered_ids then
        format('%s defaults to a random UUID (%s); on the partitioned table new ids default to time-ordered ones (UUID version 7: the time in milliseconds, then 74 random bits; partition_mgmt.time_ordered_uuid_default()), so the id indexes take them at their right edge instead of a random page. Existing ids and ids the app sends are kept. To keep the random default: update partition_mgmt.managed_tables set time_ordered_ids = false where table_key = %L (before prepare_migration)',
               m.id_column, partition_mgmt.column_default(v_legacy, m.id_column), m.table_key)
      when partition_mgmt.random_uuid_default(v_legacy, m.id_column) then
        format('%s keeps its random UUID default (time_ordered_ids = false)', m.id_column)
      else format('%s keeps the legacy table''s default', m.id_column) end;
    -- the app's upserts on the id alone: PostgreSQL refuses them on a partitioned table (42P10, at
    -- planning, before any trigger could help), so say so from what the app has sent
    v_text := (select e.extnamespace::regnamespace::text from pg_catalog.pg_extension e where e.extname = 'pg_stat_statements');
    if v_text is not null then
      begin
        execute format('select count(*), coalesce(sum(s.calls), 0)::bigint from %I.pg_stat_statements s
                        where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
                          and s.query ~* %L and s.query ~* %L',
                       v_text, m.source_table, format('on\s+conflict\s*\(\s*"?%s"?\s*\)', m.id_column))
          into v_n, v_n2;
      exception when others then
        v_n := 0;   -- statistics this role may not read
      end;
      return query select m.table_key, format('upserts on %s', m.id_column), case when v_n > 0 then 'warning' else 'ok' end,
        case when v_n = 0 then format('pg_stat_statements shows no ON CONFLICT (%s) on %s', m.id_column, m.source_table)
             else format('the app sent %s statement(s) upserting %s with ON CONFLICT (%s) (%s calls, pg_stat_statements): after the swap PostgreSQL refuses each with 42P10 (a partitioned table has no unique index on %s alone). Hint: conflict on the whole primary key (%s, %s, %s, %s) with rows that carry their keys, or update_observation_by_id; README, "What changes for your app"',
                         v_n, m.source_table, m.id_column, v_n2, m.id_column, m.id_column, m.program_column, m.site_column, m.time_column) end;
    end if;
    -- a policy of the project that the bundle kept although it differs from the bundle's
    for v_fk in select r.object, r.detail from private.deploy_report r
                where r.action = 'kept (differs)' and r.object like format('policy %% on %s', v_legacy) loop
      return query select m.table_key, v_fk.object, 'warning',
        format('kept as the project had it, not replaced by the bundle''s: %s. Company isolation is what your policy says; the swap carries it as it is', v_fk.detail);
    end loop;
    select count(*), string_agg(p.polname, ', ') into v_n, v_text from pg_catalog.pg_policy p where p.polrelid = v_legacy;
    return query select m.table_key, 'RLS policies',
      case when (select relrowsecurity from pg_catalog.pg_class where oid = v_legacy) then 'ok' else 'warning' end,
      format('RLS %s; %s polic(ies), carried at the swap: %s',
             case when (select relrowsecurity from pg_catalog.pg_class where oid = v_legacy) then 'enabled' else 'DISABLED (every API role with grants sees every row)' end,
             v_n, coalesce(v_text, '-'));
    -- publications: what the swap does to them (the table's membership only, never an option)
    select count(distinct p.publication), string_agg(distinct quote_ident(p.publication), ', '),
           string_agg(format('%s: %s, %s', p.object, p.action, p.detail), '; ' order by p.object),
           string_agg(distinct format('%I (owner %I)', p.publication, p.owner), ', ') filter (where p.action <> 'unchanged' and not p.may_alter)
      into v_n, v_text, v_pubs, v_denied
    from partition_mgmt.publication_plan(m.table_key) p;
    v_feed_taken := partition_mgmt.in_realtime_publication(v_legacy) and to_regclass(partition_mgmt.realtime_feed_name(m.table_key)) is not null
                    and to_regclass(partition_mgmt.realtime_feed_name(m.table_key)) is distinct from
                        (select s.realtime_feed from partition_mgmt.migration_state s where s.table_key = m.table_key);
    return query select m.table_key, 'publications (Realtime)',
      case when v_denied is not null or v_feed_taken then 'blocker' when v_n > 0 then 'warning' else 'ok' end,
      case when v_n = 0 then 'in no publication'
           else format('published by %s. %sAt the swap: %s. No publication''s options change (publish_via_partition_root applies to all its tables); private.deploy_report lists each change and rollback restores every publication as it was%s%s',
                  v_text,
                  case when partition_mgmt.in_realtime_publication(v_legacy) then
                    format('Realtime: once the table is partitioned, Postgres Changes subscribers of %s receive nothing (wal2json reports changes under the partitions'' names); '
                           'they subscribe to the INSERTs of %s instead, one row per change (op, record, old_record; a move to another partition is an UPDATE; README, "Realtime after the swap"). ',
                           v_legacy, partition_mgmt.realtime_feed_name(m.table_key))
                  else '' end,
                  v_pubs,
                  case when v_denied is not null then
                    format('. Blocker: %s may not alter %s. Hint: swap as the owner, or alter publication … owner to %s', current_user, v_denied, current_user) else '' end,
                  case when v_feed_taken then
                    format('. Blocker: %s already exists, and the swap creates the change feed under that name. Hint: rename your table (alter table %s rename to …)',
                           partition_mgmt.realtime_feed_name(m.table_key), partition_mgmt.realtime_feed_name(m.table_key)) else '' end) end;
    select count(*) into v_n from pg_catalog.pg_attribute a where a.attrelid = v_legacy and a.attnum > 0 and not a.attisdropped and (a.attidentity <> '' or a.attgenerated <> '');
    if v_n > 0 then
      return query select m.table_key, 'identity and generated columns', 'blocker',
        format('%s identity or generated column(s): the copy would not preserve them. Hint: convert identity to a sequence default first.', v_n);
    end if;

    -- the environment
    select count(*), string_agg(format('pid %s (%s, %s)', a.pid, a.state, date_trunc('second', now() - a.xact_start)), ', ') into v_n, v_text
    from pg_catalog.pg_stat_activity a
    where a.xact_start < now() - interval '1 minute' and a.pid <> pg_catalog.pg_backend_pid() and a.datname = current_database();
    return query select m.table_key, 'long transactions', case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'no transaction older than a minute'
           else format('%s transaction(s) older than a minute (they delay the trigger install and the swap): %s', v_n, left(v_text, 400)) end;
    select greatest(c.reltuples, 0)::bigint, pg_catalog.pg_total_relation_size(c.oid) into v_n, v_n2 from pg_catalog.pg_class c where c.oid = v_legacy;
    return query select m.table_key, 'estimated size and time', 'ok',
      format('about %s rows, %s; the backfill runs at roughly 10,000-30,000 rows/s on small hardware (scripts/bench-migration.ts measures yours), i.e. about %s to %s',
             v_n, pg_catalog.pg_size_pretty(v_n2), make_interval(secs => v_n / 30000.0)::text, make_interval(secs => v_n / 10000.0)::text);
  end loop;
  -- the app's other tables: access the bundle leaves as it is, and how to opt in
  if v_key is null then
    return query select 'app'::text, format('access of %s', a.table_name), a.status, format('%s. Opt in: %s', a.detail, a.opt_in_sql)
                 from partition_mgmt.app_table_access() a;
    return query select 'app'::text, 'setup step metrics', case when t.done then 'ok' else 'warning' end,
                        case when t.done then t.progress else format('pending: %s (%s)', t.progress, t.detail) end
                 from partition_mgmt.setup_tasks() t where t.task = 'metrics';
  end if;
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 2: prepare (state row, foreign keys, indexes, then the partitions plan_tree plans)
-- -----------------------------------------------------------------------------

-- Creates what the migration needs before the sync starts. The partitions are those plan_tree
-- plans for the legacy table's data (sized: only what the rows fill; literal: every program, site
-- and period), created in calls that each stay within the transaction's DDL lock budget: a call
-- that runs out says so and leaves the phase 'preparing'; the next call goes on where it stopped.
-- (A sized tree of a few million rows takes one call.)
create or replace function partition_mgmt.prepare_migration(p_table text, p_mode text default 'online')
returns text
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables;
  v_legacy regclass;
  v_parent regclass;
  v_blockers text;
  r record;
  v_def text;
  v_phase text;
  v_total bigint;
  v_before integer := (select count(*) from partition_mgmt.partition_registry);
begin
  if p_mode not in ('online', 'offline') then
    raise exception 'p_mode must be online or offline, got %', p_mode;
  end if;
  if partition_mgmt.migration_phase(v_key) = 'rolled_back' then
    perform partition_mgmt.finish_rollback(v_key);   -- the copy of the rolled-back run is emptied first
  end if;
  v_phase := partition_mgmt.migration_phase(v_key);
  if v_phase not in ('idle', 'preparing') then
    return format('%s: already %s', v_key, v_phase);
  end if;
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  v_phase := partition_mgmt.migration_phase(v_key);
  if v_phase not in ('idle', 'preparing') then
    return format('%s: already %s', v_key, v_phase);
  end if;

  if v_phase = 'idle' then
    perform partition_mgmt.create_partitioned_table(v_key, false);
    c := partition_mgmt.config(v_key);
    v_legacy := partition_mgmt.legacy_table(v_key);
    v_parent := c.parent;
    select string_agg(format('%s: %s', k.check_name, k.detail), E'\n') into v_blockers
    from partition_mgmt.pre_migration_check(v_key) k where k.status = 'blocker';
    if v_blockers is not null then
      raise exception 'cannot migrate "%": pre-migration check found blockers:%', v_key, E'\n' || v_blockers
        using hint = format('Fix them, then retry; select * from partition_mgmt.pre_migration_check(%L) lists every check.', v_key);
    end if;
    if exists (select from partition_mgmt.observation_keys k where k.table_key = v_key limit 1) then
      execute format('select exists (select from %s limit 1)', v_parent) into v_def;
      if v_def::boolean then
        raise exception '% already holds rows, but no migration of "%" is recorded', v_parent, v_key
          using hint = format('It is a leftover of an interrupted run: select partition_mgmt.rollback_migration(%L) empties it.', v_key);
      end if;
    end if;
    -- the legacy table's foreign keys (validated now, while the copy is empty: instant) and plain
    -- indexes, before the partitions, which inherit them as they are created
    for r in select con.conname, pg_catalog.pg_get_constraintdef(con.oid) as def
             from pg_catalog.pg_constraint con where con.conrelid = v_legacy and con.contype = 'f' order by con.conname loop
      if not exists (select from pg_catalog.pg_constraint x where x.conrelid = v_parent and x.contype = 'f'
                     and pg_catalog.pg_get_constraintdef(x.oid) = r.def) then
        perform partition_mgmt.run_ddl(format('alter table %s add constraint %I %s', v_parent, r.conname, r.def));
      end if;
    end loop;
    for r in select * from partition_mgmt.legacy_indexes(v_key, v_legacy) l where l.carried loop
      perform partition_mgmt.run_ddl(format('create index if not exists %I on %s%s',
        left(case when position(c.source_table in r.index_name) > 0 then replace(r.index_name, c.source_table, c.partitioned_table)
                  else r.index_name || '_p' end, 63),
        v_parent, substring(r.definition from ' USING .*$')));
    end loop;
    execute format('select count(*) from %s', v_legacy) into v_total;
    insert into partition_mgmt.migration_state (table_key, phase, mode, legacy_table, rows_total)
    values (v_key, 'preparing', p_mode, v_legacy, v_total);
    perform partition_mgmt.log_migration(v_key, 'idle', 'preparing', jsonb_build_object('rows_total', v_total, 'mode', p_mode,
      'tree_shape', c.tree_shape, 'target_rows_per_leaf', c.target_rows_per_leaf));
  end if;
  c := partition_mgmt.config(v_key);
  v_legacy := partition_mgmt.legacy_table(v_key);

  -- the partitions, in order (program, its sites, their periods), each one idempotent
  for r in select * from partition_mgmt.plan_tree(v_key, v_legacy) loop
    exit when partition_mgmt.ddl_budget_exhausted();
    -- a program deleted since the plan was made is skipped; one still there stays until we commit
    perform from public.pilot_programs where program_id = r.program_id for key share;
    if found then
      case r.level
        when 'program' then perform partition_mgmt.ensure_program_partition(v_key, r.program_id);
        when 'site' then perform partition_mgmt.ensure_site_partition(v_key, r.program_id, r.site_id, r.granularity);
        else perform partition_mgmt.ensure_period_partition(v_key, r.program_id, r.site_id, r.range_start);
      end case;
    end if;
  end loop;

  if partition_mgmt.budget_spent() then
    perform partition_mgmt.log_migration(v_key, 'preparing', 'preparing', jsonb_build_object(
      'created', (select count(*) from partition_mgmt.partition_registry) - v_before, 'lock_budget', partition_mgmt.ddl_lock_budget()));
    return format('%s: preparing; %s partition(s) created in this call, the lock budget of %s slots is spent: call prepare_migration(%L) again',
      v_key, (select count(*) from partition_mgmt.partition_registry) - v_before, partition_mgmt.ddl_lock_budget(), v_key);
  end if;
  perform partition_mgmt.set_migration_phase(v_key, array['preparing'], 'prepared',
    jsonb_build_object('partitions', (select count(*) from partition_mgmt.partition_registry where table_key = v_key)));
  return format('%s: prepared (%s rows to copy into %s, %s leaves)', v_key,
    (select s.rows_total from partition_mgmt.migration_state s where s.table_key = v_key), c.parent,
    (select count(*) from partition_mgmt.partition_registry g where g.table_key = v_key and g.is_leaf));
end
$$;
