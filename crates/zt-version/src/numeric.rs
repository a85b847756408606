//! Purely numeric versions: CRAN/Bioconductor (`package_version`: integers separated by `.` or
//! `-`) and Hackage (PVP: integers separated by `.`). Both compare as lists of integers, a list
//! that is a prefix of a longer one sorting first (`1.8 < 1.8.0`).

use crate::key::push_number;

pub(crate) fn encode(s: &str, allow_dash: bool, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    for part in bytes.split(|&b| b == b'.' || (allow_dash && b == b'-')) {
        if part.is_empty() {
            return Err("empty component");
        }
        if !part.iter().all(u8::is_ascii_digit) {
            return Err("components must be non-negative integers");
        }
        out.push(1);
        push_number(out, part);
    }
    out.push(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn integer_lists() {
        assert_eq!(Scheme::Cran.compare("0.01.0", "0.1-0").unwrap(), Equal);
        assert_eq!(Scheme::Cran.compare("1.8", "1.8.0").unwrap(), Less);
        assert_eq!(Scheme::Hackage.compare("1.0.0", "1.0").unwrap(), Greater);
        assert!(Scheme::Hackage.parse("1.0-1").is_err());
        assert!(Scheme::Cran.parse("1.a").is_err());
    }
}
