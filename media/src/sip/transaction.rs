//! SIP transaction timers over UDP (RFC 3261 §17), sans-IO and clock-free.
//!
//! * [`ServerTransactions`]: a request retransmitted by the peer (same top-`Via` branch, sent-by
//!   and method, from the same source) is answered with the bytes of the response already sent,
//!   for Timer J (64·T1 = 32 s), without running the request's logic twice.
//! * [`ClientTransactions`]: requests the platform sends (queries, `SUBSCRIBE`, `INVITE`, `BYE`)
//!   are retransmitted at T1, 2·T1 … capped at T2 until a response arrives, and time out after
//!   Timer F/B (64·T1). A provisional response stops INVITE retransmission and slows a
//!   non-INVITE to T2. Over TCP nothing is retransmitted; only the time-out runs. A response
//!   counts only when it comes from where the request went (the caller says what that means):
//!   knowing a branch is not enough to end someone else's transaction.
//!
//! Times are milliseconds on any monotonic clock the caller chooses.

use std::collections::{HashMap, VecDeque};

use super::message::Message;

/// RTT estimate (RFC 3261 T1), ms.
pub const T1_MS: u64 = 500;
/// Maximum retransmit interval for non-INVITE requests, ms.
pub const T2_MS: u64 = 4_000;
/// Transaction time-out (Timer B / F) and server-side memory (Timer J), ms.
pub const TIMEOUT_MS: u64 = 64 * T1_MS;
/// Most server transactions remembered at once (oldest dropped first).
pub const MAX_SERVER_TRANSACTIONS: usize = 65_536;

type Key = (String, String, String, String);

fn server_key(req: &Message, source: &str) -> Option<Key> {
    let via = req.top_via()?;
    let branch = via.branch()?.to_string();
    let mut method = req.method()?.to_string();
    if method == "ACK" {
        method = "INVITE".into();
    }
    let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(5060));
    Some((branch, method, sent_by, source.to_string()))
}

/// Final responses remembered for retransmitted requests.
#[derive(Debug, Default)]
pub struct ServerTransactions {
    map: HashMap<Key, Vec<u8>>,
    order: VecDeque<(u64, Key)>,
}

impl ServerTransactions {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// The response already sent for this request, when it is a retransmission from the same
    /// `source` (the transport's name for the peer).
    pub fn retransmission(&self, req: &Message, source: &str) -> Option<&[u8]> {
        let key = server_key(req, source)?;
        self.map.get(&key).map(Vec::as_slice)
    }

    /// Remember the final response sent for a request that came from `source`.
    pub fn answered(&mut self, req: &Message, source: &str, response: &[u8], now_ms: u64) {
        let Some(key) = server_key(req, source) else {
            return;
        };
        if self.map.len() >= MAX_SERVER_TRANSACTIONS {
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
        if self.map.insert(key.clone(), response.to_vec()).is_none() {
            self.order.push_back((now_ms + TIMEOUT_MS, key));
        }
    }

    /// Forget transactions past Timer J.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((at, _)) = self.order.front() {
            if *at > now_ms {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Debug)]
struct ClientTx<R> {
    bytes: Vec<u8>,
    remote: R,
    reliable: bool,
    invite: bool,
    next_ms: u64,
    interval_ms: u64,
    deadline_ms: u64,
    provisional: bool,
}

/// What [`ClientTransactions::on_response`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseMatch {
    /// No transaction of ours (stray or late).
    Unknown,
    /// A provisional response to a live transaction.
    Provisional(String),
    /// The final response: the transaction is over.
    Final(String),
    /// The branch is ours but the response came from elsewhere: ignored, the transaction goes on.
    Foreign(String),
}

/// Requests the platform sent and is waiting on, keyed by branch.
#[derive(Debug)]
pub struct ClientTransactions<R> {
    map: HashMap<String, ClientTx<R>>,
}

impl<R> Default for ClientTransactions<R> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<R: Clone> ClientTransactions<R> {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a transaction for a request already sent once. `branch` is its top-`Via` branch.
    pub fn start(
        &mut self,
        branch: &str,
        bytes: Vec<u8>,
        remote: R,
        reliable: bool,
        invite: bool,
        now_ms: u64,
    ) {
        self.map.insert(
            branch.to_string(),
            ClientTx {
                bytes,
                remote,
                reliable,
                invite,
                next_ms: now_ms + T1_MS,
                interval_ms: T1_MS,
                deadline_ms: now_ms + TIMEOUT_MS,
                provisional: false,
            },
        );
    }

    /// Match a response to its transaction by top-`Via` branch; `from_remote` says whether the
    /// response came from the remote the request was sent to.
    pub fn on_response(
        &mut self,
        resp: &Message,
        from_remote: impl FnOnce(&R) -> bool,
    ) -> ResponseMatch {
        let Some(branch) = resp.top_via().and_then(|v| v.branch().map(str::to_string)) else {
            return ResponseMatch::Unknown;
        };
        let Some(code) = resp.status() else {
            return ResponseMatch::Unknown;
        };
        let Some(tx) = self.map.get_mut(&branch) else {
            return ResponseMatch::Unknown;
        };
        if !from_remote(&tx.remote) {
            return ResponseMatch::Foreign(branch);
        }
        if code < 200 {
            tx.provisional = true;
            if !tx.invite {
                tx.interval_ms = T2_MS;
            }
            return ResponseMatch::Provisional(branch);
        }
        self.map.remove(&branch);
        ResponseMatch::Final(branch)
    }

    /// Cancel a transaction (its owner gave up).
    pub fn cancel(&mut self, branch: &str) {
        self.map.remove(branch);
    }

    /// Retransmissions due now, and transactions that timed out (removed).
    pub fn poll(&mut self, now_ms: u64) -> (Vec<(R, Vec<u8>)>, Vec<String>) {
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        for (branch, tx) in self.map.iter_mut() {
            if now_ms >= tx.deadline_ms {
                timed_out.push(branch.clone());
                continue;
            }
            let retransmits = !(tx.reliable || (tx.invite && tx.provisional));
            if retransmits && now_ms >= tx.next_ms {
                resend.push((tx.remote.clone(), tx.bytes.clone()));
                tx.interval_ms = if tx.invite {
                    tx.interval_ms * 2
                } else {
                    (tx.interval_ms * 2).min(T2_MS)
                };
                tx.next_ms = now_ms + tx.interval_ms;
            }
        }
        for b in &timed_out {
            self.map.remove(b);
        }
        (resend, timed_out)
    }

    /// The earliest time [`ClientTransactions::poll`] has work.
    pub fn next_deadline(&self) -> Option<u64> {
        self.map
            .values()
            .map(|t| {
                if t.reliable || (t.invite && t.provisional) {
                    t.deadline_ms
                } else {
                    t.next_ms.min(t.deadline_ms)
                }
            })
            .min()
    }

    /// Transactions in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are in flight.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;

    fn req(branch: &str) -> Message {
        parse_datagram(
            format!(
                "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n\
                 From: <sip:x@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn server_remembers_until_timer_j() {
        let mut s = ServerTransactions::new();
        let r = req("z9hG4bK1");
        assert!(s.retransmission(&r, "a").is_none());
        s.answered(&r, "a", b"SIP/2.0 200 OK", 0);
        assert_eq!(s.retransmission(&r, "a"), Some(&b"SIP/2.0 200 OK"[..]));
        assert!(s.retransmission(&req("z9hG4bK2"), "a").is_none());
        // The same bytes from another source are not a retransmission.
        assert!(s.retransmission(&r, "b").is_none());
        s.expire(TIMEOUT_MS - 1);
        assert_eq!(s.len(), 1);
        s.expire(TIMEOUT_MS);
        assert!(s.is_empty());
    }

    #[test]
    fn client_retransmits_doubling_to_t2_then_times_out() {
        let mut c: ClientTransactions<u8> = ClientTransactions::new();
        c.start("b1", b"x".to_vec(), 1, false, false, 0);
        let mut sends = Vec::new();
        let mut now = 0;
        while now <= TIMEOUT_MS {
            let (resend, out) = c.poll(now);
            if !resend.is_empty() {
                sends.push(now);
            }
            if !out.is_empty() {
                break;
            }
            now = c.next_deadline().unwrap();
        }
        assert_eq!(&sends[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(now, TIMEOUT_MS);
        assert!(c.is_empty());
    }

    #[test]
    fn final_response_ends_it_and_tcp_does_not_retransmit() {
        let mut c: ClientTransactions<u8> = ClientTransactions::new();
        c.start("z9hG4bK1", b"x".to_vec(), 1, false, false, 0);
        let resp = req("z9hG4bK1").response(200, "OK", None);
        let resp = parse_datagram(&resp.to_bytes()).unwrap();
        // From elsewhere: ignored, the transaction goes on.
        assert_eq!(
            c.on_response(&resp, |r| *r == 2),
            ResponseMatch::Foreign("z9hG4bK1".into())
        );
        assert_eq!(
            c.on_response(&resp, |r| *r == 1),
            ResponseMatch::Final("z9hG4bK1".into())
        );
        assert_eq!(c.on_response(&resp, |_| true), ResponseMatch::Unknown);
        c.start("t", b"x".to_vec(), 1, true, false, 0);
        assert!(c.poll(10_000).0.is_empty());
        assert_eq!(c.next_deadline(), Some(TIMEOUT_MS));
    }
}
