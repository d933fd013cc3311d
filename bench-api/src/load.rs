//! Loading the benchmark's data set server-side, chunk by chunk.
//!
//! Message `g` (1..=N) has recipient `3579` and seven digits of `g mod 1,000,000` (so each
//! number has N / 1,000,000 messages), one of 50 senders, a first report spread evenly
//! over the 30 days before the anchor hour, and a current status drawn by
//! `(g * 7919) mod 100`: 80 % delivered, 8 % undelivered, 4 % expired, 2 % rejected,
//! 2 % failed, 1 % deleted, 2 % enroute, 1 % accepted. Each message has three reports:
//! accepted, enroute and its current status.

use crate::report::LoadTiming;
use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use diesel::{
    connection::SimpleConnection, pg::PgConnection, sql_query, sql_types::BigInt, QueryableByName,
    RunQueryDsl,
};
use std::time::Instant;

/// Messages written per statement.
const CHUNK: i64 = 250_000;

/// Days of traffic the data set spans.
pub const DAYS: i64 = 30;

/// The rows of messages `$lo..=$hi`, as a subquery.
fn rows(anchor: &str, step_micros: i64, lo: i64, hi: i64) -> String {
    format!(
        "SELECT 'bench-' || g AS msg_id,
                '3579' || lpad((g % 1000000)::text, 7, '0') AS recipient,
                'sender-' || (g % 50) AS sender,
                s.status, s.is_final, s.rank,
                t.first + make_interval(secs => g % 600 + 2) AS status_at,
                t.first
         FROM generate_series({lo}::bigint, {hi}::bigint) AS g
         CROSS JOIN LATERAL (SELECT timestamptz '{anchor}' - interval '{DAYS} days'
                             + g * interval '{step_micros} microseconds' AS first) AS t
         JOIN (VALUES (0, 80, 'delivered', true, 8), (80, 88, 'undelivered', true, 7),
                      (88, 92, 'expired', true, 6), (92, 94, 'rejected', true, 5),
                      (94, 96, 'failed', true, 4), (96, 97, 'deleted', true, 3),
                      (97, 99, 'enroute', false, 2), (99, 100, 'accepted', false, 1))
              AS s(lo, hi, status, is_final, rank)
           ON (g * 7919) % 100 >= s.lo AND (g * 7919) % 100 < s.hi"
    )
}

/// Loads `messages` messages and three transitions each, then vacuums and analyses.
pub fn load(conn: &mut PgConnection, messages: i64) -> LoadTiming {
    let anchor_time = Utc::now()
        .duration_trunc(Span::hours(1))
        .expect("a truncatable time");
    let anchor = anchor_time.to_rfc3339();
    let step_micros = DAYS * 86_400_000_000 / messages;
    let mut timing = LoadTiming {
        anchor: anchor_time,
        messages,
        ..LoadTiming::default()
    };

    let mut lo = 1;
    while lo <= messages {
        let hi = (lo + CHUNK - 1).min(messages);
        let rows = rows(&anchor, step_micros, lo, hi);

        let started = Instant::now();
        conn.batch_execute(&format!(
            "INSERT INTO messages (msg_id, recipient, sender, status, is_final, status_rank,
                 status_at, status_at_source, first_received_at)
             SELECT msg_id, recipient, sender, status, is_final, rank, status_at, 'gateway',
                 first
             FROM ({rows}) AS r"
        ))
        .expect("messages inserted");
        timing.messages_secs += started.elapsed().as_secs_f64();

        let started = Instant::now();
        conn.batch_execute(&format!(
            "INSERT INTO status_transitions (msg_id, status, status_raw, status_at,
                 status_at_source, received_at, recipient, sender, raw_fields, applied)
             SELECT r.msg_id, v.status, upper(v.status), v.at, 'gateway', v.at, r.recipient,
                 r.sender, '{{\"query\": {{}}, \"body\": {{}}}}'::jsonb, v.applied
             FROM ({rows}) AS r
             CROSS JOIN LATERAL (VALUES ('accepted', r.first, false),
                                        ('enroute', r.first + interval '1 second', false),
                                        (r.status, r.status_at, true)) AS v(status, at, applied)
             ON CONFLICT ON CONSTRAINT status_transitions_report_key DO NOTHING"
        ))
        .expect("transitions inserted");
        timing.transitions_secs += started.elapsed().as_secs_f64();

        println!("loaded messages {lo}..={hi}");
        lo = hi + 1;
    }

    let started = Instant::now();
    for table in ["messages", "status_transitions", "message_hourly_counts"] {
        conn.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .expect("vacuumed");
    }
    timing.vacuum_secs = started.elapsed().as_secs_f64();
    timing.transitions = count(conn, "SELECT count(*) AS n FROM status_transitions");
    timing.messages_counted = count(conn, "SELECT count(*) AS n FROM messages");
    timing
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    sql_query(sql).get_result::<Count>(conn).expect("counted").n
}

/// The recipient of message `g`.
pub fn recipient_of(g: i64) -> String {
    format!("3579{:07}", g % 1_000_000)
}

/// A UTC date `days_before` days before the anchor, as `YYYY-MM-DD`.
pub fn day_before(anchor: DateTime<Utc>, days_before: i64) -> String {
    (anchor - Span::days(days_before))
        .format("%Y-%m-%d")
        .to_string()
}
