#!/bin/sh
# The roles services log in as (issue 12, item 12): one LOGIN role per service and one for the relay,
# each a member of the NOLOGIN group dpm_service that the migrations grant the shared tables to (SELECT
# on the event log, dpm_append, checkpoints), never UPDATE/DELETE on events. Each owns only its schema
# and appends only to its stream categories (dpm_stream_owners); the relay moves existing schemas to
# them and retires the single role dpm_app of older versions at its start.
#
# Runs once when the postgres container initialises its volume. Idempotent: run it again to create the
# roles in an existing volume or to set new passwords (rotation), e.g.
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-dpm-roles.sh
# Every password is required; passed as psql variables, never spliced into SQL text.
set -eu
: "${DPM_DB_API_PASSWORD:?set DPM_DB_API_PASSWORD}"
: "${DPM_DB_SCHEDULER_PASSWORD:?set DPM_DB_SCHEDULER_PASSWORD}"
: "${DPM_DB_PXE_PASSWORD:?set DPM_DB_PXE_PASSWORD}"
: "${DPM_DB_IMAGER_PASSWORD:?set DPM_DB_IMAGER_PASSWORD}"
: "${DPM_DB_UPDATER_PASSWORD:?set DPM_DB_UPDATER_PASSWORD}"
: "${DPM_DB_AGENT_GATEWAY_PASSWORD:?set DPM_DB_AGENT_GATEWAY_PASSWORD}"
: "${DPM_DB_RELAY_PASSWORD:?set DPM_DB_RELAY_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-dpm}" --dbname "${POSTGRES_DB:-dpm}" \
  -v pw_api="$DPM_DB_API_PASSWORD" \
  -v pw_scheduler="$DPM_DB_SCHEDULER_PASSWORD" \
  -v pw_pxe="$DPM_DB_PXE_PASSWORD" \
  -v pw_imager="$DPM_DB_IMAGER_PASSWORD" \
  -v pw_updater="$DPM_DB_UPDATER_PASSWORD" \
  -v pw_agent_gateway="$DPM_DB_AGENT_GATEWAY_PASSWORD" \
  -v pw_relay="$DPM_DB_RELAY_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE dpm_service NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dpm_service') \gexec
SELECT format('CREATE ROLE %I LOGIN IN ROLE dpm_service', r)
  FROM unnest(ARRAY['dpm_api', 'dpm_scheduler', 'dpm_pxe', 'dpm_imager', 'dpm_updater', 'dpm_agent_gateway',
                    'dpm_relay']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE dpm_api WITH LOGIN PASSWORD :'pw_api';
ALTER ROLE dpm_scheduler WITH LOGIN PASSWORD :'pw_scheduler';
ALTER ROLE dpm_pxe WITH LOGIN PASSWORD :'pw_pxe';
ALTER ROLE dpm_imager WITH LOGIN PASSWORD :'pw_imager';
ALTER ROLE dpm_updater WITH LOGIN PASSWORD :'pw_updater';
ALTER ROLE dpm_agent_gateway WITH LOGIN PASSWORD :'pw_agent_gateway';
ALTER ROLE dpm_relay WITH LOGIN PASSWORD :'pw_relay';
SQL
