//! The external tools the daemon runs (`nft`, `ip`), some of them on its event loop: every run
//! is bounded in time, and its output is read while it runs.

use std::{
    io::{self, Read, Write},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// These tools talk to the kernel only: a run that takes longer than this is stuck (a wedged
/// netlink, a lock) and must not hold up the caller.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A finished run.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` with `stdin` written to it (none: stdin is null); `None` when it did not
/// finish within [`TIMEOUT`], and was killed.
pub fn run(mut command: Command, stdin: Option<&[u8]>) -> io::Result<Option<Ran>> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read while it runs: output larger than a pipe would otherwise stall it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text)?;
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(2));
    };
    Ok(Some(Ran {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_larger_than_a_pipe_comes_back_whole_with_its_status() {
        // 256 KiB through `cat`: written while its output is read, or both would stall.
        let text: Vec<u8> = (0..256 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let ran = run(Command::new("cat"), Some(&text))
            .unwrap()
            .expect("finished");
        assert!(ran.status.success());
        assert_eq!(ran.stdout, text);
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo refused >&2; exit 3"]);
        let ran = run(failing, None).unwrap().expect("finished");
        assert_eq!(
            (ran.status.code(), ran.stderr),
            (Some(3), b"refused\n".to_vec())
        );
    }
}
