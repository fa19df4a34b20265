-- Online migration: API, privileges and every phase in one transaction (migration
-- 20250102000400_migration_state to 20250102000470_migration_orchestrator). The concurrent, crash and lock-wait scenarios are in
-- test/migration-*.test.ts.
-- Covers: the plan's functions exist and only service_role (and the owner) may call them; a dry
-- run changes nothing; prepare + sync leave the migration in phase syncing; the backfill copies
-- every row and reaches backfilled; then the sync trigger copies an insert (gasifier program_id
-- NULL: derived from the site), and applies to rows already copied a key-changing update (old
-- version removed, one key-table entry), a delete and a plain update; validation passes and
-- moves to validated; a swap before validation is refused; the rows without program_id are
-- listed; the swap puts the partitioned table under the legacy name and writes after it reach
-- <table>_old (one without program_id: its site's program in the table, NULL in <table>_old);
-- rollback restores the legacy table and leaves no state or trigger; finalize is refused unless
-- swapped.
begin;
select plan(33);
set local timezone = 'UTC';

select has_function('partition_mgmt', 'pre_migration_check', array['text'], 'pre_migration_check(text) exists');
select has_function('partition_mgmt', 'safe_migrate_table', array['text', 'boolean', 'boolean'], 'safe_migrate_table exists');
select has_function('partition_mgmt', 'migrate_to_partitioned', array['integer', 'uuid', 'text', 'integer', 'numeric'], 'migrate_to_partitioned exists');
select has_function('partition_mgmt', 'monitor_migration', array['text'], 'monitor_migration exists');
select has_function('partition_mgmt', 'post_migration_validation', array['text'], 'post_migration_validation exists');
select has_function('partition_mgmt', 'swap_tables', array['text', 'text', 'integer', 'text'], 'swap_tables exists');
select has_function('partition_mgmt', 'rollback_migration', array['text', 'text', 'integer'], 'rollback_migration exists');
select has_function('partition_mgmt', 'finalize_migration', array['text'], 'finalize_migration exists');
select ok(has_function_privilege('service_role', 'partition_mgmt.swap_tables(text, text, integer, text)', 'execute')
         and not has_function_privilege('authenticated', 'partition_mgmt.swap_tables(text, text, integer, text)', 'execute')
         and not has_function_privilege('anon', 'partition_mgmt.rollback_migration(text, text, integer)', 'execute')
         and not has_function_privilege('authenticated', 'partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric)', 'execute'),
  'only service_role may run the migration');

insert into public.companies (company_id, name) values ('c1000000-0000-4000-8000-000000000010', 'Mig Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('a1000000-0000-4000-8000-000000000010', 'Mig program', current_date - 40, current_date + 40, 'c1000000-0000-4000-8000-000000000010');
insert into public.sites (site_id, program_id, name) values
  ('b1000000-0000-4000-8000-000000000011', 'a1000000-0000-4000-8000-000000000010', 'Mig site 1'),
  ('b1000000-0000-4000-8000-000000000012', 'a1000000-0000-4000-8000-000000000010', 'Mig site 2');
insert into public.submissions (submission_id, site_id, program_id)
values ('d1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000011', 'a1000000-0000-4000-8000-000000000010');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code, created_at)
select ('e1000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'd1000000-0000-4000-8000-000000000010',
       'b1000000-0000-4000-8000-000000000011', case when g % 3 = 0 then null else 'a1000000-0000-4000-8000-000000000010'::uuid end,
       'G' || g, now() - make_interval(days => g)
from generate_series(1, 25) g;

select is((select count(*)::int from partition_mgmt.safe_migrate_table('gasifier', true) where action = 'verdict' and status = 'ok'), 1,
  'the dry run finds no blocker');
select is((select count(*)::int from partition_mgmt.migration_state), 0, 'the dry run records nothing');
select is((select status from partition_mgmt.pre_migration_check('gasifier') where check_name = 'partition keys'), 'warning',
  'NULL program_id that can be derived from the site is a warning, not a blocker');

select lives_ok($$select * from partition_mgmt.safe_migrate_table('gasifier', false)$$, 'prepare and sync');
select is(partition_mgmt.migration_phase('gasifier'), 'syncing', 'the migration is syncing');

-- the backfill copies every legacy row first, so the sync trigger below acts on rows already in
-- the copy (a delete or update of a row not copied yet would look right without any trigger)
select is((select rows_copied::int from partition_mgmt.migrate_to_partitioned(100, null, 'gasifier', 1)), 25, 'the first batch copies every legacy row');
select is((select done from partition_mgmt.migrate_to_partitioned(100, null, 'gasifier', 1)), true, 'the backfill finishes');
select is(partition_mgmt.migration_phase('gasifier'), 'backfilled', 'phase backfilled');

-- the sync trigger
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code)
values ('e1000000-0000-4000-8000-000000000100', 'd1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000011', null, 'new');
select is((select program_id from public.gasifier_observations_partitioned where observation_id = 'e1000000-0000-4000-8000-000000000100'),
  'a1000000-0000-4000-8000-000000000010'::uuid, 'an insert is copied, its NULL program_id derived from the site');
update public.gasifier_observations set site_id = 'b1000000-0000-4000-8000-000000000012', measure = 7
where observation_id = 'e1000000-0000-4000-8000-000000000003';
select results_eq($$select site_id, measure::numeric, (select count(*)::int from partition_mgmt.observation_keys k where k.table_key = 'gasifier' and k.observation_id = p.observation_id)
                    from public.gasifier_observations_partitioned p where observation_id = 'e1000000-0000-4000-8000-000000000003'$$,
  $$values ('b1000000-0000-4000-8000-000000000012'::uuid, 7::numeric, 1)$$,
  'a site change of a copied row moves the copy (one row, one key entry)');
delete from public.gasifier_observations where observation_id = 'e1000000-0000-4000-8000-000000000001';
select is((select count(*)::int from public.gasifier_observations_partitioned where observation_id = 'e1000000-0000-4000-8000-000000000001')
          + (select count(*)::int from partition_mgmt.observation_keys where table_key = 'gasifier' and observation_id = 'e1000000-0000-4000-8000-000000000001'),
  0, 'a delete of a copied row removes it and its key from the copy');
update public.gasifier_observations set notes = 'x' where observation_id = 'e1000000-0000-4000-8000-000000000002';
select is((select notes from public.gasifier_observations_partitioned where observation_id = 'e1000000-0000-4000-8000-000000000002'),
  'x', 'an update of a copied row reaches the copy');

select throws_ok($$select * from partition_mgmt.swap_tables('gasifier')$$, 'P0001', null, 'the swap is refused before validation');

-- validation
select is((select count(*)::int from partition_mgmt.post_migration_validation('gasifier') where status <> 'ok'), 0, 'validation finds the tables equal');
select is(partition_mgmt.migration_phase('gasifier'), 'validated', 'phase validated');

-- the legacy rows without program_id, the copied ones and the one the sync wrote, are listed
select results_eq($$select count(*)::int from partition_mgmt.rows_without_program where table_key = 'gasifier'$$,
  $$select count(*)::int from public.gasifier_observations where program_id is null$$,
  'every legacy row without program_id is listed (the backfill''s and the sync''s)');

-- swap, writes after it (with and without program_id), rollback
select is((select phase from partition_mgmt.swap_tables('gasifier')), 'swapped', 'the swap succeeds');
select is((select relkind::text from pg_class where oid = 'public.gasifier_observations'::regclass), 'p', 'the partitioned table has the live name');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code)
values ('e1000000-0000-4000-8000-000000000200', 'd1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000011', 'a1000000-0000-4000-8000-000000000010', 'after'),
       ('e1000000-0000-4000-8000-000000000201', 'd1000000-0000-4000-8000-000000000010', 'b1000000-0000-4000-8000-000000000011', null, 'after, no program');
select is((select count(*)::int from public.gasifier_observations_old where observation_id = 'e1000000-0000-4000-8000-000000000200'), 1,
  'a write after the swap reaches gasifier_observations_old');
select results_eq($$select (select program_id from public.gasifier_observations where observation_id = 'e1000000-0000-4000-8000-000000000201'),
                           (select program_id from public.gasifier_observations_old where observation_id = 'e1000000-0000-4000-8000-000000000201')$$,
  $$values ('a1000000-0000-4000-8000-000000000010'::uuid, null::uuid)$$,
  'a row written without program_id after the swap lands with its site''s program; gasifier_observations_old keeps the NULL');
select lives_ok($$select partition_mgmt.rollback_migration('gasifier')$$, 'rollback after the swap');
select is(partition_mgmt.migration_phase('gasifier'), 'rolled_back', 'the legacy table is live; the copy waits for finish_rollback');
select lives_ok($$select partition_mgmt.finish_rollback('gasifier')$$, 'finish_rollback empties the copy');
select results_eq($$select (select relkind::text from pg_class where oid = 'public.gasifier_observations'::regclass),
                           (select count(*)::int from public.gasifier_observations where observation_id = 'e1000000-0000-4000-8000-000000000200'),
                           (select count(*)::int from partition_mgmt.migration_state),
                           (select count(*)::int from pg_trigger where tgname like 'partition_mgmt_sync%')$$,
  $$values ('r'::text, 1, 0, 0)$$,
  'the legacy table is live again with the post-swap write; no state or trigger is left');

select * from finish();
rollback;
