//! Text from outside (commands, file contents) inside poolscope's own messages: control
//! bytes escaped, so a message cannot move the cursor or clear the terminal, and cut to
//! a length a terminal or a dialog can show.

/// `text` with control characters escaped (`\n`, `\u{1b}`) and, past `max_chars`, cut
/// with a note of how much was left out.
pub fn shown(text: &str, max_chars: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(max_chars + 32));
    for (taken, (i, c)) in text.char_indices().enumerate() {
        if taken >= max_chars {
            let rest = text.len() - i;
            let _ = write!(out, "… ({rest} more bytes)");
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_bytes_are_escaped_and_long_text_is_cut() {
        assert_eq!(shown("plain", 100), "plain");
        assert_eq!(shown("a\u{1b}[2Jb\n", 100), "a\\u{1b}[2Jb\\n");
        let long = "x".repeat(10_000_000);
        let cut = shown(&long, 80);
        assert!(cut.starts_with(&"x".repeat(80)), "{cut}");
        assert!(cut.ends_with("(9999920 more bytes)"), "{cut}");
        assert!(cut.len() < 120);
    }
}
