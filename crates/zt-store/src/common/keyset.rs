//! Keyset paging for the lists that sort several ways (hosts, software, vulnerabilities,
//! findings by anything but severity): a sort is a list of SQL expressions ending in a unique
//! key, all in one direction, so that "after the cursor" is one row-value comparison
//! `(e1, e2, …) > (?, ?, …)` that both SQLite and PostgreSQL answer from an index on those
//! columns, however deep the page.
//!
//! The cursor is the last row's values of those expressions with the sort's tag, as
//! base64url JSON: a cursor of another sort (or direction) is refused as invalid, never
//! misread.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{Database, QueryBuilder};
use uuid::Uuid;
use zt_inventory::SoftwareKey;

use super::reads::{decode_cursor, encode_cursor, invalid_cursor, Cols};
use crate::Result;

/// How one key column travels (and binds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// An integer (`bigint` on PostgreSQL).
    Int,
    /// A float (`double precision`).
    Float,
    Text,
    /// A time (SQLite epoch milliseconds, PostgreSQL `timestamptz`), in the cursor as
    /// microseconds.
    Time,
    Uuid,
    /// A software key (SQLite 16 bytes, PostgreSQL `uuid`).
    Key,
}

/// One value of a sort key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyVal {
    Int(i64),
    Float(f64),
    Text(String),
    Time(DateTime<Utc>),
    Uuid(Uuid),
    Key(SoftwareKey),
}

/// A sort: its expressions (the last ones unique together) and its direction.
#[derive(Debug, Clone)]
pub(crate) struct Keyset {
    /// Names the sort in its cursors.
    pub(crate) tag: &'static str,
    pub(crate) columns: Vec<(&'static str, KeyKind)>,
    pub(crate) desc: bool,
}

/// What a backend adds: how it binds a key value and selects a key column.
pub(crate) trait KeyBinder: Database + Sized {
    fn push_key(qb: &mut QueryBuilder<Self>, value: &KeyVal);
    /// `expr` as a result column of the kind's uniform type.
    fn push_output(qb: &mut QueryBuilder<Self>, expr: &str, kind: KeyKind);
}

impl Keyset {
    pub(crate) fn new(tag: &'static str, columns: &[(&'static str, KeyKind)], desc: bool) -> Self {
        Keyset {
            tag,
            columns: columns.to_vec(),
            desc,
        }
    }

    fn tag_with_direction(&self) -> String {
        format!("{}:{}", self.tag, if self.desc { "desc" } else { "asc" })
    }

    /// The values of a cursor made by [`Keyset::encode`] for this sort.
    pub(crate) fn decode(&self, cursor: &str) -> Result<Vec<KeyVal>> {
        let list: Vec<Value> = decode_cursor(cursor)?;
        let wrong = || invalid_cursor("not a cursor of this list's order");
        let (tag, values) = list.split_first().ok_or_else(wrong)?;
        if tag.as_str() != Some(self.tag_with_direction().as_str())
            || values.len() != self.columns.len()
        {
            return Err(wrong());
        }
        values
            .iter()
            .zip(&self.columns)
            .map(|(v, (_, kind))| {
                Ok(match kind {
                    KeyKind::Int => KeyVal::Int(v.as_i64().ok_or_else(wrong)?),
                    KeyKind::Float => KeyVal::Float(v.as_f64().ok_or_else(wrong)?),
                    KeyKind::Text => KeyVal::Text(v.as_str().ok_or_else(wrong)?.to_string()),
                    KeyKind::Time => KeyVal::Time(
                        DateTime::from_timestamp_micros(v.as_i64().ok_or_else(wrong)?)
                            .ok_or_else(wrong)?,
                    ),
                    KeyKind::Uuid => {
                        let bytes =
                            hex::decode(v.as_str().ok_or_else(wrong)?).map_err(invalid_cursor)?;
                        KeyVal::Uuid(Uuid::from_slice(&bytes).map_err(invalid_cursor)?)
                    }
                    KeyKind::Key => {
                        let bytes =
                            hex::decode(v.as_str().ok_or_else(wrong)?).map_err(invalid_cursor)?;
                        let arr: [u8; 16] = bytes.try_into().map_err(|_| wrong())?;
                        KeyVal::Key(SoftwareKey(arr))
                    }
                })
            })
            .collect()
    }

    pub(crate) fn encode(&self, values: &[KeyVal]) -> String {
        let mut list = vec![json!(self.tag_with_direction())];
        for v in values {
            list.push(match v {
                KeyVal::Int(i) => json!(i),
                KeyVal::Float(f) => json!(f),
                KeyVal::Text(s) => json!(s),
                KeyVal::Time(t) => json!(t.timestamp_micros()),
                KeyVal::Uuid(u) => json!(hex::encode(u.as_bytes())),
                KeyVal::Key(k) => json!(k.to_hex()),
            });
        }
        encode_cursor(&list)
    }

    /// The key of a result row whose key columns start at `first` (see [`Keyset::push_columns`]).
    pub(crate) fn key_of(&self, c: &impl Cols, first: usize) -> Result<Vec<KeyVal>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                let at = first + i;
                Ok(match kind {
                    KeyKind::Int => KeyVal::Int(c.int(at)?),
                    KeyKind::Float => KeyVal::Float(c.opt_f64(at)?.unwrap_or(-1.0)),
                    KeyKind::Text => KeyVal::Text(c.text(at)?),
                    KeyKind::Time => KeyVal::Time(c.time(at)?),
                    KeyKind::Uuid => KeyVal::Uuid(c.uuid(at)?),
                    KeyKind::Key => KeyVal::Key(c.software_key(at)?),
                })
            })
            .collect()
    }

    /// `, e1, e2, …` for the select list (the key columns, last in a row).
    pub(crate) fn push_columns<DB: KeyBinder>(&self, qb: &mut QueryBuilder<DB>) {
        for (expr, kind) in &self.columns {
            qb.push(", ");
            DB::push_output(qb, expr, *kind);
        }
    }

    /// ` AND (e1, e2, …) > (?, ?, …)` (`<` when descending), for the rows after `after`.
    pub(crate) fn push_after<DB: KeyBinder>(&self, qb: &mut QueryBuilder<DB>, after: &[KeyVal]) {
        qb.push(" AND (");
        for (i, (expr, _)) in self.columns.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.push(*expr);
        }
        qb.push(if self.desc { ") < (" } else { ") > (" });
        for (i, v) in after.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            DB::push_key(qb, v);
        }
        qb.push(")");
    }

    /// ` ORDER BY e1 DESC, e2 DESC, …`.
    pub(crate) fn push_order<DB: KeyBinder>(&self, qb: &mut QueryBuilder<DB>) {
        self.push_order_prefixed(qb, "");
    }

    /// The `ORDER BY` with `prefix` before its first term: SQLite's `+` makes the term an
    /// expression no index answers, so the planner picks the index for the WHERE clause and
    /// sorts (a few rows) instead of walking an ordered index past rows the WHERE refuses.
    pub(crate) fn push_order_prefixed<DB: KeyBinder>(
        &self,
        qb: &mut QueryBuilder<DB>,
        prefix: &str,
    ) {
        qb.push(" ORDER BY ");
        for (i, (expr, _)) in self.columns.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            } else {
                qb.push(prefix);
            }
            qb.push(*expr);
            qb.push(if self.desc { " DESC" } else { " ASC" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_orders() {
        let ks = Keyset::new(
            "t",
            &[
                ("a", KeyKind::Int),
                ("b", KeyKind::Float),
                ("c", KeyKind::Text),
                ("d", KeyKind::Time),
                ("e", KeyKind::Uuid),
                ("f", KeyKind::Key),
            ],
            true,
        );
        let values = vec![
            KeyVal::Int(-3),
            KeyVal::Float(0.25),
            KeyVal::Text("x\"y".into()),
            KeyVal::Time(DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap()),
            KeyVal::Uuid(Uuid::from_bytes([7; 16])),
            KeyVal::Key(SoftwareKey([9; 16])),
        ];
        let cursor = ks.encode(&values);
        assert_eq!(ks.decode(&cursor).unwrap(), values);
        let asc = Keyset {
            desc: false,
            ..ks.clone()
        };
        assert!(asc.decode(&cursor).is_err(), "another direction");
        let other = Keyset {
            tag: "u",
            ..ks.clone()
        };
        assert!(other.decode(&cursor).is_err(), "another sort");
        assert!(ks.decode("bm90IGpzb24").is_err());
    }
}
