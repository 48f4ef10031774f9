//! Terminal colour and style in a line of output (ANSI SGR sequences), parsed with `vte`
//! into plain text plus styled spans; every other escape sequence is dropped. Of a line
//! rewritten with carriage returns (progress bars, prompts redrawn) only what is finally
//! on screen is kept.

use std::borrow::Cow;

/// A terminal colour: one of the 256 indexed ones (0-15 the named ones) or true colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermColour {
    Indexed(u8),
    Rgb(u8, u8, u8),
}

/// How a run of text is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // the terminal's own independent attributes
pub struct TermStyle {
    pub fg: Option<TermColour>,
    pub bg: Option<TermColour>,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub inverse: bool,
}

impl TermStyle {
    /// The style after one SGR sequence (`ESC [ … m`), its parameters as given.
    fn apply_sgr(&mut self, params: &[u16]) {
        if params.is_empty() {
            *self = Self::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            match p {
                0 => *self = Self::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                7 => self.inverse = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                30..=37 => self.fg = Some(TermColour::Indexed((p - 30) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(TermColour::Indexed((p - 40) as u8)),
                49 => self.bg = None,
                90..=97 => self.fg = Some(TermColour::Indexed((p - 90 + 8) as u8)),
                100..=107 => self.bg = Some(TermColour::Indexed((p - 100 + 8) as u8)),
                38 | 48 => {
                    let (colour, used) = extended_colour(&params[i + 1..]);
                    if p == 38 {
                        self.fg = colour.or(self.fg);
                    } else {
                        self.bg = colour.or(self.bg);
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;N` (indexed) or `2;R;G;B` (true colour) after a 38 or 48; how many parameters
/// it took.
fn extended_colour(rest: &[u16]) -> (Option<TermColour>, usize) {
    let byte = |i: usize| rest.get(i).map(|&v| v.min(255) as u8);
    match rest.first() {
        Some(5) => (byte(1).map(TermColour::Indexed), 2),
        Some(2) => match (byte(1), byte(2), byte(3)) {
            (Some(r), Some(g), Some(b)) => (Some(TermColour::Rgb(r, g, b)), 4),
            _ => (None, rest.len()),
        },
        _ => (None, rest.len()),
    }
}

/// A line's text with the style of each part: `spans` cover `text` in order, by byte
/// range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StyledLine {
    pub text: String,
    pub spans: Vec<(std::ops::Range<usize>, TermStyle)>,
}

struct LineBuilder {
    line: StyledLine,
    style: TermStyle,
}

impl LineBuilder {
    fn push(&mut self, text: &str) {
        let start = self.line.text.len();
        self.line.text.push_str(text);
        let end = self.line.text.len();
        match self.line.spans.last_mut() {
            Some((range, style)) if *style == self.style && range.end == start => {
                range.end = end;
            }
            _ => self.line.spans.push((start..end, self.style)),
        }
    }
}

impl vte::Perform for LineBuilder {
    fn print(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push(c.encode_utf8(&mut buf));
    }

    fn execute(&mut self, byte: u8) {
        // Of the control characters only TAB is text; the rest move a cursor or ring.
        if byte == b'\t' {
            self.push("\t");
        }
    }

    fn csi_dispatch(
        &mut self,
        params: &vte::Params,
        intermediates: &[u8],
        ignore: bool,
        action: char,
    ) {
        if action != 'm' || ignore || !intermediates.is_empty() {
            return;
        }
        // `38:5:N` (colons) arrives as one parameter with sub-parameters: flattened,
        // it reads as `38;5;N`.
        let flat: Vec<u16> = params.iter().flatten().copied().collect();
        self.style.apply_sgr(&flat);
    }
}

/// The final text of a line: after its last carriage return (a trailing one does not
/// count).
fn last_write(text: &str) -> &str {
    let trimmed = text.trim_end_matches('\r');
    trimmed.rsplit('\r').next().unwrap_or(trimmed)
}

/// A line as a terminal would show it: styled text.
pub fn styled_line(text: &str) -> StyledLine {
    let mut builder = LineBuilder {
        line: StyledLine::default(),
        style: TermStyle::default(),
    };
    let mut parser = vte::Parser::new();
    parser.advance(&mut builder, last_write(text).as_bytes());
    builder.line
}

/// A line as plain text: escape sequences removed, only what is finally on screen.
pub fn plain_line(text: &str) -> Cow<'_, str> {
    if !text.contains('\u{1b}') && !text.contains('\r') && !has_controls(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(styled_line(text).text)
}

fn has_controls(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 && b != b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgr_colours_become_spans_over_plain_text() {
        let line = styled_line("\u{1b}[31mred\u{1b}[0m and \u{1b}[1;32mbold green\u{1b}[m");
        assert_eq!(line.text, "red and bold green");
        assert_eq!(line.spans.len(), 3);
        assert_eq!(line.spans[0].0, 0..3);
        assert_eq!(line.spans[0].1.fg, Some(TermColour::Indexed(1)));
        assert_eq!(line.spans[1].1, TermStyle::default());
        let green = line.spans[2].1;
        assert!(green.bold);
        assert_eq!(green.fg, Some(TermColour::Indexed(2)));
    }

    #[test]
    fn extended_and_bright_colours_parse() {
        let line = styled_line("\u{1b}[38;5;208ma\u{1b}[48;2;1;2;3mb\u{1b}[94mc\u{1b}[39;49md");
        let styles: Vec<TermStyle> = line.spans.iter().map(|(_, s)| *s).collect();
        assert_eq!(styles[0].fg, Some(TermColour::Indexed(208)));
        assert_eq!(styles[1].bg, Some(TermColour::Rgb(1, 2, 3)));
        assert_eq!(styles[2].fg, Some(TermColour::Indexed(12)));
        assert_eq!(styles[3], TermStyle::default());
        assert_eq!(line.text, "abcd");
    }

    #[test]
    fn other_escapes_and_redraws_leave_only_the_final_text() {
        assert_eq!(plain_line("\u{1b}[1;32mok\u{1b}[0m"), "ok");
        assert_eq!(plain_line("10%\r50%\r100%"), "100%");
        assert_eq!(plain_line(">>> 42\r"), ">>> 42");
        assert_eq!(plain_line("\u{1b}[2K\u{1b}[1Gdone\u{7}"), "done");
        assert_eq!(
            plain_line("\u{1b}[1mServer:\u{1b}[0m\t127.0.0.1"),
            "Server:\t127.0.0.1"
        );
        assert_eq!(
            plain_line("example.test\tmail exchanger = 50 mail.example.test.\r"),
            "example.test\tmail exchanger = 50 mail.example.test."
        );
        assert!(matches!(plain_line("plain"), Cow::Borrowed("plain")));
        assert!(
            styled_line("plain text")
                .spans
                .iter()
                .all(|(_, s)| *s == TermStyle::default())
        );
    }
}
