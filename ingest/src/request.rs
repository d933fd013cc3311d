//! Reading a gateway request's fields from its query string and body, whatever the form.

use crate::{auth, error::ApiError};
use actix_web::{http::header, mime, web, HttpMessage, HttpRequest};
use futures_util::{FutureExt, StreamExt};
use shared::Rules;
use std::{panic::AssertUnwindSafe, time::Duration};

/// A request's fields as ordered `(key, value)` pairs, per part.
#[derive(Debug, Default)]
pub struct RequestFields {
    /// Pairs from the URL's query string.
    pub query: Vec<(String, String)>,
    /// Pairs from the body.
    pub body: Vec<(String, String)>,
}

/// The body formats a gateway may use.
enum BodyKind {
    Empty,
    Form,
    Multipart,
    Json,
}

/// Reads the body, refusing one over `max_body` bytes (413) or one that does not arrive
/// within `timeout` (408), so a slow client cannot hold a worker.
pub async fn read_body(
    mut payload: web::Payload,
    max_body: usize,
    timeout: Duration,
) -> Result<web::Bytes, ApiError> {
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BodyUnreadable)?;
            if body.len() + chunk.len() > max_body {
                return Err(ApiError::TooLarge { limit: max_body });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

/// Decodes the query string and the body already read. A `token` key is dropped from
/// both parts, so a secret is never kept as a field; what remains must stay within
/// [`shared::bounds`] and hold no control character.
pub async fn read_fields(
    req: &HttpRequest,
    body: web::Bytes,
    rules: &Rules,
) -> Result<RequestFields, ApiError> {
    let mut query = decode_form(req.query_string().as_bytes()).map_err(ApiError::BadEncoding)?;

    let mut body = match body_kind(req, body.is_empty())? {
        BodyKind::Empty => Vec::new(),
        BodyKind::Form => decode_form(&body).map_err(ApiError::BadEncoding)?,
        BodyKind::Json => decode_json(&body, rules)?,
        BodyKind::Multipart => decode_multipart(req, body).await?,
    };

    query.retain(|(key, _)| !auth::is_token_key(key));
    body.retain(|(key, _)| !auth::is_token_key(key));
    shared::bounds::check_raw_fields(&query, &body).map_err(ApiError::Malformed)?;
    Ok(RequestFields { query, body })
}

fn body_kind(req: &HttpRequest, empty: bool) -> Result<BodyKind, ApiError> {
    if empty {
        return Ok(BodyKind::Empty);
    }
    let Some(content_type) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Form);
    };
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        "multipart/form-data" => Ok(BodyKind::Multipart),
        "application/json" => Ok(BodyKind::Json),
        _ if essence.ends_with("+json") => Ok(BodyKind::Json),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Decodes `application/x-www-form-urlencoded` text strictly: a key or value that is not
/// UTF-8 once percent-decoded is an error, not a silent replacement character.
pub fn decode_form(input: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (key, value) in raw_pairs(input) {
        let key = decode_component(key)?;
        if key.is_empty() {
            continue;
        }
        let value = decode_component(value)
            .map_err(|_| format!("the value of `{}` is not valid UTF-8", printable(&key)))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The decoded values of the form keys that `wanted` picks, in order. Only those values
/// are decoded, and a key needs decoding only if it holds `%` or `+`, so finding one
/// key costs far less than [`decode_form`]. A pair that does not decode is skipped:
/// [`decode_form`] refuses the whole input later.
pub fn form_values(input: &[u8], wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut values = Vec::new();
    for (key, value) in raw_pairs(input) {
        let picked = if key.iter().any(|b| matches!(b, b'%' | b'+')) {
            decode_component(key).is_ok_and(|k| wanted(&k))
        } else {
            std::str::from_utf8(key).is_ok_and(&wanted)
        };
        if let (true, Ok(value)) = (picked, decode_component(value)) {
            values.push(value);
        }
    }
    values
}

/// The still-encoded `(key, value)` pieces of form text; a piece without `=` is a key with
/// an empty value, and empty pieces are skipped.
fn raw_pairs(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split(|b| *b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|b| *b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        })
}

fn decode_component(raw: &[u8]) -> Result<String, String> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| "a key is not valid UTF-8".to_string())
}

fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// A JSON object's members in order, a repeated key kept every time it appears, so a
/// key given twice with different values is a conflict like in a form, not silently
/// the last one.
struct JsonMembers(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = JsonMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of fields")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonMembers, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
            members.push(member);
        }
        Ok(JsonMembers(members))
    }
}

/// Reads a JSON object of scalar values. Strings are taken as they are, numbers and
/// booleans as their JSON text, nulls as absent. A report field holding an array or
/// object is refused; an unknown key holding one is kept as its JSON text.
fn decode_json(body: &[u8], rules: &Rules) -> Result<Vec<(String, String)>, ApiError> {
    let JsonMembers(object) = serde_json::from_slice(body).map_err(|e| {
        let why = if e.is_data() {
            "the JSON body must be an object of fields".to_owned()
        } else {
            format!("the body is not valid JSON: {e}")
        };
        ApiError::BadEncoding(why)
    })?;

    let mut pairs = Vec::with_capacity(object.len());
    for (key, value) in object {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            nested => {
                if let Some(field) = rules.field_for(&key) {
                    return Err(ApiError::invalid_field(
                        field.name(),
                        "must be a string or a number, not an array or object",
                    ));
                }
                nested.to_string()
            }
        };
        pairs.push((key, text));
    }
    Ok(pairs)
}

/// Shortest multipart boundary accepted. RFC 2046 allows a single character, but
/// actix-multipart 0.7 panics on some bodies whose boundary is shorter than four
/// characters, and no common client uses one that short.
const MULTIPART_BOUNDARY_MIN_LEN: usize = 4;

/// Reads `multipart/form-data` parts as text fields.
///
/// The parser is a dependency's; should it panic on some input despite the boundary
/// check, the panic is contained here and the request refused as malformed, so no
/// input can take a worker down.
async fn decode_multipart(
    req: &HttpRequest,
    body: web::Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let boundary_len = req
        .mime_type()
        .ok()
        .flatten()
        .and_then(|mime| mime.get_param(mime::BOUNDARY).map(|b| b.as_str().len()));
    if boundary_len.is_some_and(|len| len < MULTIPART_BOUNDARY_MIN_LEN) {
        return Err(ApiError::BadEncoding(format!(
            "the multipart boundary is shorter than {MULTIPART_BOUNDARY_MIN_LEN} characters"
        )));
    }

    let parsed = AssertUnwindSafe(parse_multipart(req, body))
        .catch_unwind()
        .await;
    parsed.unwrap_or_else(|_| {
        log::warn!("the multipart parser panicked; the request is refused as malformed");
        Err(ApiError::BadEncoding("bad multipart body".into()))
    })
}

async fn parse_multipart(
    req: &HttpRequest,
    body: web::Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let stream =
        futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let mut multipart = actix_multipart::Multipart::new(req.headers(), stream);

    let mut pairs = Vec::new();
    while let Some(part) = multipart.next().await {
        let mut part =
            part.map_err(|e| ApiError::BadEncoding(format!("bad multipart body: {e}")))?;
        let name = part
            .content_disposition()
            .and_then(|d| d.get_name())
            .map(str::to_owned)
            .unwrap_or_default();
        let mut data = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadEncoding(format!("bad multipart body: {e}")))?;
            data.extend_from_slice(&chunk);
        }
        if name.is_empty() {
            continue;
        }
        let value = String::from_utf8(data).map_err(|_| {
            ApiError::BadEncoding(format!("the part `{}` is not UTF-8 text", printable(&name)))
        })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_percent_and_bare_keys() {
        let pairs = decode_form(b"a=1+2&b=%2B357&c&=x&d=%E2%82%AC").unwrap();

        assert_eq!(
            pairs,
            vec![
                ("a".to_string(), "1 2".to_string()),
                ("b".to_string(), "+357".to_string()),
                ("c".to_string(), String::new()),
                ("d".to_string(), "€".to_string()),
            ]
        );
    }

    #[actix_rt::test]
    async fn token_keys_are_dropped_from_both_parts_and_nul_is_refused() {
        let req = actix_web::test::TestRequest::post()
            .uri("/dlr?Token=secret-secret-secret&msgid=1")
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .to_http_request();

        let fields = read_fields(
            &req,
            web::Bytes::from_static(b"token=x&mno=123"),
            &Rules::default(),
        )
        .await
        .unwrap();
        let refused = read_fields(
            &req,
            web::Bytes::from_static(b"note=a%00b"),
            &Rules::default(),
        )
        .await;

        assert_eq!(fields.query, vec![("msgid".to_string(), "1".to_string())]);
        assert_eq!(fields.body, vec![("mno".to_string(), "123".to_string())]);
        assert!(matches!(refused, Err(ApiError::Malformed(_))));
    }

    #[actix_rt::test]
    async fn multipart_bodies_that_crashed_the_parser_are_refused() {
        let short = actix_web::test::TestRequest::post()
            .insert_header(("content-type", "multipart/form-data; boundary=b"))
            .to_http_request();
        let long = actix_web::test::TestRequest::post()
            .insert_header(("content-type", "multipart/form-data; boundary=bbbb"))
            .to_http_request();

        for body in ["\n", "\n--b--b--", "\r\n\r\n\n", "\n-----"] {
            let bytes = web::Bytes::from(body);
            let refused = decode_multipart(&short, bytes.clone()).await;
            let other = decode_multipart(&long, bytes).await;

            assert!(matches!(refused, Err(ApiError::BadEncoding(_))), "{body:?}");
            assert!(other.is_err(), "{body:?}");
        }
    }

    #[test]
    fn json_keys_given_twice_are_all_kept_and_non_objects_refused() {
        let pairs = decode_json(
            br#"{"msgid":"a","n":1,"msgid":"b","x":null}"#,
            &Rules::default(),
        )
        .unwrap();

        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["msgid", "n", "msgid"]);
        assert_eq!(pairs[2].1, "b");
        for body in [&b"[1]"[..], b"\"s\"", b"{\"a\":1", b"{\"a\":\"\xff\"}"] {
            assert!(decode_json(body, &Rules::default()).is_err(), "{body:?}");
        }
    }

    #[test]
    fn form_values_finds_a_key_however_it_is_encoded() {
        let input = b"msgid=1&token=a%2Bb&TOKEN=c+d&%74oken=e&tokenx=f&bad=%FF&token=%FF";

        let values = form_values(input, |k| k.eq_ignore_ascii_case("token"));

        assert_eq!(values, ["a+b", "c d", "e"]);
        let every_key = decode_form(b"msgid=1&token=a%2Bb&%74oken=e").unwrap();
        let by_decode: Vec<String> = every_key
            .into_iter()
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(by_decode, ["a+b", "e"]);
    }

    #[test]
    fn form_decoding_refuses_invalid_utf8() {
        assert!(decode_form(b"msgid=%FF%FE").is_err());
    }
}
