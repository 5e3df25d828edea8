//! Writing command output to stdout. A reader that stops early (`steer dump | head -1`) closes
//! the pipe: that ends the command quietly with success instead of the panic `print!` gives.

use std::io::{ErrorKind, Write};

/// `eprintln!` that ignores a closed stderr (`2>&-`, a pipe whose reader left) instead of
/// panicking: what it would say has no one to read it, and the exit status still tells.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes `text` to stdout as it is.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        gone(e);
    }
}

/// Writes `text` and a newline to stdout.
pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// stdout failed: a closed pipe ends the command with success (the reader has what it wanted),
/// anything else with failure.
fn gone(e: std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    crate::errln!("steer: cannot write the output: {e}");
    std::process::exit(1);
}
