//! The DNS wire format (RFC 1035), as much of it as steer needs: the header, the question, the
//! answer section's records, names with compression pointers, and the few answers steer makes
//! itself (SERVFAIL, NXDOMAIN, an empty NOERROR). Pure and bounded: every read is checked
//! against the message's length, a name follows at most [`MAX_POINTERS`] compression pointers
//! and each must point backwards, so no input can loop, panic or read out of bounds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes of the header.
pub const HEADER_LEN: usize = 12;
/// Compression pointers one name may follow.
pub const MAX_POINTERS: usize = 32;
/// Longest name on the wire (RFC 1035 2.3.4).
pub const MAX_NAME_WIRE: usize = 255;

/// Record types steer reads.
pub mod rtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    /// A question for every record of a name (QTYPE `*`).
    pub const ANY: u16 = 255;
}

/// The largest UDP answer a client without EDNS takes (RFC 1035 4.2.1).
pub const UDP_MIN: usize = 512;

/// The IN class.
pub const CLASS_IN: u16 = 1;

/// Response codes steer uses.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
}

/// SvcParamKeys of SVCB/HTTPS records that carry addresses (RFC 9460).
const SVC_IPV4HINT: u16 = 4;
const SVC_IPV6HINT: u16 = 6;

/// Why a message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("cut inside a {0}")]
    Truncated(&'static str),
    #[error("a name longer than 255 bytes")]
    LongName,
    #[error("a compression pointer that does not point backwards")]
    BadPointer,
    #[error("more than {MAX_POINTERS} compression pointers in one name")]
    PointerLoop,
    #[error("a label type that does not exist (0x40 or 0x80)")]
    BadLabel,
    #[error("no question")]
    NoQuestion,
    #[error("not a response (QR is 0)")]
    NotResponse,
    #[error("an address record of {0} bytes")]
    BadAddress(usize),
}

/// The fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        let h = msg.get(..HEADER_LEN).ok_or(WireError::Short)?;
        let w = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Ok(Header {
            id: w(0),
            flags: w(2),
            qdcount: w(4),
            ancount: w(6),
            nscount: w(8),
            arcount: w(10),
        })
    }

    /// A response (QR set).
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The TC bit: the answer did not fit and was cut.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// The first question of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lowercase, dotted, without the trailing dot ("" for the root); bytes other than letters,
    /// digits, `-`, `_` and `*` are written `\DDD`, so a dot inside a label cannot pass for a
    /// label boundary.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the message (the header and this question are what steer
    /// copies into the answers it makes).
    pub end: usize,
}

/// One resource record of the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'m> {
    /// As [`Question::name`].
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: &'m [u8],
    /// Offset of the rdata in the message (names in it may point backwards from there).
    pub rdata_at: usize,
}

/// A message as steer reads it: the header, the first question and the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'m> {
    pub header: Header,
    pub question: Option<Question>,
    pub answers: Vec<Record<'m>>,
}

/// Reads a name at `at`; returns it and the offset after it in the message (after the first
/// pointer when it is compressed).
pub fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), WireError> {
    // Most names fit; one allocation instead of a growth per few labels.
    let mut name = String::with_capacity(64);
    let mut wire_len = 0usize;
    let mut after = None;
    let mut pointers = 0usize;
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated("name"))?;
        match len & 0xc0 {
            0xc0 => {
                let low = *msg.get(at + 1).ok_or(WireError::Truncated("name"))?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                // Strictly backwards: every pointer lands earlier than the last, so the walk
                // ends even before the pointer limit.
                if target >= at {
                    return Err(WireError::BadPointer);
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(WireError::PointerLoop);
                }
                after.get_or_insert(at + 2);
                at = target;
            }
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len > MAX_NAME_WIRE {
                    return Err(WireError::LongName);
                }
                if len == 0 {
                    return Ok((name, after.unwrap_or(at + 1)));
                }
                let label = msg
                    .get(at + 1..at + 1 + len)
                    .ok_or(WireError::Truncated("name"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                at += 1 + len;
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
}

fn u16_at(msg: &[u8], at: usize, what: &'static str) -> Result<u16, WireError> {
    let b = msg.get(at..at + 2).ok_or(WireError::Truncated(what))?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(msg: &[u8], at: usize, what: &'static str) -> Result<u32, WireError> {
    let b = msg.get(at..at + 4).ok_or(WireError::Truncated(what))?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the question at `at` (after the header).
fn read_question(msg: &[u8], at: usize) -> Result<Question, WireError> {
    let (name, at) = read_name(msg, at)?;
    Ok(Question {
        name,
        qtype: u16_at(msg, at, "question")?,
        qclass: u16_at(msg, at + 2, "question")?,
        end: at + 4,
    })
}

/// The first question of a query (or of an answer).
pub fn question(msg: &[u8]) -> Result<Question, WireError> {
    let h = Header::parse(msg)?;
    if h.qdcount == 0 {
        return Err(WireError::NoQuestion);
    }
    read_question(msg, HEADER_LEN)
}

/// Reads the header, the first question and the answer section. Further questions, the
/// authority and additional sections are not read: nothing is learned from them.
pub fn parse(msg: &[u8]) -> Result<Message<'_>, WireError> {
    let header = Header::parse(msg)?;
    // Clients reject both, so nothing is learned from them either.
    if !header.is_response() {
        return Err(WireError::NotResponse);
    }
    let mut at = HEADER_LEN;
    let mut question = None;
    for i in 0..header.qdcount {
        let q = read_question(msg, at)?;
        at = q.end;
        if i == 0 {
            question = Some(q);
        }
    }
    let mut answers = Vec::with_capacity(usize::from(header.ancount).min(64));
    for _ in 0..header.ancount {
        let record = read_record(msg, at)?;
        at = record.rdata_at + record.rdata.len();
        answers.push(record);
    }
    Ok(Message {
        header,
        question,
        answers,
    })
}

/// Reads the record at `at`; it ends at `rdata_at + rdata.len()`.
fn read_record(msg: &[u8], at: usize) -> Result<Record<'_>, WireError> {
    let (name, next) = read_name(msg, at)?;
    let rtype = u16_at(msg, next, "record")?;
    let class = u16_at(msg, next + 2, "record")?;
    let ttl = u32_at(msg, next + 4, "record")?;
    let rdlen = usize::from(u16_at(msg, next + 8, "record")?);
    let rdata_at = next + 10;
    let rdata = msg
        .get(rdata_at..rdata_at + rdlen)
        .ok_or(WireError::Truncated("record data"))?;
    let address_len = match rtype {
        rtype::A => Some(4),
        rtype::AAAA => Some(16),
        _ => None,
    };
    if class == CLASS_IN && address_len.is_some_and(|n| n != rdlen) {
        return Err(WireError::BadAddress(rdlen));
    }
    Ok(Record {
        name,
        rtype,
        class,
        // RFC 2181 8: a TTL with the top bit set is read as 0.
        ttl: if ttl & 0x8000_0000 != 0 { 0 } else { ttl },
        rdata,
        rdata_at,
    })
}

/// The largest UDP answer the client that sent `query` takes: the UDP payload size of its EDNS
/// OPT record, never below 512 (RFC 6891 6.2.5), or 512 without one (RFC 1035 4.2.1), also
/// when the query cannot be read that far.
pub fn udp_limit(query: &[u8]) -> usize {
    opt_payload_size(query).map_or(UDP_MIN, |n| usize::from(n).max(UDP_MIN))
}

/// The CLASS field of the OPT record in `msg`'s additional section: its UDP payload size.
fn opt_payload_size(msg: &[u8]) -> Option<u16> {
    let h = Header::parse(msg).ok()?;
    let mut at = HEADER_LEN;
    for _ in 0..h.qdcount {
        at = read_question(msg, at).ok()?.end;
    }
    let before = usize::from(h.ancount) + usize::from(h.nscount);
    for i in 0..before + usize::from(h.arcount) {
        let r = read_record(msg, at).ok()?;
        if i >= before && r.rtype == rtype::OPT && r.name.is_empty() {
            return Some(r.class);
        }
        at = r.rdata_at + r.rdata.len();
    }
    None
}

/// `answer` cut to what a UDP client whose limit it exceeds gets (RFC 2181 9): its header with
/// TC set and its question, no records, so that the client asks again over TCP. An answer
/// whose question cannot be read keeps its header alone.
pub fn truncated(answer: &[u8]) -> Vec<u8> {
    let Ok(h) = Header::parse(answer) else {
        return Vec::new();
    };
    let q = if h.qdcount > 0 {
        read_question(answer, HEADER_LEN).ok()
    } else {
        None
    };
    let mut out = answer[..q.as_ref().map_or(HEADER_LEN, |q| q.end)].to_vec();
    out[2..4].copy_from_slice(&(h.flags | 0x0200).to_be_bytes());
    out[4..6].copy_from_slice(&u16::from(q.is_some()).to_be_bytes());
    out[6..12].fill(0);
    out
}

/// `msg` without the records `drop` picks from its answer, authority and additional sections,
/// the section counts fixed; `None` when it picks none (the message goes on byte for byte).
/// The records kept after the first one dropped have their names written out in full: a
/// compression pointer of theirs may point into what moved. Names inside record data are
/// written out for the types that may compress them (RFC 3597 4); other data is copied.
pub fn without(
    msg: &[u8],
    mut drop: impl FnMut(&Record<'_>) -> bool,
) -> Result<Option<Vec<u8>>, WireError> {
    let h = Header::parse(msg)?;
    let mut at = HEADER_LEN;
    for _ in 0..h.qdcount {
        at = read_question(msg, at)?.end;
    }
    let mut out = msg[..at].to_vec();
    let mut counts = [h.ancount, h.nscount, h.arcount];
    let mut moved = false;
    for count in &mut counts {
        for _ in 0..*count {
            let r = read_record(msg, at)?;
            let end = r.rdata_at + r.rdata.len();
            if drop(&r) {
                *count -= 1;
                moved = true;
            } else if !moved {
                out.extend_from_slice(&msg[at..end]);
            } else {
                let fixed = expand_name(msg, at, &mut out)?;
                // Type, class and TTL; the length is the rewritten data's.
                out.extend_from_slice(&msg[fixed..fixed + 8]);
                let data = expand_rdata(msg, &r)?;
                let len = u16::try_from(data.len()).map_err(|_| WireError::Truncated("record"))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&data);
            }
            at = end;
        }
    }
    if !moved {
        return Ok(None);
    }
    for (i, n) in counts.iter().enumerate() {
        out[6 + 2 * i..8 + 2 * i].copy_from_slice(&n.to_be_bytes());
    }
    Ok(Some(out))
}

/// Writes the name at `at` uncompressed into `out`; returns the offset after it in `msg`.
fn expand_name(msg: &[u8], at: usize, out: &mut Vec<u8>) -> Result<usize, WireError> {
    // Checked first: the walk below is [`read_name`]'s, within the bounds it found.
    let (_, after) = read_name(msg, at)?;
    let mut at = at;
    loop {
        let len = msg[at];
        if len & 0xc0 == 0xc0 {
            at = usize::from(u16::from_be_bytes([len & 0x3f, msg[at + 1]]));
            continue;
        }
        let len = usize::from(len);
        out.extend_from_slice(&msg[at..at + 1 + len]);
        if len == 0 {
            return Ok(after);
        }
        at += 1 + len;
    }
}

/// The data of `r` with the names in it written out in full.
fn expand_rdata(msg: &[u8], r: &Record<'_>) -> Result<Vec<u8>, WireError> {
    // (bytes before the names, names); what follows the names is copied.
    let (fixed, names) = match r.rtype {
        // NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME.
        2..=5 | 7..=9 | 12 | 39 => (0, 1),
        // SOA (then its 20 bytes of numbers), MINFO, RP.
        6 | 14 | 17 => (0, 2),
        // MX, AFSDB, RT, KX.
        15 | 18 | 21 | 36 => (2, 1),
        // PX.
        26 => (2, 2),
        // SRV.
        33 => (6, 1),
        _ => return Ok(r.rdata.to_vec()),
    };
    let end = r.rdata_at + r.rdata.len();
    let mut out = r
        .rdata
        .get(..fixed)
        .ok_or(WireError::Truncated("record data"))?
        .to_vec();
    let mut at = r.rdata_at + fixed;
    for _ in 0..names {
        at = expand_name(msg, at, &mut out)?;
        if at > end {
            return Err(WireError::Truncated("record data"));
        }
    }
    out.extend_from_slice(&msg[at..end]);
    Ok(out)
}

impl Record<'_> {
    /// The address of an A or AAAA record (`None` for other types or a wrong length).
    pub fn address(&self) -> Option<IpAddr> {
        match (self.rtype, self.rdata.len()) {
            (rtype::A, 4) => {
                let o: [u8; 4] = self.rdata.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            (rtype::AAAA, 16) => {
                let o: [u8; 16] = self.rdata.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }

    /// The target of a CNAME record (names in its rdata may be compressed).
    pub fn cname_target(&self, msg: &[u8]) -> Option<String> {
        if self.rtype != rtype::CNAME {
            return None;
        }
        read_name(msg, self.rdata_at)
            .ok()
            .filter(|(_, end)| *end <= self.rdata_at + self.rdata.len())
            .map(|(n, _)| n)
    }

    /// The `ipv4hint` and `ipv6hint` addresses of an SVCB or HTTPS record (RFC 9460); empty for
    /// other types, AliasMode records and malformed parameters.
    pub fn svc_hints(&self) -> Vec<IpAddr> {
        if self.rtype != rtype::SVCB && self.rtype != rtype::HTTPS {
            return Vec::new();
        }
        svc_hints(self.rdata).unwrap_or_default()
    }
}

fn svc_hints(rdata: &[u8]) -> Option<Vec<IpAddr>> {
    let priority = u16::from_be_bytes(rdata.get(..2)?.try_into().ok()?);
    if priority == 0 {
        return Some(Vec::new());
    }
    // The target name is never compressed (RFC 9460 2.2).
    let mut at = 2;
    loop {
        let len = usize::from(*rdata.get(at)?);
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let mut out = Vec::new();
    while at < rdata.len() {
        let key = u16::from_be_bytes(rdata.get(at..at + 2)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(
            rdata.get(at + 2..at + 4)?.try_into().ok()?,
        ));
        let value = rdata.get(at + 4..at + 4 + len)?;
        match key {
            SVC_IPV4HINT if len % 4 == 0 => out.extend(
                value
                    .chunks_exact(4)
                    .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))),
            ),
            SVC_IPV6HINT if len % 16 == 0 => out.extend(value.chunks_exact(16).map(|c| {
                let o: [u8; 16] = c.try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(o))
            })),
            SVC_IPV4HINT | SVC_IPV6HINT => return None,
            _ => {}
        }
        at += 4 + len;
    }
    Some(out)
}

/// The ID of a message (`None` if it is shorter than a header).
pub fn id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(msg.get(..2)?.try_into().ok()?))
}

/// Writes `id` into a message of at least two bytes.
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(b) = msg.get_mut(..2) {
        b.copy_from_slice(&id.to_be_bytes());
    }
}

/// An answer steer makes itself for `query`: its ID, opcode, RD bit and question, QR and RA
/// set, `rcode`, no records. A query whose question cannot be read gets the header alone.
pub fn reply(query: &[u8], rcode: u8) -> Vec<u8> {
    let Ok(h) = Header::parse(query) else {
        return Vec::new();
    };
    let q = if h.qdcount > 0 {
        read_question(query, HEADER_LEN).ok()
    } else {
        None
    };
    let end = q.as_ref().map_or(HEADER_LEN, |q| q.end);
    let mut out = query[..end].to_vec();
    // QR, the query's opcode and RD, RA; AA, TC, Z, AD, CD clear.
    let flags = 0x8000 | (h.flags & 0x7900) | 0x0080 | u16::from(rcode & 0xf);
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    let qd = u16::from(q.is_some());
    out[4..6].copy_from_slice(&qd.to_be_bytes());
    out[6..12].fill(0);
    out
}

/// A query for `name` (dotted, no escapes) of type `qtype`, with `id` and RD set: for tests,
/// probes and the benchmark.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response to `query` with `records` (name, type, ttl, rdata) in the answer section,
    /// names written uncompressed.
    pub(crate) fn answer(query: &[u8], records: &[(&str, u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = reply(query, rcode::NOERROR);
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (name, t, ttl, rdata) in records {
            out.extend_from_slice(&encode_name(name));
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    /// A "response" without QR, and an A record of 5 bytes before a good one: clients reject
    /// both answers, so nothing is learned from them (the good record was).
    #[test]
    fn a_message_clients_reject_is_not_read() {
        let q = query(7, "a.video.example", rtype::A);
        let good = ("a.video.example", rtype::A, 60, vec![192, 0, 2, 1]);
        let mut no_qr = answer(&q, std::slice::from_ref(&good));
        no_qr[2] &= 0x7f;
        assert_eq!(parse(&no_qr).err(), Some(WireError::NotResponse));
        let bad_len = answer(
            &q,
            &[
                ("a.video.example", rtype::A, 60, vec![192, 0, 2, 9, 9]),
                good,
            ],
        );
        assert_eq!(parse(&bad_len).err(), Some(WireError::BadAddress(5)));
    }

    pub(crate) fn encode_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn a_query_and_its_answer_read_back() {
        let q = query(0x1234, "WWW.Example.COM.", rtype::A);
        let question = super::question(&q).unwrap();
        assert_eq!(question.name, "www.example.com");
        assert_eq!((question.qtype, question.qclass), (rtype::A, CLASS_IN));
        let a = answer(
            &q,
            &[
                (
                    "www.example.com",
                    rtype::CNAME,
                    60,
                    encode_name("cdn.example.net"),
                ),
                ("cdn.example.net", rtype::A, 30, vec![203, 0, 113, 7]),
            ],
        );
        let m = parse(&a).unwrap();
        assert!(m.header.is_response());
        assert_eq!(m.header.id, 0x1234);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].cname_target(&a).unwrap(), "cdn.example.net");
        assert_eq!(m.answers[1].address(), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(m.answers[1].ttl, 30);
    }

    #[test]
    fn compression_pointers_are_followed_only_backwards() {
        let q = query(1, "a.example", rtype::A);
        let mut a = reply(&q, 0);
        a[6..8].copy_from_slice(&1u16.to_be_bytes());
        // The record's owner: "www" then a pointer to the question name at offset 12.
        a.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 12]);
        a.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 1]);
        let m = parse(&a).unwrap();
        assert_eq!(m.answers[0].name, "www.a.example");
        // A pointer to itself, and one forwards.
        let mut looped = reply(&q, 0);
        looped[6..8].copy_from_slice(&1u16.to_be_bytes());
        let here = looped.len() as u8;
        looped.extend_from_slice(&[0xc0, here]);
        assert_eq!(parse(&looped).unwrap_err(), WireError::BadPointer);
        let mut forward = reply(&q, 0);
        forward[6..8].copy_from_slice(&1u16.to_be_bytes());
        let ahead = forward.len() as u8 + 2;
        forward.extend_from_slice(&[0xc0, ahead, 0]);
        assert_eq!(parse(&forward).unwrap_err(), WireError::BadPointer);
    }

    #[test]
    fn odd_label_bytes_are_escaped_so_they_cannot_fake_a_dot() {
        let mut q = query(1, "x", rtype::A);
        // Replace the name with the single label "a.b".
        q.truncate(HEADER_LEN);
        q.extend_from_slice(&[3, b'a', b'.', b'B', 0, 0, 1, 0, 1]);
        assert_eq!(super::question(&q).unwrap().name, "a\\046b");
    }

    #[test]
    fn svcb_hints_are_read() {
        let mut rdata = vec![0, 1, 0]; // priority 1, target "."
        rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']); // alpn
        rdata.extend_from_slice(&[0, 4, 0, 8, 192, 0, 2, 1, 192, 0, 2, 2]);
        rdata.extend_from_slice(&[0, 6, 0, 16]);
        rdata.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        let q = query(1, "h.example", rtype::HTTPS);
        let a = answer(&q, &[("h.example", rtype::HTTPS, 300, rdata)]);
        let m = parse(&a).unwrap();
        let hints: Vec<String> = m.answers[0]
            .svc_hints()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(hints, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
        let alias = answer(&q, &[("h.example", rtype::HTTPS, 300, vec![0, 0, 0])]);
        assert!(parse(&alias).unwrap().answers[0].svc_hints().is_empty());
    }

    #[test]
    fn replies_keep_id_question_and_rd() {
        let mut q = query(0xbeef, "use-application-dns.net", rtype::A);
        q.extend_from_slice(&[0, 0, 41, 4, 208]); // junk after the question is not copied
        let r = reply(&q, rcode::NXDOMAIN);
        let h = Header::parse(&r).unwrap();
        assert_eq!(h.id, 0xbeef);
        assert!(h.is_response());
        assert_eq!(h.rcode(), rcode::NXDOMAIN);
        assert_eq!(h.flags & 0x0100, 0x0100, "RD copied");
        assert_eq!((h.qdcount, h.ancount, h.arcount), (1, 0, 0));
        assert_eq!(super::question(&r).unwrap().name, "use-application-dns.net");
        assert!(reply(&[1, 2, 3], rcode::SERVFAIL).is_empty());
    }

    /// A query with an EDNS OPT record advertising `size` bytes.
    fn with_opt(mut q: Vec<u8>, size: u16) -> Vec<u8> {
        q[10..12].copy_from_slice(&1u16.to_be_bytes());
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        q
    }

    #[test]
    fn a_clients_udp_limit_is_its_edns_size_or_512() {
        let q = query(1, "big.example", rtype::A);
        assert_eq!(udp_limit(&q), 512, "no OPT record");
        assert_eq!(udp_limit(&with_opt(q.clone(), 1232)), 1232);
        assert_eq!(udp_limit(&with_opt(q.clone(), 100)), 512, "never below 512");
        let mut cut = with_opt(q.clone(), 4096);
        cut.truncate(cut.len() - 3);
        assert_eq!(udp_limit(&cut), 512, "an OPT record that cannot be read");
        assert_eq!(udp_limit(&[1, 2]), 512);
    }

    #[test]
    fn a_truncated_answer_keeps_header_and_question_and_sets_tc() {
        let q = query(0x77, "big.example", rtype::A);
        let records: Vec<_> = (1..=40u8)
            .map(|i| ("big.example", rtype::A, 60, vec![198, 19, 110, i]))
            .collect();
        let mut a = answer(&q, &records);
        a[2] |= 0x04; // AA stays
        let t = truncated(&a);
        let h = Header::parse(&t).unwrap();
        assert!(h.truncated() && h.is_response());
        assert_eq!(h.flags & 0x0400, 0x0400, "AA kept");
        assert_eq!(
            (h.id, h.qdcount, h.ancount, h.nscount, h.arcount),
            (0x77, 1, 0, 0, 0)
        );
        assert_eq!(super::question(&t).unwrap().name, "big.example");
        assert_eq!(t.len(), q.len());
        assert!(truncated(&[1]).is_empty());
    }

    /// An ANY answer: A, then AAAA, then an MX whose owner and exchange point into the AAAA
    /// record's name, then an additional AAAA and the OPT record. Without the AAAA records the
    /// rest reads back as it was.
    #[test]
    fn records_are_dropped_with_counts_fixed_and_later_names_written_out() {
        let q = query(9, "v.example", rtype::ANY);
        let mut a = reply(&q, rcode::NOERROR);
        a[6..8].copy_from_slice(&3u16.to_be_bytes());
        a[10..12].copy_from_slice(&2u16.to_be_bytes());
        // A of v.example (pointer to the question name).
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 19, 0, 1]);
        // AAAA of "www" + pointer to the question name: www.v.example.
        let www = a.len() as u8;
        a.extend_from_slice(&[
            3, b'w', b'w', b'w', 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16,
        ]);
        a.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // MX of www.v.example (pointer into the AAAA record) -> mail.www.v.example.
        a.extend_from_slice(&[0xc0, www, 0, 15, 0, 1, 0, 0, 0, 60, 0, 9, 0, 10]);
        a.extend_from_slice(&[4, b'm', b'a', b'i', b'l', 0xc0, www]);
        // Additional: AAAA of mail.www.v.example (pointer into the MX), then OPT.
        let mail = (a.len() - 7) as u8;
        a.extend_from_slice(&[0xc0, mail, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        a.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        a.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        let before = parse(&a).unwrap();
        assert_eq!(before.answers.len(), 3);
        let out = without(&a, |r| r.rtype == rtype::AAAA).unwrap().unwrap();
        let h = Header::parse(&out).unwrap();
        assert_eq!((h.ancount, h.nscount, h.arcount), (2, 0, 1));
        let m = parse(&out).unwrap();
        assert_eq!(m.answers[0].address(), Some("198.19.0.1".parse().unwrap()));
        assert_eq!(m.answers[1].name, "www.v.example");
        assert_eq!(m.answers[1].rtype, 15);
        let (exchange, end) = read_name(&out, m.answers[1].rdata_at + 2).unwrap();
        assert_eq!(exchange, "mail.www.v.example");
        assert_eq!(end, m.answers[1].rdata_at + m.answers[1].rdata.len());
        // The OPT record is all that is left after the answers.
        assert_eq!(&out[end..], &[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        assert_eq!(udp_limit(&out), 1232);
        // Nothing picked: the message goes on byte for byte.
        assert_eq!(without(&a, |_| false).unwrap(), None);
        // Only the additional AAAA: what comes before it is unchanged.
        let out = without(&a, |r| r.rtype == rtype::AAAA && r.name.starts_with("mail"))
            .unwrap()
            .unwrap();
        assert_eq!(out[12..a.len() - 39], a[12..a.len() - 39]);
        assert_eq!(Header::parse(&out).unwrap().arcount, 1);
    }

    /// Random bytes, random cuts and random single-byte changes of valid messages: nothing
    /// panics, and the parser stays within the message.
    #[test]
    fn random_and_mangled_messages_never_panic() {
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let q = query(7, "a.b.example.com", rtype::A);
        let valid = answer(
            &q,
            &[
                (
                    "a.b.example.com",
                    rtype::CNAME,
                    5,
                    encode_name("x.example.net"),
                ),
                ("x.example.net", rtype::A, 5, vec![1, 2, 3, 4]),
                (
                    "x.example.net",
                    rtype::HTTPS,
                    5,
                    vec![0, 1, 0, 0, 4, 0, 4, 1, 1, 1, 1],
                ),
            ],
        );
        for round in 0..200_000u32 {
            let msg: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 300) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut m = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                m.truncate((next() as usize) % (m.len() + 1));
                m
            };
            if let Ok(m) = parse(&msg) {
                for r in &m.answers {
                    let _ = r.address();
                    let _ = r.cname_target(&msg);
                    let _ = r.svc_hints();
                }
            }
            let _ = super::question(&msg);
            let _ = reply(&msg, rcode::SERVFAIL);
        }
    }
}
