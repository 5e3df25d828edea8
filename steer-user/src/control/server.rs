//! The daemon side of the control socket.
//!
//! [`serve`] creates the socket safely and spawns an accept loop; every connection runs on its
//! own task, is checked against the allowed uids (`SO_PEERCRED`) before anything is read, may
//! send at most `max_request_bytes` within [`READ_TIMEOUT`], and is answered with one JSON line.
//! Well-formed requests from allowed peers are handed to the daemon's controller as [`Call`]s.
//! At most [`MAX_CONNECTIONS`] connections are served at once; further ones wait in the kernel's
//! listen backlog, so a local flood costs bounded memory.

use std::{
    collections::VecDeque,
    fs,
    io::{self, ErrorKind},
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use log::{debug, info, warn};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    task::{AbortHandle, JoinHandle},
    time::{Instant, timeout, timeout_at},
};

use super::{ControlError, Request, Response, answer::Answer};

/// Default cap on one request line (without its newline).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default time the controller has to answer a call.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default mode of the socket file: owner (root) only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// Time a client has to send its complete request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long [`Server::shutdown`] waits for connections in flight (e.g. the answer to `stop`).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The example every "malformed request" answer ends with.
const EXAMPLE: &str = r#"{"cmd":"status"}"#;

/// One accepted, authenticated, well-formed request, handed to the daemon's controller.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub peer: PeerCred,
    /// Answer here; dropping it answers "the daemon did not answer" to the client.
    pub reply: Replier,
    /// The connection it came on (none for the daemon's own calls), to see whether its client
    /// is still there.
    client: Option<OwnedFd>,
}

impl Call {
    /// Whether the client that sent the call has closed its connection (it gave up waiting
    /// and exited: the CLI's timeout, while the daemon was stopped or busy). Such a call is
    /// dropped, not carried out: the client told its user it failed, and a `stop` or `wan
    /// down` that happens minutes later, unasked, is worse than one that does not happen.
    /// The CLI only half-closes after its request, which is not a hang-up.
    pub fn client_gone(&self) -> bool {
        let Some(fd) = &self.client else {
            return false;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one pollfd we own, a descriptor that stays open while `self` lives, and a
        // zero timeout: poll only reads the descriptor's state.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        // A Unix stream socket reports POLLHUP once both directions are shut down: the peer
        // closed its end (which shuts ours for reading and writing alike).
        ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// Where the controller answers one call: a [`Response`], or an [`Answer`] encoded off the
/// event loop.
#[derive(Debug)]
pub struct Replier(oneshot::Sender<Answer>);

impl Replier {
    /// Answers the call; the answer comes back when the client is gone.
    pub fn send(self, answer: impl Into<Answer>) -> Result<(), Answer> {
        self.0.send(answer.into())
    }
}

/// The credentials of the connected process, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// 0 when the kernel did not say (it always does on Linux).
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl PeerCred {
    /// The daemon's own process: the asker for calls it makes itself (metrics scrapes).
    pub fn own() -> PeerCred {
        PeerCred {
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            // SAFETY: getuid and getgid cannot fail and touch no memory.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
        }
    }
}

/// How to serve the control socket. Start from [`ServerOptions::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The socket file.
    pub path: PathBuf,
    /// Longest accepted request line, without the newline (default 65536).
    pub max_request_bytes: usize,
    /// Peers (by uid) that may send requests (default: root and the daemon's effective uid).
    pub allowed_uids: Vec<u32>,
    /// How long the controller has to answer a call (default 30 s).
    pub reply_timeout: Duration,
    /// Mode of the socket file (default 0o600). Connecting needs write permission on it.
    pub socket_mode: u32,
}

impl ServerOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        // SAFETY: geteuid has no preconditions, cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        let mut allowed_uids = vec![0];
        if euid != 0 {
            allowed_uids.push(euid);
        }
        Self {
            path: path.into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            allowed_uids,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            socket_mode: DEFAULT_SOCKET_MODE,
        }
    }
}

/// The running control socket. Dropping it (or [`Server::shutdown`]) stops accepting and
/// removes the socket file if it is still the one this server created (same device and inode).
/// Connections already accepted finish on their own (their timeouts bound them).
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket file we bound.
    identity: (u64, u64),
    accept: Option<JoinHandle<()>>,
    connections: Arc<Semaphore>,
    ctx: Arc<Context>,
    socket_mode: u32,
    /// The last attempt to make the socket again failed (said once, not at every check).
    rebind_failed: bool,
}

impl Server {
    /// The socket file being served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the socket file again when it was removed while the daemon runs (by hand, or a
    /// cleanup of `/run`): the old listener still serves its path, but no client can reach it
    /// any more, so no command, not even `steer stop`, could reach the daemon. Called at the
    /// daemon's periodic check. A file someone else put at the path (another daemon's socket)
    /// is left alone. Returns what to log: the socket made again, or why it could not be.
    pub fn restore_if_removed(&mut self) -> Option<String> {
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            _ => return None,
        }
        let (listener, identity) =
            match prepare_directory(&self.path).and_then(|()| bind(&self.path, self.socket_mode)) {
                Ok(bound) => bound,
                Err(e) => {
                    let first = !std::mem::replace(&mut self.rebind_failed, true);
                    return first.then(|| {
                        format!(
                            "control: the socket {} was removed and cannot be made again: {e}; \
                         no command reaches this daemon until it is restarted (tried again at \
                         every periodic check)",
                            self.path.display()
                        )
                    });
                }
            };
        self.rebind_failed = false;
        if let Some(old) = self.accept.take() {
            old.abort();
        }
        let accept = accept_loop(listener, self.ctx.clone(), self.connections.clone());
        self.accept = Some(tokio::spawn(accept));
        self.identity = identity;
        Some(format!(
            "control: the socket {} had been removed (by hand, or a cleanup of its directory); \
             made it again (mode {:04o})",
            self.path.display(),
            self.socket_mode
        ))
    }

    /// Stops accepting, removes the socket file, then waits up to [`SHUTDOWN_GRACE`] for the
    /// connections in flight to finish (so the answer to `stop` reaches its client).
    pub async fn shutdown(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // The task owns the listener: once it has finished, the descriptor is closed.
            let _ = accept.await;
        }
        self.remove_socket();
        let max = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        if timeout(SHUTDOWN_GRACE, self.connections.acquire_many(max))
            .await
            .is_err()
        {
            debug!(
                "control {}: connections still open after {SHUTDOWN_GRACE:?}; leaving them to their timeouts",
                self.path.display()
            );
        }
    }

    /// Removes the socket file if it is still ours; someone else's file is left alone.
    fn remove_socket(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta)
                if meta.file_type().is_socket() && (meta.dev(), meta.ino()) == self.identity =>
            {
                if let Err(e) = fs::remove_file(&self.path) {
                    warn!(
                        "control: cannot remove the socket {}: {e}",
                        self.path.display()
                    );
                }
            }
            Ok(_) => debug!(
                "control: {} is no longer our socket; leaving it",
                self.path.display()
            ),
            Err(_) => {}
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            self.remove_socket();
        }
    }
}

/// Binds the socket and spawns the accept loop on the current tokio runtime. Calls go to `calls`.
///
/// The socket's directory is created (mode 0700) when missing; an existing one keeps its mode
/// but must belong to the user steer runs as and be writable by nobody else (sticky or not). A stale socket (nobody listening) is
/// replaced; a live one, or anything that is not a socket, is an error and left alone.
pub fn serve(opts: ServerOptions, calls: mpsc::Sender<Call>) -> Result<Server, ControlError> {
    let path = opts.path.clone();
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ControlError::NoRuntime { path });
    }
    prepare_directory(&path)?;
    clear_stale_socket(&path)?;
    let (listener, identity) = bind(&path, opts.socket_mode)?;

    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ctx = Arc::new(Context {
        path: path.clone(),
        max_request_bytes: opts.max_request_bytes,
        allowed_uids: opts.allowed_uids,
        reply_timeout: opts.reply_timeout,
        calls,
    });
    let accept = tokio::spawn(accept_loop(listener, ctx.clone(), connections.clone()));
    info!(
        "control: serving {} (mode {:04o})",
        path.display(),
        opts.socket_mode
    );
    Ok(Server {
        path,
        identity,
        accept: Some(accept),
        connections,
        ctx,
        socket_mode: opts.socket_mode,
        rebind_failed: false,
    })
}

/// Binds a listening socket at `path` (where nothing is) with `mode`; returns it with the
/// device and inode of its file. The file is removed again when a later step fails.
fn bind(path: &Path, mode: u32) -> Result<(UnixListener, (u64, u64)), ControlError> {
    let std_listener = {
        let _umask = Umask::set(0o177);
        std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| ControlError::io("bind the control socket", path, e))?
    };
    // From here on the file is ours: remove it again if anything below fails.
    let cleanup = |e: ControlError| {
        let _ = fs::remove_file(path);
        e
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| cleanup(ControlError::io("set the mode of", path, e)))?;
    let meta =
        fs::symlink_metadata(path).map_err(|e| cleanup(ControlError::io("inspect", path, e)))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| cleanup(ControlError::io("configure", path, e)))?;
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| cleanup(ControlError::io("register", path, e)))?;
    Ok((listener, (meta.dev(), meta.ino())))
}

/// Sets the process umask and restores the previous one when dropped.
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Self {
        // SAFETY: umask cannot fail and only swaps the process's file-creation mask.
        Self(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as in `Umask::set`; this restores the mask that was in effect before.
        unsafe { libc::umask(self.0) };
    }
}

/// Creates the socket's directory (0700) if missing; refuses an insecure existing one.
fn prepare_directory(path: &Path) -> Result<(), ControlError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(ControlError::NotADirectory { dir: dir.into() }),
        Ok(meta) => {
            let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            let why = if owner != me {
                "the directory belongs to another user"
            } else if mode & 0o002 != 0 {
                "everyone may write into the directory"
            } else if mode & 0o020 != 0 {
                "the directory's group may write into it"
            } else {
                return Ok(());
            };
            Err(ControlError::InsecureDirectory {
                dir: dir.into(),
                why,
                owner,
                mode,
                me,
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| ControlError::io("create the socket directory", dir, e))?;
            // The umask may have removed bits; make the mode exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| ControlError::io("set the mode of", dir, e))?;
            info!("control: created {} (mode 0700)", dir.display());
            Ok(())
        }
        Err(e) => Err(ControlError::io("inspect the socket directory", dir, e)),
    }
}

/// Removes a stale socket at `path`; refuses a live socket or anything that is not a socket.
fn clear_stale_socket(path: &Path) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ControlError::io("inspect", path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket { path: path.into() });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => Err(ControlError::AlreadyServing {
            path: path.into(),
            pid: listener_pid(stream),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            info!(
                "control: removing the stale socket {} (nobody is listening)",
                path.display()
            );
            fs::remove_file(path).map_err(|e| ControlError::io("remove the stale socket", path, e))
        }
        Err(e) => Err(ControlError::io("probe the existing socket", path, e)),
    }
}

/// The pid of the process that listens at the other end, if `SO_PEERCRED` tells.
fn listener_pid(stream: std::os::unix::net::UnixStream) -> Option<i32> {
    stream.set_nonblocking(true).ok()?;
    let stream = UnixStream::from_std(stream).ok()?;
    stream.peer_cred().ok()?.pid()
}

/// What every connection task shares.
#[derive(Debug)]
struct Context {
    path: PathBuf,
    max_request_bytes: usize,
    allowed_uids: Vec<u32>,
    reply_timeout: Duration,
    calls: mpsc::Sender<Call>,
}

/// A client that has sent no complete request this long after connecting gives up its slot to
/// a new client when every slot is taken (`steer` sends its request at once).
const SILENT_AFTER: Duration = Duration::from_millis(500);

/// A connection being served: when it came, whether its request is in (then it is being
/// answered, which its reply timeout bounds), and the task to abort to free its slot.
struct Slot {
    since: Instant,
    asked: Arc<AtomicBool>,
    task: AbortHandle,
}

async fn accept_loop(listener: UnixListener, ctx: Arc<Context>, connections: Arc<Semaphore>) {
    let mut slots: VecDeque<Slot> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                warn!("control {}: accept failed: {e}", ctx.path.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = slot_for_new_client(&connections, &mut slots, &ctx.path).await else {
            return;
        };
        let asked = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(handle_connection(
            stream,
            ctx.clone(),
            permit,
            asked.clone(),
        ));
        slots.push_back(Slot {
            since: Instant::now(),
            asked,
            task: task.abort_handle(),
        });
    }
}

/// A slot for a new client. When every slot is taken, the oldest client that has said nothing
/// for [`SILENT_AFTER`] gives its slot up, so clients that connect and stay silent cannot keep
/// `steer` out; clients that are sending or being answered are waited for.
async fn slot_for_new_client(
    connections: &Arc<Semaphore>,
    slots: &mut VecDeque<Slot>,
    path: &Path,
) -> Option<OwnedSemaphorePermit> {
    loop {
        slots.retain(|s| !s.task.is_finished());
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            return Some(permit);
        }
        if evict_silent(slots, path) {
            // The aborted task lets go of its slot once it is dropped.
            return connections.clone().acquire_owned().await.ok();
        }
        tokio::select! {
            permit = connections.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(SILENT_AFTER / 4) => {}
        }
    }
}

/// Frees the slot of the oldest connection silent for [`SILENT_AFTER`]; whether there was one.
fn evict_silent(slots: &mut VecDeque<Slot>, path: &Path) -> bool {
    let Some(i) = slots
        .iter()
        .position(|s| !s.asked.load(Ordering::Relaxed) && s.since.elapsed() >= SILENT_AFTER)
    else {
        return false;
    };
    if let Some(slot) = slots.remove(i) {
        slot.task.abort();
        // Not a warning: a flood of silent clients would make one per connection.
        debug!(
            "control {}: every connection is taken; dropped the oldest that sent no request, for a new one",
            path.display()
        );
    }
    true
}

async fn handle_connection(
    mut stream: UnixStream,
    ctx: Arc<Context>,
    _permit: OwnedSemaphorePermit,
    asked: Arc<AtomicBool>,
) {
    let peer = match stream.peer_cred() {
        Ok(cred) => PeerCred {
            pid: cred.pid().unwrap_or(0),
            uid: cred.uid(),
            gid: cred.gid(),
        },
        Err(e) => {
            warn!(
                "control {}: cannot read the peer's credentials, closing: {e}",
                ctx.path.display()
            );
            return;
        }
    };
    if !ctx.allowed_uids.contains(&peer.uid) {
        warn!(
            "control {}: refused pid {} uid {} gid {} (allowed uids: {:?})",
            ctx.path.display(),
            peer.pid,
            peer.uid,
            peer.gid,
            ctx.allowed_uids
        );
        let refusal = Response::error(format!(
            "permission denied: uid {} may not control steer; run the command as root",
            peer.uid
        ));
        write_response(&mut stream, refusal.into()).await;
        return;
    }

    let deadline = Instant::now() + READ_TIMEOUT;
    let read = read_request(&mut stream, ctx.max_request_bytes, deadline).await;
    asked.store(true, Ordering::Relaxed);
    let response = match read {
        ReadOutcome::Closed => {
            debug!(
                "control: pid {} uid {} closed without a request",
                peer.pid, peer.uid
            );
            return;
        }
        ReadOutcome::Failed(e) => {
            debug!(
                "control: reading from pid {} uid {} failed: {e}",
                peer.pid, peer.uid
            );
            return;
        }
        ReadOutcome::TimedOut => {
            warn!(
                "control: pid {} uid {} sent no complete request within {READ_TIMEOUT:?}",
                peer.pid, peer.uid
            );
            Response::error(format!(
                "no complete request within {READ_TIMEOUT:?}; send one JSON object followed by a newline, e.g. {EXAMPLE}"
            ))
            .into()
        }
        ReadOutcome::TooLarge => {
            warn!(
                "control: pid {} uid {} sent a request over the limit of {} bytes",
                peer.pid, peer.uid, ctx.max_request_bytes
            );
            Response::error(format!(
                "request too large: the limit is {} bytes per request; send one JSON object on one line, e.g. {EXAMPLE}",
                ctx.max_request_bytes
            ))
            .into()
        }
        ReadOutcome::Line(line) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => {
                // A descriptor of its own, so the controller can look at the connection
                // while this task waits for its answer.
                let client = stream.as_fd().try_clone_to_owned().ok();
                dispatch(&ctx, request, peer, client).await
            }
            Err(e) => {
                warn!(
                    "control: malformed request from pid {} uid {}: {e} (request: \"{}\")",
                    peer.pid,
                    peer.uid,
                    line[..line.len().min(120)].escape_ascii()
                );
                Response::error(malformed(&e)).into()
            }
        },
    };
    write_response(&mut stream, response).await;
}

/// The answer to a request that is not valid JSON or not a known command.
pub(crate) fn malformed(e: &serde_json::Error) -> String {
    format!("malformed request: {e}; expected e.g. {EXAMPLE}")
}

/// Hands the request to the controller and waits for its answer, within `reply_timeout`.
async fn dispatch(
    ctx: &Context,
    request: Request,
    peer: PeerCred,
    client: Option<OwnedFd>,
) -> Answer {
    debug!(
        "control: pid {} uid {} requests {request:?}",
        peer.pid, peer.uid
    );
    match ask(
        &ctx.calls,
        request,
        peer,
        client,
        Instant::now() + ctx.reply_timeout,
    )
    .await
    {
        Ok(answer) => answer,
        Err(Unanswered::ShuttingDown) => Response::error(
            "the daemon did not answer: it is shutting down; start it again with `steer run -c FILE`",
        )
        .into(),
        Err(Unanswered::Dropped) => Response::error(
            "the daemon did not answer (it dropped the request); see its log and retry",
        )
        .into(),
        Err(Unanswered::TimedOut) => {
            warn!(
                "control: the controller did not answer pid {} uid {} within {:?}",
                peer.pid, peer.uid, ctx.reply_timeout
            );
            Response::error(format!(
                "the daemon did not answer within {:?}; it may be busy: see its log and retry",
                ctx.reply_timeout
            ))
            .into()
        }
    }
}

/// Why a call to the controller got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The controller's channel is closed: the daemon is stopping.
    ShuttingDown,
    /// The controller dropped the reply sender.
    Dropped,
    /// No answer by the deadline.
    TimedOut,
}

/// Hands `request` to the controller's task and waits for its answer until `deadline`. The one
/// way into the controller for the control socket and the metrics endpoint.
pub(crate) async fn ask(
    calls: &mpsc::Sender<Call>,
    request: Request,
    peer: PeerCred,
    client: Option<OwnedFd>,
    deadline: Instant,
) -> Result<Answer, Unanswered> {
    let (reply, answer) = oneshot::channel();
    let call = Call {
        request,
        peer,
        reply: Replier(reply),
        client,
    };
    match timeout_at(deadline, calls.send(call)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Unanswered::ShuttingDown),
        Err(_) => return Err(Unanswered::TimedOut),
    }
    match timeout_at(deadline, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(Unanswered::Dropped),
        Err(_) => Err(Unanswered::TimedOut),
    }
}

/// How reading a request ended.
#[derive(Debug)]
enum ReadOutcome {
    /// The request line, without its newline (or everything before EOF).
    Line(Vec<u8>),
    /// EOF before any byte.
    Closed,
    /// More than the limit without a newline.
    TooLarge,
    TimedOut,
    Failed(io::Error),
}

/// Reads one line of at most `max` bytes (plus its newline) before `deadline`. Never reads
/// more than `max + 1` bytes in total.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    deadline: Instant,
) -> ReadOutcome {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let room = (max.saturating_add(1) - line.len()).min(chunk.len());
        let n = match timeout_at(deadline, reader.read(&mut chunk[..room])).await {
            Err(_) => return ReadOutcome::TimedOut,
            Ok(Err(e)) => return ReadOutcome::Failed(e),
            Ok(Ok(0)) if line.is_empty() => return ReadOutcome::Closed,
            // A client that half-closes instead of sending the newline is still answered.
            Ok(Ok(0)) => return ReadOutcome::Line(line),
            Ok(Ok(n)) => n,
        };
        if let Some(end) = chunk[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..end]);
            return if line.len() > max {
                ReadOutcome::TooLarge
            } else {
                ReadOutcome::Line(line)
            };
        }
        line.extend_from_slice(&chunk[..n]);
        if line.len() > max {
            return ReadOutcome::TooLarge;
        }
    }
}

/// Writes the answer line and half-closes; a client that does not read loses its answer. The
/// answer (an encoded one holds its share of the budget of big answers) is let go of here.
async fn write_response<W: AsyncWrite + Unpin>(writer: &mut W, answer: Answer) {
    let small;
    let line = match &answer {
        Answer::Encoded(e) => e.line(),
        Answer::Response(response) => {
            let mut line = serde_json::to_vec(response).unwrap_or_else(|e| {
                format!(
                    "{{\"ok\":false,\"error\":{}}}",
                    serde_json::Value::String(format!("cannot encode the answer: {e}"))
                )
                .into_bytes()
            });
            line.push(b'\n');
            small = line;
            &small
        }
    };
    let written = timeout(WRITE_TIMEOUT, async {
        writer.write_all(line).await?;
        writer.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("control: writing the answer failed: {e}"),
        Err(_) => debug!("control: the client did not take the answer within {WRITE_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reads_one_line() {
        let mut input: &[u8] = b"{\"cmd\":\"status\"}\nrest";
        match read_request(&mut input, 100, later()).await {
            ReadOutcome::Line(line) => assert_eq!(line, b"{\"cmd\":\"status\"}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn limit_is_exact() {
        let exact = [b'a'; 10].iter().chain(b"\n").copied().collect::<Vec<_>>();
        match read_request(&mut exact.as_slice(), 10, later()).await {
            ReadOutcome::Line(line) => assert_eq!(line.len(), 10),
            other => panic!("{other:?}"),
        }
        let over = [b'a'; 11].iter().chain(b"\n").copied().collect::<Vec<_>>();
        assert!(matches!(
            read_request(&mut over.as_slice(), 10, later()).await,
            ReadOutcome::TooLarge
        ));
        let endless = vec![b'a'; 100_000];
        assert!(matches!(
            read_request(&mut endless.as_slice(), 10, later()).await,
            ReadOutcome::TooLarge
        ));
    }

    #[tokio::test]
    async fn never_reads_past_the_limit() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(&vec![b'x'; 200_000]).await.unwrap();
        assert!(matches!(
            read_request(&mut server, 1000, later()).await,
            ReadOutcome::TooLarge
        ));
        // 1001 bytes consumed at most; the rest is still in the pipe.
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.len() >= 200_000 - 1001, "{}", rest.len());
    }

    #[tokio::test]
    async fn eof_and_timeout() {
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_request(&mut empty, 10, later()).await,
            ReadOutcome::Closed
        ));
        let mut unterminated: &[u8] = b"{\"cmd\":\"stop\"}";
        assert!(matches!(
            read_request(&mut unterminated, 100, later()).await,
            ReadOutcome::Line(line) if line == b"{\"cmd\":\"stop\"}"
        ));
        let (_client, mut server) = tokio::io::duplex(64);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(matches!(
            read_request(&mut server, 10, soon).await,
            ReadOutcome::TimedOut
        ));
    }

    #[test]
    fn malformed_message_has_the_example() {
        let e = serde_json::from_str::<Request>(r#"{"cmd":"nope"}"#).unwrap_err();
        let text = malformed(&e);
        assert!(
            text.starts_with("malformed request: unknown variant `nope`"),
            "{text}"
        );
        assert!(
            text.ends_with(r#"; expected e.g. {"cmd":"status"}"#),
            "{text}"
        );
    }

    #[test]
    fn default_options() {
        let opts = ServerOptions::new("/tmp/x.sock");
        assert_eq!(opts.path, Path::new("/tmp/x.sock"));
        assert_eq!(opts.max_request_bytes, 65536);
        assert_eq!(opts.reply_timeout, Duration::from_secs(30));
        assert_eq!(opts.socket_mode, 0o600);
        assert!(opts.allowed_uids.contains(&0));
        // SAFETY: geteuid cannot fail.
        assert!(opts.allowed_uids.contains(&unsafe { libc::geteuid() }));
    }

    #[test]
    fn serve_needs_a_runtime() {
        let (tx, _rx) = mpsc::channel(1);
        let e = serve(ServerOptions::new("/tmp/steer-no-runtime.sock"), tx).unwrap_err();
        assert!(matches!(e, ControlError::NoRuntime { .. }), "{e}");
        assert!(!Path::new("/tmp/steer-no-runtime.sock").exists());
    }
}
