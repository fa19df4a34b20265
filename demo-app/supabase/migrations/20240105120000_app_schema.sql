-- =============================================================================
-- The demo app (a customer's Supabase project, as our users have it before they
-- add the bundle): its schema. Not part of the bundle: the local stack, the
-- tests and the benchmark apply demo-app/supabase/migrations to a database
-- first, as the customer's existing project, then push the bundle onto it.
-- The real tables carry more columns than these; nothing in the bundle depends
-- on this column list: partition_mgmt derives the partitioned tables from
-- whatever the live legacy table has.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Enums
-- -----------------------------------------------------------------------------
create type public.program_status as enum ('draft', 'active', 'inactive', 'completed');
create type public.site_type as enum ('greenhouse', 'storage', 'transport', 'production_facility');
create type public.petri_placement as enum (
  'front_left', 'front_center', 'front_right', 'center_left', 'center',
  'center_right', 'back_left', 'back_center', 'back_right');
create type public.fungicide_used as enum ('yes', 'no');
create type public.petri_phase as enum ('control', 'experimental');
create type public.chemical_type as enum (
  'geraniol', 'cla', 'esential_oils_vapor', '1mcp', 'other');
create type public.gasifier_anomaly as enum ('none', 'low_output', 'leak', 'blocked');

-- -----------------------------------------------------------------------------
-- Tenancy
-- -----------------------------------------------------------------------------
create table public.companies (
  company_id  uuid primary key default gen_random_uuid(),
  name        text not null,
  created_at  timestamptz not null default now()
);

create table public.users (
  id                uuid primary key references auth.users (id) on delete cascade,
  email             text,
  full_name         text,
  company_id        uuid references public.companies (company_id),
  is_company_admin  boolean not null default false,
  is_active         boolean not null default true,
  created_at        timestamptz not null default now()
);

-- -----------------------------------------------------------------------------
-- Programs, sites, submissions
-- -----------------------------------------------------------------------------
create table public.pilot_programs (
  program_id   uuid primary key default gen_random_uuid(),
  name         text not null,
  description  text,
  start_date   date not null,
  end_date     date not null,
  status       public.program_status not null default 'active',
  company_id   uuid references public.companies (company_id),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  constraint pilot_programs_dates_ordered check (end_date >= start_date)
);

create table public.sites (
  site_id      uuid primary key default gen_random_uuid(),
  program_id   uuid not null references public.pilot_programs (program_id) on delete cascade,
  name         text not null,
  type         public.site_type not null default 'greenhouse',
  square_footage numeric,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);

create table public.submissions (
  submission_id  uuid primary key default gen_random_uuid(),
  site_id        uuid not null references public.sites (site_id) on delete cascade,
  program_id     uuid not null references public.pilot_programs (program_id) on delete cascade,
  temperature    numeric,
  humidity       numeric,
  notes          text,
  created_by     uuid,
  company_id     uuid references public.companies (company_id),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);

-- -----------------------------------------------------------------------------
-- Observation tables (the ones that grew until every query crawls)
-- -----------------------------------------------------------------------------
create table public.petri_observations (
  observation_id        uuid primary key default gen_random_uuid(),
  submission_id         uuid not null references public.submissions (submission_id) on delete cascade,
  site_id               uuid not null references public.sites (site_id) on delete cascade,
  program_id            uuid not null references public.pilot_programs (program_id) on delete cascade,
  petri_code            text not null,
  image_url             text,
  plant_type            text default 'Other Fresh Perishable',
  fungicide_used        public.fungicide_used not null default 'no',
  petri_growth_stage    text,
  growth_index          numeric(6, 2),
  growth_progression    numeric(6, 2),
  growth_velocity       numeric(6, 2),
  placement             public.petri_placement,
  placement_dynamics    text,
  daysinthisprogramphase integer,
  todays_day_of_phase   integer,
  phase                 public.petri_phase not null default 'experimental',
  x_position            numeric,
  y_position            numeric,
  outdoor_temperature   numeric(5, 2),
  outdoor_humidity      numeric(5, 2),
  notes                 text,
  is_image_split        boolean not null default false,
  is_split_source       boolean not null default false,
  split_processed       boolean not null default false,
  main_petri_id         uuid,
  footage_from_origin_x numeric,
  footage_from_origin_y numeric,
  metadata              jsonb not null default '{}'::jsonb,
  last_updated_by_user_id uuid,
  lastupdated_by        uuid,
  created_by            uuid default auth.uid(),
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now(),
  constraint petri_observations_growth_index_range check (growth_index is null or growth_index between 0 and 1000)
);

create table public.gasifier_observations (
  observation_id        uuid primary key default gen_random_uuid(),
  submission_id         uuid not null references public.submissions (submission_id) on delete cascade,
  site_id               uuid not null references public.sites (site_id) on delete cascade,
  -- nullable in the real app: older rows only carry the site
  program_id            uuid references public.pilot_programs (program_id) on delete cascade,
  gasifier_code         text not null,
  image_url             text,
  chemical_type         public.chemical_type not null default 'geraniol',
  measure               numeric(8, 3),
  linear_reading        numeric(8, 3),
  linear_reduction_nominal numeric(8, 3),
  linear_reduction_per_day numeric(8, 3),
  flow_rate             numeric(8, 3),
  anomaly               public.gasifier_anomaly not null default 'none',
  placement_height      text,
  directional_placement text,
  placement_strategy    text,
  outdoor_temperature   numeric(5, 2),
  outdoor_humidity      numeric(5, 2),
  x_position            numeric,
  y_position            numeric,
  footage_from_origin_x numeric,
  footage_from_origin_y numeric,
  daysinthisprogramphase integer,
  todays_day_of_phase   integer,
  notes                 text,
  metadata              jsonb not null default '{}'::jsonb,
  last_updated_by_user_id uuid,
  created_by            uuid default auth.uid(),
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);

-- Indexes an application like this one typically has before partitioning
create index petri_observations_submission_id_idx on public.petri_observations (submission_id);
create index gasifier_observations_submission_id_idx on public.gasifier_observations (submission_id);
create index sites_program_id_idx on public.sites (program_id);
create index submissions_site_id_idx on public.submissions (site_id);
create index users_company_id_idx on public.users (company_id);
create index pilot_programs_company_id_idx on public.pilot_programs (company_id);

comment on table public.petri_observations is
  'Petri plate observations, one row per plate and field visit.';
comment on table public.gasifier_observations is
  'Gasifier observations; program_id may be NULL on rows written by older app versions (the site tells the program).';
