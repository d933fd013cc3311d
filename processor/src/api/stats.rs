//! `GET /v1/stats`: messages per current status and the delivery rate over a time range,
//! in hourly or daily buckets.
//!
//! A message counts in the hour its first report arrived (`first_received_at`), under its
//! current status, so "yesterday's messages" stay yesterday's as their reports come in and
//! only move between statuses. The numbers come from `message_hourly_counts`, which
//! triggers on `messages` keep current, so a call sums at most a few thousand rows however
//! many messages there are. Buckets are aligned to UTC hours and UTC days: a day in
//! another time zone is not offered.

use super::{
    auth::Authorized,
    error::ApiError,
    params::{self, QueryParams},
    with_connection, ApiState,
};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::{
    sql_query,
    sql_types::{BigInt, Text, Timestamptz},
    QueryableByName, RunQueryDsl,
};
use log::info;
use serde::Serialize;
use shared::Status;
use std::{collections::BTreeMap, time::Instant};

/// Bucket width of a stats answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    fn parse(text: &str) -> Result<Bucket, String> {
        match text {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            _ => Err("must be hour or day".into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    fn width(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        }
    }

    /// Most buckets one answer may hold: 31 days of hours, or 366 days.
    pub fn max_buckets(self) -> i64 {
        match self {
            Bucket::Hour => 31 * 24,
            Bucket::Day => 366,
        }
    }

    /// The range asked for when `from` is not given.
    fn default_span(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(24),
            Bucket::Day => Duration::days(30),
        }
    }
}

/// Counts of one bucket, or of the whole range.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Counts {
    /// Messages in all statuses.
    pub total: i64,
    /// Messages whose current status is final.
    #[serde(rename = "final")]
    pub final_: i64,
    /// Messages delivered.
    pub delivered: i64,
    /// `delivered / final`, or `null` when no message is final yet. Messages still in
    /// flight are left out, so recent buckets are not dragged down by pending ones.
    pub delivery_rate: Option<f64>,
    /// Messages per current status; every status is present.
    pub by_status: BTreeMap<&'static str, i64>,
}

impl Counts {
    fn empty() -> Counts {
        Counts {
            by_status: Status::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            ..Counts::default()
        }
    }

    fn add(&mut self, status: Status, messages: i64) {
        self.total += messages;
        if status.is_final() {
            self.final_ += messages;
        }
        if status == Status::Delivered {
            self.delivered += messages;
        }
        *self.by_status.entry(status.as_str()).or_default() += messages;
        let (delivered, final_) = (self.delivered as f64, self.final_ as f64);
        self.delivery_rate = (self.final_ > 0).then(|| delivered / final_);
    }
}

#[derive(Serialize)]
struct BucketCounts {
    start: DateTime<Utc>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct StatsAnswer {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &'static str,
    totals: Counts,
    buckets: Vec<BucketCounts>,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Timestamptz)]
    start: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    messages: i64,
}

const STATS_QUERY: &str = "
    SELECT date_trunc($1, hour, 'UTC') AS start, status, sum(messages)::bigint AS messages
    FROM message_hourly_counts
    WHERE hour >= $2 AND hour < $3
    GROUP BY 1, 2";

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/stats", web::get().to(stats));
}

/// The validated range: `from` rounded down and `to` rounded up to whole buckets.
#[derive(Debug, PartialEq, Eq)]
struct StatsRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
}

impl StatsRange {
    fn from_query(query_string: &str, now: DateTime<Utc>) -> Result<StatsRange, ApiError> {
        let mut params = QueryParams::parse(query_string, &["from", "to", "bucket"])?;
        let bucket = params
            .parsed("bucket", Bucket::parse)
            .unwrap_or(Bucket::Hour);
        let to = params.parsed("to", params::rfc3339);
        let from = params.parsed("from", params::rfc3339);
        params.finish()?;

        let to = ceil(to.unwrap_or(now), bucket)?;
        let from = floor(from.unwrap_or(to - bucket.default_span()), bucket)?;
        if from >= to {
            return Err(ApiError::invalid("to", "must be later than from"));
        }
        let buckets = (to - from).num_seconds() / bucket.width().num_seconds();
        if buckets > bucket.max_buckets() {
            return Err(ApiError::invalid(
                "from",
                format!(
                    "spans {buckets} {}s; at most {} are answered at once",
                    bucket.name(),
                    bucket.max_buckets()
                ),
            ));
        }
        Ok(StatsRange { from, to, bucket })
    }
}

fn floor(t: DateTime<Utc>, bucket: Bucket) -> Result<DateTime<Utc>, ApiError> {
    t.duration_trunc(bucket.width())
        .map_err(|_| ApiError::invalid("from", "is out of range"))
}

fn ceil(t: DateTime<Utc>, bucket: Bucket) -> Result<DateTime<Utc>, ApiError> {
    let floored = floor(t, bucket)?;
    Ok(if floored == t {
        t
    } else {
        floored + bucket.width()
    })
}

/// Answers the counts of the range and of each bucket in it, empty buckets included.
async fn stats(
    _auth: Authorized,
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let range = StatsRange::from_query(req.query_string(), Utc::now())?;

    let (from, to, bucket) = (range.from, range.to, range.bucket);
    let rows: Vec<CountRow> = with_connection(&state.pool, move |conn| {
        sql_query(STATS_QUERY)
            .bind::<Text, _>(bucket.name())
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(to)
            .load(conn)
    })
    .await?;

    let mut per_bucket: BTreeMap<DateTime<Utc>, Counts> = BTreeMap::new();
    let mut start = from;
    while start < to {
        per_bucket.insert(start, Counts::empty());
        start += bucket.width();
    }
    let mut totals = Counts::empty();
    for row in rows {
        let Some(status) = Status::from_canonical(&row.status) else {
            continue;
        };
        totals.add(status, row.messages);
        if let Some(counts) = per_bucket.get_mut(&row.start) {
            counts.add(status, row.messages);
        }
    }

    info!(
        "stats read bucket={} buckets={} elapsed_ms={}",
        bucket.name(),
        per_bucket.len(),
        started.elapsed().as_millis()
    );
    Ok(HttpResponse::Ok().json(StatsAnswer {
        from,
        to,
        bucket: bucket.name(),
        totals,
        buckets: per_bucket
            .into_iter()
            .map(|(start, counts)| BucketCounts { start, counts })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_range_is_widened_to_whole_buckets() {
        let now = at("2026-12-03T10:20:00Z");

        let hours = StatsRange::from_query("", now).unwrap();
        let days = StatsRange::from_query(
            "bucket=day&from=2026-12-01T05:00:00Z&to=2026-12-02T00:00:00Z",
            now,
        )
        .unwrap();

        assert_eq!(hours.from, at("2026-12-02T11:00:00Z"));
        assert_eq!(hours.to, at("2026-12-03T11:00:00Z"));
        assert_eq!(days.from, at("2026-12-01T00:00:00Z"));
        assert_eq!(days.to, at("2026-12-02T00:00:00Z"));
    }

    #[test]
    fn too_many_buckets_and_reversed_ranges_are_refused() {
        let now = at("2026-12-03T10:20:00Z");

        let long = StatsRange::from_query("from=2026-01-01T00:00:00Z", now).unwrap_err();
        let reversed =
            StatsRange::from_query("from=2026-12-03T00:00:00Z&to=2026-12-01T00:00:00Z", now)
                .unwrap_err();

        assert!(matches!(long, ApiError::InvalidParameters(ref e) if e[0].field == "from"));
        assert!(matches!(reversed, ApiError::InvalidParameters(ref e) if e[0].field == "to"));
    }

    #[test]
    fn the_delivery_rate_leaves_pending_messages_out() {
        let mut counts = Counts::empty();

        counts.add(Status::Delivered, 3);
        counts.add(Status::Undelivered, 1);
        counts.add(Status::Enroute, 6);

        assert_eq!((counts.total, counts.final_, counts.delivered), (10, 4, 3));
        assert_eq!(counts.delivery_rate, Some(0.75));
        assert_eq!(counts.by_status["enroute"], 6);
    }
}
