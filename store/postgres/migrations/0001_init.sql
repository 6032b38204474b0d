-- keygate schema, version 1.
--
-- keys holds every field of a key except its secrets' digests, which live in
-- key_secrets (one row for the current secret, at most one for the previous
-- one) so that a lookup by digest is one unique-index probe whichever secret
-- the client sent. The previous secret's expiry and last use are columns of
-- its own row: rotating it out deletes them together. Array, metadata and
-- rate-limit columns are nullable so a nil Go value reads back as nil.

CREATE TABLE keys (
    id                text COLLATE "C" PRIMARY KEY, -- byte order, as Go compares ids
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    "user"            text NOT NULL,
    application       text NOT NULL DEFAULT '',
    tenant            text NOT NULL DEFAULT '',
    tags              text[],
    scopes            text[],
    ip_allowlist      text[],
    client_name       text NOT NULL DEFAULT '',
    notes             text NOT NULL DEFAULT '',
    metadata          jsonb,
    enabled           boolean NOT NULL,
    sessions_allowed  boolean NOT NULL,
    expires_at        timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    last_used_at      timestamptz,
    rate_limit_rps    double precision,
    rate_limit_burst  integer,
    hint              text NOT NULL DEFAULT '',
    secret_rotated_at timestamptz,
    session_epoch     bigint NOT NULL DEFAULT 0,
    sealed_secret     bytea,
    CONSTRAINT keys_application_name_key UNIQUE (application, name)
);
CREATE INDEX keys_user_idx ON keys ("user");
CREATE INDEX keys_tenant_idx ON keys (tenant);
CREATE INDEX keys_expires_at_idx ON keys (expires_at);
CREATE INDEX keys_tags_idx ON keys USING gin (tags);
CREATE INDEX keys_scopes_idx ON keys USING gin (scopes);

CREATE TABLE key_secrets (
    key_id       text COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    digest       bytea NOT NULL CONSTRAINT key_secrets_digest_key UNIQUE,
    previous     boolean NOT NULL,
    expires_at   timestamptz, -- previous secret only: when it stops working
    last_used_at timestamptz, -- previous secret only (the current one's is keys.last_used_at)
    -- Deferred so a write may move secrets between the two slots in any order.
    CONSTRAINT key_secrets_slot_key UNIQUE (key_id, previous) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE audit_events (
    id      text COLLATE "C" PRIMARY KEY, -- sortable: ids order by time
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    key_id  text COLLATE "C" NOT NULL DEFAULT '',
    ip      text NOT NULL DEFAULT '',
    changes jsonb
);
CREATE INDEX audit_events_key_id_idx ON audit_events (key_id, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_at_idx ON audit_events (at);

CREATE TABLE settings (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

-- key_changes lets replicas resync caches after missing a notification.
-- at is the insert's wall-clock time (not the transaction's start), the
-- closest to its commit a default can get. Rows older than a day are pruned.
CREATE TABLE key_changes (
    seq     bigserial PRIMARY KEY,
    key_id  text NOT NULL,
    digests bytea[] NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX key_changes_at_idx ON key_changes (at);
