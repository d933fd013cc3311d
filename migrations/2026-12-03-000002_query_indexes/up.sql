-- Indexes and a rollup for the query API (processor/src/api). Each index names the query
-- it serves; every list query orders by (status_at DESC, msg_id DESC), so each index ends
-- with those two columns and a keyset page is one index range scan.

-- GET /v1/messages without a status, sender or recipient filter (time range optional):
-- newest first and the keyset `(status_at, msg_id) < cursor`. It supersedes
-- messages_status_at_idx, which lacks the msg_id tie-break.
CREATE INDEX messages_status_at_msg_id_idx ON messages (status_at DESC, msg_id DESC);
DROP INDEX messages_status_at_idx;

-- GET /v1/messages?status=...: one status, newest first, with the time range and keyset;
-- several statuses are one branch per status, merged.
CREATE INDEX messages_status_status_at_idx ON messages (status, status_at DESC, msg_id DESC);

-- GET /v1/messages?sender=...: a sender has many messages, so it needs its own ordered
-- index.
CREATE INDEX messages_sender_status_at_idx ON messages (sender, status_at DESC, msg_id DESC);

-- GET /v1/messages?sender=...&status=...: one status of one sender is a range of its own,
-- even where that sender has few or no messages in that status (walking the sender index
-- and filtering would then read all of the sender's messages to find none). Several
-- statuses are queried as one branch per status, each a range of this index.
CREATE INDEX messages_sender_status_idx
    ON messages (sender, status, status_at DESC, msg_id DESC);

-- GET /v1/messages?recipient=... is served by messages_recipient_idx (recipient,
-- status_at DESC) from the first migration: a number has few messages.
-- GET /v1/messages/{msg_id} is served by the primary key of `messages` and, for the
-- history, by the unique key status_transitions_report_key (msg_id, status, status_at).

-- GET /v1/stats: messages counted per hour of their first report and current status.
-- Kept up to date by statement-level triggers on `messages`, so a stats call sums at most
-- a few thousand rows instead of scanning millions of messages. The triggers see a whole
-- batch at once (transition tables) and add one delta per (hour, status), in key order.
CREATE TABLE message_hourly_counts (
    hour     timestamptz NOT NULL,
    status   text        NOT NULL,
    messages bigint      NOT NULL,
    PRIMARY KEY (hour, status)
);

CREATE FUNCTION message_hourly_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_hourly_counts AS c (hour, status, messages)
    SELECT date_trunc('hour', first_received_at, 'UTC'), status, count(*)
    FROM added_rows
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (hour, status) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    RETURN NULL;
END;
$$;

CREATE FUNCTION message_hourly_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE message_hourly_counts AS c SET messages = c.messages - d.n
    FROM (
        SELECT date_trunc('hour', first_received_at, 'UTC') AS hour, status, count(*) AS n
        FROM removed_rows
        GROUP BY 1, 2
    ) AS d
    WHERE c.hour = d.hour AND c.status = d.status;
    RETURN NULL;
END;
$$;

CREATE FUNCTION message_hourly_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_hourly_counts AS c (hour, status, messages)
    SELECT hour, status, sum(n)
    FROM (
        SELECT date_trunc('hour', first_received_at, 'UTC') AS hour, status, 1 AS n
        FROM added_rows
        UNION ALL
        SELECT date_trunc('hour', first_received_at, 'UTC'), status, -1
        FROM removed_rows
    ) AS delta
    GROUP BY 1, 2
    HAVING sum(n) <> 0
    ORDER BY 1, 2
    ON CONFLICT (hour, status) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_counts_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_hourly_counts_add();
CREATE TRIGGER messages_counts_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_hourly_counts_remove();
CREATE TRIGGER messages_counts_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS removed_rows NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_hourly_counts_move();

INSERT INTO message_hourly_counts (hour, status, messages)
SELECT date_trunc('hour', first_received_at, 'UTC'), status, count(*)
FROM messages
GROUP BY 1, 2;
