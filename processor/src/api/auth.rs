//! Who may read: bearer tokens from `API_TOKENS`, checked in constant time.
//!
//! The query API and the dashboard's data expose phone numbers, so every `/v1` route
//! takes an [`Authorized`] argument, which is only extracted for a request carrying
//! `Authorization: Bearer <token>` with one of the configured tokens. With no tokens
//! configured every such request is refused with 403 (`reads_disabled`): the API is closed
//! by default, never open.

use super::{error::ApiError, ApiState};
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use std::{fmt, future::Future, pin::Pin};
use subtle::ConstantTimeEq;

/// Shortest token accepted, so a token cannot be guessed by trying.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens allowed to read. Its `Debug` shows how many there are, never what they are.
#[derive(Clone, Default)]
pub struct ApiTokens(Vec<Vec<u8>>);

impl ApiTokens {
    /// Reads a comma-separated list; blanks around each token and empty entries are
    /// ignored. A token shorter than [`MIN_TOKEN_LEN`] or holding a blank is refused; the
    /// problem names the entry by position, never by value.
    pub fn parse(list: &str) -> Result<ApiTokens, String> {
        let mut tokens = Vec::new();
        for (position, entry) in list.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            if entry.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "token {} is shorter than {MIN_TOKEN_LEN} characters",
                    position + 1
                ));
            }
            if !entry.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "token {} may hold only printable ASCII without blanks",
                    position + 1
                ));
            }
            tokens.push(entry.as_bytes().to_vec());
        }
        Ok(ApiTokens(tokens))
    }

    /// Whether no token is configured, so every read is refused.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `candidate` is one of the tokens. Each comparison takes the same time
    /// whatever bytes match, and every token is compared, so the timing tells an attacker
    /// nothing about a token's content; it can tell a token's length, which is public
    /// knowledge given [`MIN_TOKEN_LEN`] and ordinary token generators.
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for token in &self.0 {
            matched |= token.as_slice().ct_eq(candidate);
        }
        matched.into()
    }
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} configured)", self.0.len())
    }
}

/// Proof that the request carried a valid bearer token.
#[derive(Debug)]
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Authorized, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = check(req);
        Box::pin(async move { outcome })
    }
}

fn check(req: &HttpRequest) -> Result<Authorized, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or(ApiError::Internal)?;
    if state.tokens.is_empty() {
        return Err(ApiError::ReadsDisabled);
    }

    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    if state.tokens.accepts(presented.as_bytes()) {
        Ok(Authorized)
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is matched in any
/// case, as RFC 9110 asks.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_a_comma_separated_list() {
        let tokens = ApiTokens::parse(" first-token-0123456 ,, second-token-012345 ").unwrap();

        assert_eq!(tokens.len(), 2);
        assert!(tokens.accepts(b"first-token-0123456"));
        assert!(tokens.accepts(b"second-token-012345"));
        assert!(!tokens.accepts(b"first-token-012345"));
        assert!(!tokens.accepts(b""));
        assert!(ApiTokens::parse("").unwrap().is_empty());
    }

    #[test]
    fn short_or_blank_holding_tokens_are_refused_without_echoing_them() {
        let short = ApiTokens::parse("long-enough-token-1,tiny").unwrap_err();
        let blank = ApiTokens::parse("has a blank inside it!").unwrap_err();

        assert!(
            short.contains("token 2") && !short.contains("tiny"),
            "{short}"
        );
        assert!(blank.contains("token 1"), "{blank}");
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let tokens = ApiTokens::parse("secret-token-value-1").unwrap();

        assert_eq!(format!("{tokens:?}"), "ApiTokens(1 configured)");
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
