//! Buffering bodies for the plugins that asked for them (`body-access` in the contract).
//!
//! Everything else streams. A buffered body is decoded when it is `gzip` or `deflate` (plugins
//! see, and the peer receives, the decoded bytes). A request in another coding is refused
//! with 415; a response in another coding (or an event stream) streams on, not shown to
//! plugins. Limits apply to the decoded size as well, so a small compressed body cannot
//! expand past them.

use std::io::Read;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{self, HeaderValue};
use http_body::Body;
use http_body_util::BodyExt;

use super::error::GatewayError;
use crate::body::{self, ProxyBody};

/// A body read for plugins.
pub enum Buffered {
    /// Decoded (or never encoded): plugins see these bytes, the peer receives them.
    Shown(Bytes),
    /// Complete, but in a coding plugins are not shown: the peer receives it unchanged.
    Opaque(Bytes),
    /// Over the limit: the peer receives it unchanged, streaming, and plugins see nothing.
    Streaming(ProxyBody),
}

/// Reads a client's request body for the plugins, up to `limit` bytes (after decoding).
///
/// Over the limit is 413; a body not complete within `timeout` gets 408; a body in a coding
/// the gateway cannot decode is 415; one that cannot be read or decoded is 400. On success a decoded body's `content-encoding` is removed
/// from `headers`.
pub async fn request<B>(
    headers: &mut HeaderMap,
    incoming: B,
    limit: u64,
    timeout: Duration,
) -> Result<Buffered, GatewayError>
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<body::BoxError>,
{
    if super::declared_length(headers).is_some_and(|len| len > limit) {
        body::linger(incoming);
        return Err(GatewayError::BodyTooLarge);
    }
    let raw = match tokio::time::timeout(timeout, collect(incoming, limit)).await {
        Err(_elapsed) => return Err(GatewayError::BodyTimeout),
        Ok(Err(_read)) => return Err(GatewayError::BadRequestBody),
        Ok(Ok(Collected::Over(_, rest))) => {
            // The client may still be sending: read on briefly so it gets the 413.
            body::linger(rest);
            return Err(GatewayError::BodyTooLarge);
        }
        Ok(Ok(Collected::Complete(raw))) => raw,
    };
    match Coding::of(headers) {
        Coding::Identity => Ok(Buffered::Shown(raw)),
        // A plugin that reads bodies cannot judge one it cannot read: refuse it rather than
        // let a made-up coding smuggle a body past it.
        Coding::Other => Err(GatewayError::UnsupportedEncoding),
        coding => match decode(coding, &raw, limit) {
            Decoded::Bytes(bytes) => {
                headers.remove(header::CONTENT_ENCODING);
                Ok(Buffered::Shown(bytes))
            }
            Decoded::TooLarge => Err(GatewayError::BodyTooLarge),
            Decoded::Invalid => Err(GatewayError::BadRequestBody),
        },
    }
}

/// Reads an upstream's response body for the plugins, up to `limit` bytes (after decoding).
///
/// A body over the limit, in a coding plugins are not shown, or that does not decode is
/// passed on unchanged. A body that breaks off is 502.
pub async fn response(
    headers: &mut HeaderMap,
    incoming: ProxyBody,
    limit: u64,
) -> Result<Buffered, GatewayError> {
    let coding = Coding::of(headers);
    let too_long = super::declared_length(headers).is_some_and(|len| len > limit);
    // Event streams never end: holding them back for a plugin would hold them forever.
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if coding == Coding::Other || too_long || event_stream {
        return Ok(Buffered::Streaming(incoming));
    }
    let raw = match collect(incoming, limit).await {
        Err(_) => return Err(GatewayError::UpstreamUnreachable),
        Ok(Collected::Over(read, rest)) => {
            return Ok(Buffered::Streaming(body::prefixed(read, rest)));
        }
        Ok(Collected::Complete(raw)) => raw,
    };
    if coding == Coding::Identity {
        return Ok(Buffered::Shown(raw));
    }
    match decode(coding, &raw, limit) {
        Decoded::Bytes(bytes) => {
            headers.remove(header::CONTENT_ENCODING);
            Ok(Buffered::Shown(bytes))
        }
        Decoded::TooLarge | Decoded::Invalid => Ok(Buffered::Opaque(raw)),
    }
}

/// Sets `content-length` for a body the gateway sends complete.
pub fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

enum Collected<B> {
    Complete(Bytes),
    /// Over the limit: what was read, and the rest, unread.
    Over(Bytes, B),
}

/// Reads `incoming` to the end, unless it grows past `limit`.
async fn collect<B>(mut incoming: B, limit: u64) -> Result<Collected<B>, B::Error>
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<body::BoxError>,
{
    let mut read = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame?.into_data() else {
            // Trailers of a buffered body are dropped (documented in the contract).
            continue;
        };
        read.extend_from_slice(&data);
        if read.len() as u64 > limit {
            return Ok(Collected::Over(read.freeze(), incoming));
        }
    }
    Ok(Collected::Complete(read.freeze()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Deflate,
    /// `br`, `zstd`, stacked codings, anything else.
    Other,
}

impl Coding {
    fn of(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return match headers.contains_key(header::CONTENT_ENCODING) {
                true => Coding::Other,
                false => Coding::Identity,
            };
        };
        match value
            .to_str()
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Ok("" | "identity") => Coding::Identity,
            Ok("gzip" | "x-gzip") => Coding::Gzip,
            Ok("deflate") => Coding::Deflate,
            _ => Coding::Other,
        }
    }
}

enum Decoded {
    Bytes(Bytes),
    TooLarge,
    Invalid,
}

fn decode(coding: Coding, raw: &[u8], limit: u64) -> Decoded {
    let mut out = Vec::new();
    // One byte more than the limit tells "exactly at the limit" from "over it".
    let result = match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(raw)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out),
        // HTTP's `deflate` is zlib-wrapped; some servers send raw deflate anyway.
        Coding::Deflate => {
            match flate2::read::ZlibDecoder::new(raw)
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
            {
                Ok(n) => Ok(n),
                Err(_) => {
                    out.clear();
                    flate2::read::DeflateDecoder::new(raw)
                        .take(limit.saturating_add(1))
                        .read_to_end(&mut out)
                }
            }
        }
        Coding::Identity | Coding::Other => return Decoded::Bytes(Bytes::copy_from_slice(raw)),
    };
    match result {
        Err(_) => Decoded::Invalid,
        Ok(_) if out.len() as u64 > limit => Decoded::TooLarge,
        Ok(_) => Decoded::Bytes(out.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_decodes_within_the_limit_and_refuses_a_bomb() {
        let small = gzip(b"{\"a\":1}");
        assert!(
            matches!(decode(Coding::Gzip, &small, 100), Decoded::Bytes(b) if &b[..] == b"{\"a\":1}")
        );
        // 1 MiB of zeros compresses to about 1 KiB: the decoded size is what counts.
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 8 << 10);
        assert!(matches!(
            decode(Coding::Gzip, &bomb, 64 << 10),
            Decoded::TooLarge
        ));
        assert!(matches!(
            decode(Coding::Gzip, b"not gzip", 100),
            Decoded::Invalid
        ));
    }

    #[test]
    fn codings_are_recognised_case_insensitively_and_stacks_are_opaque() {
        let mut headers = HeaderMap::new();
        assert_eq!(Coding::of(&headers), Coding::Identity);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(Coding::of(&headers), Coding::Gzip);
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        assert_eq!(Coding::of(&headers), Coding::Other);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(Coding::of(&headers), Coding::Other);
    }

    #[tokio::test]
    async fn an_over_limit_response_streams_on_whole() {
        let chunks: Vec<Result<http_body::Frame<Bytes>, body::BoxError>> = (0..4)
            .map(|i| Ok(http_body::Frame::data(Bytes::from(vec![b'a' + i; 10]))))
            .collect();
        let stream = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let mut headers = HeaderMap::new();
        let buffered = response(&mut headers, body::stream(stream), 15)
            .await
            .unwrap();
        let Buffered::Streaming(rest) = buffered else {
            panic!("expected the body to stream on");
        };
        let all = rest.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 40);
        assert_eq!(&all[..10], &[b'a'; 10]);
        assert_eq!(&all[30..], &[b'd'; 10]);
    }
}
