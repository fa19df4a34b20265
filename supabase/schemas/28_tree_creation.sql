-- =============================================================================
-- Creating the tree: the partitioned parent derived from the live legacy table, program, site and
-- period partitions created on demand (ensure_*), ahead of time (premake) and when a program or
-- site is inserted; the DEFAULT leaves that catch what has no partition yet; statistics and
-- validation of the tree. At push time the trees of the registered tables are built empty.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------

revoke all on partition_mgmt.rows_without_program from public, anon, authenticated;
grant select on partition_mgmt.rows_without_program to service_role;

-- -----------------------------------------------------------------------------
-- Lock budget. Every relation a statement touches takes a slot in the server's shared lock
-- table until the transaction ends; DDL holds ACCESS EXCLUSIVE on every relation it creates.
-- The table holds max_locks_per_transaction x (max_connections + autovacuum_max_workers + 1 +
-- max_worker_processes + max_wal_senders + max_prepared_transactions) slots for all sessions
-- together (hosted Micro: 64 x 75 = 4,800), and a full table answers "out of shared memory" to
-- every session. So the bundle counts: what a statement without the partition keys needs, and
-- how much of the table one of its own transactions may take before it commits and goes on.
-- -----------------------------------------------------------------------------

-- The partitioned parent's REPLICA IDENTITY on every leaf under p_under (the whole tree by
-- default): PostgreSQL keeps it per relation and a new partition does not inherit it. Realtime
-- needs FULL to send a change's old record. (USING INDEX is not carried: the default applies.)
create or replace function partition_mgmt.apply_replica_identity(p_table_key text, p_under regclass default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_parent regclass := (select m.parent from partition_mgmt.managed_tables m where m.table_key = p_table_key);
  v_ident "char" := (select relreplident from pg_catalog.pg_class where oid = v_parent);
  r record;
  v_count integer := 0;
begin
  if v_parent is null or v_ident not in ('d', 'f', 'n') then
    return 0;
  end if;
  for r in select t.relid from partition_mgmt.tree_members(coalesce(p_under, v_parent)) t
           join pg_catalog.pg_class k on k.oid = t.relid
           where t.isleaf and k.relreplident <> v_ident loop
    execute format('alter table %s replica identity %s', r.relid::regclass, case v_ident when 'f' then 'full' when 'n' then 'nothing' else 'default' end);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Comma-separated, quoted column list of a table (live columns in attribute order).
create or replace function partition_mgmt.column_list(p_table regclass, p_prefix text default null)
returns text
language sql stable
set search_path = ''
as $$
  select string_agg(case when p_prefix is null then format('%I', attname) else format('%I.%I', p_prefix, attname) end, ', ' order by attnum)
  from pg_catalog.pg_attribute
  where attrelid = p_table and attnum > 0 and not attisdropped
$$;

-- A partition is never reachable by the API roles, even by its own name.
create or replace function partition_mgmt.secure_partition(p_schema text, p_name text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('alter table %I.%I enable row level security', p_schema, p_name);
  -- deny-all said out loud: RLS without a policy denies as well, but Supabase's advisor lists
  -- every such table (lint 0008). Reads through the parent use the parent's policies only.
  if not exists (select from pg_catalog.pg_policy p where p.polrelid = format('%I.%I', p_schema, p_name)::regclass and p.polname = 'no_direct_access') then
    execute format('create policy no_direct_access on %I.%I for all using (false) with check (false)', p_schema, p_name);
  end if;
  execute format('revoke all on table %I.%I from public, anon, authenticated', p_schema, p_name);
  execute format('grant all on table %I.%I to service_role', p_schema, p_name);
end
$$;

-- Takes the rows of the DEFAULT partition p_from matching p_where out into a temporary stash, in
-- this transaction, to be re-inserted once the partition for them is attached. The DEFAULT is
-- locked first (ATTACH needs ACCESS EXCLUSIVE on it anyway), so no concurrent insert can put a row
-- of the new range into it between the move and the ATTACH. The key-table trigger sees the flag
-- and keeps the keys (the rows keep their ids and keys).
create or replace function partition_mgmt.stash_rows(p_from regclass, p_where text)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_count bigint;
  v_parent regclass;
begin
  if exists (select from pg_catalog.pg_class where relname = 'partition_mgmt_stash' and relnamespace = pg_catalog.pg_my_temp_schema()) then
    execute 'drop table pg_temp.partition_mgmt_stash';
  end if;
  -- Writers of the parent wait at the parent (and are routed afresh once the new partition is
  -- attached) instead of queueing on the DEFAULT, where they would fail its new constraint.
  -- Parent before child, the order every statement takes them in.
  select i.inhparent::regclass into v_parent from pg_catalog.pg_inherits i where i.inhrelid = p_from;
  if v_parent is not null then
    perform partition_mgmt.run_ddl(format('lock table only %s in share row exclusive mode', v_parent));
  end if;
  perform partition_mgmt.run_ddl(format('lock table %s in access exclusive mode', p_from));
  perform set_config('partition_mgmt.moving_rows', 'on', true);
  execute format('create temporary table partition_mgmt_stash on commit drop as
                  with moved as (delete from %s where %s returning *) select * from moved', p_from, p_where);
  get diagnostics v_count = row_count;
  perform set_config('partition_mgmt.moving_rows', 'off', true);
  return v_count;
end
$$;
create or replace function partition_mgmt.unstash_rows(p_to regclass)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_count bigint;
begin
  if not exists (select from pg_catalog.pg_class where relname = 'partition_mgmt_stash' and relnamespace = pg_catalog.pg_my_temp_schema()) then
    return 0;
  end if;
  perform set_config('partition_mgmt.moving_rows', 'on', true);
  execute format('insert into %s (%s) select %s from pg_temp.partition_mgmt_stash',
    p_to, partition_mgmt.column_list(p_to), partition_mgmt.column_list(p_to));
  get diagnostics v_count = row_count;
  perform set_config('partition_mgmt.moving_rows', 'off', true);
  execute 'drop table pg_temp.partition_mgmt_stash';
  return v_count;
end
$$;

-- -----------------------------------------------------------------------------
-- The partitioned parent, derived from the live legacy table
-- -----------------------------------------------------------------------------

-- A DEFAULT leaf of a sized tree holds the rows of every program (the root's) or site (a
-- program's) without partitions of its own: indexes of its own serve the reads that name one of
-- them (a program page or a site, newest first), which the parent's indexes, made for leaves that
-- hold one site, do not.
create or replace function partition_mgmt.add_shared_leaf_indexes(p_table_key text, p_leaf regclass, p_level text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_name text := (select relname from pg_catalog.pg_class where oid = p_leaf);
begin
  if p_level = 'program' then
    execute format('create index if not exists %I on %s (%I, %I desc, %I desc)', left(v_name, 50) || '_program_idx', p_leaf,
      c.program_column, c.time_column, c.id_column);
  end if;
  execute format('create index if not exists %I on %s (%I, %I desc, %I desc)', left(v_name, 53) || '_site_idx', p_leaf,
    c.site_column, c.time_column, c.id_column);
end
$$;

-- -----------------------------------------------------------------------------
-- A row without a partition key: the error names the app's table, not a DEFAULT leaf
-- -----------------------------------------------------------------------------

-- The partitioned table routes a row by its keys before it checks any constraint, so a row that
-- arrives without program_id, site_id or created_at lands in a DEFAULT partition and fails there,
-- naming a table the app has never heard of:
--   null value in column "site_id" of relation "gas_default" violates not-null constraint
-- A trigger on the partitioned parent (cloned onto every leaf, and onto every leaf attached later)
-- fails such a row first, with the same SQLSTATE (23502) and wording, but naming the table the app
-- wrote, the key, and a HINT that says what to send. Its WHEN clause costs a row with all its keys
-- four null tests and no function call. The site is checked before the program: a program can be
-- taken from the site (where the legacy table's program column is nullable, the triggers of
-- install_program_from_site do so before this one fires), not the other way round.
--
-- It fires before set_company_id_from_program (triggers of one kind fire in name order), whose
-- own message for a row with neither program nor site would name the leaf too.
--
-- A CHECK violation keeps PostgreSQL's message, which names the leaf that checked it, with its
-- SQLSTATE (23514) and the constraint's name unchanged: repeating every CHECK in a trigger would
-- cost every write a second evaluation of each constraint to reword one error.
create or replace function partition_mgmt.install_require_keys(p_table_key text, p_parent regclass)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := p_parent;
  v_fn text := format('%s_require_keys', c.table_key);
  v_checks text := '';
  v_col text;
  v_default text;
  v_hint text;
begin
  foreach v_col in array array[c.id_column, c.site_column, c.program_column, c.time_column] loop
    v_default := partition_mgmt.column_default(v_parent, v_col);
    v_hint := case
      when v_col = c.program_column then
        format('format(%L, new.%I)',
          format('Send %s with the row: the program of its site (select %s from %s.sites where %s = %%L).',
                 c.program_column, 'program_id', c.source_schema, c.site_column), c.site_column)
      when v_default is not null then
        format('%L', format('Leave %s out of the row to take its default (%s), or send a value.', v_col, v_default))
      else
        format('%L', format('Send %s with the row.', v_col))
    end;
    v_checks := v_checks || format($c$
      if new.%1$I is null then
        raise exception 'null value in column "%1$s" of relation "%2$s" violates not-null constraint'
          using errcode = 'not_null_violation', schema = %3$L, table = %2$L, column = %1$L,
                detail = %4$L,
                hint = %5$s;
      end if;$c$,
      v_col, c.source_table, c.source_schema,
      case when v_col = c.id_column
        then format('%s is part of the primary key of %I.%I (%s, %s, %s, %s).',
                    v_col, c.source_schema, c.source_table, c.id_column, c.program_column, c.site_column, c.time_column)
        else format('%s is a partition key of %I.%I (partitioned by %s, %s, %s): a row without it belongs to no partition.',
                    v_col, c.source_schema, c.source_table, c.program_column, c.site_column, c.time_column)
      end,
      v_hint);
  end loop;
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql set search_path = ''
    as $body$
    begin%2$s
      return new;
    end
    $body$$f$, v_fn, v_checks);
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = v_parent and t.tgname = 'partition_mgmt_require_keys') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_require_keys before insert or update of %1$I, %2$I, %3$I, %4$I on %5$s for each row
       when (new.%1$I is null or new.%2$I is null or new.%3$I is null or new.%4$I is null)
       execute function partition_mgmt.%6$I()',
      c.id_column, c.program_column, c.site_column, c.time_column, v_parent, v_fn));
  end if;
end
$install$;
revoke all on function partition_mgmt.install_require_keys(text, regclass) from public;
comment on function partition_mgmt.install_require_keys(text, regclass) is
  'Puts the partition_mgmt_require_keys trigger on a managed table''s partitioned parent (create_partitioned_table does): a row without a partition key fails with 23502 naming the table the app wrote (not the DEFAULT leaf it was routed to), the key and what to send. Idempotent.';

-- -----------------------------------------------------------------------------
-- Rows written without a program: the program is taken from the site
-- -----------------------------------------------------------------------------

-- Where the legacy table's program column is nullable (gasifier_observations: older app versions
-- send only the site), the app goes on writing such rows after the swap, and every one of them
-- must land. The partitioned table cannot store the NULL (program_id is in its primary key), and
-- it routes a row by its keys before any trigger runs: a row without a program reaches the root's
-- DEFAULT leaf, where a BEFORE trigger may change the row but not send it to another partition.
-- So the triggers install_program_from_site puts on the parent do this:
--
--  * A row inserted without a program takes its site's program: the program its company_id was
--    always derived from, and what the migration copies for the legacy rows without one. Where
--    that program shares the root's DEFAULT leaf (in a sized tree, every program below
--    target_rows_per_leaf), the row is stored right there and RETURNING gives it back. Where the
--    program has partitions of its own, the root's DEFAULT cannot hold it: the trigger inserts the
--    row again with its program (routed to its leaf, as the caller, under RLS, every trigger
--    firing there once) and skips the original. The row is stored and readable at once, but the
--    statement neither counts nor returns it (RETURNING, the INSERT and COPY row counts), and an
--    ON CONFLICT clause does not apply to it. PostgreSQL offers no way around this: a partition
--    that holds the program's rows cannot be reached by a row whose program is NULL.
--  * An update that sets program_id to NULL takes the site's program (the row moves when it has
--    to); an update of site_id gives a row written without a program the new site's program.
--  * partition_mgmt.rows_without_program lists these rows (the migration lists the legacy rows
--    without a program as it copies them): their program follows their site, as the legacy
--    table's company did, and the reverse sync writes NULL for them into <table>_old, so a
--    rollback gives back what the app wrote. An update that sends a program takes the row off.
--
-- The triggers are named to fire before partition_mgmt_require_keys (triggers of one kind fire in
-- name order), the set for program_id before the one for site_id. (A BEFORE trigger of the app's
-- that fires after them and skips the row leaves its id listed without a row: harmless unless the
-- app inserts that id again, with a program, which then counts as written without one.)

-- The program of the site of a row written without one, for the triggers (which run as the caller,
-- so that a row they insert again passes the caller's RLS): SECURITY DEFINER to read the site
-- whatever the caller may see, but the program only of a site of the caller's companies (as the
-- tables' RLS; any site for a role that bypasses RLS). A site of another company fails as RLS
-- would have failed the row in the legacy table (42501, naming the table), an unknown site as the
-- legacy table's company trigger did (23503). p_event: 'written' (a row without a program: its
-- site's program, and the row goes on the list), 'site' (the site of a listed row changed: the new
-- site's program; nothing for a row whose program the app sent), 'sent' (the app sent a program:
-- off the list).
create or replace function partition_mgmt.derive_program(p_table_key text, p_observation_id uuid, p_site_id uuid, p_event text,
  out program_id uuid, out own_partition boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_bypass boolean := coalesce((select r.rolbypassrls from pg_catalog.pg_roles r
                                where r.rolname = coalesce(nullif(pg_catalog.current_setting('role', true), 'none'), session_user)), false);
  v_company uuid;
begin
  if p_event is null or p_event not in ('written', 'site', 'sent') then
    raise exception 'derive_program: unknown event %', coalesce(p_event, 'NULL')
      using hint = 'Use written (a row without a program), site (its site changed) or sent (the app sent a program).';
  end if;
  if p_event = 'sent' then
    delete from partition_mgmt.rows_without_program w
    where w.table_key = p_table_key and w.observation_id = p_observation_id
      and (v_bypass or exists (select from partition_mgmt.observation_keys k join public.pilot_programs p on p.program_id = k.program_id
                               where k.table_key = p_table_key and k.observation_id = p_observation_id
                                 and p.company_id = any ((select private.user_company_ids())::uuid[])));
    return;
  end if;
  if p_event = 'site' and not exists (select from partition_mgmt.rows_without_program w
                                      where w.table_key = p_table_key and w.observation_id = p_observation_id) then
    return;
  end if;
  select s.program_id, p.company_id into program_id, v_company
  from public.sites s join public.pilot_programs p on p.program_id = s.program_id
  where s.site_id = p_site_id;
  if not found then
    raise exception '%.%: site_id % does not exist (program_id is NULL: the program is taken from the site)',
      c.source_schema, c.source_table, p_site_id
      using errcode = 'foreign_key_violation',
            hint = 'Send the site_id of an existing site (public.sites), or send program_id.';
  end if;
  if not v_bypass and not coalesce(v_company = any ((select private.user_company_ids())::uuid[]), false) then
    raise exception 'new row violates row-level security policy for table "%"', c.source_table
      using errcode = 'insufficient_privilege';
  end if;
  own_partition := exists (select from partition_mgmt.partition_registry r
                           where r.table_key = p_table_key and r.level = 'program' and not r.is_default
                             and r.program_id = derive_program.program_id);
  if p_event = 'written' then
    insert into partition_mgmt.rows_without_program (table_key, observation_id) values (p_table_key, p_observation_id)
    on conflict do nothing;
  end if;
end
$$;
revoke all on function partition_mgmt.derive_program(text, uuid, uuid, text) from public;
grant execute on function partition_mgmt.derive_program(text, uuid, uuid, text) to authenticated, service_role;

-- The trigger function (generated per table with its column names; SECURITY INVOKER, see above)
-- and its three triggers on the partitioned parent, cloned onto every leaf. Idempotent.
create or replace function partition_mgmt.install_program_from_site(p_table_key text, p_parent regclass)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_fn text := format('%s_program_from_site', c.table_key);
begin
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql set search_path = ''
    as $body$
    declare
      v_id uuid := new.%3$I;
      v record;
    begin
      if tg_op = 'UPDATE' then
        v_id := old.%3$I;   -- the list follows an id change in zz_move_observation_keys, which fires later
      end if;
      if tg_argv[0] = 'set' and new.%4$I is not null then
        perform partition_mgmt.derive_program(%2$L, v_id, new.%5$I, 'sent');
        return new;
      end if;
      if new.%5$I is null then
        return new;   -- partition_mgmt_require_keys reports the missing site
      end if;
      select * into v from partition_mgmt.derive_program(%2$L, v_id, new.%5$I, case when tg_argv[0] = 'site' then 'site' else 'written' end);
      if v.program_id is null then
        return new;   -- the site changed under a program the app sent: it stays
      end if;
      new.%4$I := v.program_id;
      if tg_op = 'INSERT' and v.own_partition then
        -- routed by its NULL program to the root's DEFAULT leaf, which cannot hold this program
        execute format('insert into %%1$s select * from pg_catalog.jsonb_populate_record(null::%%1$s, $1)',
                       pg_catalog.pg_partition_root(tg_relid)::regclass)
          using pg_catalog.to_jsonb(new);
        return null;
      end if;
      return new;
    end
    $body$$f$, v_fn, c.table_key, c.id_column, c.program_column, c.site_column);
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_from_site') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_from_site before insert on %1$s for each row when (new.%2$I is null)
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.program_column, v_fn, 'insert'));
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_set') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_set before update of %2$I on %1$s for each row
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.program_column, v_fn, 'set'));
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_site_moved') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_site_moved before update of %2$I on %1$s for each row
       when (old.%2$I is distinct from new.%2$I)
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.site_column, v_fn, 'site'));
  end if;
end
$install$;
revoke all on function partition_mgmt.install_program_from_site(text, regclass) from public;
comment on function partition_mgmt.install_program_from_site(text, regclass) is
  'Puts the triggers that give a row written without program_id its site''s program on a managed table''s partitioned parent (create_partitioned_table does, where the legacy table''s program column is nullable). Idempotent.';

-- A column's default expression as text (NULL without one): the hints of install_require_keys,
-- random_uuid_default and the pre-check's 'new ids' row read it.
create or replace function partition_mgmt.column_default(p_table regclass, p_column text)
returns text
language sql
stable
set search_path = ''
as $$
  select pg_catalog.pg_get_expr(d.adbin, d.adrelid)
  from pg_catalog.pg_attrdef d
  join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
  where d.adrelid = p_table and a.attname = p_column
$$;
revoke all on function partition_mgmt.column_default(regclass, text) from public;

-- Whether a column's default is a random UUID (gen_random_uuid(), uuid-ossp's uuid_generate_v4()).
create or replace function partition_mgmt.random_uuid_default(p_table regclass, p_column text)
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce(partition_mgmt.column_default(p_table, p_column) operator(pg_catalog.~) '^([a-z_]+\.)?(gen_random_uuid|uuid_generate_v4)\(\)$', false)
$$;
revoke all on function partition_mgmt.random_uuid_default(regclass, text) from public;

-- Time-ordered ids: the default expression of a UUID of version 7 (RFC 9562), the Unix time in
-- milliseconds in its first 48 bits, then the version, 74 random bits and the variant; the random
-- part is gen_random_uuid()'s (a version 4 UUID), whose version bits 0100 become 0111. The
-- partitioned tables' id default where the legacy table's is a random UUID
-- (managed_tables.time_ordered_ids): a random id lands on a random page of every index that leads
-- with it (the leaf's primary key and observation_keys), so after each checkpoint nearly every
-- insert writes a full image of two index pages to the WAL; ids in time order go to the right
-- edge. An expression of built-in functions rather than a function of ours: nothing to call per
-- insert (a SQL function with its own search_path is planned again by every statement: 38 us
-- more per statement than gen_random_uuid(), measured with pgbench; this expression 0.1-0.2 us
-- more per call, 100,000 calls in one query), and the column does not depend on this schema.
create or replace function partition_mgmt.time_ordered_uuid_default()
returns text
language sql
immutable
set search_path = ''
as $$
  select 'encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6), 52, 1), 53, 1), ''hex'')::uuid'
$$;
revoke all on function partition_mgmt.time_ordered_uuid_default() from public;
comment on function partition_mgmt.time_ordered_uuid_default() is
  'The default expression of time-ordered ids (UUID version 7: creation time in milliseconds, then 74 random bits), built-in functions only. The partitioned table''s id default where the legacy default is a random UUID (managed_tables.time_ordered_ids).';

-- Creates the partitioned parent of a managed table from the live legacy table: same columns,
-- types, defaults, CHECK constraints and comments (so a column the app added later comes along),
-- new ids in time order where the legacy ids are random UUIDs (time_ordered_uuid_default()),
-- keys NOT NULL, the indexes every leaf needs, the legacy table's RLS policies (grants come with
-- the swap), the
-- key-table trigger, a root DEFAULT partition, and a partition per existing program and site.
create or replace function partition_mgmt.create_partitioned_table(p_table_key text, p_precreate boolean default true)
returns regclass
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_source regclass;
  v_parent regclass;
  v_default text := format('%s_default', c.name_prefix);
  v_pol record;
  v_trg record;
  v_prog uuid;
begin
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:create:' || c.table_key, 0));
  if c.parent is not null and to_regclass(c.parent::text) is not null then
    return c.parent;
  end if;

  v_source := to_regclass(format('%I.%I', c.source_schema, c.source_table));
  if v_source is null then
    raise exception 'source table %.% of managed table "%" does not exist', c.source_schema, c.source_table, c.table_key
      using hint = 'Fix source_schema/source_table in partition_mgmt.managed_tables.';
  end if;
  if to_regclass(format('%I.%I', c.source_schema, c.partitioned_table)) is not null then
    raise exception 'table %.% already exists but is not registered as the parent of "%"', c.source_schema, c.partitioned_table, c.table_key
      using hint = 'Drop it or set partition_mgmt.managed_tables.parent to it.';
  end if;

  execute format(
    'create table %I.%I (like %s including defaults including constraints including generated including storage including comments) partition by list (%I)',
    c.source_schema, c.partitioned_table, v_source, c.program_column);
  v_parent := format('%I.%I', c.source_schema, c.partitioned_table)::regclass;
  execute format('alter table %s alter column %I set not null, alter column %I set not null, alter column %I set not null, alter column %I set not null',
    v_parent, c.id_column, c.program_column, c.site_column, c.time_column);
  if c.time_ordered_ids and partition_mgmt.random_uuid_default(v_parent, c.id_column) then
    execute format('alter table %s alter column %I set default %s', v_parent, c.id_column, partition_mgmt.time_ordered_uuid_default());
  end if;
  execute format('comment on table %s is %L', v_parent,
    format('%s partitioned Program (LIST) -> Site (LIST) -> Period (RANGE) by partition_mgmt; partitions live in schema partitions.', c.source_table));

  -- Indexes created on the parent reach every partition, including those attached later.
  -- The primary key must contain all partition keys; observation_id leads so a leaf finds an id fast.
  execute format('alter table %s add constraint %I primary key (%I, %I, %I, %I)',
    v_parent, c.partitioned_table || '_pkey', c.id_column, c.program_column, c.site_column, c.time_column);
  -- Time order inside each leaf (its program and site are fixed by the partition bounds), so a
  -- newest-first page of a program or a site is a Merge Append of index scans that stops after one
  -- page, with or without a site filter; also the keyset cursor's order.
  execute format('create index %I on %s (%I desc, %I desc)', c.partitioned_table || '_time_idx', v_parent,
    c.time_column, c.id_column);
  if exists (select from pg_catalog.pg_attribute where attrelid = v_parent and attname = 'submission_id' and not attisdropped) then
    execute format('create index %I on %s (submission_id)', c.partitioned_table || '_submission_idx', v_parent);
  end if;

  -- Security as on the legacy table: RLS on, the same policies, the same grants.
  execute format('alter table %s enable row level security', v_parent);
  for v_pol in
    select policyname, permissive, cmd, roles, qual, with_check
    from pg_catalog.pg_policies where schemaname = c.source_schema and tablename = c.source_table
  loop
    execute format('create policy %I on %s as %s for %s to %s%s%s', v_pol.policyname, v_parent, v_pol.permissive, v_pol.cmd,
      (select string_agg(case when r = 'public' then 'public' else format('%I', r) end, ', ') from unnest(v_pol.roles) r),
      case when v_pol.qual is not null then format(' using (%s)', v_pol.qual) else '' end,
      case when v_pol.with_check is not null then format(' with check (%s)', v_pol.with_check) else '' end);
  end loop;
  -- No grants yet: until the swap the copy is written by the sync and the backfill only, and an
  -- API role writing into it directly would make it differ from the legacy table. The swap gives
  -- it the legacy table's grants.
  execute format('revoke all on table %s from public, anon, authenticated, service_role', v_parent);

  -- The legacy table's triggers that keep company_id filled and record which daily metrics an
  -- update changed come along (same functions; the metrics' statement triggers record only while
  -- the table is the live one, see analytics.mark_metrics_changed). Inserts and deletes are
  -- recorded by the key table's row trigger instead (install_key_trigger).
  for v_trg in
    select t.tgname, pg_catalog.pg_get_triggerdef(t.oid) as def
    from pg_catalog.pg_trigger t
    where t.tgrelid = v_source and not t.tgisinternal
      and (t.tgfoid = to_regprocedure('private.set_company_id_from_program()')
           or (t.tgfoid = to_regprocedure('analytics.mark_metrics_changed()') and t.tgname not in ('metrics_changed_insert', 'metrics_changed_delete')))
  loop
    execute replace(v_trg.def, format(' ON %s ', v_source), format(' ON %s ', v_parent));
  end loop;

  perform partition_mgmt.attach_key_triggers(c.table_key, v_parent);
  perform partition_mgmt.install_require_keys(c.table_key, v_parent);
  -- where the app may leave the program out (nullable in the legacy table), it comes from the site
  if exists (select from pg_catalog.pg_attribute a where a.attrelid = v_source and a.attname = c.program_column
             and not a.attisdropped and not a.attnotnull) then
    perform partition_mgmt.install_program_from_site(c.table_key, v_parent);
  end if;

  -- The root DEFAULT partition: rows for a program that has no partition yet are never rejected.
  -- In a sized tree it is where every program lives until its rows fill a leaf.
  execute format('create table partitions.%I partition of %s default', v_default, v_parent);
  perform partition_mgmt.secure_partition('partitions', v_default);
  if c.tree_shape = 'sized' then
    perform partition_mgmt.add_shared_leaf_indexes(c.table_key, format('partitions.%I', v_default)::regclass, 'program');
  end if;
  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf)
  values ('partitions', v_default, c.table_key, 'program', true, true);

  update partition_mgmt.managed_tables set parent = v_parent where table_key = c.table_key;

  if p_precreate and c.tree_shape = 'literal' then
    for v_prog in select program_id from public.pilot_programs order by start_date, program_id loop
      perform partition_mgmt.precreate_program_partitions(v_prog, c.table_key);
    end loop;
  end if;
  return v_parent;
end
$$;

-- -----------------------------------------------------------------------------
-- Automatic creation: program, site and period partitions
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.parent_of(p_table_key text)
returns regclass
language plpgsql stable
set search_path = ''
as $$
declare
  v regclass;
begin
  select parent into v from partition_mgmt.managed_tables where table_key = p_table_key;
  if v is null then
    raise exception 'managed table "%" has no partitioned parent yet', p_table_key
      using hint = format('Run select partition_mgmt.create_partitioned_table(%L);', p_table_key);
  end if;
  return v;
end
$$;

-- The parent, locked ACCESS SHARE until commit. DDL names the parent by its name, and a swap
-- renames it: a name read in the instant a concurrent rename commits is stale, so the LOCK fails
-- (undefined_table) and is retried with the fresh name; once locked, the rename waits for us.
create or replace function partition_mgmt.lock_parent(p_table_key text)
returns regclass
language plpgsql
set search_path = ''
as $$
declare
  v regclass := partition_mgmt.parent_of(p_table_key);
  v_attempt integer := 0;
begin
  loop
    begin
      execute format('lock table only %s in access share mode', v);
      return v;
    exception when undefined_table then
      v_attempt := v_attempt + 1;
      if v_attempt >= 3 then
        raise;
      end if;
    end;
  end loop;
end
$$;

-- Program partition (LIST by site, with its own DEFAULT). Returns its qualified name.
create or replace function partition_mgmt.ensure_program_partition(p_table_key text, p_program_id uuid)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_name text;
  v_default_part text;
  v_root_default regclass;
begin
  if p_program_id is null then
    raise exception 'program_id must not be null' using hint = 'Pass the program_id of an existing pilot program.';
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'program' and not is_default and program_id = p_program_id;
  if v_name is not null then
    return v_name;
  end if;
  perform partition_mgmt.lock_key(p_table_key, 'program', p_program_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'program' and not is_default and program_id = p_program_id;
  if v_name is not null then
    return v_name;
  end if;

  v_parent := partition_mgmt.lock_parent(p_table_key);
  v_name := format('%s_p_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id));
  v_default_part := v_name || '_default';
  -- Built standalone (no lock on the hot parent), then attached. The CHECK implies the partition
  -- bound so ATTACH does not scan.
  execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage) partition by list (%I)',
    v_name, v_parent, c.site_column);
  execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_name, v_name || '_bound', c.program_column, p_program_id);
  execute format('create table partitions.%I partition of partitions.%I default', v_default_part, v_name);
  perform partition_mgmt.secure_partition('partitions', v_name);
  perform partition_mgmt.secure_partition('partitions', v_default_part);
  if c.tree_shape = 'sized' then
    perform partition_mgmt.add_shared_leaf_indexes(c.table_key, format('partitions.%I', v_default_part)::regclass, 'site');
  end if;

  -- Rows of this program that landed in the root default move here in the same step, so the
  -- ATTACH never fails with "updated partition constraint for default partition would be violated".
  select format('%I.%I', partition_schema, partition_name)::regclass into v_root_default
  from partition_mgmt.partition_registry where table_key = p_table_key and level = 'program' and is_default;
  perform partition_mgmt.stash_rows(v_root_default, format('%I = %L', c.program_column, p_program_id));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values in (%L)', v_parent, v_name, p_program_id));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id)
  values ('partitions', v_name, p_table_key, 'program', false, false, p_program_id),
         ('partitions', v_default_part, p_table_key, 'site', true, true, p_program_id);
  return format('partitions.%I', v_name);
end
$$;

-- Site partition: RANGE by time with its own DEFAULT, or a single leaf when the site's
-- granularity is 'none'. p_granularity: the split of its periods (default: the site's pinned
-- granularity, else the table's default_granularity). Returns its qualified name.
create or replace function partition_mgmt.ensure_site_partition(p_table_key text, p_program_id uuid, p_site_id uuid, p_granularity text default null)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_program_part text;
  v_name text;
  v_default_part text;
  v_gran text;
begin
  if p_site_id is null then
    raise exception 'site_id must not be null (program %)', p_program_id using hint = 'Pass the site_id of an existing site.';
  end if;
  if p_granularity is not null and p_granularity not in ('week', 'month', 'quarter', 'year', 'none') then
    raise exception 'invalid granularity "%" for site %', p_granularity, p_site_id using hint = 'Use week, month, quarter, year or none.';
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_name is not null then
    return v_name;
  end if;
  v_program_part := partition_mgmt.ensure_program_partition(p_table_key, p_program_id);
  perform partition_mgmt.lock_key(p_table_key, 'site', p_program_id, p_site_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_name is not null then
    return v_name;
  end if;

  v_gran := coalesce(p_granularity, partition_mgmt.site_granularity_for(p_table_key, p_site_id));
  v_name := format('%s_p_%s_s_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id), partition_mgmt.alias_for(p_site_id));
  if v_gran = 'none' then
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage)',
      v_name, v_program_part);
  else
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage) partition by range (%I)',
      v_name, v_program_part, c.time_column);
  end if;
  execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_name, v_name || '_bound', c.site_column, p_site_id);
  perform partition_mgmt.secure_partition('partitions', v_name);
  if v_gran <> 'none' then
    v_default_part := v_name || '_default';
    execute format('create table partitions.%I partition of partitions.%I default', v_default_part, v_name);
    perform partition_mgmt.secure_partition('partitions', v_default_part);
  end if;

  perform partition_mgmt.stash_rows(
    (select format('%I.%I', partition_schema, partition_name)::regclass from partition_mgmt.partition_registry
     where table_key = p_table_key and level = 'site' and is_default and program_id = p_program_id),
    format('%I = %L', c.site_column, p_site_id));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values in (%L)', v_program_part, v_name, p_site_id));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity)
  values ('partitions', v_name, p_table_key, 'site', false, v_gran = 'none', p_program_id, p_site_id, v_gran);
  if v_default_part is not null then
    insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id)
    values ('partitions', v_default_part, p_table_key, 'period', true, true, p_program_id, p_site_id);
  end if;
  return format('partitions.%I', v_name);
end
$$;

-- Leaf for the period containing p_ts at the site's period granularity (clipped so it never
-- overlaps a leaf made under an earlier granularity). Returns its qualified name.
create or replace function partition_mgmt.ensure_period_partition(p_table_key text, p_program_id uuid, p_site_id uuid, p_ts timestamptz)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_site_part text;
  v_site_gran text;
  v_gran text;
  v_name text;
  v_lo timestamptz;
  v_hi timestamptz;
begin
  if p_ts is null then
    raise exception '% must not be null (program %, site %)', c.time_column, p_program_id, p_site_id;
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id
    and range_start <= p_ts and range_end > p_ts;
  if v_name is not null then
    return v_name;
  end if;
  v_site_part := partition_mgmt.ensure_site_partition(p_table_key, p_program_id, p_site_id);
  select granularity into v_site_gran from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_site_gran = 'none' then
    return v_site_part;   -- the site partition is the leaf
  end if;

  v_gran := partition_mgmt.period_granularity(p_table_key, p_program_id, p_site_id);
  select * into v_lo, v_hi from partition_mgmt.period_bounds(v_gran, p_ts);
  perform partition_mgmt.lock_key(p_table_key, 'site', p_program_id, p_site_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id
    and range_start <= p_ts and range_end > p_ts;
  if v_name is not null then
    return v_name;
  end if;
  -- never overlap a neighbour made under another granularity
  select greatest(v_lo, coalesce(max(range_end) filter (where range_end <= p_ts), v_lo)),
         least(v_hi, coalesce(min(range_start) filter (where range_start > p_ts), v_hi))
    into v_lo, v_hi
  from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id;

  v_name := format('%s_%s', trim(both '"' from split_part(v_site_part, '.', 2)), partition_mgmt.period_suffix(v_gran, v_lo));
  if exists (select from partition_mgmt.partition_registry where partition_schema = 'partitions' and partition_name = v_name) then
    v_name := v_name || to_char(v_lo at time zone 'UTC', '_MM_DD');
  end if;

  execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage)', v_name, v_site_part);
  execute format('alter table partitions.%I add constraint %I check (%I >= %L and %I < %L)',
    v_name, v_name || '_bound', c.time_column, v_lo, c.time_column, v_hi);
  perform partition_mgmt.secure_partition('partitions', v_name);
  perform partition_mgmt.stash_rows(format('%s_default', v_site_part)::regclass,
    format('%I >= %L and %I < %L', c.time_column, v_lo, c.time_column, v_hi));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values from (%L) to (%L)', v_site_part, v_name, v_lo, v_hi));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity, range_start, range_end)
  values ('partitions', v_name, p_table_key, 'period', false, true, p_program_id, p_site_id, v_gran, v_lo, v_hi);
  return format('partitions.%I', v_name);
end
$$;

-- Creates whatever is missing of a site's partitions from p_from up to p_horizon (its site
-- partition, then its periods). Existing periods are stepped over without spending the budget;
-- returns false when this transaction's DDL budget ran out before the horizon.
create or replace function partition_mgmt.premake_site(p_table_key text, p_program_id uuid, p_site_id uuid, p_from timestamptz,
  p_horizon timestamptz, p_granularity text default null)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_ts timestamptz := p_from;
  v_end timestamptz;
  v_leaf text;
begin
  perform partition_mgmt.ensure_site_partition(p_table_key, p_program_id, p_site_id, p_granularity);
  while v_ts < p_horizon loop
    select g.range_end into v_end from partition_mgmt.partition_registry g
    where g.table_key = p_table_key and g.level = 'period' and not g.is_default
      and g.program_id = p_program_id and g.site_id = p_site_id and g.range_start <= v_ts and g.range_end > v_ts;
    if v_end is null then
      if partition_mgmt.ddl_budget_exhausted() then
        return false;
      end if;
      v_leaf := partition_mgmt.ensure_period_partition(p_table_key, p_program_id, p_site_id, v_ts);
      select g.range_end into v_end from partition_mgmt.partition_registry g
      where g.table_key = p_table_key and g.level in ('site', 'period') and g.program_id = p_program_id and g.site_id = p_site_id
        and format('%I.%I', g.partition_schema, g.partition_name) = v_leaf;
      exit when v_end is null or v_end <= v_ts;   -- granularity 'none': one leaf covers all time
    end if;
    v_ts := v_end;
  end loop;
  return true;
end
$$;

-- The plan's entry point. Literal tree: the program's partition, one per site, and the periods
-- from the program's start_date to its end_date, but for a running program only up to the premake
-- horizon (today + premake_months; maintenance moves the horizon forward every night). Sized tree:
-- only what the data asked for, brought up to the horizon: the periods of the program's sites that
-- have partitions of their own (a promoted or pinned site); a program whose rows still share the
-- root's DEFAULT leaf gets nothing. Idempotent, and within this transaction's DDL lock budget:
-- when the budget runs out it stops (setting partition_mgmt.budget_exhausted) and the next call, or
-- maintenance, goes on. Returns the number of partitions created.
create or replace function partition_mgmt.precreate_program_partitions(p_program_id uuid, p_table_key text default null, p_site_id uuid default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_prog record;
  v_site record;
  v_table partition_mgmt.managed_tables;
  v_before int;
  v_horizon timestamptz;
  v_start timestamptz;
begin
  select program_id, start_date, end_date into v_prog from public.pilot_programs where program_id = p_program_id;
  if not found then
    raise exception 'pilot program % does not exist', p_program_id using hint = 'Pass a program_id from public.pilot_programs.';
  end if;
  select count(*) into v_before from partition_mgmt.partition_registry;
  v_start := v_prog.start_date::timestamp at time zone 'UTC';
  <<tables>>
  for v_table in
    select * from partition_mgmt.managed_tables
    where parent is not null and (p_table_key is null or table_key = p_table_key)
    order by table_key
  loop
    v_horizon := partition_mgmt.premake_horizon(v_table.premake_months, v_prog.end_date);
    if v_table.tree_shape = 'literal' then
      perform partition_mgmt.ensure_program_partition(v_table.table_key, v_prog.program_id);
      for v_site in select site_id from public.sites where program_id = v_prog.program_id and (p_site_id is null or site_id = p_site_id) order by site_id loop
        exit tables when partition_mgmt.ddl_budget_exhausted();
        exit tables when not partition_mgmt.premake_site(v_table.table_key, v_prog.program_id, v_site.site_id, v_start, v_horizon);
      end loop;
    else
      -- the sites that have time partitions of their own; giving a program or a site partitions
      -- of its own (its rows fill a leaf, or it is pinned) moves rows, which maintenance does
      -- online (partition_mgmt.promote_step)
      for v_site in
        select r.site_id from partition_mgmt.partition_registry r
        where r.table_key = v_table.table_key and r.level = 'site' and not r.is_default and not r.is_leaf
          and r.program_id = v_prog.program_id and (p_site_id is null or r.site_id = p_site_id)
        order by r.site_id
      loop
        exit tables when partition_mgmt.ddl_budget_exhausted();
        exit tables when not partition_mgmt.premake_site(v_table.table_key, v_prog.program_id, v_site.site_id,
          greatest(v_start, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'), v_horizon);
      end loop;
    end if;
  end loop;
  return (select count(*) from partition_mgmt.partition_registry) - v_before;
end
$$;
revoke all on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) from public;
grant execute on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) to service_role;

-- Programs and sites whose partitions the insert trigger could not create (lock busy, or this
-- transaction's DDL lock budget spent, e.g. 200 sites inserted at once into a literal tree).
-- Their rows wait in a DEFAULT partition meanwhile; maintenance creates the partitions and clears
-- the row, health() reports what is still pending.
create table if not exists partition_mgmt.creation_deferred (
  id          bigint generated always as identity primary key,
  table_key   text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  program_id  uuid not null,
  site_id     uuid,
  reason      text not null,
  at          timestamptz not null default now()
);
create unique index if not exists creation_deferred_key_idx
  on partition_mgmt.creation_deferred (table_key, program_id, coalesce(site_id, '00000000-0000-0000-0000-000000000000'::uuid));
comment on table partition_mgmt.creation_deferred is
  'Programs and sites whose partitions were not created with their insert (lock busy or lock budget spent): maintenance creates them, health() reports them meanwhile.';

-- Partitions come with the program or site row, in the same transaction, in a literal tree (a
-- sized tree creates none: a new program or site shares a DEFAULT leaf until its rows fill one).
-- Never fatal to the app's insert and never more than the transaction's DDL lock budget: what is
-- not done now is recorded for maintenance.
create or replace function partition_mgmt.on_program_or_site_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_program uuid := (to_jsonb(new) ->> 'program_id')::uuid;
  v_site uuid := case when tg_table_name = 'sites' then (to_jsonb(new) ->> 'site_id')::uuid end;
  v_table partition_mgmt.managed_tables;
  v_reason text;
begin
  for v_table in select * from partition_mgmt.managed_tables where parent is not null order by table_key loop
    continue when v_table.tree_shape = 'sized';
    v_reason := null;
    if partition_mgmt.budget_spent() then
      v_reason := 'the transaction''s DDL lock budget was spent by earlier inserts';
    else
      begin
        perform partition_mgmt.precreate_program_partitions(v_program, v_table.table_key, v_site);
        if partition_mgmt.budget_spent() then
          v_reason := 'the transaction''s DDL lock budget ran out';
        end if;
      exception when others then
        v_reason := format('%s (SQLSTATE %s)', sqlerrm, sqlstate);
      end;
    end if;
    if v_reason is not null then
      raise warning 'partitions of % for program % site % not created now: % (maintenance will create them)',
        v_table.table_key, v_program, coalesce(v_site::text, '-'), v_reason;
      insert into partition_mgmt.creation_deferred (table_key, program_id, site_id, reason)
      values (v_table.table_key, v_program, v_site, v_reason)
      on conflict (table_key, program_id, coalesce(site_id, '00000000-0000-0000-0000-000000000000'::uuid))
      do update set reason = excluded.reason, at = now();
    end if;
  end loop;
  return new;
end
$$;
revoke all on function partition_mgmt.on_program_or_site_insert() from public;

-- Whether a DEFAULT partition at p_level holds rows that wait for a partition of their own
-- (maintenance moves them out): every DEFAULT of a literal tree; of a sized tree only a site's
-- DEFAULT (rows outside its periods), since the root's and a program's DEFAULT are the shared
-- leaves of programs and sites too small for partitions of their own.
create or replace function partition_mgmt.is_waiting_room(p_tree_shape text, p_level text)
returns boolean
language sql immutable
set search_path = ''
as $$ select p_tree_shape = 'literal' or p_level = 'period' $$;

-- -----------------------------------------------------------------------------
-- The tree a table's data asks for
-- -----------------------------------------------------------------------------

-- The legacy table's plain indexes and whether prepare_migration carries them to the partitioned
-- table (every leaf gets each one, and every statement without the keys locks each one): not
-- when the parent has one on the same columns already, nor when every column is constant within
-- a leaf (the program, the site, the company: one per program).
create or replace function partition_mgmt.legacy_indexes(p_table_key text, p_legacy regclass)
returns table (index_name text, definition text, carried boolean, reason text)
language sql stable
set search_path = ''
as $$
  select c2.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid),
         x.reason is null,
         x.reason
  from pg_catalog.pg_index i
  join pg_catalog.pg_class c2 on c2.oid = i.indexrelid
  join partition_mgmt.managed_tables m on m.table_key = p_table_key
  cross join lateral (select case
      when m.parent is not null and exists (select from pg_catalog.pg_index x where x.indrelid = m.parent
             and substring(pg_catalog.pg_get_indexdef(x.indexrelid) from ' USING .*$') = substring(pg_catalog.pg_get_indexdef(i.indexrelid) from ' USING .*$'))
        then 'the partitioned table has the same index'
      when 0 <> all (i.indkey::int2[]) and not exists (
             select from unnest(i.indkey::int2[]) k join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k
             where a.attname not in (m.program_column, m.site_column, 'company_id'))
        then 'its columns are constant within a leaf'
      -- the metrics index (program, site, time): the partitions and the parent's time index serve it
      when array_length(i.indkey::int2[], 1) > 1 and 0 <> all (i.indkey::int2[])
           and (select a.attname = m.time_column from pg_catalog.pg_attribute a
                where a.attrelid = i.indrelid and a.attnum = (i.indkey::int2[])[array_length(i.indkey::int2[], 1) - 1])
           and not exists (select from unnest((i.indkey::int2[])[0:array_length(i.indkey::int2[], 1) - 2]) k
                           join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k
                           where a.attname not in (m.program_column, m.site_column, 'company_id'))
        then 'its columns but the time are constant within a leaf, whose time index serves it'
    end as reason) x
  where i.indrelid = p_legacy and not i.indisunique and i.indpred is null
  order by 1
$$;

-- -----------------------------------------------------------------------------
-- Stats, budget and validation
-- -----------------------------------------------------------------------------

create or replace view partition_mgmt.v_partition_stats as
select r.partition_schema || '.' || r.partition_name as partition_name,
       r.table_key,
       m.partitioned_table as table_name,
       r.level,
       r.is_default,
       r.is_leaf,
       r.program_id,
       r.site_id,
       r.granularity,
       r.range_start,
       r.range_end,
       greatest(c.reltuples, 0)::bigint as rows_estimate,
       case when r.is_leaf then pg_catalog.pg_total_relation_size(c.oid) else
         (select coalesce(sum(pg_catalog.pg_total_relation_size(t.relid)), 0) from partition_mgmt.tree_members(c.oid) t where t.isleaf)
       end::bigint as size_bytes,
       greatest(s.last_analyze, s.last_autoanalyze) as last_analyze
from partition_mgmt.partition_registry r
join partition_mgmt.managed_tables m using (table_key)
left join pg_catalog.pg_class c on c.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
left join pg_catalog.pg_stat_all_tables s on s.relid = c.oid;
comment on view partition_mgmt.v_partition_stats is 'One row per partition: level, keys, bounds, estimated rows, size and last analyze.';

-- One row per managed table: the shape of its tree, its leaves and their rows, and what a
-- statement without the partition keys costs on it.
create or replace view partition_mgmt.v_tree_summary as
select m.table_key, m.tree_shape, m.target_rows_per_leaf,
       count(*) filter (where v.is_leaf) as leaves,
       count(*) filter (where v.is_leaf and v.is_default) as default_leaves,
       count(*) filter (where v.level = 'program' and not v.is_default) as programs_with_partitions,
       count(*) filter (where v.level = 'site' and not v.is_default) as sites_with_partitions,
       coalesce(sum(v.rows_estimate) filter (where v.is_leaf), 0)::bigint as rows_estimate,
       (avg(v.rows_estimate) filter (where v.is_leaf))::bigint as avg_rows_per_leaf,
       max(v.rows_estimate) filter (where v.is_leaf) as max_rows_per_leaf,
       coalesce(sum(v.size_bytes) filter (where v.is_leaf), 0)::bigint as size_bytes,
       b.keyless_locks, b.keyless_at_once, b.lock_capacity
from partition_mgmt.managed_tables m
left join partition_mgmt.v_partition_stats v on v.table_key = m.table_key
left join partition_mgmt.lock_budget() b on b.table_key = m.table_key
group by m.table_key, m.tree_shape, m.target_rows_per_leaf, b.keyless_locks, b.keyless_at_once, b.lock_capacity;
comment on view partition_mgmt.v_tree_summary is
  'Per managed table: tree shape, leaves (DEFAULT leaves among them), programs and sites with partitions of their own, estimated rows per leaf, and the locks a statement without the partition keys takes (how many fit at once).';
create or replace function partition_mgmt.validate_partitions()
returns table (check_name text, table_key text, status text, detail text)
language plpgsql stable
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  m record;
  v_n bigint;
  v_detail text;
begin
  for m in select * from partition_mgmt.managed_tables order by table_key loop
    if m.parent is null then
      return query select 'parent exists', m.table_key, 'warning', format('no partitioned table yet: run partition_mgmt.create_partitioned_table(%L)', m.table_key);
      continue;
    end if;

    -- running programs must have their current-period partitions
    select count(*), string_agg(format('program %s site %s', s.program_id, s.site_id), '; ' order by s.program_id, s.site_id)
      into v_n, v_detail
    from public.sites s join public.pilot_programs p on p.program_id = s.program_id
    where p.end_date >= current_date and p.start_date <= current_date
      -- (in a sized tree, only the sites with time partitions of their own: the others share a leaf)
      and (m.tree_shape = 'literal' or exists (select from partition_mgmt.partition_registry o
           where o.table_key = m.table_key and o.level = 'site' and not o.is_default and not o.is_leaf and o.site_id = s.site_id))
      and not exists (select from partition_mgmt.partition_registry r
                      where r.table_key = m.table_key and r.program_id = s.program_id and r.site_id = s.site_id and not r.is_default
                        and r.is_leaf and (r.range_start is null or (r.range_start <= now() and r.range_end > now())));
    return query select 'current partitions for running programs', m.table_key,
      case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'every site of every running program has a partition for now()'
           else format('%s site(s) missing: %s. Run partition_mgmt.precreate_program_partitions(program_id).', v_n, left(v_detail, 500)) end;

    -- rows waiting in DEFAULT partitions
    select coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, string_agg(r.partition_name, ', ')
      into v_n, v_detail
    from partition_mgmt.partition_registry r
    join pg_catalog.pg_class c on c.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
    where r.table_key = m.table_key and r.is_default and partition_mgmt.is_waiting_room(m.tree_shape, r.level)
      and exists (select from pg_catalog.pg_class x where x.oid = c.oid and (x.reltuples > 0 or x.relpages > 0));
    return query select 'rows in default partitions', m.table_key,
      case when v_detail is null then 'ok' else 'warning' end,
      case when v_detail is null then 'default partitions are empty'
           else format('about %s row(s) in %s; maintenance moves them into proper partitions', v_n, left(v_detail, 500)) end;

    -- every partition secured
    select count(*), string_agg(format('%I.%I', n.nspname, c.relname), ', ')
      into v_n, v_detail
    from partition_mgmt.tree_members(m.parent) t
    join pg_catalog.pg_class c on c.oid = t.relid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where t.level > 0 and (not c.relrowsecurity
      or has_table_privilege('anon', c.oid, 'select,insert,update,delete')
      or has_table_privilege('authenticated', c.oid, 'select,insert,update,delete')
      or n.nspname not in ('partitions'));
    return query select 'partitions secured', m.table_key,
      case when v_n = 0 then 'ok' else 'error' end,
      case when v_n = 0 then 'every partition has RLS on, no API-role privileges, and lives in schema partitions'
           else format('%s partition(s) exposed: %s', v_n, left(v_detail, 500)) end;

    -- registry and catalog agree
    select count(*), string_agg(x.name, ', ') into v_n, v_detail from (
      select format('%I.%I', n.nspname, c.relname) as name
      from partition_mgmt.tree_members(m.parent) t
      join pg_catalog.pg_class c on c.oid = t.relid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where t.level > 0 and not exists (select from partition_mgmt.partition_registry r
                                         where r.partition_schema = n.nspname and r.partition_name = c.relname)
      union all
      select format('%I.%I', r.partition_schema, r.partition_name) from partition_mgmt.partition_registry r
      where r.table_key = m.table_key
        and not exists (select from partition_mgmt.tree_members(m.parent) t
                        where t.relid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name)))) x;
    return query select 'registry matches catalog', m.table_key,
      case when v_n = 0 then 'ok' else 'error' end,
      case when v_n = 0 then 'every partition is registered and every registered partition exists'
           else format('%s drifted: %s', v_n, left(v_detail, 500)) end;

    return query select 'leaf budget', b.table_key, case when b.over_budget then 'warning' else 'ok' end,
      format('%s leaves (%s of them defaults), budget %s: %s', b.leaves, b.defaults, b.budget, b.advice)
    from partition_mgmt.leaf_budget_report() b where b.table_key = m.table_key;

    return query select 'lock budget', l.table_key, case when l.status = 'ok' then 'ok' else 'warning' end,
      format('%s statements without the partition keys fit at once (each locks %s of %s slots; minimum %s): %s',
             l.keyless_at_once, l.keyless_locks, l.lock_capacity, l.minimum, l.advice)
    from partition_mgmt.lock_budget() l where l.table_key = m.table_key;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Build the trees for the registered tables
-- -----------------------------------------------------------------------------

select partition_mgmt.create_partitioned_table(table_key) from partition_mgmt.managed_tables where parent is null order by table_key;

-- -----------------------------------------------------------------------------
-- The app's tables: the creation trigger on programs and sites (a literal tree's partitions; a
-- sized tree creates nothing on insert). Last in the file, under locks taken in short tries
-- (private.lock_for_ddl), so the app's writes wait for them only for the instant before commit.
-- -----------------------------------------------------------------------------

select private.report_deploy(format('trigger partition_mgmt_create_partitions on %s', t),
         case when exists (select from pg_catalog.pg_trigger g where g.tgrelid = t::regclass and g.tgname = 'partition_mgmt_create_partitions')
              then 'kept (existed)' else 'added' end,
         'AFTER INSERT: creates the partitions of a new program or site where a table uses the plan''s literal tree; does nothing for the sized tree (the default)')
from unnest(array['public.pilot_programs', 'public.sites']) t;
select private.lock_for_ddl(array['public.pilot_programs', 'public.sites'], 'share row exclusive');
create or replace trigger partition_mgmt_create_partitions after insert on public.pilot_programs
  for each row execute function partition_mgmt.on_program_or_site_insert();
create or replace trigger partition_mgmt_create_partitions after insert on public.sites
  for each row execute function partition_mgmt.on_program_or_site_insert();
