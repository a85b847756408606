//! Multi-row write statements with their rows bound as plain parameters.
//!
//! Reads take many values as one JSON parameter expanded by `json_each` (see the module
//! docs), but writes of many rows must not: any SQL function in such a statement (`unhex`,
//! `->>`) tells SQLite the statement may abort halfway, so it copies every page the statement
//! touches into a statement journal before changing it (measured: ~15% of server CPU on
//! first-time inventories). Rows bound as parameters need no function.
//!
//! A statement's text depends on its row count, so counts are padded to a power of two by
//! repeating the last row: a few statement shapes are prepared once and stay cached. Padding is
//! only for statements where a repeated row changes nothing (an `IN` list, an insert with
//! `ON CONFLICT DO NOTHING`, the source rows of an `UPDATE … FROM`); others write one row per
//! statement (a single-row statement needs no statement journal either).

/// Rows one statement carries at most (SQLite allows 32,766 parameters).
pub(crate) const MAX_ROWS: usize = 512;

/// `count` copies of `row`, comma-separated: `values(2, "(?, ?)")` is `(?, ?), (?, ?)`.
///
/// These statements use anonymous `?` parameters only, bound in the order they appear in the
/// text: sqlx looks up the name of every numbered parameter, which costs SQLite a scan of all
/// names each time (quadratic in the row count; measured at 3% of server CPU).
pub(crate) fn values(count: usize, row: &str) -> String {
    let mut out = String::with_capacity(count * (row.len() + 2));
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(row);
    }
    out
}

/// `items` in chunks of at most [`MAX_ROWS`], each padded to a power of two by repeating its
/// last item.
pub(crate) fn padded_chunks<T>(items: &[T]) -> impl Iterator<Item = Vec<&T>> {
    items.chunks(MAX_ROWS).map(|chunk| {
        let mut rows: Vec<&T> = chunk.iter().collect();
        if let Some(last) = chunk.last() {
            rows.resize(chunk.len().next_power_of_two(), last);
        }
        rows
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_row() {
        assert_eq!(values(1, "?"), "?");
        assert_eq!(values(2, "(?, ?)"), "(?, ?), (?, ?)");
        assert_eq!(values(0, "(?)"), "");
    }

    #[test]
    fn pads_to_powers_of_two_with_the_last_row() {
        let items: Vec<u32> = (0..5).collect();
        let chunks: Vec<Vec<&u32>> = padded_chunks(&items).collect();
        assert_eq!(chunks, vec![vec![&0, &1, &2, &3, &4, &4, &4, &4]]);
        let many: Vec<u32> = (0..(MAX_ROWS as u32 + 3)).collect();
        let sizes: Vec<usize> = padded_chunks(&many).map(|c| c.len()).collect();
        assert_eq!(sizes, vec![MAX_ROWS, 4]);
        assert_eq!(padded_chunks::<u32>(&[]).count(), 0);
    }
}
