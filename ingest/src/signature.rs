//! Checking request signatures by the Standard Webhooks scheme, for gateways that sign.
//!
//! A signed request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`, a space-separated list of `v1,<base64>` entries. Each entry is the
//! HMAC-SHA256, under one of the shared secrets, of `<id>.<timestamp>.<body>`. A request is
//! accepted when any entry matches any configured secret (so secrets can be rotated) and
//! its timestamp is within the replay window of this server's clock.
//!
//! The scheme signs the body only. With signing on, ingest therefore refuses report fields
//! in the query string (see [`crate::auth`]), so nothing unsigned can reach a report.
//!
//! Replays: a signed request is only valid inside the window, and the ids of requests
//! whose report was accepted are remembered for as long as their signature stays valid,
//! so a replay inside the window is answered as a duplicate without publishing anything.
//! That memory is per process and bounded by [`ReplayMemory`]'s capacity: a replay sent
//! to another replica, or after more than that many accepted requests within one window,
//! is published again, and then only the processor's idempotent writes (by message id,
//! status and status time) keep it from changing anything.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::Mutex,
    time::Duration,
};
use subtle::ConstantTimeEq;

/// Prefix of a Standard Webhooks secret; the rest is the key in base64.
const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes accepted in a signing secret.
const MIN_KEY_BYTES: usize = 16;
/// Longest `webhook-id` accepted.
const MAX_ID_LEN: usize = 256;
/// Most signature entries examined in one request.
const MAX_SIGNATURES: usize = 8;

/// One shared signing key. Its `Debug` form never shows the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Reads a secret written as `whsec_<base64>`, as Standard Webhooks providers show it.
    /// The error never contains the secret.
    pub fn parse(text: &str) -> Result<SigningKey, String> {
        let Some(encoded) = text.trim().strip_prefix(SECRET_PREFIX) else {
            return Err(format!("a secret does not start with `{SECRET_PREFIX}`"));
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("a secret is not `{SECRET_PREFIX}` followed by base64"))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "a secret holds {} key bytes; at least {MIN_KEY_BYTES} are required",
                key.len()
            ));
        }
        Ok(SigningKey(key))
    }

    fn signature(&self, id: &str, timestamp: &str, body: &[u8]) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Signature checking, as configured.
#[derive(Clone, Debug)]
pub struct SigningSettings {
    /// Every key currently accepted (`DLR_SIGNING_SECRETS`).
    pub keys: Vec<SigningKey>,
    /// How far a timestamp may be from this server's clock, either way
    /// (`DLR_SIGNATURE_TOLERANCE_SECS`).
    pub tolerance: Duration,
    /// Most accepted webhook ids remembered against replays (`DLR_REPLAY_MEMORY`).
    pub replay_memory: usize,
}

/// Why a signed request was refused; logged, never told to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// A header is missing or malformed.
    HeadersMissing,
    /// The timestamp is outside the replay window.
    Stale,
    /// No signature entry matches any key.
    Mismatch,
}

impl SignatureRefusal {
    /// A fixed word for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureRefusal::HeadersMissing => "signature_headers_missing",
            SignatureRefusal::Stale => "signature_timestamp_outside_window",
            SignatureRefusal::Mismatch => "signature_mismatch",
        }
    }
}

/// A verified request's identity, to remember once its report is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookId {
    /// The `webhook-id`.
    pub id: String,
    /// The signed timestamp, in Unix seconds.
    pub timestamp: i64,
}

/// The three headers of a signed request, as text.
pub struct SignedHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Verifies signatures and remembers accepted ids.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<SigningKey>,
    tolerance_secs: i64,
    seen: Mutex<ReplayMemory>,
}

impl Verifier {
    /// A verifier with an empty replay memory.
    pub fn new(settings: &SigningSettings) -> Verifier {
        Verifier {
            keys: settings.keys.clone(),
            tolerance_secs: i64::try_from(settings.tolerance.as_secs()).unwrap_or(i64::MAX),
            seen: Mutex::new(ReplayMemory::new(settings.replay_memory)),
        }
    }

    /// Checks the headers against the body at time `now` (Unix seconds).
    pub fn verify(
        &self,
        headers: &SignedHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<WebhookId, SignatureRefusal> {
        let (Some(id), Some(timestamp), Some(signatures)) =
            (headers.id, headers.timestamp, headers.signature)
        else {
            return Err(SignatureRefusal::HeadersMissing);
        };
        let id_ok =
            !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
        let seconds = timestamp.parse::<i64>().ok().filter(|_| id_ok);
        let Some(seconds) = seconds else {
            return Err(SignatureRefusal::HeadersMissing);
        };

        if now.abs_diff(seconds) > self.tolerance_secs.unsigned_abs() {
            return Err(SignatureRefusal::Stale);
        }

        let expected: Vec<[u8; 32]> = self
            .keys
            .iter()
            .filter_map(|key| key.signature(id, timestamp, body))
            .collect();
        let mut matched = subtle::Choice::from(0);
        for entry in signatures
            .split(' ')
            .filter(|e| !e.is_empty())
            .take(MAX_SIGNATURES)
        {
            let Some(given) = entry
                .strip_prefix("v1,")
                .and_then(|b| STANDARD.decode(b).ok())
            else {
                continue;
            };
            for wanted in &expected {
                matched |= wanted.as_slice().ct_eq(given.as_slice());
            }
        }
        if !bool::from(matched) {
            return Err(SignatureRefusal::Mismatch);
        }

        Ok(WebhookId {
            id: id.to_owned(),
            timestamp: seconds,
        })
    }

    /// Whether a request with this id already had its report accepted, and its
    /// signature is still valid.
    pub fn already_accepted(&self, webhook: &WebhookId, now: i64) -> bool {
        self.seen
            .lock()
            .map(|mut seen| seen.contains(&webhook.id, now))
            .unwrap_or(false)
    }

    /// Remembers an id whose report was accepted, until its signature expires.
    pub fn remember(&self, webhook: &WebhookId, now: i64) {
        let expires = webhook.timestamp.saturating_add(self.tolerance_secs);
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(webhook.id.clone(), expires, now);
        }
    }
}

/// Ids with the time their signature expires, oldest first, at most `capacity` of them.
///
/// When full, the oldest id is forgotten before it expires; a replay of it inside its
/// window would then be published again (and stored as nothing new by the processor,
/// unless the report carried no status time).
#[derive(Debug)]
pub struct ReplayMemory {
    capacity: usize,
    expiry: HashMap<String, i64>,
    order: VecDeque<(String, i64)>,
}

impl ReplayMemory {
    /// An empty memory holding at most `capacity` ids.
    pub fn new(capacity: usize) -> ReplayMemory {
        ReplayMemory {
            capacity: capacity.max(1),
            expiry: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&mut self, id: &str, now: i64) -> bool {
        self.forget_expired(now);
        self.expiry.contains_key(id)
    }

    fn insert(&mut self, id: String, expires: i64, now: i64) {
        self.forget_expired(now);
        while self.order.len() >= self.capacity {
            if let Some((old, at)) = self.order.pop_front() {
                self.forget(&old, at);
            }
        }
        self.expiry.insert(id.clone(), expires);
        self.order.push_back((id, expires));
    }

    fn forget_expired(&mut self, now: i64) {
        while self.order.front().is_some_and(|(_, at)| *at < now) {
            if let Some((old, at)) = self.order.pop_front() {
                self.forget(&old, at);
            }
        }
    }

    /// Forgets `id` unless it was remembered again later with another expiry.
    fn forget(&mut self, id: &str, at: i64) {
        if self.expiry.get(id) == Some(&at) {
            self.expiry.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(&SigningSettings {
            keys: secrets
                .iter()
                .map(|s| SigningKey::parse(s).unwrap())
                .collect(),
            tolerance: Duration::from_secs(300),
            replay_memory: 2,
        })
    }

    fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
        let key = SigningKey::parse(secret).unwrap();
        let tag = key.signature(id, &ts.to_string(), body).unwrap();
        format!("v1,{}", STANDARD.encode(tag))
    }

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn the_published_standard_webhooks_example_verifies() {
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let verifier = verifier(&[SECRET]);

        let signed = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", expected);
        let verified = verifier.verify(&signed, body, 1_614_265_330);

        assert_eq!(verified.unwrap().id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn altered_body_stale_time_unknown_key_and_missing_headers_are_refused() {
        let other = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
        let verifier = verifier(&[SECRET]);
        let now = 1_700_000_000;
        let good = sign(SECRET, "id1", now, b"a=1");

        let altered = verifier.verify(&headers("id1", &now.to_string(), &good), b"a=2", now);
        let stale = verifier.verify(&headers("id1", &now.to_string(), &good), b"a=1", now + 301);
        let foreign = sign(other, "id1", now, b"a=1");
        let wrong_key = verifier.verify(&headers("id1", &now.to_string(), &foreign), b"a=1", now);
        let missing = SignedHeaders {
            id: Some("id1"),
            timestamp: None,
            signature: Some(&good),
        };

        assert_eq!(altered, Err(SignatureRefusal::Mismatch));
        assert_eq!(stale, Err(SignatureRefusal::Stale));
        assert_eq!(wrong_key, Err(SignatureRefusal::Mismatch));
        assert_eq!(
            verifier.verify(&missing, b"a=1", now),
            Err(SignatureRefusal::HeadersMissing)
        );
        let edge = verifier.verify(&headers("id1", &now.to_string(), &good), b"a=1", now + 300);
        assert!(edge.is_ok());
    }

    #[test]
    fn any_listed_signature_under_any_configured_key_is_enough() {
        let next = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
        let verifier = verifier(&[SECRET, next]);
        let now = 1_700_000_000;
        let list = format!("v1,AAAA v2,xyz {}", sign(next, "id2", now, b""));

        assert!(verifier
            .verify(&headers("id2", &now.to_string(), &list), b"", now)
            .is_ok());
    }

    #[test]
    fn remembered_ids_expire_with_their_signature_and_memory_is_bounded() {
        let verifier = verifier(&[SECRET]);
        let id = |name: &str, timestamp| WebhookId {
            id: name.into(),
            timestamp,
        };

        verifier.remember(&id("a", 1000), 1000);
        assert!(verifier.already_accepted(&id("a", 1000), 1300));
        assert!(!verifier.already_accepted(&id("a", 1000), 1301));
        verifier.remember(&id("b", 2000), 2000);
        verifier.remember(&id("c", 2000), 2000);
        verifier.remember(&id("d", 2000), 2000);
        assert!(!verifier.already_accepted(&id("b", 2000), 2000));
        assert!(verifier.already_accepted(&id("d", 2000), 2000));
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_not base64!").is_err());
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err());

        let shown = format!("{:?}", SigningKey::parse(SECRET).unwrap());

        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}
