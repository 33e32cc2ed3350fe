//! Finding and masking resident registration numbers (주민등록번호).
//!
//! A number is six birth-date digits, an optional dash, then seven digits whose
//! first encodes century and sex. To keep 13-digit millisecond timestamps and
//! other ids from tripping the check, the date must be plausible (month 01-12,
//! day 01-31) and the seventh digit 1-8; the whole run must not be part of a
//! longer digit run.

use std::borrow::Cow;

/// Byte range of the first resident number in `text`, if any. Any character
/// but a digit may stand beside it: this is the rule for free text.
pub fn find_resident_number(text: &str) -> Option<(usize, usize)> {
    find(text, u8::is_ascii_digit)
}

/// Like [`find_resident_number`], for opaque ids and keyed hashes, which are
/// hex: a digit run with a hex letter beside it is part of the hash (a
/// 24-digit hex hash holds 13 digits in a row about once in ten thousand), so
/// only a run standing on its own, or beside a non-hex character such as `-`,
/// counts. An integrator who puts the raw number into an id field is still caught.
pub fn find_resident_number_in_id(text: &str) -> Option<(usize, usize)> {
    find(text, u8::is_ascii_hexdigit)
}

fn find(text: &str, joins: fn(&u8) -> bool) -> Option<(usize, usize)> {
    // A number is a 13-digit run, or a 6-digit run, a dash and a 7-digit run.
    // The digit-run length is kept branch-free: hex ids alternate digits and
    // letters unpredictably, and a branch per byte would cost more than the scan.
    let b = text.as_bytes();
    let mut run = 0usize;
    for i in 0..b.len() {
        run = (run + 1) * usize::from(b[i].is_ascii_digit());
        if run != 6 && run != 13 {
            continue;
        }
        let start = i + 1 - run;
        let stop = if run == 13 {
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            i + 1
        } else {
            let back = i + 2;
            let digits = b.get(back..back + 7).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
            if b.get(i + 1) != Some(&b'-') || !digits || b.get(back + 7).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            back + 7
        };
        let free_before = start == 0 || !joins(&b[start - 1]);
        let free_after = !b.get(stop).is_some_and(joins);
        if free_before && free_after && plausible(b, start) {
            return Some((start, stop));
        }
    }
    None
}

/// Birth date and sex digit of a candidate make sense.
fn plausible(b: &[u8], start: usize) -> bool {
    let d = |k: usize| b[start + k] - b'0';
    let sex_at = if b[start + 6] == b'-' { 7 } else { 6 };
    let month = d(2) * 10 + d(3);
    let day = d(4) * 10 + d(5);
    (1..=12).contains(&month) && (1..=31).contains(&day) && (1..=8).contains(&d(sex_at))
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
        // Inside a hex hash, a digit run is part of the hash.
        assert_eq!(find_resident_number_in_id("a6203166123456b"), None);
        assert_eq!(find_resident_number_in_id("6203166123456"), Some((0, 13)));
        assert_eq!(find_resident_number_in_id("doc-620316-6123456"), Some((4, 18)));
        assert_eq!(find_resident_number("a6203166123456b"), Some((1, 14)));
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
