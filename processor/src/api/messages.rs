//! `GET /v1/messages/{msg_id}` and `GET /v1/messages`: one message with its history, and
//! a filtered list, newest first, paged by an opaque keyset cursor.
//!
//! A list page is one index range scan: rows are ordered by `(status_at, msg_id)`
//! descending, and the cursor is the last row's pair, so the next page starts strictly
//! after it. Rows written between two page requests never cause a duplicate or a gap among
//! the rows that existed before; a message whose status moves while a client pages may
//! appear on a later page again or not at all, as in any keyset pagination over a
//! changing order.

use super::{
    auth::Authorized,
    error::ApiError,
    params::{self, QueryParams},
    with_connection, ApiState,
};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    query_builder::{BoxedSqlQuery, SqlQuery},
    sql_query,
    sql_types::{BigInt, Bool, Nullable, Text, Timestamptz},
    QueryableByName, RunQueryDsl,
};
use log::info;
use serde::Serialize;
use shared::{MsgId, PhoneNumber, SenderId, Status};
use std::time::Instant;

/// Most rows one page may hold.
pub const MAX_PAGE: u32 = 500;

/// Rows in a page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;

const MESSAGE_COLUMNS: &str = "msg_id, recipient, sender, status, is_final, status_at, \
     status_at_source, error_code, first_received_at, updated_at";

/// A row of `messages` as the API shows it.
#[derive(QueryableByName, Serialize, Debug)]
pub struct MessageView {
    /// Message id.
    #[diesel(sql_type = Text)]
    pub msg_id: String,
    /// Recipient digits, masked when asked.
    #[diesel(sql_type = Text)]
    pub recipient: String,
    /// Sender id.
    #[diesel(sql_type = Text)]
    pub sender: String,
    /// Current status.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// Whether the current status is final.
    #[diesel(sql_type = Bool)]
    pub is_final: bool,
    /// When the current status took effect.
    #[diesel(sql_type = Timestamptz)]
    pub status_at: DateTime<Utc>,
    /// `gateway` or `received`.
    #[diesel(sql_type = Text)]
    pub status_at_source: String,
    /// Error code of the current report.
    #[diesel(sql_type = Nullable<Text>)]
    pub error_code: Option<String>,
    /// When the first report of this message arrived.
    #[diesel(sql_type = Timestamptz)]
    pub first_received_at: DateTime<Utc>,
    /// When the row last changed.
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

/// One report of a message's history.
#[derive(QueryableByName, Serialize, Debug)]
pub struct TransitionView {
    /// Canonical status.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// The status word as the gateway sent it.
    #[diesel(sql_type = Text)]
    pub status_raw: String,
    /// When the status took effect.
    #[diesel(sql_type = Timestamptz)]
    pub status_at: DateTime<Utc>,
    /// `gateway` or `received`.
    #[diesel(sql_type = Text)]
    pub status_at_source: String,
    /// When ingest received the report.
    #[diesel(sql_type = Timestamptz)]
    pub received_at: DateTime<Utc>,
    /// Error code of the report.
    #[diesel(sql_type = Nullable<Text>)]
    pub error_code: Option<String>,
    /// Whether the report became the current status when it was written.
    #[diesel(sql_type = Bool)]
    pub applied: bool,
}

#[derive(Serialize)]
struct MessageWithHistory {
    message: MessageView,
    history: Vec<TransitionView>,
}

#[derive(Serialize)]
struct Page {
    messages: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// Registers both routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/messages", web::get().to(list_messages))
        .route("/v1/messages/{msg_id}", web::get().to(get_message));
}

/// Answers one message with its current status and every report, oldest first.
async fn get_message(
    _auth: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let mut params = QueryParams::parse(req.query_string(), &["mask"])?;
    let mask = params.parsed("mask", params::boolean).unwrap_or(false);
    let msg_id = MsgId::parse(&path.into_inner());
    if let Err(reason) = &msg_id {
        params.reject("msg_id", reason.clone());
    }
    params.finish()?;
    let msg_id = msg_id.map_err(|reason| ApiError::invalid("msg_id", reason))?;

    let id = msg_id.as_str().to_owned();
    let found = with_connection(&state.pool, move |conn| {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE msg_id = $1");
        let message: Option<MessageView> = sql_query(sql)
            .bind::<Text, _>(&id)
            .get_result(conn)
            .map(Some)
            .or_else(|e| match e {
                diesel::result::Error::NotFound => Ok(None),
                other => Err(other),
            })?;
        let Some(message) = message else {
            return Ok(None);
        };
        let history: Vec<TransitionView> = sql_query(
            "SELECT status, status_raw, status_at, status_at_source, received_at, error_code, \
             applied FROM status_transitions WHERE msg_id = $1 ORDER BY status_at, id",
        )
        .bind::<Text, _>(&id)
        .load(conn)?;
        Ok(Some(MessageWithHistory { message, history }))
    })
    .await?;

    let mut found = found.ok_or(ApiError::NotFound)?;
    if mask {
        found.message.recipient = mask_number(&found.message.recipient);
    }

    info!(
        "message read msgid={} reports={} elapsed_ms={}",
        msg_id.as_str(),
        found.history.len(),
        started.elapsed().as_millis()
    );
    Ok(HttpResponse::Ok().json(found))
}

/// What a list request asks for, once validated.
#[derive(Debug, Default)]
struct ListFilter {
    statuses: Vec<Status>,
    recipient: Option<PhoneNumber>,
    sender: Option<SenderId>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<Cursor>,
    limit: u32,
    mask: bool,
}

const LIST_PARAMETERS: [&str; 8] = [
    "status",
    "recipient",
    "sender",
    "from",
    "to",
    "cursor",
    "limit",
    "mask",
];

impl ListFilter {
    fn from_query(query_string: &str) -> Result<ListFilter, ApiError> {
        let mut params = QueryParams::parse(query_string, &LIST_PARAMETERS)?;

        let filter = ListFilter {
            statuses: params.parsed("status", statuses).unwrap_or_default(),
            recipient: params.parsed("recipient", PhoneNumber::parse),
            sender: params.parsed("sender", SenderId::parse),
            from: params.parsed("from", params::rfc3339),
            to: params.parsed("to", params::rfc3339),
            after: params.parsed("cursor", Cursor::decode),
            limit: params
                .parsed("limit", |t| params::whole_number(t, 1, MAX_PAGE))
                .unwrap_or(DEFAULT_PAGE),
            mask: params.parsed("mask", params::boolean).unwrap_or(false),
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from >= to {
                params.reject("to", "must be later than from".into());
            }
        }

        params.finish()?;
        Ok(filter)
    }
}

/// Reads `delivered` or `delivered,expired`: canonical status names.
fn statuses(text: &str) -> Result<Vec<Status>, String> {
    let mut chosen = Vec::new();
    for name in text.split(',').map(str::trim) {
        let status = Status::from_canonical(name).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "`{}` is not a status; expected one or more of {}",
                name.chars().take(20).collect::<String>(),
                names.join(", ")
            )
        })?;
        if !chosen.contains(&status) {
            chosen.push(status);
        }
    }
    Ok(chosen)
}

/// Answers a page of messages matching the filter, newest status first.
async fn list_messages(
    _auth: Authorized,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let filter = ListFilter::from_query(req.query_string())?;

    let (limit, mask) = (filter.limit, filter.mask);
    let mut rows = with_connection(&state.pool, move |conn| {
        list_query(&filter).load::<MessageView>(conn)
    })
    .await?;

    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| Cursor::of(last).encode())
    } else {
        None
    };
    if mask {
        for row in &mut rows {
            row.recipient = mask_number(&row.recipient);
        }
    }

    info!(
        "messages listed count={} more={} elapsed_ms={}",
        rows.len(),
        next_cursor.is_some(),
        started.elapsed().as_millis()
    );
    Ok(HttpResponse::Ok().json(Page {
        messages: rows,
        next_cursor,
    }))
}

/// The list query for `filter`, fetching one row more than a page to tell whether
/// another page follows. Every value is a bound parameter.
///
/// Several statuses become one ordered, limited branch per status joined by `UNION ALL`,
/// so each branch is a short range of a `(status, ...)` or `(sender, status, ...)` index
/// and the merge reads at most a page per status; a single `status = ANY(...)` would let
/// the planner walk a sender's whole index when those statuses are rare for that sender.
fn list_query(filter: &ListFilter) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    let statuses: Vec<String> = (1..=filter.statuses.len())
        .map(|i| format!("${i}"))
        .collect();
    let mut next = statuses.len();
    let mut placeholder = || {
        next += 1;
        format!("${next}")
    };

    let mut shared: Vec<String> = Vec::new();
    if filter.recipient.is_some() {
        shared.push(format!("recipient = {}", placeholder()));
    }
    if filter.sender.is_some() {
        shared.push(format!("sender = {}", placeholder()));
    }
    if filter.from.is_some() {
        shared.push(format!("status_at >= {}", placeholder()));
    }
    if filter.to.is_some() {
        shared.push(format!("status_at < {}", placeholder()));
    }
    if filter.after.is_some() {
        let (at, id) = (placeholder(), placeholder());
        shared.push(format!("(status_at, msg_id) < ({at}, {id})"));
    }
    let limit = placeholder();

    let branch = |status: Option<&String>| -> String {
        let mut conditions: Vec<String> = status
            .map(|s| format!("status = {s}"))
            .into_iter()
            .collect();
        conditions.extend(shared.iter().cloned());
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY status_at DESC, msg_id DESC LIMIT {limit}"
        ));
        sql
    };
    let sql = match statuses.as_slice() {
        [] => branch(None),
        [one] => branch(Some(one)),
        many => {
            let branches: Vec<String> = many
                .iter()
                .map(|s| format!("({})", branch(Some(s))))
                .collect();
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM ({}) AS branches \
                 ORDER BY status_at DESC, msg_id DESC LIMIT {limit}",
                branches.join(" UNION ALL ")
            )
        }
    };

    let mut query = sql_query(sql).into_boxed::<Pg>();
    for status in &filter.statuses {
        query = query.bind::<Text, _>(status.as_str());
    }
    if let Some(recipient) = &filter.recipient {
        query = query.bind::<Text, _>(recipient.as_str().to_owned());
    }
    if let Some(sender) = &filter.sender {
        query = query.bind::<Text, _>(sender.as_str().to_owned());
    }
    if let Some(from) = filter.from {
        query = query.bind::<Timestamptz, _>(from);
    }
    if let Some(to) = filter.to {
        query = query.bind::<Timestamptz, _>(to);
    }
    if let Some(after) = &filter.after {
        query = query
            .bind::<Timestamptz, _>(after.status_at)
            .bind::<Text, _>(after.msg_id.clone());
    }
    query.bind::<BigInt, _>(i64::from(filter.limit) + 1)
}

/// Where a page ended: the last row's status time and message id.
///
/// On the wire it is opaque: the hex digits of `<microseconds>:<msg_id>`. Clients pass it
/// back unchanged; its form may change between versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    status_at: DateTime<Utc>,
    msg_id: String,
}

impl Cursor {
    fn of(row: &MessageView) -> Cursor {
        Cursor {
            status_at: row.status_at,
            msg_id: row.msg_id.clone(),
        }
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        let plain = format!("{}:{}", self.status_at.timestamp_micros(), self.msg_id);
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the form written by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let invalid = || "is not a cursor returned by this API".to_string();
        if !text.len().is_multiple_of(2) || text.len() > 2 * 160 {
            return Err(invalid());
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        let plain = String::from_utf8(bytes.ok_or_else(invalid)?).map_err(|_| invalid())?;

        let (micros, msg_id) = plain.split_once(':').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let status_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let msg_id = MsgId::parse(msg_id).map_err(|_| invalid())?;
        Ok(Cursor {
            status_at,
            msg_id: msg_id.as_str().to_owned(),
        })
    }
}

/// Hides all but the last three digits of a stored number.
fn mask_number(digits: &str) -> String {
    match PhoneNumber::parse(digits) {
        Ok(number) => number.masked(),
        Err(_) => "*".repeat(digits.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = Cursor {
            status_at: DateTime::from_timestamp_micros(1_796_292_000_123_456).unwrap(),
            msg_id: "msg:with:colons".into(),
        };

        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        for garbage in ["", "abc", "zz", "3a", "31323a"] {
            assert!(Cursor::decode(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn numbers_are_masked_but_the_last_three_digits() {
        assert_eq!(mask_number("35799123456"), "********456");
    }

    #[test]
    fn several_statuses_become_one_limited_branch_each() {
        let one = ListFilter {
            statuses: vec![Status::Delivered],
            limit: 10,
            ..ListFilter::default()
        };
        let many = ListFilter {
            statuses: vec![Status::Delivered, Status::Expired],
            after: Some(Cursor {
                status_at: Utc::now(),
                msg_id: "m".into(),
            }),
            limit: 10,
            ..ListFilter::default()
        };

        let one_sql = diesel::debug_query(&list_query(&one)).to_string();
        let many_sql = diesel::debug_query(&list_query(&many)).to_string();
        assert!(one_sql.contains("WHERE status = $1 ORDER BY"), "{one_sql}");
        let branch = |n: u8| format!("WHERE status = ${n} AND (status_at, msg_id) < ($3, $4)");
        assert!(many_sql.contains(&branch(1)), "{many_sql}");
        assert!(many_sql.contains(&branch(2)), "{many_sql}");
        assert_eq!(many_sql.matches("UNION ALL").count(), 1, "{many_sql}");
        assert_eq!(many_sql.matches("LIMIT $5").count(), 3, "{many_sql}");
    }
}
