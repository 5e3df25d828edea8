//! How the controller answers a call: a [`Response`], or a response line already encoded.
//!
//! Most answers are small and built on the event loop. An answer that grows with the data
//! (`steer set NAME list` of a set with 50,000 runtime entries is a 3.6 MB line) is not: the
//! loop only takes a snapshot that shares the data, and the line is encoded straight to bytes
//! (no `serde_json::Value` tree, which took seven times the line's size) on a thread of its own
//! at a lower priority, so a carrier loss or a probe round never waits behind it. The daemon's runtime has one
//! thread: whatever a connection task does, the loop waits for.
//!
//! Such lines are held until their client has read them, which a client that does not read
//! stretches to [`WRITE_TIMEOUT`]. A [`Budget`] bounds how many entries are being encoded or
//! sent at once; a request over it waits (a few at most, for a while) or is told the daemon is
//! busy, so a hundred clients asking for a big list cost a bounded amount of memory and
//! leave connection slots for `steer status`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use super::{Response, server::WRITE_TIMEOUT};

/// Entries of big answers being encoded or sent at once: about 6 MB of IPv4 lines, 12 MB of
/// IPv6 ones (a bigger answer takes the whole budget, alone).
pub const ENTRIES_AT_ONCE: usize = 1 << 17;
/// An answer of at most this many entries goes without the budget: its line (some 50 kB) fits
/// in the socket's buffer, so a client that does not read does not hold it.
pub const SMALL: usize = 1024;
/// Big answers that wait for the budget at once; one more is told the daemon is busy. Waiting
/// connections hold slots of the control socket: these leave most of them free.
pub const MAX_WAITING: usize = 8;
/// How long a big answer waits for the budget before it is told the daemon is busy.
pub const WAIT: Duration = Duration::from_secs(10);

/// The controller's answer to one call.
#[derive(Debug)]
pub enum Answer {
    Response(Response),
    Encoded(Encoded),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer::Response(response)
    }
}

impl Answer {
    /// The answer as a [`Response`] (an encoded one is decoded: for callers inside the daemon,
    /// which ask for small answers).
    pub fn into_response(self) -> Result<Response, serde_json::Error> {
        match self {
            Answer::Response(response) => Ok(response),
            Answer::Encoded(encoded) => serde_json::from_slice(&encoded.line),
        }
    }
}

/// How an answer stands with the budget when it is asked for.
enum Admission {
    /// Small: it needs no share.
    Free,
    /// Its share, taken at once.
    Held(OwnedSemaphorePermit),
    /// No room yet: it waits in line for `n` entries' worth.
    Waiting { n: u32, waiter: Waiter },
}

/// A successful answer as its response line (newline included), with its share of the
/// [`Budget`], given back when the line is dropped (written, or given up on).
#[derive(Debug)]
pub struct Encoded {
    line: Vec<u8>,
    _share: Option<OwnedSemaphorePermit>,
}

impl Encoded {
    /// `{"ok":true,"body":BODY}` and a newline: what [`Response::ok`] with `body` would be
    /// written as.
    pub fn ok(body: &impl Serialize) -> Result<Encoded, serde_json::Error> {
        #[derive(Serialize)]
        struct Ok<'a, B> {
            ok: bool,
            body: &'a B,
        }
        let mut line = serde_json::to_vec(&Ok { ok: true, body })?;
        line.push(b'\n');
        Ok(Encoded { line, _share: None })
    }

    /// The response line, newline included.
    pub fn line(&self) -> &[u8] {
        &self.line
    }
}

/// What big answers may hold at once: [`ENTRIES_AT_ONCE`] entries being encoded or sent, and
/// [`MAX_WAITING`] answers waiting for room.
#[derive(Clone, Debug)]
pub struct Budget {
    room: Arc<Semaphore>,
    entries: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    wait: Duration,
    encoder: Encoder,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(ENTRIES_AT_ONCE, MAX_WAITING, WAIT)
    }
}

impl Budget {
    pub fn new(entries: usize, max_waiting: usize, wait: Duration) -> Budget {
        // Shares are taken as u32 permits.
        let entries = entries.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Budget {
            room: Arc::new(Semaphore::new(entries)),
            entries,
            waiting: Arc::default(),
            max_waiting,
            wait,
            encoder: Encoder::start(),
        }
    }

    /// Encodes the successful answer carrying `body` (`what`, of `entries` entries) on the
    /// [`Encoder`]'s thread, once the budget has room for it; the task ends with the encoded line,
    /// or with a refusal when the daemon is busy. Refused at once (`Err`) when
    /// [`MAX_WAITING`] answers wait already. Call it on the event loop: it only counts.
    pub fn encode<B>(
        &self,
        what: &str,
        entries: usize,
        body: B,
    ) -> Result<JoinHandle<Answer>, Response>
    where
        B: Serialize + Send + 'static,
    {
        let cost = if entries <= SMALL {
            0
        } else {
            entries.min(self.entries)
        };
        let admission = match u32::try_from(cost) {
            Ok(0) => Admission::Free,
            Ok(n) => match self.room.clone().try_acquire_many_owned(n) {
                Ok(share) => Admission::Held(share),
                Err(_) => Admission::Waiting {
                    n,
                    waiter: self.wait_in_line(what)?,
                },
            },
            Err(_) => unreachable!("the budget is at most Semaphore::MAX_PERMITS"),
        };
        let (room, wait, what) = (self.room.clone(), self.wait, what.to_owned());
        let encoder = self.encoder.clone();
        Ok(tokio::spawn(async move {
            let share = match admission {
                Admission::Free => None,
                Admission::Held(share) => Some(share),
                Admission::Waiting { n, waiter } => {
                    let share = tokio::time::timeout(wait, room.acquire_many_owned(n)).await;
                    drop(waiter);
                    match share {
                        Ok(Ok(share)) => Some(share),
                        _ => {
                            let why = format!(
                                "this one waited {wait:?} for its turn; a client that does not \
                                 read its answer holds it for up to {WRITE_TIMEOUT:?}"
                            );
                            return busy(&what, &why).into();
                        }
                    }
                }
            };
            match encoder.encode(body).await {
                Ok(Ok(mut encoded)) => {
                    encoded._share = share;
                    Answer::Encoded(encoded)
                }
                Ok(Err(e)) => Response::error(format!("cannot encode {what}: {e}")).into(),
                Err(e) => Response::error(format!("encoding {what} failed: {e}")).into(),
            }
        }))
    }

    /// A place among the answers waiting for room, or the refusal when they are too many.
    fn wait_in_line(&self, what: &str) -> Result<Waiter, Response> {
        let counted = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_waiting).then_some(n + 1)
            });
        match counted {
            Ok(_) => Ok(Waiter(self.waiting.clone())),
            Err(_) => Err(busy(
                what,
                &format!("{} more wait for their turn", self.max_waiting),
            )),
        }
    }
}

/// Work for the encoder's thread.
type Job = Box<dyn FnOnce() + Send>;

/// The thread big answers are encoded on: one, so that encoding takes one core at most, and at
/// a lower priority than the event loop ([`ENCODER_NICE`]), so that on a router's few cores a
/// carrier loss or a probe round does not wait for the CPU behind it. In the lab (2 cores, a
/// debug build), 100 clients listing 49,152 entries delayed a carrier failover by 30 to 80 ms
/// with the encoding on tokio's blocking threads, by about 10 ms on this one.
#[derive(Clone, Debug)]
struct Encoder {
    /// None when the thread could not be started: answers are then encoded on tokio's
    /// blocking threads.
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

/// The encoder thread's nice value (the event loop's is the process's, 0 by default).
const ENCODER_NICE: libc::c_int = 10;

impl Encoder {
    fn start() -> Encoder {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("steer-answers".into())
            .spawn(move || {
                // SAFETY: setpriority on this thread's own id; it only changes its nice value
                // (raising it needs no privilege).
                let set = unsafe {
                    libc::setpriority(
                        libc::PRIO_PROCESS,
                        libc::gettid() as libc::id_t,
                        ENCODER_NICE,
                    )
                };
                if set != 0 {
                    log::debug!(
                        "control: big answers are encoded at the event loop's priority: \
                         setpriority: {}",
                        std::io::Error::last_os_error()
                    );
                }
                // Ends when the last Budget is gone; a job that panics loses its answer only.
                for job in queue {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        match started {
            Ok(_) => Encoder { jobs: Some(jobs) },
            Err(e) => {
                log::warn!(
                    "control: cannot start the thread that encodes big answers ({e}); they are \
                     encoded on the blocking threads, at the event loop's priority"
                );
                Encoder { jobs: None }
            }
        }
    }

    /// `body`'s successful answer line, encoded on the encoder's thread.
    async fn encode<B: Serialize + Send + 'static>(
        &self,
        body: B,
    ) -> Result<Result<Encoded, serde_json::Error>, String> {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(move || Encoded::ok(&body))
                .await
                .map_err(|e| e.to_string());
        };
        let (done, encoded) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(Encoded::ok(&body));
        });
        jobs.send(job)
            .map_err(|_| "the encoding thread is gone".to_owned())?;
        encoded
            .await
            .map_err(|_| "the encoding thread dropped it".to_owned())
    }
}

/// One answer waiting for room in the budget; dropped when it has room or gives up.
struct Waiter(Arc<AtomicUsize>);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The refusal of a big answer the budget has no room for.
fn busy(what: &str, why: &str) -> Response {
    Response::error(format!(
        "the daemon is busy sending other clients' big answers ({why}): {what} was not sent; \
         retry in a few seconds"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `n` entries.
    fn body(n: usize) -> serde_json::Value {
        serde_json::json!({ "entries": vec![1; n] })
    }

    fn encoded(answer: Answer) -> Encoded {
        match answer {
            Answer::Encoded(e) => e,
            Answer::Response(r) => panic!("not encoded: {r:?}"),
        }
    }

    #[test]
    fn an_encoded_answer_is_the_line_a_response_makes() {
        let body = serde_json::json!({"entries": [{"prefix": "192.0.2.0/24", "expires_in": null}]});
        let e = Encoded::ok(&body).unwrap();
        let mut line = serde_json::to_vec(&Response::ok(body.clone())).unwrap();
        line.push(b'\n');
        assert_eq!(e.line(), line);
        assert_eq!(
            Answer::Encoded(e).into_response().unwrap(),
            Response::ok(body)
        );
    }

    #[tokio::test]
    async fn big_answers_share_the_budget_and_the_rest_wait_or_are_refused() {
        let budget = Budget::new(3000, 2, Duration::from_millis(300));
        // Small answers never count.
        let small: Vec<_> = (0..20)
            .map(|_| budget.encode("a list", SMALL, body(1)).unwrap())
            .collect();
        let first = encoded(
            budget
                .encode("a list", 2000, body(2))
                .unwrap()
                .await
                .unwrap(),
        );
        assert_eq!(budget.room.available_permits(), 1000);
        // Two wait; the third is refused at once, saying why and what to do.
        let waiting: Vec<_> = (0..2)
            .map(|_| budget.encode("a list", 2000, body(3)).unwrap())
            .collect();
        let refused = budget
            .encode("the list of set big", 2000, body(4))
            .unwrap_err();
        let text = refused.error.unwrap();
        assert_eq!(
            text,
            "the daemon is busy sending other clients' big answers (2 more wait for their \
             turn): the list of set big was not sent; retry in a few seconds"
        );
        assert!(text.ends_with("retry in a few seconds"), "{text}");
        for task in small {
            assert!(matches!(task.await.unwrap(), Answer::Encoded(_)));
        }
        // The first answer written: the next one gets its room; the last waits too long.
        drop(first);
        let mut waiting = waiting.into_iter();
        let second = encoded(waiting.next().unwrap().await.unwrap());
        let third = waiting
            .next()
            .unwrap()
            .await
            .unwrap()
            .into_response()
            .unwrap();
        assert!(!third.ok, "{third:?}");
        let text = third.error.unwrap();
        assert!(
            text.contains("(this one waited 300ms for its turn; a client"),
            "{text}"
        );
        drop(second);
        assert_eq!(budget.room.available_permits(), 3000);
        assert_eq!(budget.waiting.load(Ordering::Relaxed), 0);
        // An answer bigger than the whole budget takes all of it, alone.
        let huge = encoded(
            budget
                .encode("a list", 10_000, body(5))
                .unwrap()
                .await
                .unwrap(),
        );
        assert_eq!(budget.room.available_permits(), 0);
        drop(huge);
        assert_eq!(budget.room.available_permits(), 3000);
    }
}
