//! A minimal read-only reader of SQLite database files: walks a table's B-tree and decodes its
//! records, reading committed pages from the write-ahead log (`-wal`) when there is one.
//!
//! Written from the SQLite file-format specification (<https://www.sqlite.org/fileformat.html>)
//! instead of linking a SQLite library: only one SQLite C library may link into a binary, the
//! server links sqlx's, and `zerotrace scan` wants these collectors next to it. The rpmdb needs
//! exactly one thing — every row of one table — so about three hundred lines cover it. Pages are
//! read on demand, so a large rpmdb does not have to fit in memory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::ParseError;

const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// B-tree depth beyond which the file is treated as corrupt (real trees are a few levels deep).
const MAX_DEPTH: usize = 64;

/// One column value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// Where the bytes come from: a file, or memory (tests, fuzzing).
trait Source {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }
}

impl Source for std::io::Cursor<Vec<u8>> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }
}

/// An open database file.
pub struct Database {
    db: Box<dyn Source>,
    wal: Option<Box<dyn Source>>,
    /// page number -> offset of that page's newest committed copy in the WAL
    wal_pages: HashMap<u32, u64>,
    page_size: usize,
    usable_size: usize,
    page_count: u32,
}

/// Errors of the reader: I/O, or a malformed file (naming the page).
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Format(#[from] ParseError),
}

fn corrupt(page: u32, message: impl Into<String>) -> SqliteError {
    SqliteError::Format(ParseError::at("page", page as usize, message))
}

impl Database {
    /// Opens `path` (and `path-wal` when present).
    pub fn open(path: &Path) -> Result<Database, SqliteError> {
        let db = File::open(path)?;
        let len = db.metadata()?.len();
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = match File::open(&wal_path) {
            Ok(f) => {
                let wal_len = f.metadata()?.len();
                Some((Box::new(f) as Box<dyn Source>, wal_len))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Database::new(Box::new(db), len, wal)
    }

    /// Reads a database (and optionally its WAL) from memory.
    pub fn from_bytes(db: Vec<u8>, wal: Option<Vec<u8>>) -> Result<Database, SqliteError> {
        let len = db.len() as u64;
        let wal = wal.map(|w| {
            let l = w.len() as u64;
            (Box::new(std::io::Cursor::new(w)) as Box<dyn Source>, l)
        });
        Database::new(Box::new(std::io::Cursor::new(db)), len, wal)
    }

    fn new(
        mut db: Box<dyn Source>,
        len: u64,
        wal: Option<(Box<dyn Source>, u64)>,
    ) -> Result<Database, SqliteError> {
        let mut header = [0u8; 100];
        if len < 100 {
            return Err(corrupt(
                1,
                "file is shorter than the 100-byte SQLite header",
            ));
        }
        db.read_at(0, &mut header)?;
        if &header[..16] != HEADER_MAGIC {
            return Err(corrupt(1, "not a SQLite 3 database (bad magic)"));
        }
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => n as usize,
            n => return Err(corrupt(1, format!("invalid page size {n}"))),
        };
        let reserved = header[20] as usize;
        let usable_size = page_size.saturating_sub(reserved);
        if usable_size < 480 {
            return Err(corrupt(
                1,
                format!("usable page size {usable_size} below 480"),
            ));
        }
        if header[56..60] != [0, 0, 0, 1] && header[56..60] != [0, 0, 0, 0] {
            return Err(corrupt(1, "text encoding is not UTF-8"));
        }
        let mut page_count = (len / page_size as u64).min(u32::MAX as u64) as u32;
        let mut database = Database {
            db,
            wal: None,
            wal_pages: HashMap::new(),
            page_size,
            usable_size,
            page_count,
        };
        if let Some((wal, wal_len)) = wal {
            if let Some(pages_after_commit) = database.index_wal(wal, wal_len)? {
                page_count = page_count.max(pages_after_commit);
                database.page_count = page_count;
            }
        }
        Ok(database)
    }

    /// Indexes the committed frames of a WAL file whose salts and checksums are valid
    /// (fileformat §4: a frame counts only if its checksum chain holds up to a commit frame).
    /// Returns the database size in pages after the last commit, if any.
    fn index_wal(
        &mut self,
        mut wal: Box<dyn Source>,
        wal_len: u64,
    ) -> Result<Option<u32>, SqliteError> {
        if wal_len < 32 {
            return Ok(None);
        }
        let mut header = [0u8; 32];
        wal.read_at(0, &mut header)?;
        let magic = be32(&header[0..4]);
        let big_endian = match magic {
            0x377f_0682 => false,
            0x377f_0683 => true,
            _ => return Ok(None),
        };
        let wal_page_size = be32(&header[8..12]) as usize;
        if wal_page_size != self.page_size {
            return Ok(None);
        }
        let salt = (be32(&header[16..20]), be32(&header[20..24]));
        let mut sum = wal_checksum(big_endian, &header[..24], (0, 0));
        if sum != (be32(&header[24..28]), be32(&header[28..32])) {
            return Ok(None);
        }
        let frame_len = 24 + self.page_size as u64;
        let mut pending: Vec<(u32, u64)> = Vec::new();
        let mut db_size = None;
        let mut offset = 32u64;
        let mut frame = vec![0u8; frame_len as usize];
        while offset + frame_len <= wal_len {
            wal.read_at(offset, &mut frame)?;
            let page = be32(&frame[0..4]);
            let commit_size = be32(&frame[4..8]);
            if (be32(&frame[8..12]), be32(&frame[12..16])) != salt {
                break;
            }
            sum = wal_checksum(big_endian, &frame[..8], sum);
            sum = wal_checksum(big_endian, &frame[24..], sum);
            if sum != (be32(&frame[16..20]), be32(&frame[20..24])) {
                break;
            }
            pending.push((page, offset + 24));
            if commit_size != 0 {
                for (p, off) in pending.drain(..) {
                    self.wal_pages.insert(p, off);
                }
                db_size = Some(commit_size);
            }
            offset += frame_len;
        }
        self.wal = Some(wal);
        Ok(db_size)
    }

    fn read_page(&mut self, page: u32) -> Result<Vec<u8>, SqliteError> {
        if page == 0 || page > self.page_count {
            return Err(corrupt(
                page,
                format!("page number out of range (1..={})", self.page_count),
            ));
        }
        let mut buf = vec![0u8; self.page_size];
        match (self.wal_pages.get(&page), self.wal.as_mut()) {
            (Some(&off), Some(wal)) => wal.read_at(off, &mut buf)?,
            _ => self
                .db
                .read_at((page as u64 - 1) * self.page_size as u64, &mut buf)?,
        }
        Ok(buf)
    }

    /// The root page of table `name`, from the schema table on page 1.
    pub fn table_root(&mut self, name: &str) -> Result<Option<u32>, SqliteError> {
        let mut root = None;
        self.for_each_row(1, &mut |_, record| {
            let is_table = matches!(record.first(), Some(Value::Text(t)) if t == b"table");
            let named = matches!(record.get(1), Some(Value::Text(t)) if t.eq_ignore_ascii_case(name.as_bytes()));
            if is_table && named {
                if let Some(Value::Integer(page)) = record.get(3) {
                    root = u32::try_from(*page).ok();
                }
            }
            Ok(())
        })?;
        Ok(root)
    }

    /// Calls `f(rowid, columns)` for every row of the table B-tree rooted at `root`, in rowid
    /// order.
    pub fn for_each_row(
        &mut self,
        root: u32,
        f: &mut dyn FnMut(i64, Vec<Value>) -> Result<(), SqliteError>,
    ) -> Result<(), SqliteError> {
        let mut visited = HashSet::new();
        self.walk(root, 0, &mut visited, f)
    }

    fn walk(
        &mut self,
        page_no: u32,
        depth: usize,
        visited: &mut HashSet<u32>,
        f: &mut dyn FnMut(i64, Vec<Value>) -> Result<(), SqliteError>,
    ) -> Result<(), SqliteError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(page_no, "B-tree deeper than any real database"));
        }
        if !visited.insert(page_no) {
            return Err(corrupt(page_no, "B-tree page referenced twice (cycle)"));
        }
        let page = self.read_page(page_no)?;
        let base = if page_no == 1 { 100 } else { 0 };
        let kind = *page
            .get(base)
            .ok_or_else(|| corrupt(page_no, "page too short"))?;
        let header_len = match kind {
            0x0d => 8,
            0x05 => 12,
            other => {
                return Err(corrupt(
                    page_no,
                    format!("expected a table B-tree page, found type {other:#04x}"),
                ))
            }
        };
        if page.len() < base + header_len {
            return Err(corrupt(page_no, "page too short for its header"));
        }
        let cells = u16::from_be_bytes([page[base + 3], page[base + 4]]) as usize;
        let pointers = base + header_len;
        if pointers + 2 * cells > self.usable_size {
            return Err(corrupt(
                page_no,
                format!("{cells} cells do not fit the page"),
            ));
        }
        for i in 0..cells {
            let at = pointers + 2 * i;
            let cell = u16::from_be_bytes([page[at], page[at + 1]]) as usize;
            if cell >= self.usable_size {
                return Err(corrupt(
                    page_no,
                    format!("cell {i} points outside the page"),
                ));
            }
            if kind == 0x05 {
                let child = be32(
                    page.get(cell..cell + 4)
                        .ok_or_else(|| corrupt(page_no, format!("cell {i} truncated")))?,
                );
                self.walk(child, depth + 1, visited, f)?;
            } else {
                let (rowid, record) = self.leaf_cell(&page, page_no, cell)?;
                f(rowid, record)?;
            }
        }
        if kind == 0x05 {
            let right = be32(&page[base + 8..base + 12]);
            self.walk(right, depth + 1, visited, f)?;
        }
        Ok(())
    }

    fn leaf_cell(
        &mut self,
        page: &[u8],
        page_no: u32,
        cell: usize,
    ) -> Result<(i64, Vec<Value>), SqliteError> {
        let bad = |m: &str| corrupt(page_no, format!("cell at offset {cell}: {m}"));
        let (payload_len, n1) = varint(&page[cell..]).ok_or_else(|| bad("bad payload length"))?;
        let (rowid, n2) = varint(&page[cell + n1..]).ok_or_else(|| bad("bad rowid"))?;
        let start = cell + n1 + n2;
        let payload_len = usize::try_from(payload_len).map_err(|_| bad("payload too large"))?;
        // fileformat §1.6: how much of a payload stays on a table leaf page.
        let u = self.usable_size;
        let max_local = u - 35;
        let local = if payload_len <= max_local {
            payload_len
        } else {
            let min_local = (u - 12) * 32 / 255 - 23;
            let k = min_local + (payload_len - min_local) % (u - 4);
            if k <= max_local {
                k
            } else {
                min_local
            }
        };
        let local_bytes = page
            .get(start..start + local)
            .ok_or_else(|| bad("payload runs past the page"))?;
        let mut payload = Vec::with_capacity(payload_len.min(64 << 20));
        payload.extend_from_slice(local_bytes);
        if local < payload_len {
            let mut next = be32(
                page.get(start + local..start + local + 4)
                    .ok_or_else(|| bad("overflow pointer runs past the page"))?,
            );
            let mut hops = 0u32;
            while payload.len() < payload_len {
                hops += 1;
                if next == 0 || hops > self.page_count {
                    return Err(bad("overflow chain ends early or loops"));
                }
                let overflow = self.read_page(next)?;
                let take = (payload_len - payload.len()).min(u - 4);
                payload.extend_from_slice(&overflow[4..4 + take]);
                next = be32(&overflow[0..4]);
            }
        }
        let record = decode_record(&payload).ok_or_else(|| bad("malformed record"))?;
        Ok((rowid as i64, record))
    }
}

/// Decodes a record (fileformat §2.1): a header of serial types, then the values.
pub fn decode_record(payload: &[u8]) -> Option<Vec<Value>> {
    let (header_len, mut pos) = varint(payload)?;
    let header_len = usize::try_from(header_len).ok()?;
    if header_len > payload.len() || header_len < pos {
        return None;
    }
    let mut body = header_len;
    let mut values = Vec::new();
    while pos < header_len {
        let (serial, n) = varint(&payload[pos..header_len])?;
        pos += n;
        let (value, size) = match serial {
            0 => (Value::Null, 0),
            1..=6 => {
                let size = [0, 1, 2, 3, 4, 6, 8][serial as usize];
                let bytes = payload.get(body..body + size)?;
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    v = (v << 8) | *b as i64;
                }
                (Value::Integer(v), size)
            }
            7 => {
                let bytes = payload.get(body..body + 8)?;
                let bits = u64::from_be_bytes(bytes.try_into().ok()?);
                (Value::Real(f64::from_bits(bits)), 8)
            }
            8 => (Value::Integer(0), 0),
            9 => (Value::Integer(1), 0),
            10 | 11 => return None,
            n => {
                let size = usize::try_from((n - 12) / 2).ok()?;
                let bytes = payload.get(body..body.checked_add(size)?)?.to_vec();
                if n % 2 == 0 {
                    (Value::Blob(bytes), size)
                } else {
                    (Value::Text(bytes), size)
                }
            }
        };
        body += size;
        values.push(value);
    }
    Some(values)
}

/// A SQLite varint (1–9 bytes, big-endian, 7 bits per byte, all 8 bits in the ninth).
pub fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some(((v << 8) | b as u64, 9));
        }
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The WAL checksum (fileformat §4.3) over `data` (a multiple of 8 bytes), continuing `s`.
fn wal_checksum(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for chunk in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        s0 = s0.wrapping_add(word(&chunk[0..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&chunk[4..8])).wrapping_add(s0);
    }
    (s0, s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
        assert_eq!(varint(&[]), None);
    }

    #[test]
    fn records() {
        // header len 4: NULL, int8, text len 2
        let rec = [4u8, 0, 1, 17, 0xfe, b'h', b'i'];
        assert_eq!(
            decode_record(&rec),
            Some(vec![
                Value::Null,
                Value::Integer(-2),
                Value::Text(b"hi".to_vec())
            ])
        );
        assert_eq!(decode_record(&[4u8, 0, 1, 17, 0xfe, b'h']), None);
        assert_eq!(decode_record(&[]), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Database::from_bytes(vec![], None).is_err());
        assert!(Database::from_bytes(vec![0; 4096], None).is_err());
        let mut header = HEADER_MAGIC.to_vec();
        header.extend_from_slice(&[0x10, 0x00]);
        header.resize(4096, 0);
        // page 1 with page type 0: not a table page
        let mut db = Database::from_bytes(header, None).unwrap();
        assert!(db.table_root("Packages").is_err());
    }
}
