//! Who may send reports: source addresses, secret tokens and signatures, checked at the
//! top of the report handler by [`Guard::admit`] before any field is read.
//!
//! The checks run in this order, each refusing with the same bare 401 so a caller learns
//! nothing about which one failed (the log names it):
//!
//! 1. the client's address must be in the allow-list, if one is configured
//!    ([`crate::source`]);
//! 2. the source's rate limit, if any, must not be spent (429, [`crate::limits`]);
//! 3. with tokens configured, a token must be presented, and every token presented must
//!    be valid. It may come as the last path segment (`/dlr/{token}`), as the query key
//!    `token`, or as `Authorization: Bearer`. A `token` key is never kept as a field;
//! 4. the body is read, within its size and time limits;
//! 5. with signing secrets configured, the Standard Webhooks signature must match the
//!    body and be fresh ([`crate::signature`]), and the query string may carry nothing
//!    but a token, since it is not signed.
//!
//! Tokens are compared as SHA-256 digests in constant time, against every configured
//! token, so neither the position of a mismatch nor a token's length shows in the timing.
//! Only the digests are kept in memory after start-up.
//!
//! With no token and no signing secret configured, ingest refuses to start unless
//! `DLR_AUTH=none` says that accepting unauthenticated reports is intended: the endpoint
//! faces the internet, and a missing secret should not silently open it.

use crate::{
    error::ApiError,
    limits::{self, LimitSettings, RateLimiter},
    request,
    signature::{SignedHeaders, SigningSettings, Verifier, WebhookId},
    source::SourcePolicy,
};
use actix_web::{http::header, web, HttpRequest};
use log::{info, warn};
use sha2::{Digest, Sha256};
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};
use subtle::ConstantTimeEq;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The query-string key a token may be sent under, compared without regard to case.
pub const TOKEN_KEY: &str = "token";

/// Fewest characters a token may have.
pub const TOKEN_MIN_LEN: usize = 16;
/// Most characters a token may have.
pub const TOKEN_MAX_LEN: usize = 256;

/// Whether a request key carries a token, and so must never be kept as a field.
pub fn is_token_key(key: &str) -> bool {
    key.eq_ignore_ascii_case(TOKEN_KEY)
}

/// A secret token. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Checks a token: 16 to 256 characters from `A-Z a-z 0-9 . _ ~ -`, the characters a
    /// URL carries as they are, so it reads the same in a path, a query or a header.
    /// The error describes the problem without the token.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let token = text.trim();
        if !(TOKEN_MIN_LEN..=TOKEN_MAX_LEN).contains(&token.len()) {
            return Err(format!(
                "is {} characters long; {TOKEN_MIN_LEN} to {TOKEN_MAX_LEN} are required",
                token.len()
            ));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-');
        if !token.bytes().all(allowed) {
            return Err("may hold only letters, digits and . _ ~ -".into());
        }
        Ok(Secret(token.to_owned()))
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where the accepted tokens come from.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// A fixed list (`DLR_TOKENS`).
    Inline(Vec<Secret>),
    /// A file with one token per line (`DLR_TOKENS_FILE`), re-read every `reload_every`
    /// and on SIGHUP. Blank lines and lines starting with `#` are skipped.
    File {
        /// The file.
        path: PathBuf,
        /// The tokens it held at start-up.
        initial: Vec<Secret>,
        /// How often it is re-read (`DLR_TOKENS_RELOAD_SECS`).
        reload_every: Duration,
    },
}

/// How requests are authenticated, as configured.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// The accepted tokens, or `None` when no token is required.
    pub tokens: Option<TokenSource>,
    /// Signature checking, or `None` when requests need not be signed.
    pub signing: Option<SigningSettings>,
    /// Allowed and trusted addresses.
    pub sources: SourcePolicy,
}

/// Reads a token file: one token per line, blank lines and `#` comments skipped.
/// The error names the line, never its content.
pub fn read_token_file(path: &Path) -> Result<Vec<Secret>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let token = Secret::parse(line)
            .map_err(|why| format!("line {} of {}: the token {why}", number + 1, path.display()))?;
        tokens.push(token);
    }
    if tokens.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(tokens)
}

/// The digests of the tokens accepted now, replaced whole when the file is re-read.
#[derive(Clone, Debug)]
struct TokenSet {
    digests: Arc<RwLock<Arc<Vec<[u8; 32]>>>>,
}

impl TokenSet {
    fn new(tokens: &[Secret]) -> TokenSet {
        TokenSet {
            digests: Arc::new(RwLock::new(Arc::new(digests(tokens)))),
        }
    }

    fn replace(&self, tokens: &[Secret]) {
        if let Ok(mut guard) = self.digests.write() {
            *guard = Arc::new(digests(tokens));
        }
    }

    /// Whether `candidate` is one of the tokens, in time independent of where it differs.
    fn accepts(&self, candidate: &str) -> bool {
        let Some(known) = self.digests.read().ok().map(|guard| Arc::clone(&guard)) else {
            return false;
        };
        let wanted: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for digest in known.iter() {
            found |= digest.ct_eq(&wanted);
        }
        bool::from(found)
    }
}

fn digests(tokens: &[Secret]) -> Vec<[u8; 32]> {
    tokens.iter().map(Secret::digest).collect()
}

/// What [`Guard::admit`] decided about a request.
pub enum Admission {
    /// The request may be processed; its body has been read.
    Admitted(Admitted),
    /// A signed request whose report was already accepted: answer as before and do
    /// nothing else.
    Replayed,
}

/// A request that passed every check.
#[derive(Debug)]
pub struct Admitted {
    /// The body, read within its limits.
    pub body: web::Bytes,
    /// The request's signed identity, when signatures are checked.
    webhook: Option<WebhookId>,
}

/// Every check that comes before a request's fields are read.
#[derive(Debug)]
pub struct Guard {
    tokens: Option<TokenSet>,
    token_file: Option<(PathBuf, Duration)>,
    verifier: Option<Verifier>,
    sources: SourcePolicy,
    rate: Option<RateLimiter>,
    max_body_bytes: usize,
    body_timeout: Duration,
}

/// Why a request was refused with 401; logged, never told to the client.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    SourceNotAllowed,
    TokenMissing,
    TokenInvalid,
    Signature(crate::signature::SignatureRefusal),
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::SourceNotAllowed => "source_not_allowed",
            Refusal::TokenMissing => "token_missing",
            Refusal::TokenInvalid => "token_invalid",
            Refusal::Signature(why) => why.as_str(),
        }
    }
}

impl Guard {
    /// Builds the checks from the settings.
    pub fn new(auth: &AuthSettings, limits: &LimitSettings) -> Guard {
        let (tokens, token_file) = match &auth.tokens {
            None => (None, None),
            Some(TokenSource::Inline(list)) => (Some(TokenSet::new(list)), None),
            Some(TokenSource::File {
                path,
                initial,
                reload_every,
            }) => (
                Some(TokenSet::new(initial)),
                Some((path.clone(), *reload_every)),
            ),
        };
        Guard {
            tokens,
            token_file,
            verifier: auth.signing.as_ref().map(Verifier::new),
            sources: auth.sources.clone(),
            rate: limits.rate.map(RateLimiter::new),
            max_body_bytes: limits.max_body_bytes,
            body_timeout: limits.body_timeout,
        }
    }

    /// With a token file configured, starts re-reading it periodically and on SIGHUP.
    /// A file that cannot be read, holds no token or a line that is not one, leaves the
    /// current tokens in place, so a half-written file never locks the gateway out. Must
    /// be called inside a tokio runtime; SIGHUP is listened for from the moment it
    /// returns.
    pub fn keep_tokens_fresh(&self) {
        let (Some(tokens), Some((path, every))) = (&self.tokens, &self.token_file) else {
            return;
        };
        let hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                warn!("cannot listen for SIGHUP; the token file is re-read on its timer: {e}");
                None
            }
        };
        tokio::spawn(reload_tokens(tokens.clone(), path.clone(), *every, hangup));
    }

    /// Runs every check that comes before the fields are read, reading the body on the
    /// way. Refusals are logged here, once, with path and query redacted.
    pub async fn admit(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<Admission, ApiError> {
        let peer = req.peer_addr().map(|addr| addr.ip());
        let client = self.sources.client_address(peer, req.headers());
        if !self.sources.allows(client) {
            return Err(refuse(req, client, Refusal::SourceNotAllowed));
        }
        self.check_rate(req, client.or(peer))?;
        if let Some(tokens) = &self.tokens {
            check_tokens(tokens, req).map_err(|why| refuse(req, client, why))?;
        }

        let body = request::read_body(payload, self.max_body_bytes, self.body_timeout).await?;

        let Some(verifier) = &self.verifier else {
            return Ok(Admission::Admitted(Admitted {
                body,
                webhook: None,
            }));
        };
        let now = chrono::Utc::now().timestamp();
        let webhook = verifier
            .verify(&signed_headers(req), &body, now)
            .map_err(|why| refuse(req, client, Refusal::Signature(why)))?;
        refuse_unsigned_query(req)?;
        if verifier.already_accepted(&webhook, now) {
            info!(
                "signed request replayed; already accepted source={} webhook_id={}",
                shown(client),
                webhook.id
            );
            return Ok(Admission::Replayed);
        }

        Ok(Admission::Admitted(Admitted {
            body,
            webhook: Some(webhook),
        }))
    }

    /// Records that an admitted request's report was accepted, so a replay of it inside
    /// its signature's window is recognised.
    pub fn accepted(&self, admitted: &Admitted) {
        if let (Some(verifier), Some(webhook)) = (&self.verifier, &admitted.webhook) {
            verifier.remember(webhook, chrono::Utc::now().timestamp());
        }
    }

    fn check_rate(&self, req: &HttpRequest, source: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        let source = source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        rate.check(source, Instant::now()).map_err(|wait| {
            info!(
                "request refused reason=rate_limited source={source} path={}",
                redacted_target(req)
            );
            ApiError::RateLimited {
                retry_after_secs: limits::retry_after_secs(wait),
            }
        })
    }
}

/// The token a request carries as its path's segment after `/dlr/`, percent-decoded.
/// `None` for `/dlr` itself and for a path with more segments, which is no report
/// endpoint.
pub fn path_token(req: &HttpRequest) -> Option<String> {
    let segment = path_token_segment(req)?;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    Some(decoded.into_owned())
}

/// The still-encoded segment after `/dlr/` when the path is `/dlr/{token}`: the route
/// check, which needs no decoding.
pub fn path_token_segment(req: &HttpRequest) -> Option<&str> {
    let segment = req.path().strip_prefix("/dlr/")?;
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

/// Checks every token the request presents; at least one must be presented.
fn check_tokens(tokens: &TokenSet, req: &HttpRequest) -> Result<(), Refusal> {
    let mut presented: Vec<String> = Vec::new();
    if let Some(token) = path_token(req) {
        presented.push(token);
    }
    presented.extend(request::form_values(
        req.query_string().as_bytes(),
        is_token_key,
    ));
    for value in req.headers().get_all(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default().trim();
        let bearer = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        presented.push(bearer.unwrap_or_default());
    }

    if presented.is_empty() {
        return Err(Refusal::TokenMissing);
    }
    let all_valid = presented
        .iter()
        .fold(true, |ok, token| tokens.accepts(token) & ok);
    if !all_valid {
        return Err(Refusal::TokenInvalid);
    }
    Ok(())
}

fn signed_headers(req: &HttpRequest) -> SignedHeaders<'_> {
    let text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    SignedHeaders {
        id: text("webhook-id"),
        timestamp: text("webhook-timestamp"),
        signature: text("webhook-signature"),
    }
}

/// With signatures checked, a field in the query string would escape the signature.
fn refuse_unsigned_query(req: &HttpRequest) -> Result<(), ApiError> {
    let pairs = request::decode_form(req.query_string().as_bytes()).unwrap_or_default();
    if pairs.iter().all(|(key, _)| is_token_key(key)) {
        return Ok(());
    }
    Err(ApiError::Malformed(
        "signed requests must carry their fields in the body; the query string is not signed"
            .into(),
    ))
}

fn refuse(req: &HttpRequest, client: Option<IpAddr>, why: Refusal) -> ApiError {
    info!(
        "request refused reason=unauthorized why={} source={} path={}",
        why.as_str(),
        shown(client),
        redacted_target(req)
    );
    ApiError::Unauthorized
}

fn shown(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The request's path and query as they may be logged: a token in the path becomes
/// `[redacted]`, and every value in the query string becomes `…`, since values carry
/// tokens and phone numbers alike; only the keys are kept, cut after 200 bytes.
pub fn redacted_target(req: &HttpRequest) -> String {
    redact(req.path(), req.query_string())
}

fn redact(path: &str, query: &str) -> String {
    let path = match path.strip_prefix("/dlr/") {
        Some(_) => "/dlr/[redacted]",
        None => path,
    };
    if query.is_empty() {
        return path.to_owned();
    }

    let keys: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}=…"),
            None => pair.to_owned(),
        })
        .collect();
    let mut query = keys.join("&");
    if query.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| query.is_char_boundary(*i))
            .unwrap_or(0);
        query.truncate(cut);
        query.push('…');
    }
    format!("{path}?{query}")
}

async fn reload_tokens(
    tokens: TokenSet,
    path: PathBuf,
    every: Duration,
    mut hangup: Option<Signal>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        let cause = match hangup.as_mut() {
            Some(signal) => tokio::select! {
                _ = ticks.tick() => "timer",
                _ = signal.recv() => "sighup",
            },
            None => {
                ticks.tick().await;
                "timer"
            }
        };
        let file = path.clone();
        let read = tokio::task::spawn_blocking(move || read_token_file(&file)).await;
        match read {
            Ok(Ok(list)) => {
                tokens.replace(&list);
                if cause == "sighup" {
                    info!("token file re-read tokens={}", list.len());
                }
            }
            Ok(Err(why)) => warn!("token file not re-read; keeping the current tokens: {why}"),
            Err(e) => warn!("token file not re-read; keeping the current tokens: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_length_and_alphabet_without_echo() {
        assert!(Secret::parse("short").is_err());
        let bad = Secret::parse("has space in the middle!").unwrap_err();
        assert!(!bad.contains("space in"), "{bad}");
        assert!(Secret::parse("abcdefghijklmnop.-_~0123").is_ok());

        let shown = format!("{:?}", Secret::parse("abcdefghijklmnop").unwrap());

        assert!(!shown.contains("abcdef"), "{shown}");
    }

    #[test]
    fn a_token_set_accepts_exactly_its_tokens() {
        let set = TokenSet::new(&[
            Secret::parse("first-token-000000").unwrap(),
            Secret::parse("second-token-11111").unwrap(),
        ]);

        assert!(set.accepts("first-token-000000"));
        assert!(set.accepts("second-token-11111"));
        assert!(!set.accepts("first-token-00000"));
        assert!(!set.accepts("first-token-0000000"));
        assert!(!set.accepts(""));
        set.replace(&[Secret::parse("third-token-222222").unwrap()]);
        assert!(!set.accepts("first-token-000000"));
        assert!(set.accepts("third-token-222222"));
    }

    #[test]
    fn tokens_and_values_are_redacted_from_paths_and_queries() {
        assert_eq!(redact("/dlr/s3cr3t-s3cr3t-s3cr3t", ""), "/dlr/[redacted]");
        assert_eq!(
            redact("/dlr", "msgid=1&token=s3cr3t&&mno=35799123456&bare"),
            "/dlr?msgid=…&token=…&mno=…&bare"
        );
        assert_eq!(redact("/healthz", ""), "/healthz");
        let long = redact("/dlr", &"a".repeat(500));
        assert!(long.len() < 220, "{long}");
    }

    #[test]
    fn a_token_file_skips_comments_and_names_a_bad_line_only() {
        let path = std::env::temp_dir().join(format!("dlr-tokens-{}", std::process::id()));
        std::fs::write(
            &path,
            "# current\nfirst-token-000000\n\n  second-token-11111 \n",
        )
        .unwrap();
        assert_eq!(read_token_file(&path).unwrap().len(), 2);

        std::fs::write(&path, "first-token-000000\nbad token!\n").unwrap();
        let err = read_token_file(&path).unwrap_err();
        std::fs::write(&path, "# nothing\n").unwrap();
        let empty = read_token_file(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);

        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("bad token"), "{err}");
        assert!(empty.contains("no token"), "{empty}");
    }
}
