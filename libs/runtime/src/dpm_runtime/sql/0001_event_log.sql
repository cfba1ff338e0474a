-- The append-only event log (DESIGN.md §3) and the role services use to reach it.

DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dpm_service') THEN
    CREATE ROLE dpm_service NOLOGIN;
  END IF;
END $$;

CREATE TABLE IF NOT EXISTS events (
  position        bigint      NOT NULL CHECK (position > 0),
  stream_id       text        NOT NULL,
  stream_version  bigint      NOT NULL CHECK (stream_version > 0),
  event_id        uuid        NOT NULL,
  type            text        NOT NULL,
  schema_version  integer     NOT NULL,
  data            bytea       NOT NULL,
  metadata        jsonb       NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream_id, stream_version),
  UNIQUE (position),
  UNIQUE (event_id)
);
CREATE INDEX IF NOT EXISTS events_type_position ON events (type, position);

-- Rows are never changed: corrections are new events. Even the owner is refused.
CREATE OR REPLACE FUNCTION dpm_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP USING ERRCODE = 'DPM02';
END $$;
DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION dpm_refuse_change();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION dpm_refuse_change();

-- The only way in. A transaction-scoped advisory lock serialises appenders, so positions are
-- assigned and become visible in commit order: a reader that saw position N never later finds a
-- new event below N, and there are no gaps (positions are max+1, not a sequence that rollbacks skip).
-- SECURITY DEFINER: services may call this but hold no INSERT/UPDATE/DELETE on the table.
CREATE OR REPLACE FUNCTION dpm_append(
  p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_versions integer[],
  p_data bytea[], p_metadata jsonb, OUT last_version bigint, OUT last_position bigint
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  cur bigint;
  base bigint;
  n integer := cardinality(p_ids);
BEGIN
  -- Its own statement: the reads below must take their snapshot after the lock is held.
  PERFORM pg_advisory_xact_lock(7291001);
  -- One statement for both versions (plpgsql pays per statement); the wake-up for the relay is
  -- delivered at commit only, so it rides along here.
  SELECT (SELECT coalesce(max(e.stream_version), 0) FROM events e WHERE e.stream_id = p_stream),
         (SELECT coalesce(max(e.position), 0) FROM events e),
         pg_notify('dpm_events', '')
    INTO cur, base;
  IF p_expected IS NOT NULL AND cur <> p_expected THEN
    RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, cur, p_expected
      USING ERRCODE = 'DPM01', DETAIL = cur::text;
  END IF;
  INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata)
  SELECT base + i, p_stream, cur + i, p_ids[i], p_types[i], p_versions[i], p_data[i], p_metadata -> (i - 1)
  FROM generate_series(1, n) AS i;
  last_version := cur + n;
  last_position := base + n;
END $$;

-- The same for one event, with scalar parameters: most appends are single events, and this form
-- costs the server a quarter less than the array one (bench/: single-event append).
CREATE OR REPLACE FUNCTION dpm_append_one(
  p_stream text, p_expected bigint, p_id uuid, p_type text, p_version integer, p_data bytea, p_metadata jsonb,
  OUT last_version bigint, OUT last_position bigint
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  cur bigint;
  base bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7291001);
  SELECT (SELECT coalesce(max(e.stream_version), 0) FROM events e WHERE e.stream_id = p_stream),
         (SELECT coalesce(max(e.position), 0) FROM events e),
         pg_notify('dpm_events', '')
    INTO cur, base;
  IF p_expected IS NOT NULL AND cur <> p_expected THEN
    RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, cur, p_expected
      USING ERRCODE = 'DPM01', DETAIL = cur::text;
  END IF;
  INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata)
  VALUES (base + 1, p_stream, cur + 1, p_id, p_type, p_version, p_data, p_metadata);
  last_version := cur + 1;
  last_position := base + 1;
END $$;

REVOKE ALL ON events FROM PUBLIC;
REVOKE ALL ON FUNCTION dpm_append(text, bigint, uuid[], text[], integer[], bytea[], jsonb) FROM PUBLIC;
GRANT SELECT ON events TO dpm_service;
GRANT EXECUTE ON FUNCTION dpm_append(text, bigint, uuid[], text[], integer[], bytea[], jsonb) TO dpm_service;
REVOKE ALL ON FUNCTION dpm_append_one(text, bigint, uuid, text, integer, bytea, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dpm_append_one(text, bigint, uuid, text, integer, bytea, jsonb) TO dpm_service;

-- Exactly-once in effect: one row per (consumer, position) handled, written in the handler's transaction.
CREATE TABLE IF NOT EXISTS dpm_tracking (
  consumer   text   NOT NULL,
  position   bigint NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, position)
);
-- Where the relay and each projection have got to.
CREATE TABLE IF NOT EXISTS dpm_checkpoints (
  name       text   PRIMARY KEY,
  position   bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Messages a consumer terminated as poison: kept for operators, never retried automatically.
CREATE TABLE IF NOT EXISTS dpm_dead_letters (
  id          bigserial PRIMARY KEY,
  consumer    text NOT NULL,
  event_id    uuid,
  position    bigint,
  subject     text NOT NULL,
  deliveries  integer NOT NULL,
  reason      text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, DELETE ON dpm_tracking TO dpm_service;
GRANT SELECT, INSERT, UPDATE ON dpm_checkpoints TO dpm_service;
GRANT SELECT, INSERT ON dpm_dead_letters TO dpm_service;
GRANT USAGE ON SEQUENCE dpm_dead_letters_id_seq TO dpm_service;

-- Services own their read-model schemas (projections create and swap their own tables).
DO $$ BEGIN
  EXECUTE format('GRANT CREATE ON DATABASE %I TO dpm_service', current_database());
END $$;
