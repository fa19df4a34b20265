-- observation_id across the partition tree (migration 20250102000200_partition_tree): the key
-- table partition_mgmt.observation_keys and the routed access by id.
-- Covers: observation_id unique across partitions (same id in another site, another month, the same
-- leaf at another time, or twice in one statement raises unique_violation 23505 and leaves no
-- stray key), each managed table has its own id space; the key table follows inserts, non-key
-- updates, key-changing updates that move the row to another partition (time, site, id) and
-- deletes, and a deleted id can be used again; with the swap simulated (the tree renamed to
-- public.petri_observations, rolled back with the test), get/update/delete_observation_by_id touch
-- exactly the right row, a routed update of a key moves the row and its keys, unknown ids give
-- null/false, routing does not depend on the session's time zone or DateStyle; the routed fetch,
-- update and delete are generated for the partitioned table with its keys from the key table and
-- static statements (the locks they take, one leaf, are checked in
-- test/migration/app-calls-after-swap.test.ts), while the unrouted `where observation_id = …`
-- plans every leaf; get/update/delete_observation_by_id reach each managed table's generated
-- function by every name the table has, in a static call, with the errors of an unknown table, a
-- NULL id and empty changes.
begin;
select plan(47);
-- the plan's literal tree (every program, site and period, created on insert); 08 covers the sized tree
update partition_mgmt.managed_tables set tree_shape = 'literal';
-- the whole file is one transaction: let its partition DDL use most of the lock table
set local partition_mgmt.ddl_lock_budget = '4000';
set local timezone = 'UTC';

insert into public.companies (company_id, name) values ('c6000000-0000-4000-8000-000000000001', 'Id Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('6a000001-0000-4000-8000-000000000001', 'Id program', '2024-01-01', '2024-03-31', 'c6000000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name)
values ('6b000001-0000-4000-8000-000000000001', '6a000001-0000-4000-8000-000000000001', 'Site 1'),
       ('6b000002-0000-4000-8000-000000000001', '6a000001-0000-4000-8000-000000000001', 'Site 2');

-- Simulated swap: the app's table name now means the partitioned tree (managed_tables.parent is a
-- regclass and follows; live_table() resolves the name), and the read API is installed again for
-- it, as swap_tables does (the routed functions are generated for the table that is live).
alter table public.petri_observations rename to petri_observations_legacy_t;
alter table public.petri_observations_partitioned rename to petri_observations;
select lives_ok($$select partition_mgmt.install_read_api('petri')$$, 'the read API is generated for the partitioned table');

-- Partitions a statement's plan reads: the distinct "Relation Name"s of its EXPLAIN that are
-- partitions of a managed table.
create function pg_temp.partitions_in_plan(p_sql text)
returns text[]
language plpgsql
as $$
declare
  v_plan jsonb;
begin
  execute 'explain (format json, costs off) ' || p_sql into v_plan;
  return (select coalesce(array_agg(distinct r.name order by r.name), '{}')
          from (select n #>> '{}' as name from jsonb_path_query(v_plan, 'strict $.**."Relation Name"') n) r
          where exists (select from partition_mgmt.partition_registry g where g.partition_name = r.name));
end
$$;

create function pg_temp.observation_sql(p_id text, p_site text, p_at text, p_code text default 'code')
returns text
language sql
as $$
  select format('insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, created_at)
                 values (%L, %L, %L, %L, %L, %L)', p_id, '6d000001-0000-4000-8000-000000000001', p_site,
                '6a000001-0000-4000-8000-000000000001', p_code, p_at)
$$;

create function pg_temp.keys_of(p_id uuid)
returns text
language sql
as $$
  select string_agg(format('%s %s', site_id, created_at), '; ')
  from partition_mgmt.observation_keys where table_key = 'petri' and observation_id = p_id
$$;

-- ---------------------------------------------------------------------------
-- Uniqueness across partitions
-- ---------------------------------------------------------------------------
select lives_ok(pg_temp.observation_sql('6e000001-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-01-10 09:00+00'),
  'an observation is inserted');
select throws_ok(pg_temp.observation_sql('6e000001-0000-4000-8000-000000000001', '6b000002-0000-4000-8000-000000000001', '2024-02-10 09:00+00'),
  '23505', null, 'the same id in another site and month is a unique_violation');
select throws_ok(pg_temp.observation_sql('6e000001-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-03-10 09:00+00'),
  '23505', null, 'the same id in another month of the same site is a unique_violation');
select throws_ok(pg_temp.observation_sql('6e000001-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-01-11 09:00+00'),
  '23505', null, 'the same id in the same leaf at another time is a unique_violation');
select throws_ok(pg_temp.observation_sql('6e000001-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-01-10 09:00+00'),
  '23505', null, 'the same id with the same keys is a unique_violation');
select throws_ok(
  $$insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, created_at)
    values ('6e000009-0000-4000-8000-000000000001', '6d000001-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001',
            '6a000001-0000-4000-8000-000000000001', 'a', '2024-01-12 09:00+00'),
           ('6e000009-0000-4000-8000-000000000001', '6d000001-0000-4000-8000-000000000001', '6b000002-0000-4000-8000-000000000001',
            '6a000001-0000-4000-8000-000000000001', 'b', '2024-02-12 09:00+00')$$,
  '23505', null, 'one statement inserting an id twice into two partitions is a unique_violation');
select is((select count(*)::int from public.petri_observations where observation_id = '6e000009-0000-4000-8000-000000000001'), 0,
  'and inserts neither row');
select is(pg_temp.keys_of('6e000001-0000-4000-8000-000000000001'),
  '6b000001-0000-4000-8000-000000000001 2024-01-10 09:00:00+00', 'the rejected duplicates left the first row''s keys alone');
select is(pg_temp.keys_of('6e000009-0000-4000-8000-000000000001'), null, 'and no stray key behind');
select lives_ok(
  $$insert into public.gasifier_observations_partitioned (observation_id, submission_id, site_id, program_id, gasifier_code, created_at)
    values ('6e000001-0000-4000-8000-000000000001', '6d000001-0000-4000-8000-000000000001', '6b000002-0000-4000-8000-000000000001',
            '6a000001-0000-4000-8000-000000000001', 'g', '2024-02-10 09:00+00')$$,
  'each managed table has its own id space: the petri id is free in the gasifier tree');

-- ---------------------------------------------------------------------------
-- The key table follows every change of the keys
-- ---------------------------------------------------------------------------
update public.petri_observations set petri_code = 'renamed' where observation_id = '6e000001-0000-4000-8000-000000000001';
select is(pg_temp.keys_of('6e000001-0000-4000-8000-000000000001'),
  '6b000001-0000-4000-8000-000000000001 2024-01-10 09:00:00+00', 'an update of a non-key column keeps the keys');
update public.petri_observations set created_at = '2024-02-20 09:00+00' where observation_id = '6e000001-0000-4000-8000-000000000001';
select is(
  (select tableoid::regclass::text from public.petri_observations where observation_id = '6e000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_6a0000010000_s_6b0000010000_2024_02', 'an update of created_at to another month moves the row to that leaf');
select is(pg_temp.keys_of('6e000001-0000-4000-8000-000000000001'),
  '6b000001-0000-4000-8000-000000000001 2024-02-20 09:00:00+00', 'and the key table follows the move');
update public.petri_observations set site_id = '6b000002-0000-4000-8000-000000000001' where observation_id = '6e000001-0000-4000-8000-000000000001';
select is(
  (select tableoid::regclass::text from public.petri_observations where observation_id = '6e000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_6a0000010000_s_6b0000020000_2024_02', 'an update of site_id moves the row to the other site''s leaf');
select is(pg_temp.keys_of('6e000001-0000-4000-8000-000000000001'),
  '6b000002-0000-4000-8000-000000000001 2024-02-20 09:00:00+00', 'and the key table follows that move too');
update public.petri_observations set observation_id = '6e000002-0000-4000-8000-000000000001' where observation_id = '6e000001-0000-4000-8000-000000000001';
select is(pg_temp.keys_of('6e000001-0000-4000-8000-000000000001'), null,
  'after changing the id, the old id has no keys');
select is(pg_temp.keys_of('6e000002-0000-4000-8000-000000000001'),
  '6b000002-0000-4000-8000-000000000001 2024-02-20 09:00:00+00', 'and the new id has the row''s keys');
delete from public.petri_observations where observation_id = '6e000002-0000-4000-8000-000000000001';
select is(pg_temp.keys_of('6e000002-0000-4000-8000-000000000001'), null, 'a delete removes the keys');
select lives_ok(pg_temp.observation_sql('6e000002-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-03-01 00:00+00'),
  'a deleted id can be used again');
select is(
  (select count(*)::int from partition_mgmt.observation_keys where table_key = 'petri'),
  (select count(*)::int from public.petri_observations), 'the key table has one entry per row');

-- ---------------------------------------------------------------------------
-- Routed access by id
-- ---------------------------------------------------------------------------
select lives_ok(pg_temp.observation_sql('6e000003-0000-4000-8000-000000000001', '6b000001-0000-4000-8000-000000000001', '2024-01-20 10:30:15.123456+00', 'three'),
  'a second observation is inserted');
select lives_ok(pg_temp.observation_sql('6e000004-0000-4000-8000-000000000001', '6b000002-0000-4000-8000-000000000001', '2024-03-20 10:30+00', 'four'),
  'a third observation is inserted');

select is(public.get_observation_by_id('petri', '6e000003-0000-4000-8000-000000000001') ->> 'petri_code', 'three',
  'get_observation_by_id finds the row by id alone');
set local timezone = 'America/Sao_Paulo';
set local datestyle = 'SQL, DMY';
select is(public.get_observation_by_id('petri', '6e000003-0000-4000-8000-000000000001') ->> 'petri_code', 'three',
  'routing survives another session time zone and DateStyle (microseconds included)');
set local timezone = 'UTC';
set local datestyle = 'ISO, MDY';
select is(public.get_observation_by_id('petri_observations', '6e000099-0000-4000-8000-000000000001'), null,
  'get_observation_by_id of an unknown id is null');
select is(public.update_observation_by_id('petri', '6e000003-0000-4000-8000-000000000001', '{"petri_code": "three v2"}') ->> 'petri_code',
  'three v2', 'update_observation_by_id returns the updated row');
select results_eq(
  $$select observation_id::text, petri_code from public.petri_observations order by observation_id$$,
  $$values ('6e000002-0000-4000-8000-000000000001'::text, 'code'::text), ('6e000003-0000-4000-8000-000000000001', 'three v2'),
           ('6e000004-0000-4000-8000-000000000001', 'four')$$,
  'and changed that row only');
select is(
  public.update_observation_by_id('petri', '6e000003-0000-4000-8000-000000000001', '{"created_at": "2024-03-05T00:00:00Z"}') ->> 'created_at',
  '2024-03-05T00:00:00+00:00', 'a routed update of created_at succeeds');
select is(
  (select tableoid::regclass::text from public.petri_observations where observation_id = '6e000003-0000-4000-8000-000000000001'),
  'partitions.petri_p_6a0000010000_s_6b0000010000_2024_03', 'the row moved to its new month');
select is(public.get_observation_by_id('petri', '6e000003-0000-4000-8000-000000000001') ->> 'petri_code', 'three v2',
  'and is still found by id (the keys followed)');
select is(public.update_observation_by_id('petri', '6e000099-0000-4000-8000-000000000001', '{"petri_code": "x"}'), null,
  'update_observation_by_id of an unknown id changes nothing');

-- ---------------------------------------------------------------------------
-- Plans: the routed statements read one leaf, the unrouted one every leaf
-- ---------------------------------------------------------------------------
select is(
  (select count(*)::int from pg_catalog.pg_proc
   where pronamespace = 'partition_mgmt'::regnamespace and proname in ('petri_fetch_by_id', 'petri_delete_by_id', 'petri_rows_for_submission')
     and prosrc ~* '\mexecute\M'),
  0, 'the routed fetch, delete and submission rows run static statements (PL/pgSQL keeps their plans), no EXECUTE');
select is(
  (select count(*)::int from pg_catalog.pg_proc
   where pronamespace = 'partition_mgmt'::regnamespace and proname in ('petri_fetch_by_id', 'petri_update_by_id', 'petri_delete_by_id')
     and prosrc like '%partition_mgmt.route(''petri'', p_observation_id)%'
     and prosrc ~ 'program_id = (k\.program_id|\$3) and t\.site_id = (k\.site_id|\$4) and t\.created_at = (k\.created_at|\$5)'),
  3, 'the routed fetch, update and delete take the row''s keys from the key table and give them to their statement (one leaf)');
select is(
  cardinality(pg_temp.partitions_in_plan($$update public.petri_observations set petri_code = 'x'
                                          where observation_id = '6e000004-0000-4000-8000-000000000001'$$)),
  (select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and is_leaf),
  'the unrouted update by observation_id plans every leaf');

select is(public.delete_observation_by_id('petri', '6e000004-0000-4000-8000-000000000001'), true,
  'delete_observation_by_id deletes the row');
select results_eq(
  $$select observation_id::text from public.petri_observations order by observation_id$$,
  $$values ('6e000002-0000-4000-8000-000000000001'::text), ('6e000003-0000-4000-8000-000000000001')$$,
  'and no other row');
select is(pg_temp.keys_of('6e000004-0000-4000-8000-000000000001'), null, 'its keys are gone');
select is(public.delete_observation_by_id('petri', '6e000004-0000-4000-8000-000000000001'), false,
  'deleting it again reports false');

-- ---------------------------------------------------------------------------
-- The public functions: a static call of the named table's generated function
-- ---------------------------------------------------------------------------
select is(
  (select count(*)::int from pg_catalog.pg_proc
   where oid in ('public.get_observation_by_id(text, uuid)'::regprocedure, 'public.update_observation_by_id(text, uuid, jsonb)'::regprocedure,
                 'public.delete_observation_by_id(text, uuid)'::regprocedure)
     and prosrc !~* '\mexecute\M' and prosrc ~ 'partition_mgmt\.petri_[a-z]+_by_id\(p_observation_id' and prosrc ~ 'partition_mgmt\.gasifier_[a-z]+_by_id\(p_observation_id'),
  3, 'get/update/delete_observation_by_id call every managed table''s generated function by name (no EXECUTE per call)');
select results_eq(
  $$select n, public.get_observation_by_id(n, '6e000003-0000-4000-8000-000000000001') ->> 'petri_code'
    from unnest(array['petri', 'petri_observations', 'public.petri_observations', 'petri_observations_partitioned',
                      'public.petri_observations_partitioned', 'gasifier', 'gasifier_observations', 'public.gasifier_observations']) with ordinality u(n, i)
    order by i$$,
  $$values ('petri', 'three v2'), ('petri_observations', 'three v2'), ('public.petri_observations', 'three v2'),
           ('petri_observations_partitioned', 'three v2'), ('public.petri_observations_partitioned', 'three v2'),
           ('gasifier', null), ('gasifier_observations', null), ('public.gasifier_observations', null)$$,
  'every name of the petri table reaches the petri row; the gasifier table''s names look in the gasifier table');
select is(public.update_observation_by_id('public.petri_observations', '6e000003-0000-4000-8000-000000000001', '{"petri_code": "three v3"}') ->> 'petri_code',
  'three v3', 'update_observation_by_id by the schema-qualified name updates the row');
select is(public.delete_observation_by_id('gasifier_observations', '6e000003-0000-4000-8000-000000000001'), false,
  'delete_observation_by_id of a petri id through the gasifier table deletes nothing');
select throws_ok($$select public.get_observation_by_id('no_such_table', null)$$, 'P0001',
  'table "no_such_table" is not managed by partition_mgmt', 'an unknown table is refused first, naming it');
select throws_ok($$select public.delete_observation_by_id('petri', null)$$, 'P0001',
  'observation_id must not be null', 'a NULL id is refused');
select throws_ok($$select public.update_observation_by_id('petri_observations', '6e000003-0000-4000-8000-000000000001', '{}')$$, 'P0001',
  'p_changes must be a non-empty JSON object of column -> new value, got {}', 'empty changes are refused');
select throws_ok($$select public.update_observation_by_id('no_such_table', null, null)$$, 'P0001',
  'table "no_such_table" is not managed by partition_mgmt', 'an unknown table is refused before the changes');

select * from finish();
rollback;
