//! The command line of `dlr-bench`.

use std::path::PathBuf;

/// Which parts of the suite to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// HTTP and broker: bare handler, validation, raw publish, ingest throughput and
    /// latency, ingest memory.
    Ingest,
    /// Broker and database: raw consume, raw write, processor drains, processor memory.
    Processor,
    /// End-to-end latency through ingest, the broker, the processor and the database.
    EndToEnd,
}

impl Part {
    /// Every part, in the order they run.
    pub const ALL: [Part; 3] = [Part::Ingest, Part::Processor, Part::EndToEnd];

    fn parse(name: &str) -> Option<Part> {
        match name {
            "ingest" => Some(Part::Ingest),
            "processor" => Some(Part::Processor),
            "e2e" => Some(Part::EndToEnd),
            _ => None,
        }
    }
}

/// Counts, durations and switches of one benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Smaller counts and shorter loads, for a smoke run (`--quick`).
    pub quick: bool,
    /// How many times each measurement is repeated; the median is reported (`--runs`).
    pub runs: usize,
    /// HTTP connections of the closed-loop load, and publishes in flight of the raw
    /// publish ceiling (`--connections`).
    pub connections: usize,
    /// Requests of each closed-loop run (`--requests`).
    pub requests: usize,
    /// Seconds of each open-loop run (`--open-seconds`).
    pub open_seconds: f64,
    /// Reports in the queue the batched processor drains (`--drain`).
    pub drain_count: usize,
    /// Reports in the queue the one-per-transaction processor drains (`--drain-single`).
    pub drain_single_count: usize,
    /// The processor's batch size, as `BATCH_SIZE` (`--batch-size`).
    pub batch_size: usize,
    /// Ingest's publishing channels, as `PUBLISH_CHANNELS` (`--channels`).
    pub publish_channels: usize,
    /// Requests a second of the end-to-end load; by default half of ingest's measured
    /// maximum (`--e2e-rate`).
    pub e2e_rate: Option<f64>,
    /// Minutes of the soak run; 0 skips it (`--soak-minutes`).
    pub soak_minutes: u64,
    /// Requests a second during the soak run (`--soak-rate`).
    pub soak_rate: f64,
    /// The parts to run (`--only ingest,processor,e2e`).
    pub parts: Vec<Part>,
    /// Where the results table is written (`--out`).
    pub out: PathBuf,
}

/// What `--help` prints.
pub const USAGE: &str = "\
usage: dlr-bench [--quick] [--runs N] [--connections N] [--requests N] [--open-seconds S]
                 [--drain N] [--drain-single N] [--batch-size N] [--channels N]
                 [--e2e-rate R] [--soak-minutes N] [--soak-rate R] [--only ingest,processor,e2e]
                 [--out PATH]

Runs against RabbitMQ at 127.0.0.1:5672 (BENCH_AMQP_URL) and PostgreSQL at 127.0.0.1:5432
(BENCH_DATABASE_SERVER) with queue names and a database of its own, removed at the end.
Spawns target/release/ingest and target/release/processor: build them first with
`cargo build --release --bins`.";

impl Options {
    /// The defaults of a full run.
    pub fn full() -> Options {
        Options {
            quick: false,
            runs: 3,
            connections: 64,
            requests: 60_000,
            open_seconds: 10.0,
            drain_count: 200_000,
            drain_single_count: 10_000,
            batch_size: 500,
            publish_channels: 1,
            e2e_rate: None,
            soak_minutes: 0,
            soak_rate: 1000.0,
            parts: Part::ALL.to_vec(),
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results.md")),
        }
    }

    /// The defaults of a `--quick` run.
    pub fn quick() -> Options {
        Options {
            quick: true,
            requests: 8_000,
            open_seconds: 3.0,
            drain_count: 20_000,
            drain_single_count: 1_000,
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results-quick.md")),
            ..Options::full()
        }
    }

    /// Reads the arguments after the program name. `Ok(None)` means `--help` was asked.
    pub fn parse<I, S>(args: I) -> Result<Option<Options>, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return Ok(None);
        }
        let mut options = if args.iter().any(|a| a == "--quick") {
            Options::quick()
        } else {
            Options::full()
        };

        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            if flag == "--quick" {
                continue;
            }
            let value = rest
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            match flag.as_str() {
                "--runs" => options.runs = number(flag, value, 1)?,
                "--connections" => options.connections = number(flag, value, 1)?,
                "--requests" => options.requests = number(flag, value, 100)?,
                "--open-seconds" => options.open_seconds = decimal(flag, value)?,
                "--drain" => options.drain_count = number(flag, value, 100)?,
                "--drain-single" => options.drain_single_count = number(flag, value, 10)?,
                "--batch-size" => options.batch_size = number(flag, value, 1)?,
                "--channels" => options.publish_channels = number(flag, value, 1)?,
                "--e2e-rate" => options.e2e_rate = Some(decimal(flag, value)?),
                "--soak-minutes" => options.soak_minutes = number(flag, value, 0)? as u64,
                "--soak-rate" => options.soak_rate = decimal(flag, value)?,
                "--only" => options.parts = parts(value)?,
                "--out" => options.out = PathBuf::from(value),
                _ => return Err(format!("unknown argument `{flag}`")),
            }
        }

        Ok(Some(options))
    }

    /// Whether `part` is to run.
    pub fn runs_part(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

fn number(flag: &str, value: &str, min: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "{flag} takes a whole number of at least {min}, not `{value}`"
        )),
    }
}

fn decimal(flag: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{flag} takes a positive number, not `{value}`")),
    }
}

fn parts(list: &str) -> Result<Vec<Part>, String> {
    list.split(',')
        .map(|name| {
            Part::parse(name.trim())
                .ok_or_else(|| format!("--only knows ingest, processor and e2e, not `{name}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_lowers_the_counts_and_flags_override_them() {
        let options = Options::parse(["--runs", "5", "--quick", "--only", "e2e,ingest"])
            .unwrap()
            .unwrap();

        assert!(options.quick);
        assert_eq!(options.runs, 5);
        assert_eq!(options.drain_count, Options::quick().drain_count);
        assert_eq!(options.parts, vec![Part::EndToEnd, Part::Ingest]);
    }

    #[test]
    fn unknown_flags_and_missing_values_are_refused() {
        assert!(Options::parse(["--fast"]).is_err());
        assert!(Options::parse(["--runs"]).is_err());
        assert!(Options::parse(["--runs", "0"]).is_err());
        assert!(Options::parse(["--only", "everything"]).is_err());
    }
}
