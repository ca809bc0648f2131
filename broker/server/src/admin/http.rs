//! The little HTTP/1.1 the admin listener speaks: one `GET` (or `HEAD`) per connection, read
//! with a bounded head and a deadline, answered with `Connection: close`. Scrapers and probes
//! (Prometheus, kubelet, curl) send exactly that; keep-alive would only hold a connection slot
//! between scrapes. The request head is parsed by `httparse` (hyper's parser); nothing else of
//! HTTP is needed.

use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

use crate::tls::ConnectionStream;

/// The largest request head read (request line and headers); a larger one is answered 431.
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Headers parsed at most; more is answered 431.
const HEADERS_MAX: usize = 64;
/// The whole head must arrive within this, or the connection is closed unanswered.
pub const REQUEST_HEAD_TIMEOUT_MS: u64 = 10_000;
/// Writing the answer must make progress within this, or the connection is closed.
pub const RESPONSE_WRITE_TIMEOUT_MS: u64 = 10_000;

/// A request the admin listener can route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequest {
    /// `HEAD` answers the same status and headers without a body.
    pub head_only: bool,
    /// The path without its query string, percent-decoding not applied (topic names in paths
    /// are `[A-Za-z0-9._-]`, which need none).
    pub path: String,
}

/// An answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";

impl AdminResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> AdminResponse {
        let mut body = serde_json::to_vec_pretty(value).expect("a JSON value serializes");
        body.push(b'\n');
        AdminResponse {
            status,
            content_type: JSON,
            body,
        }
    }

    pub fn error(status: u16, message: &str) -> AdminResponse {
        AdminResponse::json(status, &serde_json::json!({ "error": message }))
    }
}

/// What reading a request head gave.
#[derive(Debug)]
pub enum ReadOutcome {
    Request(AdminRequest),
    /// Answer this and close (malformed, too large, wrong method).
    Refuse(AdminResponse),
    /// The peer went away or timed out: close without an answer.
    Gone,
}

/// Reads one request head from `stream` (plaintext or TLS).
pub async fn read_request(stream: &mut ConnectionStream) -> ReadOutcome {
    let deadline = Duration::from_millis(REQUEST_HEAD_TIMEOUT_MS);
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let started = std::time::Instant::now();
    loop {
        let Some(left) = deadline.checked_sub(started.elapsed()) else {
            return ReadOutcome::Gone;
        };
        let read = future::or(async { Some(stream.read(&mut chunk).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        let read = match read {
            None | Some(Ok(0)) | Some(Err(_)) => return ReadOutcome::Gone,
            Some(Ok(read)) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        match parse_head(&buffer) {
            Parsed::Partial if buffer.len() >= REQUEST_HEAD_BYTES_MAX => {
                return ReadOutcome::Refuse(AdminResponse::error(
                    431,
                    "request head larger than 16 KiB",
                ))
            }
            Parsed::Partial => continue,
            Parsed::Done(outcome) => return outcome,
        }
    }
}

enum Parsed {
    Partial,
    Done(ReadOutcome),
}

fn parse_head(buffer: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Done(ReadOutcome::Refuse(
            AdminResponse::error(431, "too many request headers"),
        )),
        Err(error) => Parsed::Done(ReadOutcome::Refuse(AdminResponse::error(
            400,
            &format!("malformed request: {error}"),
        ))),
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or_default();
            let target = request.path.unwrap_or_default();
            let head_only = match method {
                "GET" => false,
                "HEAD" => true,
                _ => {
                    return Parsed::Done(ReadOutcome::Refuse(AdminResponse::error(
                        405,
                        &format!("{method} is not served; the admin API is read-only (GET)"),
                    )))
                }
            };
            let path = target.split('?').next().unwrap_or_default().to_string();
            Parsed::Done(ReadOutcome::Request(AdminRequest { head_only, path }))
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The bytes of an answer (`head_only`: without the body, `Content-Length` kept).
pub fn encode_response(response: &AdminResponse, head_only: bool) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
    )
    .into_bytes();
    if response.status == 405 {
        bytes.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

/// Writes the answer and closes the stream; a failure only means the peer left. The socket's
/// write timeout (`RESPONSE_WRITE_TIMEOUT_MS`, set at accept) bounds each wait.
pub async fn write_response(
    stream: &mut ConnectionStream,
    response: &AdminResponse,
    head_only: bool,
) {
    let bytes = encode_response(response, head_only);
    if stream.write_all(&bytes).await.is_ok() {
        let _ = stream.flush().await;
    }
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(bytes: &[u8]) -> Option<ReadOutcome> {
        match parse_head(bytes) {
            Parsed::Partial => None,
            Parsed::Done(outcome) => Some(outcome),
        }
    }

    #[test]
    fn a_get_is_routed_by_its_path_without_the_query() {
        let Some(ReadOutcome::Request(request)) =
            outcome(b"GET /v1/topics/orders?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        else {
            panic!("a request");
        };
        assert_eq!(request.path, "/v1/topics/orders");
        assert!(!request.head_only);
        let Some(ReadOutcome::Request(request)) = outcome(b"HEAD /metrics HTTP/1.0\r\n\r\n") else {
            panic!("a request");
        };
        assert!(request.head_only);
    }

    #[test]
    fn a_partial_head_waits_and_bad_heads_are_refused_with_their_status() {
        assert!(outcome(b"GET /metrics HTTP/1.1\r\nHost:").is_none());
        let Some(ReadOutcome::Refuse(refused)) = outcome(b"POST /v1/topics HTTP/1.1\r\n\r\n")
        else {
            panic!("refused");
        };
        assert_eq!(refused.status, 405);
        let Some(ReadOutcome::Refuse(refused)) = outcome(b"\x00\x01garbage\r\n\r\n") else {
            panic!("refused");
        };
        assert_eq!(refused.status, 400);
        let many: String = (0..100).map(|index| format!("X-{index}: y\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let Some(ReadOutcome::Refuse(refused)) = outcome(head.as_bytes()) else {
            panic!("refused");
        };
        assert_eq!(refused.status, 431);
    }

    #[test]
    fn a_head_answer_keeps_the_length_and_drops_the_body() {
        let response = AdminResponse {
            status: 200,
            content_type: TEXT,
            body: b"hello".to_vec(),
        };
        let full = String::from_utf8(encode_response(&response, false)).unwrap();
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(full.contains("Content-Length: 5\r\n"));
        assert!(full.ends_with("\r\n\r\nhello"));
        let head = String::from_utf8(encode_response(&response, true)).unwrap();
        assert!(head.ends_with(
            "Content-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
