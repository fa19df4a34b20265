-- Rows written without program_id (migration 20250102000200_partition_tree, install_program_from_site):
-- the partitioned gasifier table takes every row the legacy table took without a program.
-- Covers: the three triggers are on the gasifier parent only (petri's legacy program_id is NOT
-- NULL, and petri still refuses such a row with 23502); a row inserted without program_id for a
-- program that shares the root's DEFAULT leaf is stored there with its site's program and
-- returned; for a program with partitions of its own it is stored in that program's leaf, not
-- returned; both are listed in partition_mgmt.rows_without_program and have one key-table entry;
-- an update setting program_id to NULL takes the site's program (listed); an update of site_id
-- gives a listed row the new site's program (it moves) and leaves a row whose program was sent
-- alone; an update sending program_id takes the row off the list; an id change carries the
-- listing; a delete removes it; an unknown site fails with 23503 and no site with 23502, both
-- naming gasifier_observations.
begin;
select plan(20);

insert into public.companies (company_id, name) values ('c1200000-0000-4000-8000-000000000001', 'Keyless Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('a1200000-0000-4000-8000-00000000000a', 'Shared', current_date - 40, current_date + 40, 'c1200000-0000-4000-8000-000000000001'),
  ('a1200000-0000-4000-8000-00000000000b', 'Own', current_date - 40, current_date + 40, 'c1200000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name) values
  ('b1200000-0000-4000-8000-00000000000a', 'a1200000-0000-4000-8000-00000000000a', 'Shared site'),
  ('b1200000-0000-4000-8000-00000000000b', 'a1200000-0000-4000-8000-00000000000b', 'Own site');
insert into public.submissions (submission_id, site_id, program_id)
values ('d1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000a', 'a1200000-0000-4000-8000-00000000000a');
select partition_mgmt.ensure_program_partition('gasifier', 'a1200000-0000-4000-8000-00000000000b');

select results_eq($$select t.tgrelid::regclass::text, count(*)::int from pg_trigger t
                    where t.tgname in ('partition_mgmt_program_from_site', 'partition_mgmt_program_set', 'partition_mgmt_program_site_moved')
                      and t.tgparentid = 0 group by 1$$,
  $$values ('gasifier_observations_partitioned', 3)$$,
  'the triggers that take the program from the site are on the gasifier parent (cloned onto its leaves), not on petri''s');

create temporary table written as
with ins as (
  insert into public.gasifier_observations_partitioned (observation_id, submission_id, site_id, gasifier_code)
  values ('e1200000-0000-4000-8000-000000000001', 'd1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000a', 'shared'),
         ('e1200000-0000-4000-8000-000000000002', 'd1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000b', 'own')
  returning observation_id, program_id)
select * from ins;
select results_eq($$select observation_id::text, program_id::text from written$$,
  $$values ('e1200000-0000-4000-8000-000000000001', 'a1200000-0000-4000-8000-00000000000a')$$,
  'an insert without program_id returns the row with its site''s program where the program shares the root''s DEFAULT leaf, and nothing where it has partitions of its own');
select results_eq($$select observation_id::text, tableoid::regclass::text, program_id::text from public.gasifier_observations_partitioned
                    where observation_id::text like 'e1200000%' order by 1$$,
  $$values ('e1200000-0000-4000-8000-000000000001', 'partitions.gas_default', 'a1200000-0000-4000-8000-00000000000a'),
           ('e1200000-0000-4000-8000-000000000002', 'partitions.gas_p_a12000000000_default', 'a1200000-0000-4000-8000-00000000000b')$$,
  'both rows are stored: in the root''s DEFAULT leaf, and in the leaf of the program with partitions of its own');
select results_eq($$select observation_id::text, program_id::text from partition_mgmt.observation_keys where table_key = 'gasifier' and observation_id::text like 'e1200000%' order by 1$$,
  $$values ('e1200000-0000-4000-8000-000000000001', 'a1200000-0000-4000-8000-00000000000a'), ('e1200000-0000-4000-8000-000000000002', 'a1200000-0000-4000-8000-00000000000b')$$,
  'each has one key-table entry with its program');
select results_eq($$select observation_id::text from partition_mgmt.rows_without_program where table_key = 'gasifier' order by 1$$,
  $$values ('e1200000-0000-4000-8000-000000000001'), ('e1200000-0000-4000-8000-000000000002')$$,
  'both are listed as written without a program');
select is((select company_id from public.gasifier_observations_partitioned where observation_id = 'e1200000-0000-4000-8000-000000000002'),
  'c1200000-0000-4000-8000-000000000001'::uuid, 'the company comes from the program, as before');

-- a row written with its program, then updated to NULL
insert into public.gasifier_observations_partitioned (observation_id, submission_id, site_id, program_id, gasifier_code)
values ('e1200000-0000-4000-8000-000000000003', 'd1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000a', 'a1200000-0000-4000-8000-00000000000a', 'keyed');
select is((select count(*)::int from partition_mgmt.rows_without_program where observation_id = 'e1200000-0000-4000-8000-000000000003'), 0,
  'a row written with its program is not listed');
update public.gasifier_observations_partitioned set program_id = null where observation_id = 'e1200000-0000-4000-8000-000000000003';
select results_eq($$select program_id::text, exists (select from partition_mgmt.rows_without_program w where w.observation_id = o.observation_id)
                    from public.gasifier_observations_partitioned o where observation_id = 'e1200000-0000-4000-8000-000000000003'$$,
  $$values ('a1200000-0000-4000-8000-00000000000a', true)$$,
  'an update setting program_id to NULL takes the site''s program, and lists the row');

-- site changes: a listed row follows its site's program, a row whose program was sent keeps it
update public.gasifier_observations_partitioned set site_id = 'b1200000-0000-4000-8000-00000000000b' where observation_id = 'e1200000-0000-4000-8000-000000000001';
select results_eq($$select program_id::text, tableoid::regclass::text from public.gasifier_observations_partitioned where observation_id = 'e1200000-0000-4000-8000-000000000001'$$,
  $$values ('a1200000-0000-4000-8000-00000000000b', 'partitions.gas_p_a12000000000_default')$$,
  'an update of site_id gives a listed row the new site''s program: it moves to that program''s leaf');
select is((select count(*)::int from partition_mgmt.rows_without_program where observation_id = 'e1200000-0000-4000-8000-000000000001'), 1,
  'the move keeps the listing');
insert into public.gasifier_observations_partitioned (observation_id, submission_id, site_id, program_id, gasifier_code)
values ('e1200000-0000-4000-8000-000000000004', 'd1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000a', 'a1200000-0000-4000-8000-00000000000a', 'sent');
update public.gasifier_observations_partitioned set site_id = 'b1200000-0000-4000-8000-00000000000b' where observation_id = 'e1200000-0000-4000-8000-000000000004';
select is((select program_id from public.gasifier_observations_partitioned where observation_id = 'e1200000-0000-4000-8000-000000000004'),
  'a1200000-0000-4000-8000-00000000000a'::uuid, 'an update of site_id leaves the program the app sent');

-- sending a program takes the row off the list; an id change carries the listing; a delete drops it
update public.gasifier_observations_partitioned set program_id = 'a1200000-0000-4000-8000-00000000000b', notes = 'sent'
where observation_id = 'e1200000-0000-4000-8000-000000000002';
select is((select count(*)::int from partition_mgmt.rows_without_program where observation_id = 'e1200000-0000-4000-8000-000000000002'), 0,
  'an update sending program_id (the same value) takes the row off the list');
update public.gasifier_observations_partitioned set observation_id = 'e1200000-0000-4000-8000-000000000013' where observation_id = 'e1200000-0000-4000-8000-000000000003';
select results_eq($$select observation_id::text from partition_mgmt.rows_without_program
                    where observation_id in ('e1200000-0000-4000-8000-000000000003', 'e1200000-0000-4000-8000-000000000013')$$,
  $$values ('e1200000-0000-4000-8000-000000000013')$$,
  'an id change carries the listing to the new id');
delete from public.gasifier_observations_partitioned where observation_id = 'e1200000-0000-4000-8000-000000000013';
select is((select count(*)::int from partition_mgmt.rows_without_program where observation_id = 'e1200000-0000-4000-8000-000000000013'), 0,
  'a delete drops the listing with the key-table entry');

-- refusals name the app's table
select throws_ok($$insert into public.gasifier_observations_partitioned (submission_id, site_id, gasifier_code)
                   values ('d1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-0000000000ff', 'x')$$,
  '23503', 'public.gasifier_observations: site_id b1200000-0000-4000-8000-0000000000ff does not exist (program_id is NULL: the program is taken from the site)',
  'an unknown site fails with 23503 naming the app''s table');
select throws_ok($$insert into public.gasifier_observations_partitioned (submission_id, gasifier_code) values ('d1200000-0000-4000-8000-000000000001', 'x')$$,
  '23502', 'null value in column "site_id" of relation "gasifier_observations" violates not-null constraint',
  'no site (nor program) fails with 23502 naming site_id and the app''s table');
select throws_ok($$insert into public.petri_observations_partitioned (submission_id, site_id, petri_code)
                   values ('d1200000-0000-4000-8000-000000000001', 'b1200000-0000-4000-8000-00000000000a', 'x')$$,
  '23502', 'null value in column "program_id" of relation "petri_observations" violates not-null constraint',
  'petri (program_id NOT NULL in its legacy table) still refuses a row without program_id');

-- as a user of another company: derive_program gives no program of this company's site, and takes
-- nothing off its list
insert into public.companies (company_id, name) values ('c1200000-0000-4000-8000-000000000002', 'Other Co');
insert into auth.users (id, aud, role, email) values ('99120000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'keyless@example.com');
insert into public.users (id, email, company_id) values ('99120000-0000-4000-8000-000000000001', 'keyless@example.com', 'c1200000-0000-4000-8000-000000000002');
select set_config('request.jwt.claims', '{"sub": "99120000-0000-4000-8000-000000000001", "role": "authenticated"}', true);
set local role authenticated;
select throws_ok($$select * from partition_mgmt.derive_program('gasifier', 'e1200000-0000-4000-8000-000000000099', 'b1200000-0000-4000-8000-00000000000a', 'written')$$,
  '42501', 'new row violates row-level security policy for table "gasifier_observations"',
  'a user gets no program of another company''s site (42501, as RLS refused such a row before)');
select lives_ok($$select * from partition_mgmt.derive_program('gasifier', 'e1200000-0000-4000-8000-000000000001', null, 'sent')$$,
  'a user may say they sent a program for another company''s row');
reset role;
select is((select count(*)::int from partition_mgmt.rows_without_program where observation_id = 'e1200000-0000-4000-8000-000000000001'), 1,
  'which leaves that row listed');

select * from finish();
rollback;
