//! TCP for the tests that follow connections: an echo server that records which address each
//! connection came from, and a client that keeps one connection open and talks over it.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::Netns;

/// Bound on every read and write of the tests' TCP traffic.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A line-echo server on `addr` in a namespace. Every connection's peer address is recorded in
/// the order they arrive; every line a client sends comes back prefixed with the peer address
/// the server sees, so the client knows which address the server saw each exchange from.
#[derive(Debug)]
pub struct EchoServer {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> EchoServer {
        let listener = ns.enter(|| TcpListener::bind(addr).expect("bind the echo server"));
        listener.set_nonblocking(true).expect("non-blocking");
        let (peers, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (peers, stop): (Arc<Mutex<Vec<SocketAddr>>>, _) =
                (Arc::clone(&peers), Arc::clone(&stop));
            std::thread::spawn(move || accept_loop(&listener, &peers, &stop))
        };
        EchoServer {
            peers,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// The peer address of every connection so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("peers").clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, peers: &Mutex<Vec<SocketAddr>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => {
                peers.lock().expect("peers").push(peer);
                std::thread::spawn(move || echo(conn, peer));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn echo(conn: TcpStream, peer: SocketAddr) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        // One write per line: pieces of a line in separate segments would wait for the
        // client's (delayed) ACK under Nagle, 40 ms and more per exchange.
        if out
            .write_all(format!("{peer} {line}\n").as_bytes())
            .is_err()
        {
            return;
        }
    }
}

/// One client connection, opened from a namespace.
#[derive(Debug)]
pub struct Conversation {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next: u64,
}

impl Conversation {
    /// Connects from `ns` to `server`.
    pub fn open(ns: &Netns, server: SocketAddr) -> std::io::Result<Conversation> {
        let stream = ns.enter(|| TcpStream::connect_timeout(&server, IO_TIMEOUT))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conversation {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next: 0,
        })
    }

    /// Sends one line and waits for its echo; returns the address the server saw it from.
    /// The client's end of the connection (its address and source port).
    pub fn local_addr(&self) -> SocketAddr {
        self.writer.local_addr().expect("a connected socket")
    }

    pub fn exchange(&mut self) -> std::io::Result<String> {
        let n = self.next;
        self.next += 1;
        // One write: see `echo`.
        self.writer.write_all(format!("line {n}\n").as_bytes())?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the server closed the connection",
            ));
        }
        let (seen_from, echoed) = answer
            .trim_end()
            .split_once(' ')
            .ok_or_else(|| std::io::Error::other(format!("bad echo {answer:?}")))?;
        if echoed != format!("line {n}") {
            return Err(std::io::Error::other(format!(
                "echo {echoed:?} for line {n}"
            )));
        }
        Ok(seen_from.to_owned())
    }
}
