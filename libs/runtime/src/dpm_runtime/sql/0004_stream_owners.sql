-- Issue 12, item 12: one database role per service, and each appends only to its own streams
-- (DESIGN.md section 2: one writer per stream type). A stream's category is the prefix of its id
-- ("machine-<uuid>" -> machine). The rows below are what each service's code appends (grep of
-- stream_id(subjects.X, ...) and eventlog.append in services/); dpm_runtime.dbroles.ROLES says the same.
CREATE TABLE IF NOT EXISTS dpm_stream_owners (
  category text NOT NULL,
  role     name NOT NULL,
  PRIMARY KEY (category, role)
);
INSERT INTO dpm_stream_owners (category, role) VALUES
  ('machine', 'dpm_api'), ('group', 'dpm_api'), ('user', 'dpm_api'), ('enrolment', 'dpm_api'),
  ('command', 'dpm_api'), ('scenario', 'dpm_api'), ('catalog', 'dpm_api'), ('disks', 'dpm_api'),
  ('assignment', 'dpm_api'), ('schedule', 'dpm_api'), ('step', 'dpm_api'), ('setting', 'dpm_api'),
  ('identity', 'dpm_api'), ('package', 'dpm_api'), ('upload', 'dpm_api'),
  ('execution', 'dpm_scheduler'), ('power', 'dpm_scheduler'), ('firing', 'dpm_scheduler'),
  ('session', 'dpm_scheduler'),
  ('boot', 'dpm_pxe'),
  ('image', 'dpm_imager'),
  ('content', 'dpm_updater'),
  ('agent', 'dpm_agent_gateway')
ON CONFLICT DO NOTHING;
-- Only the owner changes who owns what; services may look (an operator's query, the error message).
REVOKE ALL ON dpm_stream_owners FROM PUBLIC;
GRANT SELECT ON dpm_stream_owners TO dpm_service;

-- Raises DPM03 unless the login role (session_user: inside the SECURITY DEFINER functions below
-- current_user is their owner, and SET ROLE does not change session_user) owns the stream's category.
-- The owner itself (migrations) and superusers are not checked. Category '*' is for the test kits
-- only (dpm_runtime.testing): no migration writes it.
CREATE OR REPLACE FUNCTION dpm_check_append(p_stream text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_category text := split_part(p_stream, '-', 1);
BEGIN
  IF session_user = current_user
     OR EXISTS (SELECT FROM dpm_stream_owners o WHERE o.role = session_user AND o.category IN (v_category, '*'))
     OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = session_user AND r.rolsuper) THEN
    RETURN;
  END IF;
  RAISE EXCEPTION 'role % may not append to stream %: category % belongs to another service',
    session_user, p_stream, v_category
    USING ERRCODE = 'DPM03', DETAIL = v_category,
          HINT = 'each service appends only to the categories dpm_stream_owners gives its role';
END $$;
REVOKE ALL ON FUNCTION dpm_check_append(text) FROM PUBLIC;

-- dpm_append and dpm_append_one as in 0001, with the ownership check first (before the lock: a refused
-- append never waits behind the others).
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
  PERFORM dpm_check_append(p_stream);
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
  SELECT base + i, p_stream, cur + i, p_ids[i], p_types[i], p_versions[i], p_data[i], p_metadata -> (i - 1)
  FROM generate_series(1, n) AS i;
  last_version := cur + n;
  last_position := base + n;
END $$;

CREATE OR REPLACE FUNCTION dpm_append_one(
  p_stream text, p_expected bigint, p_id uuid, p_type text, p_version integer, p_data bytea, p_metadata jsonb,
  OUT last_version bigint, OUT last_position bigint
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  cur bigint;
  base bigint;
BEGIN
  PERFORM dpm_check_append(p_stream);
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
