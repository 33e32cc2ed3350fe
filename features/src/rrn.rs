//! Finding and masking resident registration numbers (주민등록번호).
//!
//! A number is six birth-date digits (YYMMDD), then seven digits whose first
//! encodes century and sex. It counts in any of these shapes:
//!
//! - **digits**: ASCII `0-9` or full-width `０-９` (U+FF10..U+FF19), mixed freely;
//! - **between the 6th and 7th digit**: nothing, or one to three of the common
//!   separators below (so `900101-1234567`, `900101 1234567`, `900101 - 1234567`,
//!   `900101–1234567`, `９００１０１－１２３４５６７` all count);
//! - **anywhere**: free text, ids, attribute keys, and (see
//!   `features/src/event.rs`) JSON numbers, which are checked in their decimal
//!   rendering.
//!
//! The common separators ([`is_separator`]):
//! - hyphens, dashes and minus signs: `-` (U+002D), soft hyphen U+00AD,
//!   U+2010 hyphen, U+2011 non-breaking hyphen, U+2012 figure dash, U+2013 en
//!   dash, U+2014 em dash, U+2015 horizontal bar, U+2212 minus sign, U+FE58
//!   small em dash, U+FE63 small hyphen-minus, U+FF0D full-width hyphen-minus;
//! - spaces: ` ` (U+0020), U+00A0 no-break space, U+2000..U+200A (en quad to
//!   hair space), U+202F narrow no-break space, U+3000 ideographic space, and
//!   the invisible U+200B..U+200D (zero-width space and joiners), U+2060 word
//!   joiner, U+FEFF zero-width no-break space;
//! - full stops: `.` (U+002E) and U+FF0E full-width full stop.
//!
//! Not separators: tab, newline, `/`, `_`, `:` and anything else; a separator
//! anywhere but between the 6th and 7th digit breaks the number.
//!
//! To keep 13-digit millisecond timestamps and other ids from tripping the
//! check, the date must be plausible (month 01-12, a day that month has, 29
//! February allowed) and the seventh digit 1-8; and the run of digits must
//! stand alone: a 13-digit run (or the 7-digit half after a separator) that is
//! part of a longer digit run, ASCII or full-width, never counts.
//!
//! The scan is on the hot path for every text field. Pure-ASCII text (the
//! common case) is first looked over eight bytes at a time for six digits in
//! a row, which every number has; only text that has them takes a byte loop,
//! which looks for separators once it has seen six digits in a row. Text with
//! any non-ASCII byte takes a char loop. None of them allocates.

use std::borrow::Cow;

/// Byte range of the first resident number in `text`, if any. Any character
/// but a digit may stand beside it: this is the rule for free text.
pub fn find_resident_number(text: &str) -> Option<(usize, usize)> {
    find::<false>(text)
}

/// Like [`find_resident_number`], for opaque ids and keyed hashes, which are
/// hex: a digit run with a hex letter beside it is part of the hash (a
/// 24-digit hex hash holds 13 digits in a row about once in ten thousand), so
/// only a run standing on its own, or beside a non-hex character such as `-`,
/// counts. An integrator who puts the raw number into an id field is still caught.
pub fn find_resident_number_in_id(text: &str) -> Option<(usize, usize)> {
    find::<true>(text)
}

/// Most separator characters in a row between the two halves.
const MAX_SEPARATORS: usize = 3;

/// Days in each month (index 1-12); 29 for February. Index 0 and 13+ are not months.
const DAYS_IN_MONTH: [u8; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// True for the characters accepted between the 6th and 7th digit (see the module docs).
pub fn is_separator(c: char) -> bool {
    matches!(
        c,
        '-' | ' '
            | '.'
            | '\u{00A0}'
            | '\u{00AD}'
            | '\u{2000}'..='\u{200D}'
            | '\u{2010}'..='\u{2015}'
            | '\u{202F}'
            | '\u{2060}'
            | '\u{2212}'
            | '\u{3000}'
            | '\u{FE58}'
            | '\u{FE63}'
            | '\u{FEFF}'
            | '\u{FF0D}'
            | '\u{FF0E}'
    )
}

/// The ASCII separators: the only ones the byte loop needs.
fn is_ascii_separator(b: u8) -> bool {
    matches!(b, b'-' | b' ' | b'.')
}

/// The value of an ASCII or full-width digit.
fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '\u{FF10}'..='\u{FF19}' => Some((c as u32 - 0xFF10) as u8),
        _ => None,
    }
}

fn find<const HEX: bool>(text: &str) -> Option<(usize, usize)> {
    if text.is_ascii() {
        if !has_six_digit_run(text.as_bytes()) {
            return None;
        }
        find_ascii::<HEX>(text.as_bytes())
    } else {
        find_chars::<HEX>(text)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// Whether ASCII text holds six digits in a row. Every resident number does
/// (thirteen in a row, or six, separators and seven) and most fields do not
/// (timestamps, agents, most ids), so the byte loop runs only on text that
/// does. Eight bytes at a time, a bit per byte.
fn has_six_digit_run(b: &[u8]) -> bool {
    // The last 64 bytes' digit bits, oldest lowest: a run of six ending in
    // the newest block began at most 13 bytes back, well inside the window.
    let mut window = 0u64;
    let mut push = |block: [u8; 8]| {
        window = (window >> 8) | (digit_bits(u64::from_le_bytes(block)) << 56);
        window & (window >> 1) & (window >> 2) & (window >> 3) & (window >> 4) & (window >> 5) != 0
    };
    let mut blocks = b.chunks_exact(8);
    for block in blocks.by_ref() {
        if push(block.try_into().unwrap_or_default()) {
            return true;
        }
    }
    let rest = blocks.remainder().len();
    if rest == 0 {
        return false;
    }
    // The last eight bytes shifted down past those already pushed, so zeros
    // (not digits) fill the top: one load, not a byte copy and a stalled reload.
    let last = match b.len().checked_sub(8) {
        Some(start) => u64::from_le_bytes(b[start..].try_into().unwrap_or_default()) >> (8 * (8 - rest)),
        None => {
            let mut short = [0u8; 8];
            short[..rest].copy_from_slice(b);
            u64::from_le_bytes(short)
        }
    };
    push(last.to_le_bytes())
}

/// Bit k set when byte k of `w` (little-endian) is an ASCII digit; for ASCII
/// bytes only (below 0x80, so no addition carries into the next byte).
fn digit_bits(w: u64) -> u64 {
    let at_least_0 = w.wrapping_add(0x50 * ONES);
    let at_least_colon = w.wrapping_add(0x46 * ONES);
    let flags = at_least_0 & !at_least_colon & (0x80 * ONES);
    // Gather the eight high bits into the top byte, byte k's at bit 56 + k.
    (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Whether a byte beside a candidate joins it to a longer token.
fn joins_byte<const HEX: bool>(b: u8) -> bool {
    if HEX {
        b.is_ascii_hexdigit()
    } else {
        b.is_ascii_digit()
    }
}

/// Whether a character beside a candidate joins it to a longer token.
fn joins_char<const HEX: bool>(c: char) -> bool {
    digit_value(c).is_some() || (HEX && c.is_ascii_hexdigit())
}

fn find_ascii<const HEX: bool>(b: &[u8]) -> Option<(usize, usize)> {
    // A number is a 13-digit run, or a 6-digit run, one to three separators
    // and a 7-digit run. The digit-run length is kept branch-free: hex ids
    // alternate digits and letters unpredictably, and a branch per byte would
    // cost more than the scan. Separators are only looked for after a 6-digit run.
    let mut run = 0usize;
    for i in 0..b.len() {
        run = (run + 1) * usize::from(b[i].is_ascii_digit());
        if run != 6 && run != 13 {
            continue;
        }
        let start = i + 1 - run;
        let (sex_at, stop) = if run == 13 {
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            (start + 6, i + 1)
        } else {
            let mut back = i + 1;
            while back < b.len() && back - (i + 1) < MAX_SEPARATORS && is_ascii_separator(b[back]) {
                back += 1;
            }
            if back == i + 1 {
                continue;
            }
            let digits = b.get(back..back + 7).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
            if !digits || b.get(back + 7).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            (back, back + 7)
        };
        let free_before = start == 0 || !joins_byte::<HEX>(b[start - 1]);
        let free_after = !b.get(stop).is_some_and(|&c| joins_byte::<HEX>(c));
        if free_before && free_after {
            let d = |k: usize| b[k] - b'0';
            let head = [d(start), d(start + 1), d(start + 2), d(start + 3), d(start + 4), d(start + 5), d(sex_at)];
            if plausible(&head) {
                return Some((start, stop));
            }
        }
    }
    None
}

fn find_chars<const HEX: bool>(text: &str) -> Option<(usize, usize)> {
    // The same rule as `find_ascii`, over chars: runs count ASCII and
    // full-width digits alike; `head` keeps the first seven digit values of
    // the current run.
    let mut chars = text.char_indices();
    let mut run = 0usize;
    let mut start = 0usize;
    let mut head = [0u8; 7];
    let mut last: Option<char> = None;
    let mut before: Option<char> = None;
    while let Some((pos, c)) = chars.next() {
        let Some(v) = digit_value(c) else {
            run = 0;
            last = Some(c);
            continue;
        };
        if run == 0 {
            start = pos;
            before = last;
        }
        if run < head.len() {
            head[run] = v;
        }
        run += 1;
        last = Some(c);
        let end = pos + c.len_utf8();
        let found = match run {
            13 => {
                let after = chars.clone().next().map(|(_, c)| c);
                after.and_then(digit_value).is_none().then_some((end, after))
            }
            6 => second_half(chars.clone(), &mut head[6]),
            _ => None,
        };
        let Some((stop, after)) = found else { continue };
        let free_before = !before.is_some_and(joins_char::<HEX>);
        let free_after = !after.is_some_and(joins_char::<HEX>);
        if free_before && free_after && plausible(&head) {
            return Some((start, stop));
        }
    }
    None
}

/// After a 6-digit run: one to three separators, then exactly seven digits.
/// Returns the byte offset just past them and the character after, and
/// writes the first of the seven into `sex`.
fn second_half(mut chars: std::str::CharIndices<'_>, sex: &mut u8) -> Option<(usize, Option<char>)> {
    let mut separators = 0;
    let mut next = chars.next();
    while let Some((_, c)) = next {
        if separators == MAX_SEPARATORS || !is_separator(c) {
            break;
        }
        separators += 1;
        next = chars.next();
    }
    if separators == 0 {
        return None;
    }
    let mut end = 0;
    for k in 0..7 {
        let (pos, c) = next?;
        let v = digit_value(c)?;
        if k == 0 {
            *sex = v;
        }
        end = pos + c.len_utf8();
        next = chars.next();
    }
    let after = next.map(|(_, c)| c);
    if after.and_then(digit_value).is_some() {
        return None;
    }
    Some((end, after))
}

/// Birth date and sex digit of a candidate make sense: `head` is YYMMDD and
/// the seventh digit.
fn plausible(head: &[u8; 7]) -> bool {
    let month = usize::from(head[2] * 10 + head[3]);
    let day = head[4] * 10 + head[5];
    let days = DAYS_IN_MONTH.get(month).copied().unwrap_or(0);
    day >= 1 && day <= days && (1..=8).contains(&head[6])
}

/// `text` with every resident number replaced by its masked form
/// (`900101-1******`, always ASCII). Borrows when there is nothing to mask.
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

/// The masked form of one matched number (a range returned by one of the
/// finders): birth date, dash, sex digit, six stars, in ASCII whatever the
/// digits and separator were.
pub(crate) fn masked_form(number: &str) -> String {
    let mut s = String::with_capacity(14);
    for (k, v) in number.chars().filter_map(digit_value).take(7).enumerate() {
        if k == 6 {
            s.push('-');
        }
        s.push(char::from(b'0' + v));
    }
    s.push_str("******");
    s
}

/// Writes digit `k` of `digits` ASCII or full-width as `wide[k % wide.len()]`
/// says: the shapes the resident-number tests here and in `event.rs` generate.
#[cfg(test)]
pub(crate) fn render_digits(digits: &str, wide: &[bool]) -> String {
    digits
        .bytes()
        .enumerate()
        .map(|(k, d)| if wide[k % wide.len()] { char::from_u32(0xFF10 + u32::from(d - b'0')).unwrap() } else { char::from(d) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_six_digit_prefilter_at_every_offset_and_length() {
        for pad in 0..20 {
            for run in 1..=14 {
                let text = format!("{}{}x", "a".repeat(pad), "7".repeat(run));
                assert_eq!(has_six_digit_run(text.as_bytes()), run >= 6, "{text}");
                assert_eq!(has_six_digit_run(&text.as_bytes()[..pad + run]), run >= 6, "{text} without its end");
            }
        }
        // Every ASCII byte, at every place in a block, after and before five digits.
        for b in 0u8..0x80 {
            assert_eq!(digit_bits(u64::from_le_bytes([b; 8])), if b.is_ascii_digit() { 0xFF } else { 0 }, "byte {b:#04x}");
            for at in 8..16 {
                let mut after = [b'a'; 24];
                after[at - 5..at].copy_from_slice(b"12345");
                after[at] = b;
                assert_eq!(has_six_digit_run(&after), b.is_ascii_digit(), "byte {b:#04x} at {at}, after the digits");
                let mut before = [b'a'; 24];
                before[at] = b;
                before[at + 1..at + 6].copy_from_slice(b"12345");
                assert_eq!(has_six_digit_run(&before), b.is_ascii_digit(), "byte {b:#04x} at {at}, before the digits");
            }
        }
        assert!(!has_six_digit_run(b"2026-11-04T17:00:01.785Z"));
        assert!(!has_six_digit_run(b"/09:;\x7f 12345"), "bytes beside the digits are not digits");
    }

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

    #[test]
    fn dates_must_exist() {
        assert!(find_resident_number("900229-1234567").is_some());
        assert!(find_resident_number("900230-1234567").is_none());
        assert!(find_resident_number("900431-1234567").is_none());
        assert!(find_resident_number("900430-1234567").is_some());
        assert!(find_resident_number("900131-1234567").is_some());
        assert!(find_resident_number("901301-1234567").is_none());
        assert!(find_resident_number("900100-1234567").is_none());
    }

    #[test]
    fn finds_and_masks_each_separator() {
        for sep in ["-", " ", ".", "–", "—", "−", "－", "‐", "‑", "\u{a0}", "\u{3000}", "\u{200b}", " - ", " – ", "．"] {
            let text = format!("rrn 900101{sep}1234567 end");
            let (start, end) = find_resident_number(&text).unwrap_or_else(|| panic!("missed {sep:?}"));
            assert_eq!(&text[start..end], format!("900101{sep}1234567"), "{sep:?}");
            assert_eq!(mask_resident_numbers(&text), "rrn 900101-1****** end", "{sep:?}");
            assert!(find_resident_number_in_id(&format!("x-900101{sep}1234567")).is_some(), "{sep:?}");
        }
        // Four separators, or ones outside the set, break the number.
        assert_eq!(find_resident_number("900101    1234567"), None);
        for sep in ["/", "_", ":", "\t", "\n", "x"] {
            assert_eq!(find_resident_number(&format!("900101{sep}1234567")), None, "{sep:?}");
        }
    }

    #[test]
    fn finds_and_masks_full_width_digits() {
        assert_eq!(mask_resident_numbers("９００１０１－１２３４５６７"), "900101-1******");
        assert_eq!(mask_resident_numbers("번호 ９００１０１１２３４５６７ 입니다"), "번호 900101-1****** 입니다");
        assert_eq!(mask_resident_numbers("９００1０１ 1２３４５６７"), "900101-1******");
        assert_eq!(mask_resident_numbers("a 900101–2234567 b ０２１２３１４１２３４５６"), "a 900101-2****** b 021231-4******");
        assert_eq!(find_resident_number("９００１０１－１２３４５６７"), Some((0, 3 * 14)));
        // A longer run, ASCII and full-width mixed, is not a number.
        assert_eq!(find_resident_number("９００１０１１２３４５６７8"), None);
        assert_eq!(find_resident_number("1９００１０１－１２３４５６７"), None);
        assert_eq!(find_resident_number("９００１０１－１２３４５６７８"), None);
        // In ids, a hex letter beside the run still joins it to the hash.
        assert_eq!(find_resident_number_in_id("a９００１０１１２３４５６７"), None);
        assert!(find_resident_number_in_id("é９００１０１１２３４５６７").is_some());
        assert_eq!(mask_resident_numbers("한글만"), Cow::Borrowed("한글만"));
    }

    #[test]
    fn hex_ids_and_timestamps_stay_quiet() {
        // 24 hex characters with 13 digits in a row (a plausible date) beside hex letters.
        let id = "ab9001011234567cdef01234";
        assert_eq!(id.len(), 24);
        assert_eq!(find_resident_number_in_id(id), None);
        assert_eq!(find_resident_number_in_id("f900101-1234567e"), None);
        // A 13-digit millisecond timestamp that reads as a date, inside a longer run.
        assert!(find_resident_number("1701011234567").is_some());
        assert_eq!(find_resident_number("17010112345670"), None);
        assert_eq!(find_resident_number("seq 201701011234567 x"), None);
        assert_eq!(find_resident_number("１７０１０１１２３４５６７０"), None);
    }

    fn date() -> impl Strategy<Value = (u8, u8, u8)> {
        (0u8..100, 1u8..=12).prop_flat_map(|(y, m)| (Just(y), Just(m), 1..=DAYS_IN_MONTH[usize::from(m)]))
    }


    proptest! {
        #[test]
        fn any_shape_is_found_and_masked(
            (y, m, d) in date(),
            sex in 1u8..=8,
            rest in 0u32..1_000_000,
            sep in proptest::sample::select(vec!["", "-", " ", ".", "–", "—", "−", "－", "‐", "\u{a0}", "\u{3000}", " - "]),
            wide in proptest::collection::vec(any::<bool>(), 1..14),
            pre in "[a-z가-힣 ]{0,5}",
            post in "[a-z가-힣 ,]{0,5}",
        ) {
            let digits = format!("{y:02}{m:02}{d:02}{sex}{rest:06}");
            let wide_digits = render_digits(&digits, &wide);
            let half = wide_digits.char_indices().nth(6).unwrap().0;
            let shape = format!("{}{sep}{}", &wide_digits[..half], &wide_digits[half..]);
            let text = format!("{pre}{shape}{post}");
            let (s, e) = find_resident_number(&text).expect("found");
            prop_assert_eq!(&text[s..e], shape.as_str());
            let masked = mask_resident_numbers(&text);
            prop_assert_eq!(masked.as_ref(), format!("{pre}{}-{sex}******{post}", &digits[..6]));
            prop_assert!(find_resident_number(&masked).is_none());
        }

        #[test]
        fn the_six_digit_prefilter_sees_every_run_across_blocks(s in "[0-9a/:]{0,90}") {
            let longest = s.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
            prop_assert_eq!(has_six_digit_run(s.as_bytes()), longest >= 6, "{}", s);
        }

        #[test]
        fn the_prefilter_never_hides_a_number(
            pre in "[0-9a-f .-]{0,40}",
            post in "[0-9a-f .-]{0,40}",
            (y, m, d) in date(),
            sex in 1u8..=8,
            rest in 0u32..1_000_000,
            sep in proptest::sample::select(vec!["", "-", " ", ".", " - "]),
        ) {
            // A real number planted at any offset, in text that often has
            // digits beside it (then it is not a number, and both must agree).
            let s = format!("{pre}{y:02}{m:02}{d:02}{sep}{sex}{rest:06}{post}");
            prop_assert_eq!(find::<false>(&s), find_ascii::<false>(s.as_bytes()));
            prop_assert_eq!(find::<true>(&s), find_ascii::<true>(s.as_bytes()));
        }

        #[test]
        fn chars_and_bytes_agree_on_ascii(s in "[0-9a-f .-]{0,40}") {
            prop_assert_eq!(find_ascii::<false>(s.as_bytes()), find_chars::<false>(&s));
            prop_assert_eq!(find_ascii::<true>(s.as_bytes()), find_chars::<true>(&s));
        }

        #[test]
        fn masked_output_never_contains_a_number_in_any_shape(s in "[0-9０-９a-z 가.–－-]{0,60}") {
            let masked = mask_resident_numbers(&s);
            prop_assert_eq!(find_resident_number(&masked), None);
        }

        #[test]
        fn masked_output_never_contains_a_number(s in "[0-9a-z -]{0,60}") {
            let masked = mask_resident_numbers(&s);
            prop_assert_eq!(find_resident_number(&masked), None);
        }

        #[test]
        fn any_valid_number_is_found((_, m, d) in date(), sex in 1u8..=8, rest in 0u32..1_000_000, dash: bool, pre in "[a-z ]{0,5}") {
            let n = format!("{pre}90{m:02}{d:02}{}{sex}{rest:06}", if dash { "-" } else { "" });
            prop_assert!(find_resident_number(&n).is_some());
            prop_assert_eq!(mask_resident_numbers(&n), format!("{pre}90{m:02}{d:02}-{sex}******"));
        }
    }
}
