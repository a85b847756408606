//! Inventory bodies: transport decompression with a size cap, fast parsing with precise errors,
//! and the compact form the queue stores.
//!
//! An inventory arrives gzip-compressed from real agents; the store keeps those bytes as they
//! came (several times smaller than the JSON) and the worker inflates them again. A stored body
//! is gzip when it starts with the gzip magic bytes, JSON otherwise: JSON never starts with
//! 0x1f.

use std::borrow::Cow;
use std::io::Read;

use axum::http::{header, HeaderMap, StatusCode};
use zt_inventory::{InventoryReport, ReportError};

use crate::error::ApiError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// The `Content-Encoding` of a request; 415 for encodings we do not take.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
        Ok(v) if v.is_empty() || v == "identity" => Ok(Encoding::Identity),
        Ok(v) if v == "gzip" || v == "x-gzip" => Ok(Encoding::Gzip),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "Content-Encoding must be gzip or identity",
        )),
    }
}

/// Inflates gzip bytes, refusing more than `limit` bytes of output (a small compressed body
/// can inflate to gigabytes).
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        ApiError::invalid_request("", format!("the request body is not valid gzip: {e}"))
    })?;
    if out.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(out)
}

/// Parses and validates a report. The common case (a valid report) takes the plain serde
/// path; only a failing document is parsed again with path tracking to name the field.
pub fn parse_inventory(json: &[u8]) -> Result<InventoryReport, ReportError> {
    match serde_json::from_slice::<InventoryReport>(json) {
        Ok(report) => {
            zt_inventory::validate_report(&report)?;
            Ok(report)
        }
        Err(_) => zt_inventory::parse_report(json),
    }
}

/// The JSON of a stored body (inflating it when it was stored compressed).
pub fn stored_json(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    if stored.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(stored.len() * 6);
        flate2::read::MultiGzDecoder::new(stored)
            .read_to_end(&mut out)
            .map_err(|e| format!("stored report does not inflate: {e}"))?;
        Ok(Cow::Owned(out))
    } else {
        Ok(Cow::Borrowed(stored))
    }
}

/// The fuzz target's body (`fuzz/fuzz_targets/inventory_body.rs`): whatever the bytes, the
/// request-side decoders return a value or an error, never panic, and a parsed report always
/// passes validation.
pub fn fuzz_inventory_body(data: &[u8]) {
    if let Ok(report) = parse_inventory(data) {
        assert!(zt_inventory::validate_report(&report).is_ok());
    }
    if let Ok(inflated) = gunzip(data, 1 << 20) {
        assert!(inflated.len() <= 1 << 20);
        let _ = parse_inventory(&inflated);
    }
    let _ = stored_json(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    const GOOD: &str = r#"{"report_id":"7d8a6b1e-2f0c-4c1e-9a55-0b7f1d3e2a10","collected_at":"2026-11-26T10:00:00Z",
        "host":{"hostname":"web-1","os":{"id":"debian","version_id":"12"},"arch":"x86_64"},
        "apps":[{"name":"openssl","version":"3.0.11-1~deb12u2","source":"dpkg"}]}"#;

    #[test]
    fn gunzip_caps_the_inflated_size() {
        let bomb = gz(&vec![b'a'; 1 << 20]);
        assert_eq!(
            gunzip(&bomb, 1000).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        let mut broken = gz(GOOD.as_bytes());
        broken.truncate(10);
        assert_eq!(
            gunzip(&broken, 1 << 20).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            gunzip(b"plain", 100).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn parse_agrees_with_the_contract_and_names_fields() {
        let fast = parse_inventory(GOOD.as_bytes()).unwrap();
        assert_eq!(fast, zt_inventory::parse_report(GOOD.as_bytes()).unwrap());
        let bad = GOOD.replace(r#""version":"3.0.11-1~deb12u2""#, r#""version":1"#);
        assert_eq!(
            parse_inventory(bad.as_bytes()).unwrap_err().field,
            "apps[0].version"
        );
        let empty = GOOD.replace(r#""hostname":"web-1""#, r#""hostname":"""#);
        assert_eq!(
            parse_inventory(empty.as_bytes()).unwrap_err().field,
            "host.hostname"
        );
        let trailing = format!("{GOOD} 1");
        assert!(parse_inventory(trailing.as_bytes()).is_err());
        // Garbage never panics.
        for input in [&b""[..], b"{", b"\xff\xfe", b"[1,2", b"null"] {
            assert!(parse_inventory(input).is_err());
        }
    }

    #[test]
    fn stored_bodies_round_trip_either_way() {
        assert_eq!(&*stored_json(GOOD.as_bytes()).unwrap(), GOOD.as_bytes());
        assert_eq!(
            &*stored_json(&gz(GOOD.as_bytes())).unwrap(),
            GOOD.as_bytes()
        );
        assert!(stored_json(&[0x1f, 0x8b, 0, 0]).is_err());
    }
}
