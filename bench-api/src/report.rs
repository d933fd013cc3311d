//! What the benchmark measured, and the Markdown it writes.

use chrono::{DateTime, Utc};
use diesel::{pg::PgConnection, sql_query, sql_types::Text, QueryableByName, RunQueryDsl};
use std::{fmt::Write as _, time::Duration};

/// The answer every call is held to.
pub const TARGET: Duration = Duration::from_millis(50);

/// How long loading took and what it produced.
#[derive(Debug, Default)]
pub struct LoadTiming {
    /// The hour the data set ends at.
    pub anchor: DateTime<Utc>,
    /// Messages asked for.
    pub messages: i64,
    /// Messages in the table afterwards.
    pub messages_counted: i64,
    /// Transitions in the table afterwards.
    pub transitions: i64,
    /// Seconds spent inserting messages (indexes and triggers included).
    pub messages_secs: f64,
    /// Seconds spent inserting transitions.
    pub transitions_secs: f64,
    /// Seconds spent in `VACUUM ANALYZE`.
    pub vacuum_secs: f64,
}

/// The machine and database server the figures come from.
pub struct Machine {
    cores: usize,
    memory: String,
    cpu: String,
    postgres: String,
    shared_buffers: String,
    sizes: String,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    text: String,
}

impl Machine {
    /// Reads the machine from `/proc` and the server from SQL.
    pub fn describe(conn: &mut PgConnection) -> Machine {
        let proc_line = |file: &str, key: &str| -> String {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_else(|| "unknown".into())
        };
        let one = |conn: &mut PgConnection, sql: &str| -> String {
            sql_query(sql)
                .get_result::<Line>(conn)
                .map(|l| l.text)
                .unwrap_or_else(|e| format!("unknown ({e})"))
        };

        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory: proc_line("/proc/meminfo", "MemTotal"),
            cpu: proc_line("/proc/cpuinfo", "model name"),
            postgres: one(conn, "SELECT version() AS text"),
            shared_buffers: one(conn, "SELECT current_setting('shared_buffers') AS text"),
            sizes: one(
                conn,
                "SELECT string_agg(format('%s %s', relname, \
                 pg_size_pretty(pg_total_relation_size(oid))), ', ' ORDER BY relname) AS text \
                 FROM pg_class WHERE relname IN ('messages', 'status_transitions', \
                 'message_hourly_counts')",
            ),
        }
    }
}

/// The timings of one API call.
pub struct Call {
    label: String,
    samples: Vec<Duration>,
}

impl Call {
    /// A call and its samples, in any order.
    pub fn new(label: String, mut samples: Vec<Duration>) -> Call {
        samples.sort();
        Call { label, samples }
    }

    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
        self.samples.get(index).copied().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// One Markdown table row.
    pub fn line(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let verdict = if self.median() < TARGET {
            "yes"
        } else {
            "**no**"
        };
        format!(
            "| `{}` | {} | {} | {} | {verdict} |",
            self.label.replace('|', "\\|"),
            ms(self.median()),
            ms(self.quantile(0.9)),
            ms(self.samples.last().copied().unwrap_or_default())
        )
    }
}

/// The results file.
pub fn render(machine: &Machine, load: &LoadTiming, calls: &[Call], repeats: usize) -> String {
    let mut out = String::new();
    let all_fast = calls.iter().all(|c| c.median() < TARGET);
    let _ = writeln!(out, "# Query API benchmark\n");
    let _ = writeln!(
        out,
        "Produced by `cargo run --release -p dlr-bench-api` (bench-api/src/main.rs) on {}.\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "- cores (nproc): {}", machine.cores);
    let _ = writeln!(out, "- memory: {}", machine.memory);
    let _ = writeln!(out, "- CPU: {}", machine.cpu);
    let _ = writeln!(out, "- PostgreSQL: {}", machine.postgres);
    let _ = writeln!(out, "- shared_buffers: {}", machine.shared_buffers);
    let _ = writeln!(
        out,
        "- the machine is shared with other builds and tests; figures are one run\n"
    );
    let _ = writeln!(out, "## Data set\n");
    let _ = writeln!(
        out,
        "- messages: {} (asked for {}), transitions: {}",
        load.messages_counted, load.messages, load.transitions
    );
    let _ = writeln!(
        out,
        "- first reports spread over the 30 days before {}; 50 senders; \
         {} messages per recipient",
        load.anchor.to_rfc3339(),
        (load.messages / 1_000_000).max(1)
    );
    let _ = writeln!(out, "- sizes with indexes: {}", machine.sizes);
    let _ = writeln!(
        out,
        "- load time: messages {:.0} s, transitions {:.0} s, VACUUM ANALYZE {:.0} s \
         (server-side `INSERT ... SELECT` from `generate_series`, all indexes and the stats \
         triggers in place)\n",
        load.messages_secs, load.transitions_secs, load.vacuum_secs
    );
    let _ = writeln!(out, "## API calls\n");
    let _ = writeln!(
        out,
        "Each call: one warm-up, then {repeats} sequential calls over HTTP (keep-alive) to \
         the release `processor` binary; times are client-side round trips in ms. \
         `{{msg_id}}` varies per call. Target: median under {} ms.\n",
        TARGET.as_millis()
    );
    let _ = writeln!(out, "| call | median | p90 | max | under target |");
    let _ = writeln!(out, "|---|---:|---:|---:|:---:|");
    for call in calls {
        let _ = writeln!(out, "{}", call.line());
    }
    let _ = writeln!(
        out,
        "\nEvery median under the target: {}.",
        if all_fast { "yes" } else { "no" }
    );
    out
}
