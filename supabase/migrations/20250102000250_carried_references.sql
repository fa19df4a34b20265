-- =============================================================================
-- Foreign keys that reference an observation table, carried across the swap.
--
-- A partitioned table can only be referenced through a key that contains its partition keys, so
-- `references petri_observations (observation_id)` cannot survive the swap as a declared constraint.
-- The swap replaces each one with triggers that enforce the same rule against
-- partition_mgmt.observation_keys (a constraint trigger on the referencing table that checks and
-- locks FOR KEY SHARE; triggers on the observation table that apply the ON DELETE / ON UPDATE action;
-- TRUNCATE refused while references exist) and records it in partition_mgmt.carried_references, so a
-- rollback declares it again. Exact under READ COMMITTED, the Data API's isolation. Supported:
-- single-column references to the id column from another table; others are pre-check blockers.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

create table if not exists partition_mgmt.carried_references (
  table_key          text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  child_table        regclass not null,
  constraint_name    text not null,
  child_column       text not null,
  on_delete          "char" not null,   -- pg_constraint.confdeltype: a r c n d
  on_update          "char" not null,   -- pg_constraint.confupdtype
  is_deferrable      boolean not null,
  initially_deferred boolean not null,
  definition         text not null,     -- pg_get_constraintdef, to declare it again on rollback
  carried_at         timestamptz not null default now(),
  primary key (child_table, constraint_name)
);
create index if not exists carried_references_table_key_idx on partition_mgmt.carried_references (table_key);
revoke all on partition_mgmt.carried_references from public, anon, authenticated;
grant select on partition_mgmt.carried_references to service_role;
comment on table partition_mgmt.carried_references is
  'Foreign keys to an observation table that the swap replaced with triggers (a partitioned table cannot be referenced by observation_id alone). rollback_migration declares them again.';

-- Every foreign key that references p_table, and whether the swap can carry it.
create or replace function partition_mgmt.referencing_foreign_keys(p_table_key text, p_table regclass)
returns table (constraint_oid oid, constraint_name text, child_table regclass, child_column text,
               on_delete "char", on_update "char", is_deferrable boolean, initially_deferred boolean,
               definition text, child_indexed boolean, supported boolean, reason text)
language sql
stable
set search_path = ''
as $$
  select c.oid, c.conname::text, c.conrelid::regclass, ca.attname::text,
         c.confdeltype, c.confupdtype, c.condeferrable, c.condeferred,
         pg_catalog.pg_get_constraintdef(c.oid),
         exists (select from pg_catalog.pg_index i where i.indrelid = c.conrelid and i.indkey[0] = c.conkey[1]),
         (cardinality(c.conkey) = 1 and c.conrelid <> p_table and ra.attname = m.id_column),
         case when cardinality(c.conkey) <> 1 then format('%s columns: only single-column references to %s can be carried', cardinality(c.conkey), m.id_column)
              when c.conrelid = p_table then 'the table references itself: drop the constraint before migrating and check it in the app'
              when ra.attname <> m.id_column then format('references %s, not %s: only references to %s can be carried', ra.attname, m.id_column, m.id_column)
         end
  from pg_catalog.pg_constraint c
  join partition_mgmt.managed_tables m on m.table_key = p_table_key
  left join pg_catalog.pg_attribute ca on ca.attrelid = c.conrelid and ca.attnum = c.conkey[1]
  left join pg_catalog.pg_attribute ra on ra.attrelid = c.confrelid and ra.attnum = c.confkey[1]
  where c.contype = 'f' and c.confrelid = p_table
  order by c.conrelid::regclass::text, c.conname
$$;

-- Constraint trigger on the referencing table. Arguments: table key, constraint name, column,
-- name of the referenced table (for the message), referenced column.
create or replace function partition_mgmt.reference_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_value text := to_jsonb(new) ->> tg_argv[2];
  v_still boolean;
begin
  if v_value is null then
    return null;
  end if;
  if tg_op = 'UPDATE' and (to_jsonb(old) ->> tg_argv[2]) is not distinct from v_value then
    return null;
  end if;
  perform from partition_mgmt.observation_keys k
  where k.table_key = tg_argv[0] and k.observation_id = v_value::uuid
  for key share;
  if found then
    return null;
  end if;
  -- a deferred check fires at commit: the referencing row may have changed or gone since
  execute format('select exists (select from %s where %I = $1)', tg_relid::regclass, tg_argv[2]) into v_still using v_value::uuid;
  if not v_still then
    return null;
  end if;
  raise exception 'insert or update on table "%" violates foreign key constraint "%"', tg_table_name, tg_argv[1]
    using errcode = 'foreign_key_violation',
          detail = format('Key (%s)=(%s) is not present in table "%s".', tg_argv[2], v_value, tg_argv[3]),
          hint = format('Insert the %s row first (or in the same transaction before this one), or use an existing %s.', tg_argv[3], tg_argv[4]);
end
$$;
revoke all on function partition_mgmt.reference_check() from public;

-- Trigger on the observation table. Arguments: table key, constraint name, referencing table oid,
-- its column, action (a r c n d), id column, name of the observation table (for the message), and
-- for the delete trigger the ON UPDATE action: an UPDATE that changes the id and moves the row to
-- another partition arrives as a delete (the move trigger recorded the new id), and is an update.
create or replace function partition_mgmt.reference_action()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_child regclass := tg_argv[2]::oid::regclass;
  v_col text := tg_argv[3];
  v_action text := tg_argv[4];
  v_old uuid := (to_jsonb(old) ->> tg_argv[5])::uuid;
  v_new uuid;
  v_found boolean;
begin
  -- put on the copy when the sync starts, these act only once it is the live table (tg_argv[6]
  -- names the live table): before the swap and after a swap back the declared constraint on the
  -- legacy table is the one that acts
  if to_regclass(tg_argv[6]) is distinct from (select m.parent from partition_mgmt.managed_tables m where m.table_key = tg_argv[0]) then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    v_new := (to_jsonb(new) ->> tg_argv[5])::uuid;
    if v_new = v_old then
      return null;
    end if;
  elsif exists (select from partition_mgmt.observation_keys k where k.table_key = tg_argv[0] and k.observation_id = v_old) then
    -- moved to another partition (its key row stayed), or deleted and inserted again in this statement
    return null;
  else
    v_new := nullif(current_setting(partition_mgmt.renamed_id_setting(tg_argv[0], v_old), true), '')::uuid;
    if v_new is not null and exists (select from partition_mgmt.observation_keys k where k.table_key = tg_argv[0] and k.observation_id = v_new) then
      v_action := tg_argv[7];
    else
      v_new := null;
    end if;
  end if;
  if v_action in ('a', 'r') then
    execute format('select exists (select from %s where %I = $1)', v_child, v_col) into v_found using v_old;
    if v_found then
      raise exception 'update or delete on table "%" violates foreign key constraint "%" on table "%"', tg_argv[6], tg_argv[1], v_child
        using errcode = 'foreign_key_violation',
              detail = format('Key (%s)=(%s) is still referenced from table "%s".', tg_argv[5], v_old, v_child),
              hint = format('Delete or re-point the %s rows whose %s is %s first.', v_child, v_col, v_old);
    end if;
  elsif v_action = 'c' then
    if v_new is null then
      execute format('delete from %s where %I = $1', v_child, v_col) using v_old;
    else
      execute format('update %s set %I = $2 where %I = $1', v_child, v_col, v_col) using v_old, v_new;
    end if;
  elsif v_action = 'n' then
    execute format('update %s set %I = null where %I = $1', v_child, v_col, v_col) using v_old;
  elsif v_action = 'd' then
    execute format('update %s set %I = default where %I = $1', v_child, v_col, v_col) using v_old;
  end if;
  return null;
end
$$;
revoke all on function partition_mgmt.reference_action() from public;

-- BEFORE TRUNCATE on the observation table: refused while any row references it.
create or replace function partition_mgmt.reference_truncate_guard()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  r record;
  v_found boolean;
begin
  for r in select * from partition_mgmt.carried_references c where c.table_key = tg_argv[0] loop
    execute format('select exists (select from %s where %I is not null)', r.child_table, r.child_column) into v_found;
    if v_found then
      raise exception 'cannot truncate a table referenced in a foreign key constraint'
        using errcode = 'feature_not_supported',
              detail = format('Table "%s" references "%s" through %s (carried by partition_mgmt).', r.child_table, tg_table_name, r.constraint_name),
              hint = format('Truncate %s first, or delete the rows instead.', r.child_table);
    end if;
  end loop;
  return null;
end
$$;
revoke all on function partition_mgmt.reference_truncate_guard() from public;

create or replace function partition_mgmt.reference_trigger_name(p_kind text, p_child regclass, p_constraint text)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(format('zzz_ref_%s_%s_%s', p_kind, left(md5(p_child::oid::text || '/' || p_constraint), 8), p_constraint), 63)
$$;

-- The referencing side of one carried reference: a constraint trigger on the child table that
-- checks every new or changed reference against the key table.
create or replace function partition_mgmt.install_reference_check(r partition_mgmt.carried_references)
returns void
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(r.table_key);
  v_timing text := case when r.is_deferrable then case when r.initially_deferred then ' deferrable initially deferred' else ' deferrable initially immediate' end else '' end;
begin
  execute format('create constraint trigger %I after insert or update of %I on %s%s for each row execute function partition_mgmt.reference_check(%L, %L, %L, %L, %L)',
    partition_mgmt.reference_trigger_name('check', r.child_table, r.constraint_name), r.child_column, r.child_table, v_timing,
    r.table_key, r.constraint_name, r.child_column, format('%I.%I', c.source_schema, c.source_table), c.id_column);
end
$$;

-- The observation side of one reference on p_table: the ON DELETE and ON UPDATE actions (cloned
-- onto every leaf) and the TRUNCATE guard. Idempotent.
create or replace function partition_mgmt.install_reference_actions(r partition_mgmt.carried_references, p_table regclass)
returns void
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(r.table_key);
  v_timing text := case when r.is_deferrable then case when r.initially_deferred then ' deferrable initially deferred' else ' deferrable initially immediate' end else '' end;
  v_live text := format('%I.%I', c.source_schema, c.source_table);
begin
  -- only the NO ACTION check may be deferred; actions run at once (as in PostgreSQL)
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_table and t.tgname = partition_mgmt.reference_trigger_name('del', r.child_table, r.constraint_name)) then
    execute format('create constraint trigger %I after delete on %s%s for each row execute function partition_mgmt.reference_action(%L, %L, %L, %L, %L, %L, %L, %L)',
      partition_mgmt.reference_trigger_name('del', r.child_table, r.constraint_name), p_table,
      case when r.on_delete = 'a' then v_timing else '' end,
      r.table_key, r.constraint_name, r.child_table::oid, r.child_column, r.on_delete, c.id_column, v_live, r.on_update);
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_table and t.tgname = partition_mgmt.reference_trigger_name('upd', r.child_table, r.constraint_name)) then
    execute format('create constraint trigger %I after update of %I on %s%s for each row execute function partition_mgmt.reference_action(%L, %L, %L, %L, %L, %L, %L)',
      partition_mgmt.reference_trigger_name('upd', r.child_table, r.constraint_name), c.id_column, p_table,
      case when r.on_update = 'a' then v_timing else '' end,
      r.table_key, r.constraint_name, r.child_table::oid, r.child_column, r.on_update, c.id_column, v_live);
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_table and t.tgname = 'zzz_ref_truncate_guard') then
    execute format('create trigger zzz_ref_truncate_guard before truncate on %s for each statement execute function partition_mgmt.reference_truncate_guard(%L)',
      p_table, r.table_key);
  end if;
end
$$;

-- A carried_references row for a foreign key that references the legacy table (not stored).
create or replace function partition_mgmt.reference_record(p_table_key text, p_child_table regclass, p_constraint_name text,
  p_child_column text, p_on_delete "char", p_on_update "char", p_is_deferrable boolean, p_initially_deferred boolean, p_definition text)
returns partition_mgmt.carried_references
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  r partition_mgmt.carried_references;
begin
  r.table_key := p_table_key;
  r.child_table := p_child_table;
  r.constraint_name := p_constraint_name;
  r.child_column := p_child_column;
  r.on_delete := p_on_delete;
  r.on_update := p_on_update;
  r.is_deferrable := p_is_deferrable;
  r.initially_deferred := p_initially_deferred;
  -- the definition names the legacy table by its name of the moment; on rollback it gets the
  -- live name back
  r.definition := regexp_replace(p_definition, 'REFERENCES .*?\(', format('REFERENCES %I.%I(', c.source_schema, c.source_table));
  r.carried_at := now();
  return r;
end
$$;

-- When the sync starts: the actions of every foreign key that references the legacy table go onto
-- the copy now (dormant until it is live), so that the swap has no trigger to clone.
create or replace function partition_mgmt.preinstall_reference_actions(p_table_key text, p_legacy regclass, p_copy regclass)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  f record;
  v_count integer := 0;
begin
  for f in select * from partition_mgmt.referencing_foreign_keys(p_table_key, p_legacy) x where x.supported loop
    perform partition_mgmt.install_reference_actions(partition_mgmt.reference_record(p_table_key, f.child_table, f.constraint_name, f.child_column, f.on_delete, f.on_update, f.is_deferrable, f.initially_deferred, f.definition), p_copy);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Under the swap's lock: every foreign key that references p_from (the legacy table) becomes a
-- carried reference to p_to (the partitioned table, now live). Returns how many.
create or replace function partition_mgmt.carry_references(p_table_key text, p_from regclass, p_to regclass)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  f record;
  r partition_mgmt.carried_references;
  v_count integer := 0;
begin
  for f in select * from partition_mgmt.referencing_foreign_keys(p_table_key, p_from) loop
    if not f.supported then
      raise exception 'cannot carry foreign key % on % that references %: %', f.constraint_name, f.child_table, p_from, f.reason
        using errcode = 'feature_not_supported', hint = format('See select * from partition_mgmt.pre_migration_check(%L).', p_table_key);
    end if;
    insert into partition_mgmt.carried_references select (partition_mgmt.reference_record(p_table_key, f.child_table, f.constraint_name, f.child_column, f.on_delete, f.on_update, f.is_deferrable, f.initially_deferred, f.definition)).* returning * into r;
    execute format('alter table %s drop constraint %I', f.child_table, f.constraint_name);
    perform partition_mgmt.install_reference_check(r);
    -- (already there, dormant, unless the constraint was added after the sync started)
    perform partition_mgmt.install_reference_actions(r, p_to);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Under the swap-back lock: the carried references of p_table_key are declared again (NOT VALID:
-- the legacy table was kept exact, so the rows are valid; validate_restored_references confirms
-- it without holding the swap's lock) and their check triggers dropped from the child tables. The
-- actions on p_from stay, dormant (it is no longer live), until finish_rollback drops them with
-- the copy's other triggers: dropping a trigger from every leaf would lengthen the lock.
create or replace function partition_mgmt.restore_references(p_table_key text, p_from regclass)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  r partition_mgmt.carried_references;
  v_count integer := 0;
begin
  for r in select * from partition_mgmt.carried_references c where c.table_key = p_table_key order by c.child_table::text, c.constraint_name loop
    if to_regclass(r.child_table::text) is not null then
      execute format('drop trigger if exists %I on %s', partition_mgmt.reference_trigger_name('check', r.child_table, r.constraint_name), r.child_table);
    end if;
    execute format('alter table %s add constraint %I %s not valid', r.child_table, r.constraint_name, r.definition);
    delete from partition_mgmt.carried_references c where c.child_table = r.child_table and c.constraint_name = r.constraint_name;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Every reference action and the TRUNCATE guard on p_table (the copy, after a rollback).
create or replace function partition_mgmt.drop_reference_actions(p_table regclass)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  t record;
  v_count integer := 0;
begin
  for t in select tgname from pg_catalog.pg_trigger where tgrelid = p_table and not tgisinternal and tgname like 'zzz\_ref\_%' loop
    execute format('drop trigger %I on %s', t.tgname, p_table);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Validates the constraints restore_references declared NOT VALID (a scan of each referencing
-- table under SHARE UPDATE EXCLUSIVE, which lets the app read and write). Returns their names.
create or replace function partition_mgmt.validate_restored_references(p_table text)
returns text[]
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_table regclass := to_regclass(format('%I.%I', c.source_schema, c.source_table));
  f record;
  v_done text[] := '{}'::text[];
begin
  if v_table is null or (select relkind from pg_catalog.pg_class where oid = v_table) <> 'r' then
    return v_done;
  end if;
  for f in select k.conname, k.conrelid::regclass as child from pg_catalog.pg_constraint k
           where k.contype = 'f' and k.confrelid = v_table and not k.convalidated order by 2::text, 1 loop
    perform partition_mgmt.run_ddl(format('alter table %s validate constraint %I', f.child, f.conname));
    v_done := v_done || format('%s.%s', f.child, f.conname);
  end loop;
  return v_done;
end
$$;

-- Retention is about to drop p_leaf: apply each carried reference's ON DELETE action to the rows
-- that reference it. False (and nothing done) when a NO ACTION / RESTRICT reference still points
-- into the leaf: the month is kept rather than leave references dangling.
create or replace function partition_mgmt.release_references(p_table_key text, p_leaf regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  r partition_mgmt.carried_references;
  v_found boolean;
begin
  for r in select * from partition_mgmt.carried_references x where x.table_key = p_table_key and x.on_delete in ('a', 'r') loop
    execute format('select exists (select from %s ch where ch.%I in (select t.%I from %s t))', r.child_table, r.child_column, c.id_column, p_leaf)
      into v_found;
    if v_found then
      raise warning 'retention keeps %: rows of % still reference it through %', p_leaf, r.child_table, r.constraint_name;
      return false;
    end if;
  end loop;
  for r in select * from partition_mgmt.carried_references x where x.table_key = p_table_key and x.on_delete not in ('a', 'r') loop
    execute format('%s %s ch %s where ch.%I in (select t.%I from %s t)',
      case when r.on_delete = 'c' then 'delete from' else 'update' end, r.child_table,
      case r.on_delete when 'n' then format('set %I = null', r.child_column) when 'd' then format('set %I = default', r.child_column) else '' end,
      r.child_column, c.id_column, p_leaf);
  end loop;
  return true;
end
$$;

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
