//! Writing a batch of reports to PostgreSQL in one transaction.
//!
//! The database, not processor memory, decides every conflict, so any number of
//! processors can write at once:
//! 1. the truest report per message in the batch is upserted into `messages` under a
//!    condition that only lets a truer report replace the current one, and the statement
//!    returns the messages it changed;
//! 2. every distinct report is inserted into `status_transitions`, already marked
//!    `applied` when it is the report that just changed its message; the unique key
//!    (message, status, status time) turns a repeat into a no-op.
//!
//! A report already recorded cannot change its message: when it was first written, its
//! message became at least as true as it, and a message only ever becomes truer. So
//! taking the truest of the whole batch, repeats included, changes exactly the messages
//! that taking the truest of the new reports only would, and each transition row is
//! written once, never inserted and then updated.
//!
//! Rows are sent sorted by message id, so two processors lock rows in the same order and
//! cannot deadlock each other; each statement takes whole arrays (`unnest`), so its shape
//! is the same for every batch size.

use diesel::{
    pg::PgConnection,
    result::{DatabaseErrorKind, Error as DieselError},
    sql_query,
    sql_types::{Array, Bool, Jsonb, Nullable, SmallInt, Text, Timestamptz},
    Connection as _, QueryableByName, RunQueryDsl,
};
use shared::{report::TruthKey, Report};
use std::collections::{BTreeMap, HashSet};

/// What one batch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Reports new to `status_transitions`.
    pub new_transitions: usize,
    /// Reports that were already recorded, within the batch or before it.
    pub duplicates: usize,
    /// Messages whose current status was created or replaced.
    pub messages_changed: usize,
    /// The new reports counted by canonical status name.
    pub new_by_status: BTreeMap<String, u64>,
}

const INSERT_TRANSITIONS: &str = "
    INSERT INTO status_transitions (msg_id, status, status_raw, status_at, status_at_source,
        status_at_raw, received_at, recipient, sender, error_code, raw_fields, applied)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
        $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::jsonb[],
        $12::bool[])
    ON CONFLICT ON CONSTRAINT status_transitions_report_key DO NOTHING
    RETURNING status";

const UPSERT_MESSAGES: &str = "
    INSERT INTO messages AS m (msg_id, recipient, sender, status, is_final, status_rank,
        status_at, status_at_source, error_code, first_received_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
        $6::smallint[], $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[])
    ON CONFLICT (msg_id) DO UPDATE SET
        recipient = EXCLUDED.recipient,
        sender = EXCLUDED.sender,
        status = EXCLUDED.status,
        is_final = EXCLUDED.is_final,
        status_rank = EXCLUDED.status_rank,
        status_at = EXCLUDED.status_at,
        status_at_source = EXCLUDED.status_at_source,
        error_code = EXCLUDED.error_code,
        first_received_at = LEAST(m.first_received_at, EXCLUDED.first_received_at),
        updated_at = now()
    WHERE (EXCLUDED.is_final, EXCLUDED.status_at, EXCLUDED.status_rank)
        > (m.is_final, m.status_at, m.status_rank)
    RETURNING msg_id";

/// A transition the insert added (a repeat adds none).
#[derive(QueryableByName)]
struct InsertedTransition {
    #[diesel(sql_type = Text)]
    status: String,
}

#[derive(QueryableByName)]
struct ChangedMessage {
    #[diesel(sql_type = Text)]
    msg_id: String,
}

/// The identity of a report: a repeat of the same key adds nothing.
type ReportKey = (String, String, chrono::DateTime<chrono::Utc>);

fn key_of(r: &Report) -> ReportKey {
    (
        r.msg_id.as_str().to_owned(),
        r.status.as_str().to_owned(),
        r.status_at.at,
    )
}

/// Writes the reports in one transaction and returns what changed. On error nothing is
/// written, and the whole batch can be retried.
///
/// Most of a new message's cost is index maintenance: the query API's five secondary
/// indexes on `messages` make its upsert about three times dearer than on the bare
/// table. They are kept deliberately, for the API's response times.
pub fn apply_batch(
    conn: &mut PgConnection,
    reports: &[Report],
) -> Result<BatchOutcome, DieselError> {
    let mut distinct: BTreeMap<ReportKey, &Report> = BTreeMap::new();
    for report in reports {
        distinct.entry(key_of(report)).or_insert(report);
    }
    let rows: Vec<&Report> = distinct.values().copied().collect();

    let mut truest: BTreeMap<&str, &Report> = BTreeMap::new();
    for report in &rows {
        let held = truest.entry(report.msg_id.as_str()).or_insert(report);
        if report.truth_key() > held.truth_key() {
            *held = report;
        }
    }
    let winners: Vec<&Report> = truest.values().copied().collect();

    conn.transaction(|conn| {
        let changed = upsert_messages(conn, &winners)?;
        let applied: Vec<bool> = rows
            .iter()
            .map(|r| {
                let msg_id = r.msg_id.as_str();
                changed.contains(msg_id) && truest.get(msg_id).is_some_and(|w| std::ptr::eq(*w, *r))
            })
            .collect();
        let inserted = insert_transitions(conn, &rows, &applied)?;

        let mut new_by_status = BTreeMap::new();
        for t in &inserted {
            *new_by_status.entry(t.status.clone()).or_insert(0) += 1;
        }

        Ok(BatchOutcome {
            new_by_status,
            new_transitions: inserted.len(),
            duplicates: reports.len() - inserted.len(),
            messages_changed: changed.len(),
        })
    })
}

fn insert_transitions(
    conn: &mut PgConnection,
    rows: &[&Report],
    applied: &[bool],
) -> Result<Vec<InsertedTransition>, DieselError> {
    let text = |f: fn(&Report) -> String| -> Vec<String> { rows.iter().map(|r| f(r)).collect() };
    let raw: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(&r.raw).unwrap_or(serde_json::Value::Null))
        .collect();

    sql_query(INSERT_TRANSITIONS)
        .bind::<Array<Text>, _>(text(|r| r.msg_id.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.status.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.status_raw.clone()))
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.status_at.at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(text(|r| r.status_at.source.as_str().to_owned()))
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter()
                .map(|r| r.status_at.raw.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(text(|r| r.recipient.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.sender.as_str().to_owned()))
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter()
                .map(|r| r.error_code.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Jsonb>, _>(raw)
        .bind::<Array<Bool>, _>(applied)
        .load(conn)
}

fn upsert_messages(
    conn: &mut PgConnection,
    winners: &[&Report],
) -> Result<HashSet<String>, DieselError> {
    if winners.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<TruthKey> = winners.iter().map(|r| r.truth_key()).collect();
    let text = |f: fn(&Report) -> String| -> Vec<String> { winners.iter().map(|r| f(r)).collect() };

    let changed: Vec<ChangedMessage> = sql_query(UPSERT_MESSAGES)
        .bind::<Array<Text>, _>(text(|r| r.msg_id.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.recipient.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.sender.as_str().to_owned()))
        .bind::<Array<Text>, _>(text(|r| r.status.as_str().to_owned()))
        .bind::<Array<Bool>, _>(keys.iter().map(|k| k.is_final).collect::<Vec<_>>())
        .bind::<Array<SmallInt>, _>(keys.iter().map(|k| k.rank).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(keys.iter().map(|k| k.status_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(text(|r| r.status_at.source.as_str().to_owned()))
        .bind::<Array<Nullable<Text>>, _>(
            winners
                .iter()
                .map(|r| r.error_code.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(winners.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .load(conn)?;

    Ok(changed.into_iter().map(|c| c.msg_id).collect())
}

/// Whether an error is worth retrying the same batch for: the connection or the
/// server is in trouble, or the transaction lost a race (serialisation failure,
/// deadlock). Anything else may be a property of the data.
pub fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ReadOnlyTransaction => true,
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::RestrictViolation
            | DatabaseErrorKind::ExclusionViolation => false,
            _ => {
                let message = info.message();
                message.contains("deadlock")
                    || message.contains("terminating connection")
                    || message.contains("shutting down")
                    || message.contains("connection")
                    || message.contains("recovery")
            }
        },
        DieselError::BrokenTransactionManager | DieselError::AlreadyInTransaction => true,
        _ => false,
    }
}
