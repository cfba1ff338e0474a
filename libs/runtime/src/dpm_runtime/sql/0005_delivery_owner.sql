-- Issue 14: the updater delivers remote-update steps and appends their reports to its own
-- delivery-<execution> streams (one writer per category, as 0004 set out).
INSERT INTO dpm_stream_owners (category, role) VALUES ('delivery', 'dpm_updater') ON CONFLICT DO NOTHING;
