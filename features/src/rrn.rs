//! Finding and masking resident registration numbers (주민등록번호).
//!
//! A number is six birth-date digits, an optional dash, then seven digits whose
//! first encodes century and sex. To keep 13-digit millisecond timestamps and
//! other ids from tripping the check, the date must be plausible (month 01-12,
//! day 01-31) and the seventh digit 1-8; the whole run must not be part of a
//! longer digit run.

use std::borrow::Cow;

/// Byte range of the first resident number in `text`, if any.
pub fn find_resident_number(text: &str) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 13 <= b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        if let Some(end) = match_at(b, i) {
            return Some((i, end));
        }
        i += 1;
    }
    None
}

fn match_at(b: &[u8], start: usize) -> Option<usize> {
    let digits = |from: usize, n: usize| {
        b.get(from..from + n).filter(|s| s.iter().all(u8::is_ascii_digit))
    };
    let front = digits(start, 6)?;
    let mut back_start = start + 6;
    if b.get(back_start) == Some(&b'-') {
        back_start += 1;
    }
    let back = digits(back_start, 7)?;
    let end = back_start + 7;
    if b.get(end).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let month = (front[2] - b'0') * 10 + (front[3] - b'0');
    let day = (front[4] - b'0') * 10 + (front[5] - b'0');
    let sex = back[0] - b'0';
    ((1..=12).contains(&month) && (1..=31).contains(&day) && (1..=8).contains(&sex)).then_some(end)
}

/// `text` with every resident number replaced by its masked form
/// (`900101-1******`). Borrows when there is nothing to mask.
pub fn mask_resident_numbers(text: &str) -> Cow<'_, str> {
    let Some(mut found) = find_resident_number(text) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    loop {
        let (start, end) = found;
        out.push_str(&text[rest..start]);
        out.push_str(&masked_form(&text[start..end]));
        rest = end;
        match find_resident_number(&text[rest..]) {
            Some((s, e)) => found = (rest + s, rest + e),
            None => break,
        }
    }
    out.push_str(&text[rest..]);
    Cow::Owned(out)
}

/// The masked form of one matched number: birth date, dash, sex digit, six stars.
fn masked_form(number: &str) -> String {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    let mut s = String::with_capacity(14);
    s.push_str(std::str::from_utf8(&digits[..6]).expect("ascii digits"));
    s.push('-');
    s.push(digits[6] as char);
    s.push_str("******");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_with_and_without_dash() {
        assert_eq!(mask_resident_numbers("rrn 900101-1234567 x"), "rrn 900101-1****** x");
        assert_eq!(mask_resident_numbers("9001012234567"), "900101-2******");
        assert_eq!(mask_resident_numbers("a 900101-1234567 b 0212314123456"), "a 900101-1****** b 021231-4******");
    }

    #[test]
    fn leaves_timestamps_and_long_runs_alone() {
        // A millisecond epoch: month 32 is not a date.
        assert_eq!(find_resident_number("1732521600000"), None);
        // Fourteen digits are not a resident number.
        assert_eq!(find_resident_number("90010112345678"), None);
        assert_eq!(find_resident_number("x9001011234567"), Some((1, 14)));
        // Sex digit 9/0 is outside 1-8.
        assert_eq!(find_resident_number("900101-9234567"), None);
        assert_eq!(mask_resident_numbers("no number here"), Cow::Borrowed("no number here"));
    }

    proptest! {
        #[test]
        fn masked_output_never_contains_a_number(s in "[0-9a-z -]{0,60}") {
            let masked = mask_resident_numbers(&s);
            prop_assert_eq!(find_resident_number(&masked), None);
        }

        #[test]
        fn any_valid_number_is_found(m in 1u8..=12, d in 1u8..=31, sex in 1u8..=8, rest in 0u32..1_000_000, dash: bool, pre in "[a-z ]{0,5}") {
            let n = format!("{pre}90{m:02}{d:02}{}{sex}{rest:06}", if dash { "-" } else { "" });
            prop_assert!(find_resident_number(&n).is_some());
            prop_assert_eq!(mask_resident_numbers(&n), format!("{pre}90{m:02}{d:02}-{sex}******"));
        }
    }
}
