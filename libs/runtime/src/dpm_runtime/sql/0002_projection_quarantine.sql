-- Events a projection could not apply (DESIGN.md §5: it quarantines them and keeps advancing).
-- One row per (projection, position); ``skipped`` rows stay for the record but no longer count;
-- ``retry`` is an admin's request, carried out by the service that owns the projection.
CREATE TABLE IF NOT EXISTS dpm_quarantine (
  projection  text        NOT NULL,
  position    bigint      NOT NULL,
  event_id    uuid,
  type        text        NOT NULL,
  error       text        NOT NULL,
  status      text        NOT NULL DEFAULT 'quarantined' CHECK (status IN ('quarantined', 'retry', 'skipped')),
  attempts    integer     NOT NULL DEFAULT 1,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz,
  PRIMARY KEY (projection, position)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON dpm_quarantine TO dpm_service;
