//! Running the programs mastership calls for (a WAN's `up_command` / `down_command`,
//! conntrackd), each bounded by a timeout and judged by its exit status. They run off the
//! event loop (a blocking thread), and one that outlives its timeout is killed.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `program` with `args` (and `env`) for at most `timeout`. `Ok` is how long it took
/// when it exited with status 0; `Err` says what went wrong, with the first line of what it
/// wrote to stderr.
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
                let first = err.lines().next().unwrap_or("").trim();
                let said = if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                };
                return Err(format!("`{shown}` failed ({status}){said}"));
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
        let e = run("/nonexistent/prog", &[], &[], t).await.unwrap_err();
        assert!(e.contains("could not start"), "{e}");
    }
}
