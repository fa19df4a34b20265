-- Company context and RLS (migration 20250102000000_company_context).
-- Covers:
--   * schema private not reachable by anon; private.user_company_ids() and
--     private.set_company_id_from_program() are SECURITY DEFINER with search_path '';
--     EXECUTE on the helper for authenticated, not anon
--   * RLS enabled on the seven tenant tables, the plan's policy names on the observation
--     tables, indexes on every company_id policy column
--   * the trigger fills company_id on insert in sites, submissions, petri and gasifier
--     observations (gasifier with NULL program_id: through the site), follows a program
--     change, overrides a directly written company_id, rejects an unknown program with a
--     message naming it, and works unchanged on any table with program_id/site_id/company_id
--   * private.backfill_company_id() repairs missing and stale company_id and is idempotent
--   * user_company_ids(): the user's company; empty without a user or for a deactivated user
--   * a user of company A sees only A's rows in all seven tables (and does see them); a
--     deactivated user and anon (also with a forged sub) see nothing
--   * WITH CHECK stops A from writing rows into B's program; A cannot change or delete B's rows
--   * users: update own profile only; no company change, no self-promotion to admin
--   * service_role sees every company
--
-- Ids (first characters say what they are):
--   companies  ca.. (A)  cb.. (B)
--   users      aa..01 (A)  aa..02 (A, colleague)  aa..03 (A, deactivated)  bb..01 (B)
--   programs   a1.. / b1..    sites a2.. / b2..    submissions a3.. / b3..
--   petri      a4..01, a4..02 / b4..01    gasifier a5..01, a5..02 (program_id NULL) / b5..01
begin;
select plan(52);

-- ---------------------------------------------------------------------------
-- Schema, helpers, privileges
-- ---------------------------------------------------------------------------
select has_schema('private', 'schema private exists');
select ok(not has_schema_privilege('anon', 'private', 'usage'), 'anon has no usage on schema private');

select is((select prosecdef from pg_proc where oid = 'private.user_company_ids()'::regprocedure), true,
  'user_company_ids() is SECURITY DEFINER');
select ok((select 'search_path=""' = any (proconfig) from pg_proc where oid = 'private.user_company_ids()'::regprocedure),
  'user_company_ids() pins search_path to empty');
select ok((select prosecdef and 'search_path=""' = any (proconfig) from pg_proc
           where oid = 'private.set_company_id_from_program()'::regprocedure),
  'set_company_id_from_program() is SECURITY DEFINER with search_path empty');
select ok(has_function_privilege('authenticated', 'private.user_company_ids()', 'execute')
          and not has_function_privilege('anon', 'private.user_company_ids()', 'execute'),
  'user_company_ids() is executable by authenticated, not by anon');

select is((select count(*)::int from pg_class
           where oid in ('public.companies'::regclass, 'public.users'::regclass, 'public.pilot_programs'::regclass,
                         'public.sites'::regclass, 'public.submissions'::regclass,
                         'public.petri_observations'::regclass, 'public.gasifier_observations'::regclass)
             and relrowsecurity),
  7, 'RLS is enabled on the seven tenant tables');
select policies_are('public', 'petri_observations', array['company_isolation_petri'],
  'petri_observations has the plan''s policy company_isolation_petri');
select policies_are('public', 'gasifier_observations', array['company_isolation_gasifier'],
  'gasifier_observations has the plan''s policy company_isolation_gasifier');

select is_indexed('public', 'sites', 'company_id', 'sites.company_id is indexed');
select is_indexed('public', 'submissions', 'company_id', 'submissions.company_id is indexed');
select is_indexed('public', 'petri_observations', 'company_id', 'petri_observations.company_id is indexed');
select is_indexed('public', 'gasifier_observations', 'company_id', 'gasifier_observations.company_id is indexed');

-- ---------------------------------------------------------------------------
-- Test data, inserted as postgres without company_id: the triggers fill it
-- ---------------------------------------------------------------------------
insert into public.companies (company_id, name) values
  ('ca000000-0000-4000-8000-000000000000', 'Company A'),
  ('cb000000-0000-4000-8000-000000000000', 'Company B');
insert into auth.users (id, aud, role, email) values
  ('aa000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'a1@a.test'),
  ('aa000000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'a2@a.test'),
  ('aa000000-0000-4000-8000-000000000003', 'authenticated', 'authenticated', 'a3@a.test'),
  ('bb000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'b1@b.test');
insert into public.users (id, email, full_name, company_id, is_active) values
  ('aa000000-0000-4000-8000-000000000001', 'a1@a.test', 'Ann A', 'ca000000-0000-4000-8000-000000000000', true),
  ('aa000000-0000-4000-8000-000000000002', 'a2@a.test', 'Abe A', 'ca000000-0000-4000-8000-000000000000', true),
  ('aa000000-0000-4000-8000-000000000003', 'a3@a.test', 'Old A', 'ca000000-0000-4000-8000-000000000000', false),
  ('bb000000-0000-4000-8000-000000000001', 'b1@b.test', 'Bea B', 'cb000000-0000-4000-8000-000000000000', true);
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('a1000000-0000-4000-8000-000000000000', 'Program A', '2025-01-01', '2025-12-31', 'ca000000-0000-4000-8000-000000000000'),
  ('b1000000-0000-4000-8000-000000000000', 'Program B', '2025-01-01', '2025-12-31', 'cb000000-0000-4000-8000-000000000000');
insert into public.sites (site_id, program_id, name) values
  ('a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'Site A'),
  ('b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'Site B');
insert into public.submissions (submission_id, site_id, program_id) values
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000'),
  ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000');
insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code) values
  ('a4000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'PA1'),
  ('a4000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'PA2'),
  ('b4000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'PB1');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code) values
  ('a5000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'GA1'),
  ('a5000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', null, 'GA2'),
  ('b5000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'GB1');

-- ---------------------------------------------------------------------------
-- Derivation trigger
-- ---------------------------------------------------------------------------
select is((select company_id from public.sites where site_id = 'a2000000-0000-4000-8000-000000000000'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'trigger fills sites.company_id from the program');
select is((select company_id from public.submissions where submission_id = 'a3000000-0000-4000-8000-000000000000'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'trigger fills submissions.company_id from the program');
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000001'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'trigger fills petri_observations.company_id from the program');
select is((select company_id from public.gasifier_observations where observation_id = 'a5000000-0000-4000-8000-000000000001'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'trigger fills gasifier_observations.company_id from the program');
select is((select company_id from public.gasifier_observations where observation_id = 'a5000000-0000-4000-8000-000000000002'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'gasifier row with NULL program_id gets company_id through its site');

update public.petri_observations set company_id = 'cb000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000001';
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000001'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'a directly written company_id is replaced by the program''s');

update public.petri_observations set program_id = 'b1000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000002';
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000002'),
  'cb000000-0000-4000-8000-000000000000'::uuid, 'company_id follows an update of program_id');
update public.petri_observations set program_id = 'a1000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000002';

select throws_like(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
            'ffffffff-0000-4000-8000-000000000000', 'bad')$$,
  '%program_id ffffffff-0000-4000-8000-000000000000 does not exist%',
  'an unknown program is rejected with a message naming it');

-- the same function on any table with program_id, site_id and company_id
create temporary table zz_generic (id int, site_id uuid, program_id uuid, company_id uuid, note text);
create trigger set_company_id_from_program before insert on zz_generic
  for each row execute function private.set_company_id_from_program();
insert into zz_generic (id, site_id, note) values (1, 'b2000000-0000-4000-8000-000000000000', 'kept');
select is((select (company_id, note) from zz_generic where id = 1),
  ('cb000000-0000-4000-8000-000000000000'::uuid, 'kept'::text),
  'the trigger function works unchanged on another table and leaves other columns alone');
create temporary table zz_no_company (id int, site_id uuid, program_id uuid);
create trigger set_company_id_from_program before insert on zz_no_company
  for each row execute function private.set_company_id_from_program();
select throws_like(
  $$insert into zz_no_company values (1, null, 'a1000000-0000-4000-8000-000000000000')$$,
  '%lacks a program_id, site_id or company_id column%',
  'the trigger function refuses a table without company_id');

-- ---------------------------------------------------------------------------
-- Back-fill: rows written while the triggers were off (as before the migration)
-- ---------------------------------------------------------------------------
alter table public.sites disable trigger set_company_id_from_program;
alter table public.submissions disable trigger set_company_id_from_program;
alter table public.petri_observations disable trigger set_company_id_from_program;
alter table public.gasifier_observations disable trigger set_company_id_from_program;
insert into public.sites (site_id, program_id, name, company_id) values
  ('a2000000-0000-4000-8000-0000000000ff', 'a1000000-0000-4000-8000-000000000000', 'Legacy site', null);
insert into public.submissions (submission_id, site_id, program_id, company_id) values
  ('a3000000-0000-4000-8000-0000000000ff', 'a2000000-0000-4000-8000-0000000000ff', 'a1000000-0000-4000-8000-000000000000', null);
insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, company_id) values
  ('a4000000-0000-4000-8000-0000000000ff', 'a3000000-0000-4000-8000-0000000000ff', 'a2000000-0000-4000-8000-0000000000ff',
   'a1000000-0000-4000-8000-000000000000', 'legacy', 'cb000000-0000-4000-8000-000000000000');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code, company_id) values
  ('a5000000-0000-4000-8000-0000000000ff', 'a3000000-0000-4000-8000-0000000000ff', 'a2000000-0000-4000-8000-0000000000ff',
   null, 'legacy', null);
alter table public.sites enable trigger set_company_id_from_program;
alter table public.submissions enable trigger set_company_id_from_program;
alter table public.petri_observations enable trigger set_company_id_from_program;
alter table public.gasifier_observations enable trigger set_company_id_from_program;

select results_eq(
  $$select table_name, rows_updated from private.backfill_company_id() order by 1$$,
  $$values ('public.gasifier_observations', 1::bigint), ('public.petri_observations', 1::bigint),
           ('public.sites', 1::bigint), ('public.submissions', 1::bigint)$$,
  'backfill_company_id() updates exactly the missing and stale rows');
select is((select array[
             (select company_id from public.sites where site_id = 'a2000000-0000-4000-8000-0000000000ff'),
             (select company_id from public.submissions where submission_id = 'a3000000-0000-4000-8000-0000000000ff'),
             (select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-0000000000ff'),
             (select company_id from public.gasifier_observations where observation_id = 'a5000000-0000-4000-8000-0000000000ff')]),
  array_fill('ca000000-0000-4000-8000-000000000000'::uuid, array[4]),
  'back-fill sets company A on the site, submission, stale petri row and NULL-program gasifier row');
select is((select sum(rows_updated)::int from private.backfill_company_id()), 0,
  'a second back-fill updates nothing');

-- ---------------------------------------------------------------------------
-- private.user_company_ids()
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
select is(private.user_company_ids(), array['ca000000-0000-4000-8000-000000000000'::uuid],
  'user_company_ids() returns the user''s company');
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000003","role":"authenticated"}', true);
select is(private.user_company_ids(), '{}'::uuid[], 'user_company_ids() is empty for a deactivated user');
select set_config('request.jwt.claims', '', true);
select is(private.user_company_ids(), '{}'::uuid[], 'user_company_ids() is empty without a user');

-- ---------------------------------------------------------------------------
-- Isolation: user of company A
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;

select is((select count(*)::int from public.companies where company_id <> 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no other company');
select is((select count(*)::int from public.users where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no users of other companies');
select is((select count(*)::int from public.pilot_programs where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no programs of other companies');
select is((select count(*)::int from public.sites where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no sites of other companies');
select is((select count(*)::int from public.submissions where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no submissions of other companies');
select is((select count(*)::int from public.petri_observations where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no petri observations of other companies');
select is((select count(*)::int from public.gasifier_observations where company_id is distinct from 'ca000000-0000-4000-8000-000000000000'), 0,
  'A sees no gasifier observations of other companies');
select is(array[
    (select count(*)::int from public.companies), (select count(*)::int from public.users),
    (select count(*)::int from public.pilot_programs), (select count(*)::int from public.sites),
    (select count(*)::int from public.submissions), (select count(*)::int from public.petri_observations),
    (select count(*)::int from public.gasifier_observations)],
  array[1, 3, 1, 2, 2, 3, 3],
  'A sees all of its own rows: company, 3 users, program, 2 sites, 2 submissions, 3 petri, 3 gasifier');

-- WITH CHECK: no rows into B's program, no moving own rows there
select throws_ok(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000',
            'b1000000-0000-4000-8000-000000000000', 'sneaky')$$,
  '42501', null, 'A cannot insert a petri observation into B''s program');
select throws_ok(
  $$insert into public.gasifier_observations (submission_id, site_id, program_id, gasifier_code)
    values ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', null, 'sneaky')$$,
  '42501', null, 'A cannot insert a gasifier observation into B''s site with NULL program_id');
select throws_ok(
  $$insert into public.sites (program_id, name) values ('b1000000-0000-4000-8000-000000000000', 'sneaky')$$,
  '42501', null, 'A cannot insert a site into B''s program');
select throws_ok(
  $$update public.petri_observations set program_id = 'b1000000-0000-4000-8000-000000000000'
    where observation_id = 'a4000000-0000-4000-8000-000000000001'$$,
  '42501', null, 'A cannot move its own observation into B''s program');
select lives_ok(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
            'a1000000-0000-4000-8000-000000000000', 'mine')$$,
  'A can insert into its own program (company_id filled by the trigger passes WITH CHECK)');

-- B's rows are invisible to A's updates and deletes
update public.petri_observations set notes = 'touched by A' where observation_id = 'b4000000-0000-4000-8000-000000000001';
delete from public.gasifier_observations where observation_id = 'b5000000-0000-4000-8000-000000000001';
update public.users set full_name = 'renamed by A' where id = 'aa000000-0000-4000-8000-000000000002';

-- users: own profile only, no company change, no self-promotion
update public.users set full_name = 'Ann Updated' where id = 'aa000000-0000-4000-8000-000000000001';
select throws_ok(
  $$update public.users set company_id = 'cb000000-0000-4000-8000-000000000000'
    where id = 'aa000000-0000-4000-8000-000000000001'$$,
  '42501', null, 'A cannot move itself into company B');
select throws_ok(
  $$update public.users set is_company_admin = true where id = 'aa000000-0000-4000-8000-000000000001'$$,
  '42501', null, 'A cannot make itself company admin');
reset role;

select is((select notes from public.petri_observations where observation_id = 'b4000000-0000-4000-8000-000000000001'),
  null, 'A''s update did not reach B''s petri observation');
select ok(exists (select from public.gasifier_observations where observation_id = 'b5000000-0000-4000-8000-000000000001'),
  'A''s delete did not reach B''s gasifier observation');
select is((select full_name from public.users where id = 'aa000000-0000-4000-8000-000000000002'), 'Abe A',
  'A cannot update a colleague''s row');
select is((select full_name from public.users where id = 'aa000000-0000-4000-8000-000000000001'), 'Ann Updated',
  'A can update its own profile');

-- ---------------------------------------------------------------------------
-- Nobody else sees anything
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000003","role":"authenticated"}', true);
set local role authenticated;
select is((select count(*)::int from public.companies) + (select count(*)::int from public.users)
          + (select count(*)::int from public.pilot_programs) + (select count(*)::int from public.sites)
          + (select count(*)::int from public.submissions) + (select count(*)::int from public.petri_observations)
          + (select count(*)::int from public.gasifier_observations),
  0, 'a deactivated user sees nothing');
reset role;

select set_config('request.jwt.claims', '', true);
set local role anon;
select is((select count(*)::int from public.companies) + (select count(*)::int from public.users)
          + (select count(*)::int from public.pilot_programs) + (select count(*)::int from public.sites)
          + (select count(*)::int from public.submissions) + (select count(*)::int from public.petri_observations)
          + (select count(*)::int from public.gasifier_observations),
  0, 'anon sees nothing');
reset role;

select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"anon"}', true);
set local role anon;
select is((select count(*)::int from public.petri_observations) + (select count(*)::int from public.gasifier_observations)
          + (select count(*)::int from public.companies),
  0, 'anon sees nothing even with a user''s sub in the claims');
reset role;

-- ---------------------------------------------------------------------------
-- service_role bypasses RLS
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"role":"service_role"}', true);
set local role service_role;
select is((select count(distinct company_id)::int from public.petri_observations
           where company_id in ('ca000000-0000-4000-8000-000000000000', 'cb000000-0000-4000-8000-000000000000')),
  2, 'service_role sees the observations of both companies');
reset role;

select * from finish();
rollback;
