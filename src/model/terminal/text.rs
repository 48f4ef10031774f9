//! Text from outside (commands, file contents) inside poolscope's own messages: control
//! bytes escaped, so a message cannot move the cursor or clear the terminal, and cut to
//! a length a terminal or a dialog can show.

/// `text` with control characters escaped (`\n`, `\u{1b}`), numbers of more than
/// [`LONG_NUMBER`] digits written as `1e300` (written out it is 301 digits) and, past
/// `max_chars`, cut with a note of how much was left out.
pub fn shown(text: &str, max_chars: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(max_chars + 32));
    let mut taken = 0;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if taken >= max_chars {
            let _ = write!(out, "… ({} more bytes)", rest.len());
            return out;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > LONG_NUMBER {
            // As a number is read: 1e30, 1.23e45 (three digits of its precision).
            let lead = &rest[..1];
            let fraction = rest[1..3].trim_end_matches('0');
            let dot = if fraction.is_empty() { "" } else { "." };
            let _ = write!(out, "{lead}{dot}{fraction}e{}", digits - 1);
            rest = &rest[digits..];
            taken += 6;
            continue;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        taken += 1;
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Longest number shown whole.
pub const LONG_NUMBER: usize = 24;

#[cfg(test)]
mod tests {
    use crate::model::shown;

    #[test]
    fn control_bytes_are_escaped_and_long_text_is_cut() {
        assert_eq!(shown("plain", 100), "plain");
        assert_eq!(shown("a\u{1b}[2Jb\n", 100), "a\\u{1b}[2Jb\\n");
        let long = "x".repeat(10_000_000);
        let cut = shown(&long, 80);
        assert!(cut.starts_with(&"x".repeat(80)), "{cut}");
        assert!(cut.ends_with("(9999920 more bytes)"), "{cut}");
        assert!(cut.len() < 120);
        let huge = format!("--timeout: {} seconds", 1e300);
        assert_eq!(shown(&huge, 100), "--timeout: 1e300 seconds");
        assert_eq!(shown(&"1234".repeat(10), 100), "1.23e39");
        assert_eq!(shown("exit 12345", 100), "exit 12345");
    }
}
