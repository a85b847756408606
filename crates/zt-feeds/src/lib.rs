//! Readers for vulnerability feeds (OSV, NVD API 2.0, CISA KEV, EPSS, Alpine/Wolfi/Chainguard
//! secdb) into the advisory model. Pure readers: files, directories, zip archives and gzip in;
//! [`FeedRecord`]s and per-record [`RecordError`]s out. Nothing here writes anywhere.
//!
//! Formats are recognised by content, not by file name:
//! - OSV: one record per file, or a JSON array of records (zip entries of the OSV bulk
//!   download are single records). osv.dev's `all.json`-style index (`[{id, modified}]`) is
//!   recognised and skipped.
//! - NVD: an API 2.0 page (`vulnerabilities[].cve`), `{"cve": {...}}`, a bare `cve` object, or
//!   the retired 1.1 feed (`CVE_Items[]`).
//! - CISA KEV: the JSON catalog or its CSV.
//! - EPSS: `cve,epss,percentile` CSV with an optional `#…score_date:…` comment line.
//! - secdb: Alpine (`distroversion`), Wolfi, Chainguard (see [`secdb`](crate) module docs).
//!
//! Any of these may be gzip-compressed; zip archives are read entry by entry.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use zt_advisory::{Advisory, EpssScore, KevEntry, Severity};

pub mod bundle;
mod epss;
mod kev;
mod nvd;
mod osv;
mod secdb;
mod time;

pub use nvd::published_nvd_scores;

/// Decompressed input larger than this is refused (a gzip/zip bomb guard). The largest real
/// feed, the NVD full dump as one JSON file, is well below it.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// One record read from a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedRecord {
    Advisory(Box<Advisory>),
    Kev(KevEntry),
    Epss(EpssScore),
}

impl FeedRecord {
    /// The record's id (advisory id or CVE).
    pub fn id(&self) -> &str {
        match self {
            FeedRecord::Advisory(a) => &a.id,
            FeedRecord::Kev(k) => &k.cve,
            FeedRecord::Epss(e) => &e.cve,
        }
    }
}

/// A record (or a whole file) that could not be read: where, which record, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The file, with `!entry` for zip entries.
    pub file: String,
    /// The record id when it could be found (`None` when the file as a whole is unreadable).
    pub record_id: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.record_id {
            Some(id) => write!(f, "{}: record {}: {}", self.file, id, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// A record failure before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub record_id: Option<String>,
    pub reason: String,
}

/// What a reader produces, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Record(FeedRecord),
    Error(RecordError),
    /// A file that is deliberately not imported (an index file, a schema), with why.
    SkippedFile {
        file: String,
        reason: String,
    },
}

/// The feed formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    OsvRecord,
    OsvArray,
    OsvIndex,
    NvdPage,
    NvdRecord,
    NvdLegacy,
    KevJson,
    KevCsv,
    EpssCsv,
    SecDb,
    Zip,
    Gzip,
}

/// Everything read from some paths, collected (for callers that do not stream).
#[derive(Debug, Default)]
pub struct ReadResult {
    pub records: Vec<FeedRecord>,
    pub errors: Vec<RecordError>,
    pub skipped_files: Vec<(String, String)>,
}

impl ReadResult {
    fn push(&mut self, item: FeedItem) {
        match item {
            FeedItem::Record(r) => self.records.push(r),
            FeedItem::Error(e) => self.errors.push(e),
            FeedItem::SkippedFile { file, reason } => self.skipped_files.push((file, reason)),
        }
    }
}

/// Errors about the paths themselves (before any feed is read).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Expands `paths`: files are kept as given; directories are walked recursively (sorted, so the
/// order is stable) for `*.json`, `*.csv`, `*.zip` and `*.gz` files.
pub fn list_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| InputError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let io = |source| InputError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_feed_file_name(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn is_feed_file_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    [".json", ".csv", ".zip", ".gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Reads every path (files, directories) and collects the results.
pub fn read_paths(paths: &[PathBuf]) -> Result<ReadResult, InputError> {
    let mut result = ReadResult::default();
    for file in list_inputs(paths)? {
        read_file(&file, &mut |item| result.push(item));
    }
    Ok(result)
}

/// Reads one file (any supported format, compressed or not), streaming items to `on_item`.
/// Never fails as a whole: an unreadable file is reported as a [`FeedItem::Error`].
pub fn read_file(path: &Path, on_item: &mut dyn FnMut(FeedItem)) {
    let name = path.display().to_string();
    read_file_named(path, &name, on_item)
}

/// [`read_file`], naming the file `name` in errors (e.g. the URL it was downloaded from).
/// A zip archive is read from the file entry by entry, never whole.
pub fn read_file_named(path: &Path, name: &str, on_item: &mut dyn FnMut(FeedItem)) {
    let mut magic = [0u8; 4];
    let is_zip = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04";
    if is_zip {
        match std::fs::File::open(path) {
            Ok(f) => read_zip_from(name, std::io::BufReader::new(f), on_item, 0),
            Err(e) => on_item(FeedItem::Error(RecordError {
                file: name.to_string(),
                record_id: None,
                reason: format!("cannot read: {e}"),
            })),
        }
        return;
    }
    // EPSS and KEV files, plain or gzip, are read as streams: the daily EPSS file is tens of
    // MB once decompressed, and no part of an import needs it whole.
    match read_streamed(path, name, on_item) {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            on_item(file_error(name, None, format!("cannot read: {e}")));
            return;
        }
    }
    let name = name.to_string();
    match std::fs::read(path) {
        Ok(bytes) => read_bytes(&name, &bytes, on_item),
        Err(e) => on_item(FeedItem::Error(RecordError {
            file: name,
            record_id: None,
            reason: format!("cannot read: {e}"),
        })),
    }
}

/// Reads an EPSS or KEV file (either maybe gzip-compressed) from disk as a stream; false
/// (nothing read) when the file is something else.
fn read_streamed(
    path: &Path,
    name: &str,
    on_item: &mut dyn FnMut(FeedItem),
) -> std::io::Result<bool> {
    use std::io::BufRead;
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file).take(MAX_DECOMPRESSED_BYTES))
    } else {
        Box::new(file)
    };
    let mut head = Vec::with_capacity(4096);
    (&mut reader).take(4096).read_to_end(&mut head)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let whole =
        std::io::BufReader::with_capacity(64 << 10, std::io::Cursor::new(head).chain(reader));
    if epss::looks_like_epss(&text) {
        epss::parse_epss_reader(whole, |r| on_item(wrap(name, r.map(FeedRecord::Epss))))?;
    } else if kev::looks_like_kev_csv(&text) {
        if let Err(e) = kev::parse_kev_csv(whole, |r| on_item(wrap(name, r.map(FeedRecord::Kev)))) {
            on_item(file_error(name, None, format!("bad KEV CSV: {e}")));
        }
    } else if kev::looks_like_kev_json_head(&text) {
        if let Err(e) =
            kev::parse_kev_json_reader(whole, &mut |r| on_item(wrap(name, r.map(FeedRecord::Kev))))
        {
            on_item(file_error(name, None, e));
        }
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Reads one feed document given as bytes; `name` names it in errors.
pub fn read_bytes(name: &str, bytes: &[u8], on_item: &mut dyn FnMut(FeedItem)) {
    read_bytes_depth(name, bytes, on_item, 0)
}

/// Reads `bytes` as one given format, without content detection (fuzzing, and callers that
/// know what they downloaded). Compressed input is not unpacked here.
pub fn read_bytes_as(format: Format, name: &str, bytes: &[u8], on_item: &mut dyn FnMut(FeedItem)) {
    let json = |on_item: &mut dyn FnMut(FeedItem)| -> Option<Value> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                on_item(file_error(
                    name,
                    sniff_id(bytes),
                    format!("invalid JSON: {e}"),
                ));
                None
            }
        }
    };
    match format {
        Format::OsvRecord => {
            if let Some(v) = json(on_item) {
                on_item(wrap(name, osv::parse_osv_value(v).map(advisory)));
            }
        }
        Format::OsvArray | Format::OsvIndex => match json(on_item) {
            Some(Value::Array(items)) => read_json_array(name, items, on_item),
            Some(_) => on_item(file_error(name, None, "expected a JSON array")),
            None => {}
        },
        Format::NvdRecord => {
            if let Some(v) = json(on_item) {
                on_item(wrap(name, nvd::parse_cve_value(v).map(advisory)));
            }
        }
        Format::NvdLegacy => {
            if let Some(v) = json(on_item) {
                on_item(wrap(name, nvd::parse_legacy_value(v).map(advisory)));
            }
        }
        Format::NvdPage | Format::KevJson | Format::SecDb => {
            if let Some(v) = json(on_item) {
                if v.is_object() {
                    read_json_object(name, v, on_item);
                } else {
                    on_item(file_error(name, None, "expected a JSON object"));
                }
            }
        }
        Format::KevCsv => {
            if let Err(e) =
                kev::parse_kev_csv(bytes, |r| on_item(wrap(name, r.map(FeedRecord::Kev))))
            {
                on_item(file_error(name, None, format!("bad KEV CSV: {e}")));
            }
        }
        Format::EpssCsv => match std::str::from_utf8(bytes) {
            Ok(text) => epss::parse_epss(text, |r| on_item(wrap(name, r.map(FeedRecord::Epss)))),
            Err(e) => on_item(file_error(
                name,
                None,
                format!("EPSS CSV is not UTF-8: {e}"),
            )),
        },
        Format::Zip => read_zip(name, bytes, on_item, 0),
        Format::Gzip => read_bytes(name, bytes, on_item),
    }
}

fn file_error(name: &str, record_id: Option<String>, reason: impl Into<String>) -> FeedItem {
    FeedItem::Error(RecordError {
        file: name.to_string(),
        record_id,
        reason: reason.into(),
    })
}

fn read_bytes_depth(name: &str, bytes: &[u8], on_item: &mut dyn FnMut(FeedItem), depth: u8) {
    if depth > 2 {
        on_item(file_error(name, None, "archive nested too deeply"));
        return;
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let decoder = flate2::read::MultiGzDecoder::new(bytes);
        match decoder
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
        {
            Ok(n) if n as u64 > MAX_DECOMPRESSED_BYTES => {
                on_item(file_error(name, None, "decompressed size over the limit"))
            }
            Ok(_) => read_bytes_depth(name, &out, on_item, depth + 1),
            Err(e) => on_item(file_error(name, None, format!("bad gzip data: {e}"))),
        }
        return;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        read_zip(name, bytes, on_item, depth);
        return;
    }
    let trimmed = trim_ascii_start(bytes);
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        read_json(name, bytes, on_item);
        return;
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    if epss::looks_like_epss(&head) {
        match std::str::from_utf8(bytes) {
            Ok(text) => epss::parse_epss(text, |r| on_item(wrap(name, r.map(FeedRecord::Epss)))),
            Err(e) => on_item(file_error(
                name,
                None,
                format!("EPSS CSV is not UTF-8: {e}"),
            )),
        }
        return;
    }
    if kev::looks_like_kev_csv(&head) {
        if let Err(e) = kev::parse_kev_csv(bytes, |r| on_item(wrap(name, r.map(FeedRecord::Kev)))) {
            on_item(file_error(name, None, format!("bad KEV CSV: {e}")));
        }
        return;
    }
    if trimmed.is_empty() {
        on_item(file_error(name, None, "empty file"));
    } else {
        on_item(file_error(
            name,
            None,
            "unrecognised format (expected OSV, NVD, KEV, EPSS or secdb)",
        ));
    }
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

fn wrap(name: &str, r: Result<FeedRecord, RecordFailure>) -> FeedItem {
    match r {
        Ok(rec) => FeedItem::Record(rec),
        Err(f) => file_error(name, f.record_id, f.reason),
    }
}

fn read_zip(name: &str, bytes: &[u8], on_item: &mut dyn FnMut(FeedItem), depth: u8) {
    read_zip_from(name, std::io::Cursor::new(bytes), on_item, depth)
}

/// A zip archive from any seekable reader: a file is read one entry at a time, so a bulk
/// download (OSV's `all.zip` of an ecosystem is hundreds of MB) is never all in memory.
fn read_zip_from<R: Read + std::io::Seek>(
    name: &str,
    reader: R,
    on_item: &mut dyn FnMut(FeedItem),
    depth: u8,
) {
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(a) => a,
        Err(e) => {
            on_item(file_error(name, None, format!("bad zip archive: {e}")));
            return;
        }
    };
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                on_item(file_error(
                    name,
                    Some(format!("entry #{i}")),
                    format!("bad zip entry: {e}"),
                ));
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let inner = match entry.name() {
            Ok(n) => n.to_string(),
            Err(e) => {
                on_item(file_error(
                    name,
                    Some(format!("entry #{i}")),
                    format!("bad entry name: {e}"),
                ));
                continue;
            }
        };
        let entry_name = format!("{name}!{inner}");
        if !is_feed_file_name(Path::new(&inner)) {
            continue;
        }
        if entry.size() > MAX_DECOMPRESSED_BYTES {
            on_item(file_error(&entry_name, None, "entry over the size limit"));
            continue;
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        match (&mut entry)
            .take(MAX_DECOMPRESSED_BYTES)
            .read_to_end(&mut buf)
        {
            Ok(_) => read_bytes_depth(&entry_name, &buf, on_item, depth + 1),
            Err(e) => on_item(file_error(
                &entry_name,
                None,
                format!("bad zip entry data: {e}"),
            )),
        }
    }
}

/// Finds `"id": "…"` in text that is not valid JSON, to name the record in the error.
fn sniff_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    for key in ["\"id\"", "\"cveID\"", "\"ID\""] {
        if let Some(at) = text.find(key) {
            let rest = text[at + key.len()..].trim_start();
            let rest = rest.strip_prefix(':')?.trim_start();
            let rest = rest.strip_prefix('"')?;
            let end = rest.find('"')?;
            return Some(rest[..end].to_string());
        }
    }
    None
}

fn read_json(name: &str, bytes: &[u8], on_item: &mut dyn FnMut(FeedItem)) {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            on_item(file_error(
                name,
                sniff_id(bytes),
                format!("invalid JSON: {e}"),
            ));
            return;
        }
    };
    match value {
        Value::Array(items) => read_json_array(name, items, on_item),
        Value::Object(_) => read_json_object(name, value, on_item),
        _ => on_item(file_error(
            name,
            None,
            "JSON document is neither an object nor an array",
        )),
    }
}

fn read_json_array(name: &str, items: Vec<Value>, on_item: &mut dyn FnMut(FeedItem)) {
    let is_index = !items.is_empty()
        && items.iter().all(|v| {
            v.as_object().is_some_and(|o| {
                o.contains_key("id") && o.keys().all(|k| k == "id" || k == "modified")
            })
        });
    if is_index {
        on_item(FeedItem::SkippedFile {
            file: name.to_string(),
            reason: "an OSV index (id + modified only), not records".into(),
        });
        return;
    }
    for (i, v) in items.into_iter().enumerate() {
        if nvd::looks_like_nvd_cve(&v) {
            on_item(wrap(name, nvd::parse_cve_value(v).map(advisory)));
        } else if v.is_object() {
            on_item(wrap(
                name,
                osv::parse_osv_value(v)
                    .map_err(|mut f| {
                        f.record_id.get_or_insert_with(|| format!("[{i}]"));
                        f
                    })
                    .map(advisory),
            ));
        } else {
            on_item(file_error(
                name,
                Some(format!("[{i}]")),
                "array element is not an object",
            ));
        }
    }
}

fn advisory(a: Advisory) -> FeedRecord {
    FeedRecord::Advisory(Box::new(a))
}

fn read_json_object(name: &str, mut value: Value, on_item: &mut dyn FnMut(FeedItem)) {
    // NVD API 2.0 page.
    if value.pointer("/vulnerabilities/0/cve").is_some()
        || (value.get("format").and_then(Value::as_str) == Some("NVD_CVE"))
    {
        let items = match value.get_mut("vulnerabilities").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => {
                on_item(file_error(
                    name,
                    None,
                    "NVD page without a vulnerabilities array",
                ));
                return;
            }
        };
        for (i, mut item) in items.into_iter().enumerate() {
            match item.get_mut("cve").map(Value::take) {
                Some(cve) if cve.is_object() => {
                    on_item(wrap(name, nvd::parse_cve_value(cve).map(advisory)))
                }
                _ => on_item(file_error(
                    name,
                    Some(format!("vulnerabilities[{i}]")),
                    "entry without a cve object",
                )),
            }
        }
        return;
    }
    if let Some(items) = value.get_mut("CVE_Items") {
        let Value::Array(items) = items.take() else {
            on_item(file_error(name, None, "CVE_Items is not an array"));
            return;
        };
        for item in items {
            on_item(wrap(name, nvd::parse_legacy_value(item).map(advisory)));
        }
        return;
    }
    if value.get("cve").is_some_and(Value::is_object) && value.get("id").is_none() {
        let cve = value.get_mut("cve").map(Value::take).unwrap_or_default();
        on_item(wrap(name, nvd::parse_cve_value(cve).map(advisory)));
        return;
    }
    if nvd::looks_like_nvd_cve(&value) {
        on_item(wrap(name, nvd::parse_cve_value(value).map(advisory)));
        return;
    }
    if kev::looks_like_kev(&value) {
        let items = match value.get_mut("vulnerabilities").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => {
                on_item(file_error(
                    name,
                    None,
                    "KEV catalog without a vulnerabilities array",
                ));
                return;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            on_item(wrap(
                name,
                kev::parse_kev_value(item)
                    .map_err(|mut f| {
                        f.record_id
                            .get_or_insert_with(|| format!("vulnerabilities[{i}]"));
                        f
                    })
                    .map(FeedRecord::Kev),
            ));
        }
        return;
    }
    if secdb::looks_like_secdb(&value) {
        if let Err(reason) =
            secdb::parse_secdb_value(value, |r| on_item(wrap(name, r.map(advisory))))
        {
            on_item(file_error(name, None, reason));
        }
        return;
    }
    if value
        .get("@context")
        .and_then(Value::as_str)
        .is_some_and(|c| c.contains("openvex"))
    {
        on_item(FeedItem::SkippedFile {
            file: name.to_string(),
            reason: "OpenVEX documents are not a supported feed".into(),
        });
        return;
    }
    if value.get("$schema").is_some() && value.get("id").is_none() {
        on_item(FeedItem::SkippedFile {
            file: name.to_string(),
            reason: "a JSON schema, not a feed".into(),
        });
        return;
    }
    if osv::looks_like_osv(&value) || value.get("id").is_some() {
        on_item(wrap(name, osv::parse_osv_value(value).map(advisory)));
        return;
    }
    if value.get("affected").is_some() || value.get("modified").is_some() {
        // An OSV record that lost its id: report it as such.
        on_item(wrap(name, osv::parse_osv_value(value).map(advisory)));
        return;
    }
    on_item(file_error(
        name,
        None,
        "unrecognised JSON document (expected OSV, NVD, KEV or secdb)",
    ));
}

/// The body of the fuzz targets (also run by plain tests over real and garbage inputs): reads
/// `data` as `format` (for KEV/NVD also through content detection) and drops the results.
#[doc(hidden)]
pub fn fuzz_one(format: Format, data: &[u8]) {
    let mut n = 0usize;
    read_bytes_as(format, "fuzz", data, &mut |_| n += 1);
    if matches!(format, Format::KevJson | Format::KevCsv | Format::NvdPage) {
        read_bytes("fuzz", data, &mut |_| n += 1);
    }
    if format == Format::KevJson {
        read_bytes_as(Format::KevCsv, "fuzz", data, &mut |_| n += 1);
    }
    if format == Format::NvdPage {
        read_bytes_as(Format::NvdRecord, "fuzz", data, &mut |_| n += 1);
        read_bytes_as(Format::NvdLegacy, "fuzz", data, &mut |_| n += 1);
    }
    std::hint::black_box(n);
}

/// The body of the `any` fuzz target: content detection, gzip and zip on arbitrary bytes.
#[doc(hidden)]
pub fn fuzz_any(data: &[u8]) {
    let mut n = 0usize;
    read_bytes("fuzz", data, &mut |_| n += 1);
    std::hint::black_box(n);
}

/// A severity label as feeds write it: CVSS ratings, GHSA "MODERATE", Debian urgencies
/// ("unimportant", "not yet assigned"), Ubuntu priorities ("negligible").
pub fn severity_label(label: &str) -> Severity {
    let l = label.trim().to_ascii_lowercase();
    if let Some(s) = Severity::parse(&l) {
        return s;
    }
    match l.as_str() {
        "unimportant" | "low**" => Severity::Low,
        "medium**" => Severity::Medium,
        "high**" => Severity::High,
        _ => Severity::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, bytes: &[u8]) -> ReadResult {
        let mut r = ReadResult::default();
        read_bytes(name, bytes, &mut |i| r.push(i));
        r
    }

    #[test]
    fn truncated_json_names_file_and_record() {
        let r = read(
            "x.json",
            br#"{"id": "GHSA-1234-5678-9abc", "modified": "2020-01-0"#,
        );
        assert!(r.records.is_empty());
        assert_eq!(r.errors.len(), 1);
        assert_eq!(
            r.errors[0].record_id.as_deref(),
            Some("GHSA-1234-5678-9abc")
        );
        assert!(r.errors[0].reason.contains("invalid JSON"));
    }

    #[test]
    fn bad_gzip_and_bad_zip_are_file_errors() {
        let r = read("x.json.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0].reason.contains("gzip"),
            "{}",
            r.errors[0].reason
        );
        let r = read("x.zip", b"PK\x03\x04garbage");
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].reason.contains("zip"), "{}", r.errors[0].reason);
    }

    #[test]
    fn index_files_are_skipped_not_imported() {
        let r = read(
            "all.json",
            br#"[{"id":"CGA-1","modified":"2026-01-07T00:00:00Z"}]"#,
        );
        assert!(r.records.is_empty() && r.errors.is_empty());
        assert_eq!(r.skipped_files.len(), 1);
    }

    #[test]
    fn unknown_and_empty_inputs_are_reported() {
        assert_eq!(read("a.json", b"{\"hello\": 1}").errors.len(), 1);
        assert_eq!(read("a.csv", b"").errors.len(), 1);
        assert_eq!(read("a.txt", b"just text").errors.len(), 1);
        assert_eq!(read("a.json", b"42").errors.len(), 1);
    }

    #[test]
    fn labels() {
        assert_eq!(severity_label("MODERATE"), Severity::Medium);
        assert_eq!(severity_label("unimportant"), Severity::Low);
        assert_eq!(severity_label("not yet assigned"), Severity::Unknown);
    }
}
