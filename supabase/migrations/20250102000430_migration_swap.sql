-- =============================================================================
-- The online migration's swap (see 20250102000400_migration_state.sql): the validated copy
-- goes live under the legacy name; the locked section is shared with the swap back (rollback).
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- Phase 7: swap (and the swap back, for rollback)
-- -----------------------------------------------------------------------------

-- Materialized views on p_from are rebuilt on p_to under a temporary name BEFORE the lock
-- (populating is the slow part), then only renamed under it. Returns the plan for the lock.

create or replace function partition_mgmt.prebuild_dependents(p_from regclass, p_to regclass, p_live_name text)
returns jsonb
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  d record;
  v_def text;
  v_out jsonb := '[]'::jsonb;
  v_shadow text;
  v_idx record;
  v_acl record;
begin
  for d in select * from partition_mgmt.dependent_views(p_from) x
           where x.view_name not in (select format('%I.%I', m.source_schema, m.source_table || '_by_submission') from partition_mgmt.managed_tables m)
           order by x.view_name loop
    if d.relkind = 'v' then
      -- read the definition while p_from still has the live name: after the renames the same
      -- text resolves to p_to
      v_out := v_out || jsonb_build_object('kind', 'view', 'name', d.view_name, 'def', pg_catalog.pg_get_viewdef(d.view_oid),
        'options', (select array_to_string(reloptions, ', ') from pg_catalog.pg_class where oid = d.view_oid));
    elsif d.relkind = 'm' then
      v_shadow := (select format('%I.%I', n.nspname, left(c.relname, 55) || '__mig') from pg_catalog.pg_class c
                   join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = d.view_oid);
      if to_regclass(v_shadow) is not null then
        execute format('drop materialized view %s', v_shadow);
      end if;
      v_def := partition_mgmt.repoint_sql(pg_catalog.pg_get_viewdef(d.view_oid), p_live_name, p_to::text);
      execute format('create materialized view %s as %s with data', v_shadow, rtrim(v_def, '; '));
      for v_idx in select c.relname, pg_catalog.pg_get_indexdef(i.indexrelid) as def from pg_catalog.pg_index i
                   join pg_catalog.pg_class c on c.oid = i.indexrelid where i.indrelid = d.view_oid loop
        execute replace(replace(v_idx.def, format(' ON %s ', d.view_name), format(' ON %s ', v_shadow)),
                        format('INDEX %s ', quote_ident(v_idx.relname)), format('INDEX %s ', quote_ident(left(v_idx.relname, 55) || '__mig')));
      end loop;
      for v_acl in select case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee,
                          string_agg(a.privilege_type, ', ') as privs
                   from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
                   where c.oid = d.view_oid and a.grantee <> c.relowner group by a.grantee loop
        execute format('grant %s on %s to %s', v_acl.privs, v_shadow, v_acl.grantee);
      end loop;
      execute format('comment on materialized view %s is %L', v_shadow, pg_catalog.obj_description(d.view_oid, 'pg_class'));
      v_out := v_out || jsonb_build_object('kind', 'matview', 'name', d.view_name, 'shadow', v_shadow,
        'indexes', (select coalesce(jsonb_agg(c.relname), '[]'::jsonb) from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indexrelid where i.indrelid = d.view_oid));
    end if;
  end loop;
  return v_out;
end
$$;

-- A table's row level security flags, policies and grants (the owner's excepted), as jsonb: what
-- the swap carries to the live table, and what the swap back gives the copy again.
create or replace function partition_mgmt.table_security(p_table regclass)
returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'rls', c.relrowsecurity,
    'force', c.relforcerowsecurity,
    'policies', coalesce((
      select jsonb_agg(jsonb_build_object(
               'name', p.polname,
               'kind', case when p.polpermissive then 'permissive' else 'restrictive' end,
               'cmd', case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end,
               'roles', (select string_agg(case when x = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(x)) end, ', ') from unnest(p.polroles) x),
               'qual', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
               'check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
               'comment', pg_catalog.obj_description(p.oid, 'pg_policy')) order by p.polname)
      from pg_catalog.pg_policy p where p.polrelid = c.oid), '[]'::jsonb),
    'grants', coalesce((
      select jsonb_agg(jsonb_build_object('grantee', g.grantee, 'privileges', g.privs) order by g.grantee)
      from (select case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee,
                   string_agg(a.privilege_type, ', ' order by a.privilege_type) as privs
            from pg_catalog.aclexplode(c.relacl) a where a.grantee <> c.relowner group by a.grantee) g), '[]'::jsonb))
  from pg_catalog.pg_class c where c.oid = p_table
$$;

-- Gives p_table the policies and grants of p_security (table_security's form) in place of its own,
-- and its row level security: p_exact_rls sets both flags as recorded (the copy, given back its
-- own), otherwise they are only switched on (the live table never loses RLS in a swap).
create or replace function partition_mgmt.apply_table_security(p_table regclass, p_security jsonb, p_exact_rls boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v jsonb;
begin
  if (p_security ->> 'rls')::boolean then
    execute format('alter table %s enable row level security', p_table);
  elsif p_exact_rls then
    execute format('alter table %s disable row level security', p_table);
  end if;
  if (p_security ->> 'force')::boolean then
    execute format('alter table %s force row level security', p_table);
  elsif p_exact_rls then
    execute format('alter table %s no force row level security', p_table);
  end if;
  for r in select polname from pg_catalog.pg_policy where polrelid = p_table loop
    execute format('drop policy %I on %s', r.polname, p_table);
  end loop;
  for v in select jsonb_array_elements(p_security -> 'policies') loop
    execute format('create policy %I on %s as %s for %s to %s%s%s', v ->> 'name', p_table, v ->> 'kind', v ->> 'cmd', v ->> 'roles',
      case when v ->> 'qual' is not null then format(' using (%s)', v ->> 'qual') else '' end,
      case when v ->> 'check' is not null then format(' with check (%s)', v ->> 'check') else '' end);
    if v ->> 'comment' is not null then
      execute format('comment on policy %I on %s is %L', v ->> 'name', p_table, v ->> 'comment');
    end if;
  end loop;
  for r in select distinct case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee
           from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a where c.oid = p_table and a.grantee <> c.relowner loop
    execute format('revoke all on table %s from %s', p_table, r.grantee);
  end loop;
  for v in select jsonb_array_elements(p_security -> 'grants') loop
    execute format('grant %s on table %s to %s', v ->> 'privileges', p_table, v ->> 'grantee');
  end loop;
end
$$;

-- Under the lock: everything that hangs on the table moves from p_from (just renamed away) to
-- p_to (which now has the live name). p_plan comes from prebuild_dependents.
create or replace function partition_mgmt.carry_dependents(p_table_key text, p_from regclass, p_to regclass, p_plan jsonb, p_copy_triggers boolean)
returns text[]
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v jsonb;
  v_schema text;
  v_carried text[] := '{}'::text[];
  v_def text;
begin
  -- row level security (enabled and forced, never weakened), policies and grants
  perform partition_mgmt.apply_table_security(p_to, partition_mgmt.table_security(p_from), false);
  -- triggers the app has on the table (ours and the ones already there excepted; of the daily
  -- metrics' statement triggers the partitioned table has the update's, and its key trigger
  -- records inserts and deletes: see install_key_trigger)
  if p_copy_triggers then
    for r in select t.tgname, pg_catalog.pg_get_triggerdef(t.oid) as def from pg_catalog.pg_trigger t
             where t.tgrelid = p_from and not t.tgisinternal and t.tgname not like 'partition\_mgmt\_sync\_%'
               and t.tgfoid is distinct from to_regprocedure('analytics.mark_metrics_changed()')
               and not exists (select from pg_catalog.pg_trigger x where x.tgrelid = p_to and x.tgname = t.tgname) loop
      execute replace(r.def, format(' ON %s ', p_from), format(' ON %s ', p_to));
      v_carried := v_carried || r.tgname;
    end loop;
  end if;
  -- views (re-created from the text read before the renames) and materialized views (shadows)
  for v in select * from jsonb_array_elements(coalesce(p_plan, '[]'::jsonb)) loop
    if v ->> 'kind' = 'view' then
      execute format('create or replace view %s%s as %s', v ->> 'name',
        case when coalesce(v ->> 'options', '') <> '' then format(' with (%s)', v ->> 'options') else '' end, v ->> 'def');
    else
      execute format('drop materialized view %s', v ->> 'name');
      v_schema := split_part(v ->> 'name', '.', 1);
      execute format('alter materialized view %s rename to %s', v ->> 'shadow', split_part(v ->> 'name', '.', 2));
      for v_def in select jsonb_array_elements_text(v -> 'indexes') loop
        execute format('alter index %s.%I rename to %I', v_schema, left(v_def, 55) || '__mig', v_def);
      end loop;
    end if;
  end loop;
  -- sequences owned by the table's columns (serial): dropping the old table must not drop them
  for r in select s.objid::regclass as seq, a.attname from pg_catalog.pg_depend s
           join pg_catalog.pg_attribute a on a.attrelid = s.refobjid and a.attnum = s.refobjsubid
           where s.classid = 'pg_catalog.pg_class'::regclass and s.refobjid = p_from and s.deptype = 'a'
             and (select relkind from pg_catalog.pg_class where oid = s.objid) = 'S' loop
    execute format('alter sequence %s owned by %s.%I', r.seq, p_to, r.attname);
  end loop;
  -- (publications: swap_publications, which changes the table's membership only)
  return v_carried;
end
$$;

-- Takes ACCESS EXCLUSIVE on both tables with lock_timeout, retrying with backoff and jitter;
-- runs the swap (or the swap back) under the locks. Returns (attempts, held_ms). Locks taken in a
-- failed attempt are released with its subtransaction, so waiting readers are never queued for
-- long. Nothing under the lock visits every leaf: the triggers the live tree needs were put on the
-- copy, dormant, when the sync started, and the counts were compared just before.
create or replace function partition_mgmt.swap_critical(p_table_key text, p_direction text, p_lock_timeout text, p_attempts integer, p_plan jsonb,
  out attempts integer, out held_ms numeric)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_old_timeout text := current_setting('lock_timeout');
  v_legacy regclass;
  v_locked_at timestamptz;
  v_carried text[];
  v_realtime boolean;
begin
  v_legacy := (select legacy_table from partition_mgmt.migration_state where table_key = p_table_key);
  attempts := 0;
  loop
    attempts := attempts + 1;
    begin
      perform set_config('lock_timeout', p_lock_timeout, true);
      -- the table the app uses first (the same order as the app's own statements)
      if p_direction = 'forward' then
        execute format('lock table only %s, %s in access exclusive mode', v_legacy, c.parent);
      else
        execute format('lock table only %s, %s in access exclusive mode', c.parent, v_legacy);
      end if;
      v_locked_at := clock_timestamp();

      if p_direction = 'forward' then
        -- the counts compared just before stay equal only while every write reaches both tables
        -- (offline, the legacy table is locked against writes instead)
        if (select s.mode from partition_mgmt.migration_state s where s.table_key = p_table_key) = 'online'
           and not exists (select from pg_catalog.pg_trigger where tgrelid = v_legacy and tgname = 'partition_mgmt_sync_to_partitioned' and tgenabled = 'O') then
          raise exception 'cannot swap "%": the sync trigger on % is missing or disabled, so the tables may differ', p_table_key, v_legacy
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('Nothing was swapped. Roll back (partition_mgmt.rollback_migration(%L)) and migrate again.', p_table_key);
        end if;
        if not exists (select from pg_catalog.pg_trigger where tgrelid = c.parent and tgname = 'partition_mgmt_sync_to_legacy') then
          raise exception 'cannot swap "%": the reverse sync trigger on % is missing', p_table_key, c.parent
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('Nothing was swapped. Roll back (partition_mgmt.rollback_migration(%L)) and migrate again.', p_table_key);
        end if;
        -- Realtime's subscribers get the change feed when supabase_realtime published the table
        v_realtime := partition_mgmt.in_realtime_publication(v_legacy);
        perform partition_mgmt.swap_publications(p_table_key, 'forward');
        execute format('drop trigger if exists partition_mgmt_sync_to_partitioned on %s', v_legacy);
        execute format('alter table %s rename to %I', v_legacy, c.source_table || '_old');
        execute format('alter table %s rename to %I', c.parent, c.source_table);
        if v_realtime then
          perform partition_mgmt.set_realtime_feed_triggers(p_table_key, c.parent, true);
        end if;
        -- the copy's own policies, grants and RLS, which the swap back gives it again
        update partition_mgmt.migration_state s set copy_security = partition_mgmt.table_security(c.parent) where s.table_key = p_table_key;
        v_carried := partition_mgmt.carry_dependents(p_table_key, v_legacy, c.parent, p_plan, true);
        perform partition_mgmt.carry_references(p_table_key, v_legacy, c.parent);
        perform partition_mgmt.set_reverse_sync(p_table_key, true);
        update partition_mgmt.migration_state set carried_triggers = v_carried where table_key = p_table_key;
      else
        perform partition_mgmt.set_reverse_sync(p_table_key, false);
        perform partition_mgmt.set_realtime_feed_triggers(p_table_key, c.parent, false);
        execute format('alter table %s rename to %I', c.parent, c.partitioned_table);
        execute format('alter table %s rename to %I', v_legacy, c.source_table);
        perform partition_mgmt.carry_dependents(p_table_key, c.parent, v_legacy, p_plan, false);
        -- the copy as it was before the swap: no API grants (nothing but the sync may write it)
        perform partition_mgmt.apply_table_security(c.parent, s.copy_security, true)
        from partition_mgmt.migration_state s where s.table_key = p_table_key and s.copy_security is not null;
        perform partition_mgmt.swap_publications(p_table_key, 'back');
        perform partition_mgmt.restore_references(p_table_key, c.parent);
      end if;
      perform partition_mgmt.install_read_api(p_table_key);
      held_ms := round(extract(epoch from clock_timestamp() - v_locked_at) * 1000, 2);
      perform set_config('lock_timeout', v_old_timeout, true);
      return;
    exception when lock_not_available then
      perform set_config('lock_timeout', v_old_timeout, true);
      perform partition_mgmt.log_migration(p_table_key, partition_mgmt.migration_phase(p_table_key), 'swap-wait',
        jsonb_build_object('attempt', attempts, 'lock_timeout', p_lock_timeout, 'direction', p_direction));
      if attempts >= p_attempts then
        raise exception 'swap of "%" (%) could not get ACCESS EXCLUSIVE on % and % within lock_timeout % after % attempts',
          p_table_key, p_direction, v_legacy, c.parent, p_lock_timeout, attempts
          using errcode = 'lock_not_available',
                hint = 'A long transaction holds a lock on one of the tables (see pg_locks / pg_stat_activity): let it finish and call the swap again. Nothing was changed.';
      end if;
      perform pg_sleep(least(5.0, 0.05 * power(2, least(attempts, 7))) * (0.5 + random() / 2));
    end;
  end loop;
end
$$;

create or replace function partition_mgmt.swap_tables(p_table text, p_lock_timeout text default '1s', p_attempts integer default 10, p_final_check text default 'count')
returns table (table_key text, phase text, attempts integer, lock_held_ms numeric, detail text)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_phase text := partition_mgmt.migration_phase(v_key);
  v_plan jsonb;
  v_blocked text;
  r record;
begin
  if p_final_check not in ('count', 'none') then
    raise exception 'p_final_check must be count or none, got %', p_final_check using hint = 'count compares the row counts right before the lock (recommended).';
  end if;
  if v_phase = 'swapped' then
    return query select v_key, v_phase, 0, (select s.swap_lock_ms from partition_mgmt.migration_state s where s.table_key = v_key), 'already swapped';
    return;
  end if;
  if v_phase <> 'validated' then
    raise exception 'cannot swap "%": the migration is in phase %, not validated', v_key, v_phase
      using hint = format('Finish the backfill (partition_mgmt.migrate_to_partitioned) and run select * from partition_mgmt.post_migration_validation(%L) first.', v_key);
  end if;
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  select string_agg(format('%s on %s: %s', f.constraint_name, f.child_table, f.reason), '; ') into v_blocked
  from partition_mgmt.referencing_foreign_keys(v_key, partition_mgmt.legacy_table(v_key)) f where not f.supported;
  if v_blocked is not null then
    raise exception 'cannot swap "%": foreign keys that cannot be carried reference it: %', v_key, v_blocked
      using errcode = 'feature_not_supported', hint = 'Drop or change those constraints (see pre_migration_check), then swap again. Nothing was changed.';
  end if;
  v_plan := partition_mgmt.prebuild_dependents(partition_mgmt.legacy_table(v_key), c.parent, format('%I.%I', c.source_schema, c.source_table));
  if partition_mgmt.in_realtime_publication(partition_mgmt.legacy_table(v_key)) then
    perform partition_mgmt.install_realtime_feed(v_key);   -- the swap publishes it and switches its triggers on
  end if;
  if p_final_check = 'count' then
    perform partition_mgmt.assert_equal_counts(v_key, 'forward');
  end if;
  select * into r from partition_mgmt.swap_critical(v_key, 'forward', p_lock_timeout, p_attempts, v_plan);
  update partition_mgmt.migration_state s set phase = 'swapped', swap_attempts = r.attempts, swap_lock_ms = r.held_ms, swapped_at = now(), updated_at = now()
  where s.table_key = v_key;
  perform partition_mgmt.log_migration(v_key, v_phase, 'swapped', jsonb_build_object('attempts', r.attempts, 'lock_held_ms', r.held_ms, 'dependents', v_plan));
  return query select v_key, 'swapped'::text, r.attempts, r.held_ms,
    format('%s is now the partitioned table; %s_old is kept in sync until finalize_migration or rollback_migration', c.source_table, c.source_table);
end
$$;
