//! Writing command output to stdout. A reader that stops early (`steer dump | head -1`) closes
//! the pipe: that ends the command quietly with success instead of the panic `print!` gives.

use std::io::{ErrorKind, Write};

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
    eprintln!("steer: cannot write the output: {e}");
    std::process::exit(1);
}
