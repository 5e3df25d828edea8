//! Running the programs mastership calls for (a WAN's `up_command` / `down_command`,
//! conntrackd), each bounded by a timeout and judged by its exit status. They run off the
//! event loop (a blocking thread), and one that outlives its timeout is killed.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `program` with `args` (and `env`) for at most `timeout`. `Ok` is how long it took
/// when it exited with status 0; `Err` says what went wrong, with what it wrote to stderr
/// (see [`said`]).
pub async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Duration, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    tokio::task::spawn_blocking(move || wait(cmd, &shown, timeout))
        .await
        .unwrap_or_else(|e| Err(format!("running the command failed: {e}")))
}

/// Runs `line` with `sh -c`.
pub async fn shell(
    line: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Duration, String> {
    run("sh", &["-c", line], env, timeout).await
}

fn wait(mut cmd: Command, shown: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let took = started.elapsed();
                if status.success() {
                    return Ok(took);
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("`{shown}` failed ({status}){}", said(&err)));
            }
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish within {} ms and was killed",
                    timeout.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("`{shown}`: {e}")),
        }
    }
}

/// The most a failure quotes of a program's stderr.
const SAID_MAX: usize = 600;

/// What a failed program wrote to stderr, as one line (": ..." or nothing): the lines that
/// name an error first (conntrackd warns about an interface before it says it cannot connect),
/// then the rest, joined with " | " and bounded to [`SAID_MAX`] characters.
fn said(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_error = |l: &&str| {
        let l = l.to_ascii_lowercase();
        l.contains("error") || l.contains("fatal")
    };
    let ordered: Vec<&str> = lines
        .iter()
        .filter(|l| is_error(l))
        .chain(lines.iter().filter(|l| !is_error(l)))
        .copied()
        .collect();
    if ordered.is_empty() {
        return String::new();
    }
    let mut text = ordered.join(" | ");
    if text.len() > SAID_MAX {
        let mut end = SAID_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" ...");
    }
    format!(": {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_status_stderr_and_timeout_are_told_apart() {
        let t = Duration::from_secs(5);
        assert!(shell("true", &[], t).await.is_ok());
        let e = shell("echo nope >&2; exit 3", &[], t).await.unwrap_err();
        assert!(e.contains("exit status: 3") && e.ends_with(": nope"), "{e}");
        let e = shell("sleep 5", &[], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(e.contains("did not finish within 50 ms"), "{e}");
        let e = shell("test \"$STEER_WAN\" = wan1", &[("STEER_WAN", "wan2")], t)
            .await
            .unwrap_err();
        assert!(e.contains("exit status: 1"), "{e}");
        let e = shell(
            "echo '[warning] eth2 is an invalid interface' >&2; \
             echo \"[ERROR] can't connect: is conntrackd running?\" >&2; exit 1",
            &[],
            t,
        )
        .await
        .unwrap_err();
        assert!(
            e.ends_with(
                ": [ERROR] can't connect: is conntrackd running? | \
                 [warning] eth2 is an invalid interface"
            ),
            "the error first: {e}"
        );
        let e = run("/nonexistent/prog", &[], &[], t).await.unwrap_err();
        assert!(e.contains("could not start"), "{e}");
    }
}
