//! RPM header blobs as rpmdb stores them (the header structure of the RPM package file format
//! without its 8-byte magic): an index of tagged entries followed by a data store.

use crate::ParseError;

const MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's own limits on a header (lib/header.c: hdr_index_max, hdr_data_max).
const MAX_INDEX_ENTRIES: usize = 0x0000_ffff;
const MAX_DATA_LEN: usize = 0x0fff_ffff;

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_SUMMARY: i32 = 1004;
const TAG_INSTALLTIME: i32 = 1008;
const TAG_SIZE: i32 = 1009;
const TAG_VENDOR: i32 = 1011;
const TAG_LICENSE: i32 = 1014;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;
const TAG_LONGSIZE: i32 = 5009;

const TYPE_INT32: u32 = 4;
const TYPE_INT64: u32 = 5;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of an installed package that inventory needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: Option<String>,
    /// `name-version-release.src.rpm`; absent for `gpg-pubkey` pseudo-packages.
    pub source_rpm: Option<String>,
    pub vendor: Option<String>,
    pub license: Option<String>,
    pub summary: Option<String>,
    pub size: Option<u64>,
    pub install_time: Option<u32>,
}

impl RpmPackage {
    /// `[epoch:]version-release`, as `rpm -q --qf '%{EVR}'` prints it.
    pub fn evr(&self) -> String {
        evr(self.epoch, &self.version, &self.release)
    }
}

pub(crate) fn evr(epoch: Option<u32>, version: &str, release: &str) -> String {
    let mut s = String::new();
    if let Some(e) = epoch {
        s.push_str(&e.to_string());
        s.push(':');
    }
    s.push_str(version);
    if !release.is_empty() {
        s.push('-');
        s.push_str(release);
    }
    s
}

struct Entry {
    tag: i32,
    kind: u32,
    offset: usize,
    count: usize,
}

/// Decodes one header blob. Errors name the index entry (or `header 0` for the preamble).
pub fn parse(blob: &[u8]) -> Result<RpmPackage, ParseError> {
    let blob = if blob.len() >= 8 && blob[..4] == MAGIC {
        &blob[8..]
    } else {
        blob
    };
    let err0 = |m: String| ParseError::at("header", 0, m);
    if blob.len() < 8 {
        return Err(err0(format!(
            "{} bytes; a header has at least 8",
            blob.len()
        )));
    }
    let il = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    let dl = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    if il == 0 || il > MAX_INDEX_ENTRIES {
        return Err(err0(format!(
            "{il} index entries (1..={MAX_INDEX_ENTRIES})"
        )));
    }
    if dl > MAX_DATA_LEN {
        return Err(err0(format!("data store of {dl} bytes is too large")));
    }
    let data_start = 8 + il * 16;
    if blob.len() < data_start + dl {
        return Err(err0(format!(
            "{} bytes; its index and data need {}",
            blob.len(),
            data_start + dl
        )));
    }
    let data = &blob[data_start..data_start + dl];
    let entries: Vec<Entry> = (0..il)
        .map(|i| {
            let e = &blob[8 + i * 16..8 + i * 16 + 16];
            let word = |k: usize| u32::from_be_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]);
            Entry {
                tag: word(0) as i32,
                kind: word(4),
                offset: word(8) as usize,
                count: word(12) as usize,
            }
        })
        .collect();
    let find = |tag: i32| {
        entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.tag == tag)
            .map(|(i, e)| (i + 1, e))
    };
    let string = |tag: i32| -> Result<Option<String>, ParseError> {
        let Some((idx, e)) = find(tag) else {
            return Ok(None);
        };
        if !matches!(e.kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(ParseError::at(
                "index entry",
                idx,
                format!("tag {tag} has type {}, expected a string", e.kind),
            ));
        }
        let rest = data.get(e.offset..).ok_or_else(|| {
            ParseError::at(
                "index entry",
                idx,
                format!("tag {tag} offset past the data"),
            )
        })?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            ParseError::at(
                "index entry",
                idx,
                format!("tag {tag} string not terminated"),
            )
        })?;
        Ok(Some(String::from_utf8_lossy(&rest[..end]).into_owned()))
    };
    let int = |tag: i32| -> Result<Option<u64>, ParseError> {
        let Some((idx, e)) = find(tag) else {
            return Ok(None);
        };
        let width = match e.kind {
            TYPE_INT32 => 4,
            TYPE_INT64 => 8,
            other => {
                return Err(ParseError::at(
                    "index entry",
                    idx,
                    format!("tag {tag} has type {other}, expected an integer"),
                ))
            }
        };
        if e.count == 0 {
            return Ok(None);
        }
        let bytes = e
            .offset
            .checked_add(width)
            .and_then(|end| data.get(e.offset..end))
            .ok_or_else(|| {
                ParseError::at(
                    "index entry",
                    idx,
                    format!("tag {tag} offset past the data"),
                )
            })?;
        Ok(Some(
            bytes.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64),
        ))
    };
    let name = string(TAG_NAME)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ParseError::at("header", 0, "no package name (tag 1000)"))?;
    let version = string(TAG_VERSION)?.unwrap_or_default();
    if version.is_empty() {
        return Err(ParseError::at(
            "header",
            0,
            format!("package {name:?} has no version (tag 1001)"),
        ));
    }
    Ok(RpmPackage {
        epoch: int(TAG_EPOCH)?.map(|e| e as u32),
        release: string(TAG_RELEASE)?.unwrap_or_default(),
        arch: string(TAG_ARCH)?.filter(|s| !s.is_empty()),
        source_rpm: string(TAG_SOURCERPM)?.filter(|s| !s.is_empty() && s != "(none)"),
        vendor: string(TAG_VENDOR)?.filter(|s| !s.is_empty()),
        license: string(TAG_LICENSE)?.filter(|s| !s.is_empty()),
        summary: string(TAG_SUMMARY)?.filter(|s| !s.is_empty()),
        size: int(TAG_LONGSIZE)?.or(int(TAG_SIZE)?),
        install_time: int(TAG_INSTALLTIME)?.map(|t| t as u32),
        name,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header blob from (tag, type, payload) entries.
    pub(crate) fn build(entries: &[(i32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, payload) in entries {
            if *kind == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(payload);
        }
        let mut blob = (entries.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    #[test]
    fn decodes_a_built_header() {
        let blob = build(&[
            (TAG_NAME, TYPE_STRING, s("vim")),
            (TAG_EPOCH, TYPE_INT32, 2u32.to_be_bytes().to_vec()),
            (TAG_VERSION, TYPE_STRING, s("9.0")),
            (TAG_RELEASE, TYPE_STRING, s("1.cm2")),
            (TAG_ARCH, TYPE_STRING, s("x86_64")),
            (TAG_SOURCERPM, TYPE_STRING, s("vim-9.0-1.cm2.src.rpm")),
            (TAG_SUMMARY, TYPE_I18NSTRING, s("Text editor")),
        ]);
        let p = parse(&blob).unwrap();
        assert_eq!(p.name, "vim");
        assert_eq!(p.epoch, Some(2));
        assert_eq!(p.evr(), "2:9.0-1.cm2");
        assert_eq!(p.source_rpm.as_deref(), Some("vim-9.0-1.cm2.src.rpm"));
        assert_eq!(p.summary.as_deref(), Some("Text editor"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        let mut blob = build(&[(TAG_NAME, TYPE_STRING, s("x"))]);
        assert!(parse(&blob).is_err(), "no version");
        blob.truncate(blob.len() - 1);
        assert!(parse(&blob).is_err());
        let blob = build(&[
            (TAG_NAME, TYPE_INT32, 1u32.to_be_bytes().to_vec()),
            (TAG_VERSION, TYPE_STRING, s("1")),
        ]);
        let e = parse(&blob).unwrap_err();
        assert_eq!((e.what, e.line), ("index entry", 1), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
