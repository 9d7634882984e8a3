-- Dedupe keys that expire (an event API's ids are unique for 24 hours, not for ever):
-- a key whose time is up is taken over by the next event that carries it.
CREATE TABLE event_keys (
    key        TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
