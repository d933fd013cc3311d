-- One row per message: its current status, the greatest report seen by the order of
-- truth (final over intermediate, then later status time, then status rank).
CREATE TABLE messages (
    msg_id            text        PRIMARY KEY,
    recipient         text        NOT NULL,
    sender            text        NOT NULL,
    status            text        NOT NULL,
    is_final          boolean     NOT NULL,
    status_rank       smallint    NOT NULL,
    status_at         timestamptz NOT NULL,
    status_at_source  text        NOT NULL CHECK (status_at_source IN ('gateway', 'received')),
    error_code        text,
    first_received_at timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('unknown', 'accepted', 'enroute', 'deleted', 'failed', 'rejected',
                      'expired', 'undelivered', 'delivered'))
);

-- One row per distinct report (message, status, status time), whether or not it became
-- the current status; `applied` tells which did when they were written.
CREATE TABLE status_transitions (
    id               bigserial   PRIMARY KEY,
    msg_id           text        NOT NULL,
    status           text        NOT NULL,
    status_raw       text        NOT NULL,
    status_at        timestamptz NOT NULL,
    status_at_source text        NOT NULL CHECK (status_at_source IN ('gateway', 'received')),
    status_at_raw    text,
    received_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    recipient        text        NOT NULL,
    sender           text        NOT NULL,
    error_code       text,
    raw_fields       jsonb       NOT NULL,
    applied          boolean     NOT NULL DEFAULT false,
    CONSTRAINT status_transitions_report_key UNIQUE (msg_id, status, status_at)
);

CREATE INDEX messages_status_at_idx ON messages (status_at DESC);
CREATE INDEX messages_recipient_idx ON messages (recipient, status_at DESC);
