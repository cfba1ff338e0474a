#!/bin/sh
# Runs once when the postgres container initialises its volume: the role services log in as.
# It may SELECT the event log and call dpm_append(), never UPDATE/DELETE (granted by migrations).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE dpm_service NOLOGIN;
CREATE ROLE dpm_app LOGIN PASSWORD '${DPM_APP_PASSWORD}' IN ROLE dpm_service;
SQL
