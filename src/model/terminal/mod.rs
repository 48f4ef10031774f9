//! A task's bytes as a terminal would show them: ANSI colour and style, a full-screen
//! program's screen, and outside text made safe inside poolscope's own messages.

pub mod ansi;
pub mod screen;
pub mod text;
