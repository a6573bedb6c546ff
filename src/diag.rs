//! Messages for a person on stderr (errors, warnings, the run's summary) that never panic.
//!
//! `eprintln!` panics when stderr is closed or full (`twinload load … 2>&1 | head -1`,
//! `2>/dev/full`): the run would end with exit 101 before writing `outputs.json`. A message
//! nobody can read is dropped instead; what the run must keep (the summary file, outputs.json,
//! the dead letters) is written to files, whose errors are reported and change the exit code.
//! Every line passes through [`crate::redact`] first: an error built from a server's answer
//! may carry a token or a SAS signature.

use std::fmt;
use std::io::Write;

/// `eprintln!` that drops the line when stderr cannot take it.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(format_args!($($arg)*))
    };
}

/// One line on stderr (a newline is added); dropped if stderr cannot take it.
pub fn line(args: fmt::Arguments<'_>) {
    let text = args.to_string();
    let text = crate::redact::redact(&text);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

/// Text as it is (it ends its own lines) on stderr; dropped if stderr cannot take it.
pub fn text(text: &str) {
    let _ = std::io::stderr().lock().write_all(crate::redact::redact(text).as_bytes());
}
