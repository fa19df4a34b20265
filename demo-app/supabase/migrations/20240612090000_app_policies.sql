-- =============================================================================
-- The demo app's own Row Level Security (a customer's policies, written the way
-- customers write them: subqueries on public.users, nested RLS through
-- pilot_programs). The bundle must keep every answer these give: it adds its
-- company isolation as RESTRICTIVE policies only, and only on the observation
-- tables.
--   * members read their company and its programs; only company admins add,
--     change or delete programs;
--   * a user sees only their own row in public.users;
--   * members read and write their company's sites, submissions and observations;
--     a user deletes only the observations they wrote (created_by).
-- =============================================================================

alter table public.companies             enable row level security;
alter table public.users                 enable row level security;
alter table public.pilot_programs        enable row level security;
alter table public.sites                 enable row level security;
alter table public.submissions           enable row level security;
alter table public.petri_observations    enable row level security;
alter table public.gasifier_observations enable row level security;

create policy "Members read their company" on public.companies
  for select to authenticated
  using (company_id in (select u.company_id from public.users u where u.id = (select auth.uid())));

create policy "Users read their own profile" on public.users
  for select to authenticated
  using (id = (select auth.uid()));

create policy "Members read their company's programs" on public.pilot_programs
  for select to authenticated
  using (company_id in (select u.company_id from public.users u where u.id = (select auth.uid())));
create policy "Company admins add programs" on public.pilot_programs
  for insert to authenticated
  with check (exists (select 1 from public.users u
                      where u.id = (select auth.uid()) and u.is_company_admin and u.company_id = pilot_programs.company_id));
create policy "Company admins change programs" on public.pilot_programs
  for update to authenticated
  using (exists (select 1 from public.users u
                 where u.id = (select auth.uid()) and u.is_company_admin and u.company_id = pilot_programs.company_id))
  with check (exists (select 1 from public.users u
                      where u.id = (select auth.uid()) and u.is_company_admin and u.company_id = pilot_programs.company_id));
create policy "Company admins delete programs" on public.pilot_programs
  for delete to authenticated
  using (exists (select 1 from public.users u
                 where u.id = (select auth.uid()) and u.is_company_admin and u.company_id = pilot_programs.company_id));

create policy "Members use their company's sites" on public.sites
  for all to authenticated
  using (program_id in (select p.program_id from public.pilot_programs p))
  with check (program_id in (select p.program_id from public.pilot_programs p));

create policy "Members use their company's submissions" on public.submissions
  for all to authenticated
  using (company_id in (select u.company_id from public.users u where u.id = (select auth.uid())))
  with check (company_id in (select u.company_id from public.users u where u.id = (select auth.uid())));

create policy "Members read petri observations" on public.petri_observations
  for select to authenticated
  using (program_id in (select p.program_id from public.pilot_programs p));
create policy "Members add petri observations" on public.petri_observations
  for insert to authenticated
  with check (program_id in (select p.program_id from public.pilot_programs p));
create policy "Members change petri observations" on public.petri_observations
  for update to authenticated
  using (program_id in (select p.program_id from public.pilot_programs p))
  with check (program_id in (select p.program_id from public.pilot_programs p));
create policy "Authors delete their petri observations" on public.petri_observations
  for delete to authenticated
  using (created_by = (select auth.uid()));

-- older app versions write gasifier rows with the site only: the site tells the program
create policy "Members read gasifier observations" on public.gasifier_observations
  for select to authenticated
  using (site_id in (select s.site_id from public.sites s));
create policy "Members add gasifier observations" on public.gasifier_observations
  for insert to authenticated
  with check (site_id in (select s.site_id from public.sites s));
create policy "Members change gasifier observations" on public.gasifier_observations
  for update to authenticated
  using (site_id in (select s.site_id from public.sites s))
  with check (site_id in (select s.site_id from public.sites s));
create policy "Authors delete their gasifier observations" on public.gasifier_observations
  for delete to authenticated
  using (created_by = (select auth.uid()));
