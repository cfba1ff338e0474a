-- Issue 14: the updater delivers remote-update steps and appends their reports to its own
-- delivery-<id> streams (one writer per category, as 0004 set out); the api records operators' notify-now.
INSERT INTO dpm_stream_owners (category, role) VALUES ('delivery', 'dpm_updater') ON CONFLICT DO NOTHING;
INSERT INTO dpm_stream_owners (category, role) VALUES ('notify', 'dpm_api') ON CONFLICT DO NOTHING;
INSERT INTO dpm_stream_owners (category, role) VALUES ('rollout', 'dpm_api'), ('ring', 'dpm_updater') ON CONFLICT DO NOTHING;
INSERT INTO dpm_stream_owners (category, role) VALUES ('source', 'dpm_api'), ('sync', 'dpm_updater') ON CONFLICT DO NOTHING;
