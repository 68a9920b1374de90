//! Segment files written and digested (SHA-256 and SM3) on a thread of their own, many
//! segments at once.
//!
//! Every recorded segment needs both digests for the index. Taking them when a segment ends
//! meant reading it back and hashing 15 MB on the async runtime in one go; here the recorder
//! hands each fragment over as the segmenter makes it, and one thread appends the fragments of
//! all the recordings to their spool files and folds them into their digests. The thread wakes
//! at most every [`TICK`] while fragments flow (a sender does not wake a thread that is not
//! waiting on the channel), so a hundred recordings cost it a few dozen wake-ups a second, not
//! one per fragment and write. SM3 is the expensive one (a chain of 64-byte compressions):
//! the thread gathers the fragments of several recordings and hashes them side by side
//! ([`shouhu_sm3::update_many`], eight at a time with AVX2 or AVX-512), and SHA-256 two at a time
//! ([`shouhu_sm3::sha256::update_many`], interleaved on SHA-NI). A fragment waits at most
//! [`MAX_WAIT`] for company; a segment's digests are ready as soon as its last fragment is in.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shouhu_sm3::sha256::Sha256State;
use shouhu_sm3::Sm3State;
use tokio::sync::oneshot;

/// How long fragments wait for fragments of other segments to be hashed beside them.
pub const MAX_WAIT: Duration = Duration::from_millis(250);

/// Once woken, the thread lets fragments gather this long before it writes and hashes them.
pub const TICK: Duration = Duration::from_millis(40);

/// Hash as soon as this many segments have fragments waiting (the AVX2 lanes are full).
const BATCH: usize = 8;

/// A segment's digests: (SHA-256, SM3).
pub type Digests = ([u8; 32], [u8; 32]);

enum Cmd {
    /// A file's digests begin; its bytes are appended to the file first, if any.
    Begin(u64, Option<WriteTo>),
    Data(u64, Vec<u8>),
    Finish(u64, oneshot::Sender<Result<Digests, String>>),
    Forget(u64),
}

/// Where a file's bytes go, and the first write error (shared with its [`Digesting`]).
struct WriteTo {
    file: Arc<std::fs::File>,
    failed: Arc<std::sync::OnceLock<String>>,
}

/// The digest thread; cloning shares it. The thread ends when the last clone and the last
/// [`Digesting`] are dropped.
#[derive(Clone)]
pub struct Digester {
    tx: mpsc::Sender<Cmd>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester")
    }
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// Start the digest thread.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("segment-digests".into())
            .spawn(move || Worker::default().run(rx))
            .expect("spawn the segment digest thread");
        Digester {
            tx,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Begin the digests of one file.
    pub fn begin(&self) -> Digesting {
        self.start(None)
    }

    /// Begin a file that this thread writes: each [`Digesting::update`] is appended to `file`
    /// (in order) and digested. Write errors show in [`Digesting::failed`] and fail
    /// [`Digesting::finish`].
    pub fn begin_writing(&self, file: Arc<std::fs::File>) -> Digesting {
        self.start(Some(file))
    }

    fn start(&self, file: Option<Arc<std::fs::File>>) -> Digesting {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let failed = Arc::new(std::sync::OnceLock::new());
        let to = file.map(|file| WriteTo {
            file,
            failed: failed.clone(),
        });
        let _ = self.tx.send(Cmd::Begin(id, to));
        Digesting {
            id,
            tx: self.tx.clone(),
            finished: false,
            failed,
        }
    }
}

/// The digests of one file in progress: hand over its bytes in order, then [`Digesting::finish`].
pub struct Digesting {
    id: u64,
    tx: mpsc::Sender<Cmd>,
    finished: bool,
    failed: Arc<std::sync::OnceLock<String>>,
}

impl Digesting {
    /// The next bytes of the file.
    pub fn update(&self, data: Vec<u8>) {
        if !data.is_empty() {
            let _ = self.tx.send(Cmd::Data(self.id, data));
        }
    }

    /// The first error writing the file, if one happened yet.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The digests of everything handed over, once it is all written; an error if a write
    /// failed or the thread is gone.
    pub async fn finish(mut self) -> Result<Digests, String> {
        self.finished = true;
        let (tx, rx) = oneshot::channel();
        let gone = || "the segment digest thread is gone".to_string();
        self.tx.send(Cmd::Finish(self.id, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

impl Drop for Digesting {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.tx.send(Cmd::Forget(self.id));
        }
    }
}

#[derive(Default)]
struct Entry {
    sha256: Sha256State,
    sm3: Sm3State,
    pending: VecDeque<Vec<u8>>,
    /// How many of `pending` (from the front) are in the file already.
    written: usize,
    finish: Option<oneshot::Sender<Result<Digests, String>>>,
    write: Option<WriteTo>,
}

impl Entry {
    /// Append the pieces not yet in the file, in one system call when it takes them all.
    fn write(&mut self) {
        let Some(w) = &self.write else { return };
        if self.written >= self.pending.len() || w.failed.get().is_some() {
            self.written = self.pending.len();
            return;
        }
        let mut slices: Vec<std::io::IoSlice> = self
            .pending
            .range(self.written..)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut bufs = &mut slices[..];
        while !bufs.is_empty() {
            use std::io::Write;
            match (&*w.file).write_vectored(bufs) {
                Ok(0) => {
                    let _ = w.failed.set("the disk took no more bytes".into());
                    break;
                }
                Ok(n) => std::io::IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = w.failed.set(e.to_string());
                    break;
                }
            }
        }
        self.written = self.pending.len();
    }
}

#[derive(Default)]
struct Worker {
    entries: HashMap<u64, Entry>,
    /// When the oldest fragment waiting arrived.
    oldest: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            let cmd = match self.oldest {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(t) => rx.recv_timeout(MAX_WAIT.saturating_sub(t.elapsed())),
            };
            let mut closed = false;
            match cmd {
                Ok(c) => {
                    self.apply(c);
                    // Let the other recordings' fragments gather: senders do not wake a
                    // thread that is not waiting on the channel.
                    std::thread::sleep(TICK);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
            }
            loop {
                match rx.try_recv() {
                    Ok(c) => self.apply(c),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Into the files first (each file's new pieces at once), then maybe the digests.
            for e in self.entries.values_mut() {
                e.write();
            }
            let waiting = self
                .entries
                .values()
                .filter(|e| !e.pending.is_empty())
                .count();
            let due = self.oldest.is_some_and(|t| t.elapsed() >= MAX_WAIT);
            let asked = self.entries.values().any(|e| e.finish.is_some());
            if closed || due || asked || waiting >= BATCH {
                self.hash_all();
            }
            if closed {
                return;
            }
        }
    }

    fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Begin(id, write) => self.entries.entry(id).or_default().write = write,
            Cmd::Data(id, d) => {
                self.entries.entry(id).or_default().pending.push_back(d);
                self.oldest.get_or_insert_with(Instant::now);
            }
            Cmd::Finish(id, tx) => self.entries.entry(id).or_default().finish = Some(tx),
            Cmd::Forget(id) => {
                self.entries.remove(&id);
            }
        }
    }

    /// Hash every fragment waiting (the segments side by side), then answer the finished ones.
    fn hash_all(&mut self) {
        loop {
            let mut jobs: Vec<(&mut Sha256State, &mut Sm3State, Vec<u8>)> = Vec::new();
            for e in self.entries.values_mut() {
                // Each segment's next piece: the segments' fragments come in the same pieces
                // (boxes, video, audio), so the lanes run messages of similar length.
                let Some(d) = e.pending.pop_front() else {
                    continue;
                };
                e.written = e.written.saturating_sub(1);
                jobs.push((&mut e.sha256, &mut e.sm3, d));
            }
            if jobs.is_empty() {
                break;
            }
            let (mut sha, mut sm3): (Vec<_>, Vec<_>) = jobs
                .iter_mut()
                .map(|(a, b, d)| ((&mut **a, d.as_slice()), (&mut **b, d.as_slice())))
                .unzip();
            shouhu_sm3::sha256::update_many(&mut sha);
            shouhu_sm3::update_many(&mut sm3);
            drop((sha, sm3));
            for (_, _, d) in jobs {
                crate::bufpool::give(d);
            }
        }
        self.oldest = None;
        let done: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.finish.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(e) = self.entries.remove(&id) {
                let failed = e.write.as_ref().and_then(|w| w.failed.get().cloned());
                let out = match failed {
                    Some(err) => Err(err),
                    None => Ok((e.sha256.finalize(), e.sm3.finalize())),
                };
                if let Some(tx) = e.finish {
                    let _ = tx.send(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved files handed over in pieces get the digests of their whole contents.
    #[tokio::test]
    async fn digests_of_interleaved_files() {
        let d = Digester::new();
        let files: Vec<Vec<u8>> = (0..20u32)
            .map(|i| {
                (0..(i * 7919 % 50_000))
                    .map(|k| (k * 31 + i) as u8)
                    .collect()
            })
            .collect();
        let hs: Vec<Digesting> = files.iter().map(|_| d.begin()).collect();
        for piece in 0..10 {
            for (f, h) in files.iter().zip(&hs) {
                let n = f.len().div_ceil(10);
                let from = (piece * n).min(f.len());
                let to = ((piece + 1) * n).min(f.len());
                h.update(f[from..to].to_vec());
            }
        }
        let forgotten = d.begin();
        forgotten.update(vec![1, 2, 3]);
        drop(forgotten);
        // A written file: its bytes on disk in order, the same digests.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.part");
        let file = Arc::new(std::fs::File::create(&path).unwrap());
        let w = d.begin_writing(file);
        for piece in files[7].chunks(1000) {
            w.update(piece.to_vec());
        }
        let (sha, _) = w.finish().await.expect("written");
        assert_eq!(std::fs::read(&path).unwrap(), files[7]);
        assert_eq!(
            sha,
            <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&files[7]))
        );
        // A file that cannot be written fails its digests with the error.
        let ro = Arc::new(std::fs::File::open(&path).unwrap());
        let w = d.begin_writing(ro);
        w.update(vec![1; 10]);
        let err = w.finish().await.expect_err("read-only file");
        assert!(!err.is_empty());
        for (f, h) in files.iter().zip(hs) {
            let (sha, sm3) = h.finish().await.expect("digests");
            assert_eq!(
                sha,
                <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(f))
            );
            assert_eq!(sm3, <[u8; 32]>::from(<sm3::Sm3 as sha2::Digest>::digest(f)));
        }
    }
}
