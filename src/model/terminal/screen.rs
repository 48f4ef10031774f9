//! A terminal task's screen, kept as a terminal of the task's size would show it, for
//! programs that draw on the screen rather than print lines (`top`, `htop`, `less`).

use crate::executor::{TERMINAL_COLS, TERMINAL_ROWS};

/// The screen grid, fed with the task's output in order.
pub struct TermScreen(Box<vt100::Parser>);

impl TermScreen {
    pub fn new() -> Self {
        Self(Box::new(vt100::Parser::new(
            TERMINAL_ROWS,
            TERMINAL_COLS,
            0,
        )))
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.process(bytes);
    }

    pub fn screen(&self) -> &vt100::Screen {
        self.0.screen()
    }
}

impl Default for TermScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for TermScreen {
    /// The parser itself cannot be cloned: a new one is brought to the same state.
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        copy.feed(&self.screen().state_formatted());
        copy
    }
}

impl std::fmt::Debug for TermScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (row, col) = self.screen().cursor_position();
        write!(f, "TermScreen(cursor at {row},{col})")
    }
}

/// Whether output draws on the screen (moves the cursor to a place, clears the screen,
/// or switches to the alternate screen), not just prints lines: only then is a grid kept,
/// so a thousand line-printing terminal tasks cost nothing extra.
pub fn draws_on_screen(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(at) = rest.windows(2).position(|w| w == b"\x1b[") {
        let after = &rest[at + 2..];
        let params = after
            .iter()
            .take_while(|&&b| b.is_ascii_digit() || b == b';' || b == b'?')
            .count();
        let private = after.first() == Some(&b'?');
        match after.get(params) {
            Some(b'H' | b'f' | b'J') if !private => return true,
            Some(b'h') if private => {
                let mode = &after[1..params];
                if mode == b"1049" || mode == b"47" || mode == b"1047" {
                    return true;
                }
            }
            _ => {}
        }
        rest = &after[params.min(after.len())..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_drawing_is_told_from_line_printing() {
        assert!(draws_on_screen(b"\x1b[H\x1b[2Jtop - 10:00"));
        assert!(draws_on_screen(b"x\x1b[?1049hy"));
        assert!(draws_on_screen(b"\x1b[5;10Hcell"));
        assert!(!draws_on_screen(b"\x1b[31mred\x1b[0m plain\r\n"));
        assert!(!draws_on_screen(b"\x1b[?25l progress \x1b[2K"));
        assert!(!draws_on_screen(b"no escapes"));
    }

    #[test]
    fn the_grid_holds_what_a_terminal_shows_and_survives_a_clone() {
        let mut screen = TermScreen::new();
        screen.feed(b"\x1b[H\x1b[2Jfirst\x1b[3;5H\x1b[31mthird\x1b[0m");
        screen.feed(b"\x1b[1;1Hsecond");
        let copy = screen.clone();
        for s in [&screen, &copy] {
            let rows: Vec<String> = s.screen().rows(0, TERMINAL_COLS).take(3).collect();
            assert_eq!(rows, ["second", "", "    third"]);
            assert_eq!(
                s.screen().cell(2, 4).map(vt100::Cell::fgcolor),
                Some(vt100::Color::Idx(1))
            );
        }
    }
}
