-- =============================================================================
-- The lock budget. Every relation a statement touches takes a slot in the server's shared lock
-- table (max_locks_per_transaction × (max_connections + max_prepared_transactions); Micro: 64 ×
-- 60). DDL steps stop at a fifth of it (ddl_lock_budget) or at a maintenance step's deadline and
-- commit; run_ddl retries DDL on hot tables with a short lock_timeout; plan_lock_budget and
-- lock_budget() say what a tree costs a keyless statement.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

-- Transaction-scoped advisory lock on a program or a site, shared by every managed table:
-- concurrent creators of the same partitions serialise here and the second finds the first one's
-- work. Keyed without the table so that one creator working through several tables (the insert
-- trigger) and another working on one of them always take the locks in the same order
-- (program, then site): no deadlock.
create or replace function partition_mgmt.lock_key(p_table_key text, p_level text, p_a uuid, p_b uuid default null)
returns void
language sql
set search_path = ''
as $$
  select pg_advisory_xact_lock(hashtextextended(concat_ws(':', 'partition_mgmt', p_level, p_a, p_b), 0));
$$;

-- Runs DDL against a possibly hot table with a short lock_timeout, retrying with exponential
-- backoff and jitter, so a waiting ACCESS EXCLUSIVE/SHARE UPDATE EXCLUSIVE request never queues
-- application statements for long. The caller's lock_timeout is restored afterwards. Without
-- arguments, the transaction-local settings partition_mgmt.lock_timeout and
-- partition_mgmt.ddl_attempts apply (maintenance sets them from maintenance_settings), else
-- 500ms and 8 attempts.
create or replace function partition_mgmt.run_ddl(
  p_sql text,
  p_lock_timeout text default null,
  p_attempts int default null)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_old text := current_setting('lock_timeout');
  v_timeout text := coalesce(p_lock_timeout, nullif(current_setting('partition_mgmt.lock_timeout', true), ''), '500ms');
  v_attempts int := coalesce(p_attempts, nullif(current_setting('partition_mgmt.ddl_attempts', true), '')::int, 8);
  v_attempt int := 0;
begin
  loop
    v_attempt := v_attempt + 1;
    begin
      perform set_config('lock_timeout', v_timeout, true);
      execute p_sql;
      perform set_config('lock_timeout', v_old, true);
      return;
    exception when lock_not_available then
      perform set_config('lock_timeout', v_old, true);
      if v_attempt >= v_attempts then
        raise exception 'could not get the lock for DDL after % attempts of lock_timeout %: %', v_attempts, v_timeout, p_sql
          using errcode = 'lock_not_available',
                hint = 'A long transaction holds a conflicting lock on the table: let it finish (see pg_stat_activity) and retry.';
      end if;
      perform pg_sleep(least(5.0, 0.05 * power(2, v_attempt)) * (0.5 + random() / 2));
    end;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Lock budget. Every relation a statement touches takes a slot in the server's shared lock
-- table until the transaction ends; DDL holds ACCESS EXCLUSIVE on every relation it creates.
-- The table holds max_locks_per_transaction x (max_connections + autovacuum_max_workers + 1 +
-- max_worker_processes + max_wal_senders + max_prepared_transactions) slots for all sessions
-- together (hosted Micro: 64 x 75 = 4,800), and a full table answers "out of shared memory" to
-- every session. So the bundle counts: what a statement without the partition keys needs, and
-- how much of the table one of its own transactions may take before it commits and goes on.
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.lock_capacity()
returns bigint
language sql stable
set search_path = ''
as $$
  select current_setting('max_locks_per_transaction')::bigint
         * (current_setting('max_connections')::bigint + current_setting('autovacuum_max_workers')::bigint + 1
            + current_setting('max_worker_processes')::bigint + current_setting('max_wal_senders')::bigint
            + current_setting('max_prepared_transactions')::bigint)
$$;
comment on function partition_mgmt.lock_capacity() is
  'Slots in the shared lock table for all sessions together: max_locks_per_transaction x (max_connections + autovacuum_max_workers + 1 + max_worker_processes + max_wal_senders + max_prepared_transactions).';

-- The budget rule in one place: a tree is within its lock budget while a statement without the
-- partition keys locks at most this many slots, so that p_minimum such statements fit in the lock
-- table at once (lock_budget(), start_promotion, the nightly promote step).
create or replace function partition_mgmt.keyless_lock_allowance(p_minimum integer)
returns bigint
language sql stable
set search_path = ''
as $$
  select partition_mgmt.lock_capacity() / greatest(p_minimum, 1)
$$;
comment on function partition_mgmt.keyless_lock_allowance(integer) is
  'The most slots a statement without the partition keys may lock so that p_minimum such statements fit in the lock table at once: lock_capacity() / p_minimum.';

-- Slots of the shared lock table this transaction holds now (fast-path locks excluded).
create or replace function partition_mgmt.held_locks()
returns integer
language sql volatile
set search_path = ''
as $$
  select count(*)::integer from pg_catalog.pg_locks where pid = pg_catalog.pg_backend_pid() and not fastpath
$$;

-- How many slots one transaction of the bundle may fill with partition DDL before it stops and
-- leaves the rest to its next call (or to maintenance): a fifth of the table, so that the app's
-- own statements keep the rest; partition_mgmt.ddl_lock_budget overrides it for the transaction.
create or replace function partition_mgmt.ddl_lock_budget()
returns integer
language sql stable
set search_path = ''
as $$
  select coalesce(nullif(current_setting('partition_mgmt.ddl_lock_budget', true), '')::integer,
                  greatest(100, partition_mgmt.lock_capacity() / 5)::integer)
$$;

-- True once this transaction holds more lock slots than its DDL budget, or a maintenance step's
-- deadline has passed; remembers it in the transaction-local setting
-- partition_mgmt.budget_exhausted so callers up the stack can tell.
create or replace function partition_mgmt.ddl_budget_exhausted()
returns boolean
language plpgsql volatile
set search_path = ''
as $$
begin
  if partition_mgmt.held_locks() > partition_mgmt.ddl_lock_budget()
     or clock_timestamp() > coalesce(nullif(current_setting('partition_mgmt.step_deadline', true), '')::timestamptz, 'infinity') then
    perform set_config('partition_mgmt.budget_exhausted', 'on', true);
    return true;
  end if;
  return false;
end
$$;

-- Whether ddl_budget_exhausted() said so earlier in this transaction.
create or replace function partition_mgmt.budget_spent()
returns boolean
language sql stable
set search_path = ''
as $$ select coalesce(current_setting('partition_mgmt.budget_exhausted', true), '') = 'on' $$;

-- Every relation of the tree under p_root (itself included), read from the catalog without a
-- lock: pg_partition_tree() locks every partition (AccessShare), which on a tree larger than the
-- lock table fails with "out of shared memory" exactly where a budget report should warn.
create or replace function partition_mgmt.tree_members(p_root regclass)
returns table (relid regclass, parentrelid regclass, isleaf boolean, level integer)
language sql stable
set search_path = ''
as $$
  with recursive t(relid, parentrelid, level) as (
    select p_root::oid, null::oid, 0
    union all
    select i.inhrelid, i.inhparent, t.level + 1 from t join pg_catalog.pg_inherits i on i.inhparent = t.relid
  )
  select t.relid::regclass, t.parentrelid::regclass, c.relkind not in ('p', 'I'), t.level
  from t join pg_catalog.pg_class c on c.oid = t.relid
$$;

-- Locks a statement that names the table but not its partition keys takes: every relation of
-- the tree (the planner opens and locks every partition) and every index of every leaf. From
-- PostgreSQL 16 on the planner also opens the partitioned tables' own (partitioned) indexes
-- (commit 3c569049b, unique indexes as join-removal proofs), and locks them: 15.18 takes none of
-- them, 17.12 every one (measured by test/partitions/lock-budget.test.ts on both).
create or replace function partition_mgmt.partitioned_indexes_locked()
returns boolean
language sql stable
set search_path = ''
as $$ select pg_catalog.current_setting('server_version_num')::integer >= 160000 $$;
create or replace function partition_mgmt.keyless_statement_locks(p_table regclass)
returns bigint
language sql stable
set search_path = ''
as $$
  select count(*) + coalesce(sum((select count(*) from pg_catalog.pg_index i where i.indrelid = t.relid))
                               filter (where t.isleaf or partition_mgmt.partitioned_indexes_locked()), 0)
  from partition_mgmt.tree_members(p_table) t
$$;

-- -----------------------------------------------------------------------------
-- The tree a table's data asks for
-- -----------------------------------------------------------------------------

-- Indexes every leaf of the table has (or will have once prepared): the parent's own (primary
-- key, time order, submission) and the legacy indexes prepare carries.
create or replace function partition_mgmt.indexes_per_leaf(p_table_key text, p_legacy regclass)
returns integer
language sql stable
set search_path = ''
as $$
  select coalesce((select count(*)::integer from pg_catalog.pg_index i where i.indrelid = m.parent),
                  2 + (exists (select from pg_catalog.pg_attribute a where a.attrelid = p_legacy and a.attname = 'submission_id' and not a.attisdropped))::integer)
         + (select count(*)::integer from partition_mgmt.legacy_indexes(p_table_key, p_legacy) l
            where l.carried and (m.parent is null or l.reason is null))
  from partition_mgmt.managed_tables m where m.table_key = p_table_key
$$;

-- What a statement without the partition keys would lock on the tree plan_tree plans, and how
-- many such statements fit in the server's lock table at once.
create or replace function partition_mgmt.plan_lock_budget(p_table_key text, p_legacy regclass,
  out programs integer, out own_sites integer, out leaves integer, out relations integer, out keyless_locks bigint,
  out lock_capacity bigint, out keyless_at_once bigint)
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_none integer;
  v_periods integer;
begin
  select count(*) filter (where t.level = 'program'), count(*) filter (where t.level = 'site'),
         count(*) filter (where t.level = 'site' and t.granularity = 'none'), count(*) filter (where t.level = 'period')
    into programs, own_sites, v_none, v_periods
  from partition_mgmt.plan_tree(p_table_key, p_legacy) t;
  -- root + root DEFAULT; per program: its partition and DEFAULT; per own site: its partition (the
  -- leaf, for 'none') and DEFAULT; per period: a leaf
  leaves := 1 + programs + own_sites + v_periods;
  relations := 2 + 2 * programs + 2 * own_sites - v_none + v_periods;
  keyless_locks := relations + leaves::bigint * partition_mgmt.indexes_per_leaf(p_table_key, p_legacy)
                   -- the DEFAULT leaves' own indexes: a sized tree's shared leaves have two more; a
                   -- root DEFAULT made while the table was sized keeps them after a switch to literal
                   + case when c.tree_shape = 'sized' then 2 + programs
                          else greatest(0, coalesce((select count(*)::integer from pg_catalog.pg_index i
                                 join partition_mgmt.partition_registry r on i.indrelid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
                                 where r.table_key = p_table_key and r.level = 'program' and r.is_default), 0)
                               - partition_mgmt.indexes_per_leaf(p_table_key, p_legacy)) end
                   -- the partitioned tables' (partitioned) indexes: each has the parent's
                   + case when partition_mgmt.partitioned_indexes_locked()
                          then (relations - leaves)::bigint * partition_mgmt.indexes_per_leaf(p_table_key, p_legacy) else 0 end;
  lock_capacity := partition_mgmt.lock_capacity();
  keyless_at_once := lock_capacity / greatest(keyless_locks, 1);
end
$$;

-- -----------------------------------------------------------------------------
-- Stats, budget and validation
-- -----------------------------------------------------------------------------

-- Leaf counts against the budget: planning and memory grow with leaves.
create or replace function partition_mgmt.leaf_budget_report()
returns table (table_key text, leaves bigint, defaults bigint, budget integer, over_budget boolean, advice text)
language sql stable
set search_path = ''
as $$
  -- every leaf counts, DEFAULT partitions included: each one costs planning time and memory
  select m.table_key,
         count(*) filter (where r.is_leaf),
         count(*) filter (where r.is_default),
         m.leaf_budget,
         count(*) filter (where r.is_leaf) > m.leaf_budget,
         case when count(*) filter (where r.is_leaf) > m.leaf_budget then
           format('%s leaves exceed the budget of %s: set low-volume sites to granularity ''none'' (partition_mgmt.set_site_granularity), archive ended programs, or raise managed_tables.leaf_budget if memory allows',
                  count(*) filter (where r.is_leaf), m.leaf_budget)
         else 'within budget' end
  from partition_mgmt.managed_tables m
  left join partition_mgmt.partition_registry r using (table_key)
  group by m.table_key, m.leaf_budget
$$;

-- The live trees against the server's lock table: what one statement without the partition keys
-- locks (every partition, every index of every leaf), and how many of them fit at once.
create or replace function partition_mgmt.lock_budget()
returns table (table_key text, relations bigint, leaves bigint, keyless_locks bigint, lock_capacity bigint,
               keyless_at_once bigint, minimum integer, status text, advice text)
language sql stable
set search_path = ''
as $$
  select m.table_key, t.relations, t.leaves, k.locks, partition_mgmt.lock_capacity(),
         partition_mgmt.lock_capacity() / greatest(k.locks, 1), m.min_keyless_statements,
         case when k.locks <= partition_mgmt.keyless_lock_allowance(m.min_keyless_statements) then 'ok' else 'over budget' end,
         case when k.locks <= partition_mgmt.keyless_lock_allowance(m.min_keyless_statements) then 'within budget'
              else format('a statement without the partition keys takes %s locks on %s (every partition, every index of every leaf); only %s fit in the lock table (%s slots) at once, fewer than %s. '
                          'Fewer leaves: raise target_rows_per_leaf (sized trees share small sites'' leaves), use coarser periods (set_site_granularity), '
                          'archive old periods (retention); or raise max_locks_per_transaction (supabase postgres-config update)',
                          k.locks, m.parent, partition_mgmt.lock_capacity() / greatest(k.locks, 1), partition_mgmt.lock_capacity(), m.min_keyless_statements) end
  from partition_mgmt.managed_tables m
  cross join lateral (select count(*) as relations, count(*) filter (where x.isleaf) as leaves from partition_mgmt.tree_members(m.parent) x) t
  cross join lateral (select partition_mgmt.keyless_statement_locks(m.parent) as locks) k
  where m.parent is not null
  order by m.table_key
$$;
comment on function partition_mgmt.lock_budget() is
  'Per partitioned table: the locks a statement without the partition keys takes, and how many such statements the server''s lock table holds at once (lock_capacity()).';

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres, service_role) only
-- -----------------------------------------------------------------------------

grant execute on function partition_mgmt.leaf_budget_report() to service_role;
grant execute on function partition_mgmt.lock_budget() to service_role;
grant execute on function partition_mgmt.lock_capacity() to service_role;
grant execute on function partition_mgmt.keyless_lock_allowance(integer) to service_role;
