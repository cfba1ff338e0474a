-- Every service's projections, by full name "<service>.<projection>": each runner's setup upserts its
-- row, so the api lists (and routes rebuilds to) read models whose code lives in other services.
CREATE TABLE IF NOT EXISTS dpm_projections (
  name          text        PRIMARY KEY,
  service       text        NOT NULL,
  schema        text        NOT NULL,
  tables        text[]      NOT NULL,
  event_types   text[]      NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON dpm_projections TO dpm_service;

-- An admin's request to rebuild another service's projection, carried out by that service (woken by
-- NOTIFY dpm_rebuilds, else its poll). A request nobody takes stays pending, for all to see; at most
-- one is open per projection, so asking twice returns the open one.
CREATE TABLE IF NOT EXISTS dpm_rebuild_requests (
  id           uuid        PRIMARY KEY,
  projection   text        NOT NULL,
  service      text        NOT NULL,
  status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  requested_by text        NOT NULL,
  requested_at timestamptz NOT NULL DEFAULT now(),
  started_at   timestamptz,
  finished_at  timestamptz,
  events       bigint,
  position     bigint,
  seconds      double precision,
  quarantined  integer,
  error        text
);
CREATE UNIQUE INDEX IF NOT EXISTS dpm_rebuild_requests_open
  ON dpm_rebuild_requests (projection) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS dpm_rebuild_requests_service ON dpm_rebuild_requests (service, requested_at)
  WHERE status IN ('pending', 'running');
GRANT SELECT, INSERT, UPDATE ON dpm_rebuild_requests TO dpm_service;

-- Pruning tracking rows (dpm_runtime.tracking) deletes by consumer and age.
CREATE INDEX IF NOT EXISTS dpm_tracking_handled ON dpm_tracking (consumer, handled_at);

-- Projections were named by their short name before ("projection:machines"); they are "<service>.<name>"
-- now. The checkpoints and quarantine entries of every projection that existed then move to the full
-- name, so an existing database goes on from where it was instead of replaying the log onto its tables.
CREATE TEMPORARY TABLE dpm_renamed (short text PRIMARY KEY, full_name text NOT NULL) ON COMMIT DROP;
INSERT INTO dpm_renamed (short, full_name) VALUES
  ('machines', 'api.machines'), ('groups', 'api.groups'), ('accounts', 'api.accounts'),
  ('scenarios', 'api.scenarios'), ('executions', 'api.executions'), ('schedules', 'api.schedules'),
  ('deploy_tokens', 'api.deploy_tokens'), ('images', 'api.images'), ('disk_layouts', 'api.disk_layouts'),
  ('revoked_bootstrap_tokens', 'api.revoked_bootstrap_tokens'),
  ('transfers', 'imager.transfers'), ('stored_images', 'imager.stored_images');
UPDATE dpm_checkpoints c SET name = 'projection:' || r.full_name
  FROM dpm_renamed r
 WHERE c.name = 'projection:' || r.short
   AND NOT EXISTS (SELECT 1 FROM dpm_checkpoints n WHERE n.name = 'projection:' || r.full_name);
UPDATE dpm_quarantine q SET projection = r.full_name
  FROM dpm_renamed r
 WHERE q.projection = r.short
   AND NOT EXISTS (SELECT 1 FROM dpm_quarantine n WHERE n.projection = r.full_name AND n.position = q.position);
