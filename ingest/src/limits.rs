//! Limits that keep one client from exhausting ingest: body size and read time, the
//! server's connection timeouts, and an optional request rate per source address.
//!
//! The field bounds themselves (how many fields, how long, which characters) live in
//! [`shared::bounds`], beside the parser they protect.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Most sources whose rate is tracked at once. When the table is full, sources whose
/// bucket has refilled are forgotten first, then the longest idle one.
pub const MAX_TRACKED_SOURCES: usize = 16 * 1024;

/// The limits ingest enforces, read once at start-up.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// Largest request body accepted (`MAX_BODY_BYTES`); a larger one gets 413.
    pub max_body_bytes: usize,
    /// Longest time to receive the whole body once the head is in
    /// (`INGEST_BODY_TIMEOUT_MS`); a slower client gets 408.
    pub body_timeout: Duration,
    /// Longest time to receive a request's head (`INGEST_HEADER_TIMEOUT_MS`); a slower
    /// client gets 408 and the connection is closed.
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection stays open (`INGEST_KEEP_ALIVE_MS`).
    pub keep_alive: Duration,
    /// How long a closing connection may take to shut down
    /// (`INGEST_DISCONNECT_TIMEOUT_MS`).
    pub disconnect_timeout: Duration,
    /// Requests per source address, or `None` for no limit.
    pub rate: Option<RateSettings>,
}

/// A token bucket's shape: a source may send `burst` requests at once, then
/// `per_second` on average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSettings {
    /// Requests a source earns per second (`DLR_RATE_LIMIT_PER_SEC`).
    pub per_second: u32,
    /// Requests a source may save up (`DLR_RATE_LIMIT_BURST`).
    pub burst: u32,
}

/// One source's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Requests the source may send now, fractions included.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// A token bucket per source address, held in a bounded table.
///
/// IPv6 sources are counted per /64 network, since one host usually owns a whole /64.
/// The table lives in this process only: with several replicas behind a load balancer
/// each enforces its own limit, so a source may reach up to the limit times the number
/// of replicas.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateSettings,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter with an empty table.
    pub fn new(settings: RateSettings) -> RateLimiter {
        RateLimiter {
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the source's bucket, or says how long to wait for one.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.settings.per_second.max(1));
        let burst = f64::from(self.settings.burst.max(1));
        let key = source_key(source);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };

        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED_SOURCES {
            make_room(&mut buckets, rate, burst, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        refill(bucket, rate, burst, now);

        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(Duration::from_secs_f64(missing / rate))
    }
}

fn refill(bucket: &mut Bucket, rate: f64, burst: f64, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.updated = now;
}

/// Forgets every full bucket (a new one would be the same) and, if none was full, the
/// one idle the longest.
fn make_room(buckets: &mut HashMap<IpAddr, Bucket>, rate: f64, burst: f64, now: Instant) {
    buckets.retain(|_, bucket| {
        let mut current = *bucket;
        refill(&mut current, rate, burst, now);
        current.tokens < burst
    });
    if buckets.len() < MAX_TRACKED_SOURCES {
        return;
    }
    let idle = buckets
        .iter()
        .min_by_key(|(_, bucket)| bucket.updated)
        .map(|(key, _)| *key);
    if let Some(key) = idle {
        buckets.remove(&key);
    }
}

/// The address a source is counted under: itself for IPv4, its /64 for IPv6.
fn source_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
        v4 => v4,
    }
}

/// Whole seconds to put in `Retry-After` for a wait: rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateSettings { per_second, burst })
    }

    #[test]
    fn a_source_gets_its_burst_then_waits_for_the_refill() {
        let limiter = limiter(2, 3);
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();

        for _ in 0..3 {
            assert_eq!(limiter.check(source, start), Ok(()));
        }
        let wait = limiter.check(source, start).unwrap_err();

        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(limiter.check(source, start + wait).is_ok());
        assert!(limiter.check(source, start + wait).is_err());
    }

    #[test]
    fn sources_are_counted_apart_and_ipv6_per_64() {
        let limiter = limiter(1, 1);
        let now = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();

        assert!(limiter.check(one, now).is_ok());
        assert!(limiter.check(same_64, now).is_err());
        assert!(limiter.check(other, now).is_ok());
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let limiter = limiter(1, 2);
        let now = Instant::now();

        for i in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check(source, now);
        }

        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED_SOURCES);
    }
}
