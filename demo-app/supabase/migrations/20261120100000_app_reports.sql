-- =============================================================================
-- The demo app's latest migration (dated after the bundle's own files, as a
-- project that kept developing has): a trigger of its own on the observation
-- tables and a report view over petri_observations.
-- =============================================================================

create function public.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

create trigger touch_updated_at before update on public.petri_observations
  for each row execute function public.touch_updated_at();
create trigger touch_updated_at before update on public.gasifier_observations
  for each row execute function public.touch_updated_at();

-- read with the caller's rights, so the tables' RLS applies
create view public.petri_site_daily
with (security_invoker = true) as
select o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date as day,
       count(*) as observations, avg(o.growth_index) as avg_growth_index
from public.petri_observations o
group by o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date;

comment on view public.petri_site_daily is 'Petri observations per site and UTC day (the app''s site dashboard).';

-- a trigger function is not an endpoint
revoke execute on function public.touch_updated_at() from public, anon, authenticated;
