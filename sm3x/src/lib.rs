//! SM3 (GB/T 32905-2016, GM/T 0004-2012) for many messages at once.
//!
//! SM3's compression is a chain: each 64-byte block needs the previous one's result, so one
//! message cannot go faster than one block after another, and a portable implementation hashes
//! about 380 MB/s on this project's machines — the largest cost of recording (every segment gets
//! an SM3 digest). Recording hashes many streams at the same time, though, and their messages are
//! independent: with AVX2, [`update_many`] runs eight of them side by side, one message per 32-bit
//! lane of the vector registers (the "multi-buffer" technique), several times the throughput of
//! one at a time; with AVX-512 VL the same lanes take fewer instructions (a rotation is one
//! `vprold`, a three-input boolean function one `vpternlogd`). Without AVX2 (checked at run
//! time) it hashes them one after another.
//!
//! [`Sm3State`] is an ordinary incremental hasher; [`update_many`] feeds many of them at once.
//! Digests are the standard ones (the tests compare with the RustCrypto `sm3` crate).

#![deny(missing_docs)]

/// The initial value (IV) of SM3.
const IV: [u32; 8] = [
    0x7380_166f,
    0x4914_b2b9,
    0x1724_42d7,
    0xda8a_0600,
    0xa96f_30bc,
    0x1631_38aa,
    0xe38d_ee4d,
    0xb0fb_0e4e,
];

/// `T_j` rotated left by `j mod 32`, as every round adds it.
const T: [u32; 64] = {
    let mut t = [0u32; 64];
    let mut j = 0;
    while j < 64 {
        let tj: u32 = if j < 16 { 0x79cc_4519 } else { 0x7a87_9d8a };
        t[j] = tj.rotate_left((j % 32) as u32);
        j += 1;
    }
    t
};

/// A Merkle–Damgård computation in progress (SM3 and SHA-256 pad the same way): the chaining
/// value, the bytes short of a whole block, and the message length so far.
#[derive(Clone)]
pub(crate) struct Md {
    pub(crate) h: [u32; 8],
    tail: [u8; 64],
    tail_len: usize,
    pub(crate) len: u64,
}

impl Md {
    fn new(iv: [u32; 8]) -> Self {
        Md {
            h: iv,
            tail: [0; 64],
            tail_len: 0,
            len: 0,
        }
    }

    /// Absorb `data`, one block after another.
    fn update(&mut self, data: &[u8], compress: fn(&mut [u32; 8], &[u8])) {
        let whole = self.take_head(data, compress);
        for b in data[whole.0..whole.1].chunks_exact(64) {
            compress(&mut self.h, b);
        }
        self.keep_tail(&data[whole.1..]);
    }

    /// The digest: padding (0x80, zeros, the length in bits, big-endian), the chaining value
    /// big-endian.
    fn finalize(mut self, compress: fn(&mut [u32; 8], &[u8])) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 128];
        pad[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        pad[self.tail_len] = 0x80;
        let total = if self.tail_len < 56 { 64 } else { 128 };
        pad[total - 8..total].copy_from_slice(&bits.to_be_bytes());
        for b in pad[..total].chunks_exact(64) {
            compress(&mut self.h, b);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Complete a pending partial block from the front of `data` (compressing it when full);
    /// returns the range of `data` holding whole blocks after it.
    fn take_head(&mut self, data: &[u8], compress: fn(&mut [u32; 8], &[u8])) -> (usize, usize) {
        self.len = self.len.wrapping_add(data.len() as u64);
        let mut at = 0;
        if self.tail_len > 0 {
            let n = (64 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&data[..n]);
            self.tail_len += n;
            at = n;
            if self.tail_len < 64 {
                return (at, at);
            }
            let block = self.tail;
            compress(&mut self.h, &block);
            self.tail_len = 0;
        }
        let whole = (data.len() - at) / 64 * 64;
        (at, at + whole)
    }

    fn keep_tail(&mut self, rest: &[u8]) {
        debug_assert!(self.tail_len + rest.len() < 64);
        self.tail[self.tail_len..self.tail_len + rest.len()].copy_from_slice(rest);
        self.tail_len += rest.len();
    }
}

/// A hash state type over [`Md`]: construction, length, incremental update, finalization, and
/// a one-call digest function, for an initial value and a compression function.
macro_rules! md_state {
    ($(#[$doc:meta])* $state:ident, $name:literal, $iv:expr, $compress:path, $digest:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $state(pub(crate) $crate::Md);

        impl Default for $state {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Debug for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct($name).field("len", &self.0.len).finish()
            }
        }

        impl $state {
            /// A new computation (empty message).
            pub fn new() -> Self {
                $state($crate::Md::new($iv))
            }

            /// Bytes absorbed so far.
            pub fn len(&self) -> u64 {
                self.0.len
            }

            /// Whether nothing was absorbed yet.
            pub fn is_empty(&self) -> bool {
                self.0.len == 0
            }

            /// Absorb `data`, one block after another.
            pub fn update(&mut self, data: &[u8]) {
                self.0.update(data, $compress);
            }

            /// The digest of everything absorbed.
            pub fn finalize(self) -> [u8; 32] {
                self.0.finalize($compress)
            }
        }

        /// The digest of `data` in one call.
        pub fn $digest(data: &[u8]) -> [u8; 32] {
            let mut s = $state::new();
            s.update(data);
            s.finalize()
        }
    };
}
pub(crate) use md_state;

md_state!(
    /// An SM3 computation in progress.
    Sm3State,
    "Sm3State",
    IV,
    compress,
    digest
);

pub mod sha256;

/// How [`update_many`] compresses whole blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// One message after another.
    Scalar,
    /// Eight lanes of AVX2.
    Avx2,
    /// Eight lanes with AVX-512 VL's rotations and three-input logic.
    Avx512,
}

/// The fastest kernel this CPU runs (checked at run time).
fn best_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            return Kernel::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
    }
    Kernel::Scalar
}

/// Absorb each job's bytes into its state: `jobs[i].1` into `jobs[i].0`, as
/// [`Sm3State::update`] would one after another. With AVX2 the whole blocks of up to eight jobs
/// are compressed side by side (with AVX-512 VL, in fewer instructions); a job's partial blocks
/// at either end go the scalar way.
pub fn update_many(jobs: &mut [(&mut Sm3State, &[u8])]) {
    update_many_with(jobs, best_kernel());
}

fn update_many_with(jobs: &mut [(&mut Sm3State, &[u8])], kernel: Kernel) {
    // Where each job's whole blocks end (its partial block after them goes to the tail).
    let mut ends = Vec::with_capacity(jobs.len());
    // Whole-block work per job: (job index, blocks not yet compressed).
    let mut work: Vec<(usize, &[u8])> = Vec::with_capacity(jobs.len());
    for (i, (state, data)) in jobs.iter_mut().enumerate() {
        let (from, to) = state.0.take_head(data, compress);
        ends.push(to);
        if to > from {
            work.push((i, &data[from..to]));
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if work.len() >= LANES_WORTH_IT && kernel != Kernel::Scalar {
            let mut states: Vec<[u32; 8]> = work.iter().map(|(i, _)| jobs[*i].0 .0.h).collect();
            let blocks: Vec<&[u8]> = work.iter().map(|(_, b)| *b).collect();
            lanes::run(&mut states, &blocks, kernel == Kernel::Avx512);
            for ((i, _), h) in work.iter().zip(states) {
                jobs[*i].0 .0.h = h;
            }
            work.clear();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernel;
    for (i, blocks) in work {
        for b in blocks.chunks_exact(64) {
            compress(&mut jobs[i].0 .0.h, b);
        }
    }
    for ((state, data), end) in jobs.iter_mut().zip(ends) {
        let rest = &data[end..];
        state.0.keep_tail(rest);
    }
}

/// Below this many messages hash one at a time (one lane of eight runs at about 0.6 of the
/// scalar code's speed, two at 1.2).
#[cfg(target_arch = "x86_64")]
const LANES_WORTH_IT: usize = 2;

/// One compression: `h` ← CF(`h`, `block`) (64 bytes).
fn compress(h: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 68];
    for (i, c) in block.chunks_exact(4).take(16).enumerate() {
        w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for j in 16..68 {
        let x = w[j - 16] ^ w[j - 9] ^ w[j - 3].rotate_left(15);
        w[j] = p1(x) ^ w[j - 13].rotate_left(7) ^ w[j - 6];
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
    for j in 0..64 {
        let a12 = a.rotate_left(12);
        let ss1 = a12.wrapping_add(e).wrapping_add(T[j]).rotate_left(7);
        let ss2 = ss1 ^ a12;
        let (ff, gg) = if j < 16 {
            (a ^ b ^ c, e ^ f ^ g)
        } else {
            ((a & b) | (a & c) | (b & c), (e & f) | (!e & g))
        };
        let tt1 = ff
            .wrapping_add(d)
            .wrapping_add(ss2)
            .wrapping_add(w[j] ^ w[j + 4]);
        let tt2 = gg.wrapping_add(hh).wrapping_add(ss1).wrapping_add(w[j]);
        d = c;
        c = b.rotate_left(9);
        b = a;
        a = tt1;
        hh = g;
        g = f.rotate_left(19);
        f = e;
        e = p0(tt2);
    }
    for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
        *x ^= y;
    }
}

fn p0(x: u32) -> u32 {
    x ^ x.rotate_left(9) ^ x.rotate_left(17)
}

fn p1(x: u32) -> u32 {
    x ^ x.rotate_left(15) ^ x.rotate_left(23)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod lanes {
    //! Eight SM3 compressions in the eight 32-bit lanes of AVX2 registers.

    use std::arch::x86_64::*;

    use super::{compress, T};

    const N: usize = 8;

    /// Compress every message's blocks into its state, eight messages at a time: a lane whose
    /// message is done takes the next one waiting. The caller checked that the CPU has AVX2.
    /// With `avx512` the caller checked AVX-512 F and VL too.
    pub(super) fn run(states: &mut [[u32; 8]], blocks: &[&[u8]], avx512: bool) {
        debug_assert_eq!(states.len(), blocks.len());
        // Lane l works on message `slot[l]` from block `at[l]`.
        let mut next = 0usize;
        let mut slot = [usize::MAX; N];
        let mut at = [0usize; N];
        for s in slot.iter_mut() {
            if next < blocks.len() {
                *s = next;
                next += 1;
            }
        }
        loop {
            let active = slot.iter().filter(|s| **s != usize::MAX).count();
            if active == 0 {
                return;
            }
            if active < super::LANES_WORTH_IT {
                // Few left: finish them one at a time rather than run idle lanes.
                for l in 0..N {
                    if slot[l] != usize::MAX {
                        let m = slot[l];
                        for b in blocks[m][at[l] * 64..].chunks_exact(64) {
                            compress(&mut states[m], b);
                        }
                    }
                }
                for m in next..blocks.len() {
                    for b in blocks[m].chunks_exact(64) {
                        compress(&mut states[m], b);
                    }
                }
                return;
            }
            // Run every lane for as many blocks as its shortest message has left.
            let steps = (0..N)
                .filter(|l| slot[*l] != usize::MAX)
                .map(|l| blocks[slot[l]].len() / 64 - at[l])
                .min()
                .unwrap_or(0);
            let mut h = [[0u32; N]; 8];
            for l in 0..N {
                if slot[l] != usize::MAX {
                    for (k, word) in states[slot[l]].iter().enumerate() {
                        h[k][l] = *word;
                    }
                }
            }
            static IDLE: [u8; 64] = [0; 64];
            for step in 0..steps {
                let mut input: [&[u8]; N] = [&IDLE; N];
                for l in 0..N {
                    if slot[l] != usize::MAX {
                        let from = (at[l] + step) * 64;
                        input[l] = &blocks[slot[l]][from..from + 64];
                    }
                }
                if avx512 {
                    // SAFETY: the caller checked that the CPU has AVX-512 F and VL.
                    unsafe { compress8_avx512(&mut h, &input) };
                } else {
                    // SAFETY: `run` is only called after `is_x86_64_feature_detected!("avx2")`.
                    unsafe { compress8_avx2(&mut h, &input) };
                }
            }
            for l in 0..N {
                if slot[l] == usize::MAX {
                    continue;
                }
                for (k, row) in h.iter().enumerate() {
                    states[slot[l]][k] = row[l];
                }
                at[l] += steps;
                if at[l] * 64 >= blocks[slot[l]].len() {
                    // This lane's message is done: take the next one waiting, if any.
                    slot[l] = usize::MAX;
                    at[l] = 0;
                    if next < blocks.len() {
                        slot[l] = next;
                        next += 1;
                    }
                }
            }
        }
    }

    // The operations the compression is written in, for AVX2 and for AVX-512 (VL, on 256-bit
    // registers: the same eight lanes, but a rotation is one instruction instead of three, and
    // three-input boolean functions are one `vpternlogd`).
    macro_rules! rotl_avx2 {
        ($x:expr, $n:literal) => {
            _mm256_or_si256(
                _mm256_slli_epi32::<$n>($x),
                _mm256_srli_epi32::<{ 32 - $n }>($x),
            )
        };
    }
    macro_rules! xor3_avx2 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($a, $b), $c)
        };
    }
    macro_rules! maj_avx2 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_or_si256(
                _mm256_and_si256($a, $b),
                _mm256_and_si256(_mm256_or_si256($a, $b), $c),
            )
        };
    }
    macro_rules! ch_avx2 {
        ($e:expr, $f:expr, $g:expr) => {
            _mm256_or_si256(_mm256_and_si256($e, $f), _mm256_andnot_si256($e, $g))
        };
    }
    // P0(x) = x ^ (x <<< 9) ^ (x <<< 17) = x ^ ((x ^ (x <<< 8)) <<< 9), the `<<< 8` a byte
    // shuffle (shifts are AVX2's bottleneck); P1 likewise with 15 and 23.
    macro_rules! p0_avx2 {
        ($x:expr, $rot8:expr) => {{
            let x = $x;
            _mm256_xor_si256(
                x,
                rotl_avx2!(_mm256_xor_si256(x, _mm256_shuffle_epi8(x, $rot8)), 9),
            )
        }};
    }
    macro_rules! p1_avx2 {
        ($x:expr, $rot8:expr) => {{
            let x = $x;
            _mm256_xor_si256(
                x,
                rotl_avx2!(_mm256_xor_si256(x, _mm256_shuffle_epi8(x, $rot8)), 15),
            )
        }};
    }
    macro_rules! rotl_avx512 {
        ($x:expr, $n:literal) => {
            _mm256_rol_epi32::<$n>($x)
        };
    }
    macro_rules! xor3_avx512 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_ternarylogic_epi32::<0x96>($a, $b, $c)
        };
    }
    macro_rules! maj_avx512 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_ternarylogic_epi32::<0xE8>($a, $b, $c)
        };
    }
    macro_rules! ch_avx512 {
        ($e:expr, $f:expr, $g:expr) => {
            _mm256_ternarylogic_epi32::<0xCA>($e, $f, $g)
        };
    }
    macro_rules! p0_avx512 {
        ($x:expr, $rot8:expr) => {{
            let x = $x;
            xor3_avx512!(x, _mm256_rol_epi32::<9>(x), _mm256_rol_epi32::<17>(x))
        }};
    }
    macro_rules! p1_avx512 {
        ($x:expr, $rot8:expr) => {{
            let x = $x;
            xor3_avx512!(x, _mm256_rol_epi32::<15>(x), _mm256_rol_epi32::<23>(x))
        }};
    }

    /// Rows of eight 32-bit words → columns.
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256i; N]) -> [__m256i; N] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    macro_rules! compress8 {
        ($name:ident, $features:literal, $rotl:ident, $xor3:ident, $maj:ident, $ch:ident, $p0:ident, $p1:ident) => {
            /// One compression in each lane: `h[k][l]` is word `k` of lane `l`'s chaining value,
            /// `input[l]` its 64-byte block.
            #[target_feature(enable = $features)]
            unsafe fn $name(h: &mut [[u32; N]; 8], input: &[&[u8]; N]) {
                // The message words, lane by lane: word i of every lane in one vector (two 8×8
                // transposes of the big-endian words).
                let bswap = _mm256_setr_epi8(
                    3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4,
                    11, 10, 9, 8, 15, 14, 13, 12,
                );
                // Rotating each 32-bit word left by 8 is a byte shuffle.
                #[allow(unused_variables)]
                let rot8 = _mm256_setr_epi8(
                    3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6,
                    11, 8, 9, 10, 15, 12, 13, 14,
                );
                let mut w = [_mm256_setzero_si256(); 68];
                for half in 0..2 {
                    let rows: [__m256i; N] = std::array::from_fn(|l| {
                        let b = &input[l][half * 32..half * 32 + 32];
                        // SAFETY: `b` is 32 readable bytes (each block is 64); the load is
                        // unaligned.
                        let v = unsafe { _mm256_loadu_si256(b.as_ptr().cast()) };
                        _mm256_shuffle_epi8(v, bswap)
                    });
                    let t = transpose8(rows);
                    w[half * 8..half * 8 + 8].copy_from_slice(&t);
                }
                for j in 16..68 {
                    let x = $xor3!(w[j - 16], w[j - 9], $rotl!(w[j - 3], 15));
                    w[j] = $xor3!($p1!(x, rot8), $rotl!(w[j - 13], 7), w[j - 6]);
                }
                let load = |row: &[u32; N]| {
                    // SAFETY: `row` is 8 u32 = 32 readable bytes; the load is unaligned.
                    unsafe { _mm256_loadu_si256(row.as_ptr().cast()) }
                };
                let v: [__m256i; 8] = std::array::from_fn(|k| load(&h[k]));
                let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = v;
                macro_rules! round {
                    ($j:expr, $ff:expr, $gg:expr) => {{
                        let j = $j;
                        let a12 = $rotl!(a, 12);
                        let s = _mm256_add_epi32(
                            _mm256_add_epi32(a12, e),
                            _mm256_set1_epi32(T[j] as i32),
                        );
                        let ss1 = $rotl!(s, 7);
                        let ss2 = _mm256_xor_si256(ss1, a12);
                        let tt1 = _mm256_add_epi32(
                            _mm256_add_epi32($ff, d),
                            _mm256_add_epi32(ss2, _mm256_xor_si256(w[j], w[j + 4])),
                        );
                        let tt2 = _mm256_add_epi32(
                            _mm256_add_epi32($gg, hh),
                            _mm256_add_epi32(ss1, w[j]),
                        );
                        d = c;
                        c = $rotl!(b, 9);
                        b = a;
                        a = tt1;
                        hh = g;
                        g = $rotl!(f, 19);
                        f = e;
                        e = $p0!(tt2, rot8);
                    }};
                }
                for j in 0..16 {
                    round!(j, $xor3!(a, b, c), $xor3!(e, f, g));
                }
                for j in 16..64 {
                    round!(j, $maj!(a, b, c), $ch!(e, f, g));
                }
                for (k, x) in [a, b, c, d, e, f, g, hh].into_iter().enumerate() {
                    let mut out = [0u32; N];
                    // SAFETY: `out` is 8 u32 = 32 writable bytes; the store is unaligned.
                    unsafe {
                        _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_xor_si256(v[k], x))
                    };
                    h[k] = out;
                }
            }
        };
    }

    compress8!(
        compress8_avx2,
        "avx2",
        rotl_avx2,
        xor3_avx2,
        maj_avx2,
        ch_avx2,
        p0_avx2,
        p1_avx2
    );
    compress8!(
        compress8_avx512,
        "avx2,avx512f,avx512vl",
        rotl_avx512,
        xor3_avx512,
        maj_avx512,
        ch_avx512,
        p0_avx512,
        p1_avx512
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sm3::Digest;

    fn reference(data: &[u8]) -> [u8; 32] {
        sm3::Sm3::digest(data).into()
    }

    #[test]
    fn standard_vectors() {
        // GB/T 32905-2016 appendix A: "abc" and "abcd" × 16.
        assert_eq!(
            digest(b"abc"),
            hex_lit("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
        );
        assert_eq!(
            digest(&b"abcd".repeat(16)),
            hex_lit("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
        );
    }

    fn hex_lit(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn incremental_matches_the_reference_at_every_split() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let data: Vec<u8> = (0..300).map(|_| rng.gen()).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200, 300] {
            let msg = &data[..len];
            for split in [0, 1, 31, 63, 64, 65, len / 2, len] {
                let split = split.min(len);
                let mut s = Sm3State::new();
                s.update(&msg[..split]);
                s.update(&msg[split..]);
                assert_eq!(s.finalize(), reference(msg), "len {len} split {split}");
            }
        }
    }

    /// Many messages of random lengths fed in random pieces through `update_many` (lanes on
    /// AVX2 machines) give the reference digests.
    #[test]
    fn many_at_once_match_the_reference() {
        // Every kernel this CPU runs, the fastest last.
        let mut kernels = vec![Kernel::Scalar];
        if std::is_x86_feature_detected!("avx2") {
            kernels.push(Kernel::Avx2);
        }
        if best_kernel() == Kernel::Avx512 {
            kernels.push(Kernel::Avx512);
        }
        for k in kernels {
            many_at_once(k);
        }
    }

    fn many_at_once(kernel: Kernel) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..40 {
            let count = rng.gen_range(1..30);
            let msgs: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = if rng.gen_bool(0.3) {
                        rng.gen_range(0..200)
                    } else {
                        rng.gen_range(0..20_000)
                    };
                    (0..len).map(|_| rng.gen()).collect()
                })
                .collect();
            let mut states: Vec<Sm3State> = (0..count).map(|_| Sm3State::new()).collect();
            let mut fed = vec![0usize; count];
            while fed.iter().zip(&msgs).any(|(f, m)| *f < m.len()) {
                let pieces: Vec<(usize, usize)> = (0..count)
                    .map(|i| {
                        let left = msgs[i].len() - fed[i];
                        let n = if left == 0 {
                            0
                        } else {
                            rng.gen_range(0..=left.min(5000))
                        };
                        (i, n)
                    })
                    .collect();
                let mut jobs: Vec<(&mut Sm3State, &[u8])> = states
                    .iter_mut()
                    .zip(&pieces)
                    .map(|(s, (i, n))| (s, &msgs[*i][fed[*i]..fed[*i] + n]))
                    .collect();
                update_many_with(&mut jobs, kernel);
                for (i, n) in pieces {
                    fed[i] += n;
                }
            }
            for (i, s) in states.into_iter().enumerate() {
                assert_eq!(
                    s.finalize(),
                    reference(&msgs[i]),
                    "{kernel:?}: round {round} message {i}"
                );
            }
        }
    }

    /// Throughput, one at a time against eight lanes (`cargo test --release -p shouhu-sm3 --
    /// --ignored --nocapture throughput`).
    #[test]
    #[ignore]
    fn throughput() {
        let data: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 4 << 20]).collect();
        let t = std::time::Instant::now();
        for d in &data {
            std::hint::black_box(reference(d));
        }
        let crate_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for d in &data {
            std::hint::black_box(digest(d));
        }
        let scalar_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut states: Vec<Sm3State> = (0..data.len()).map(|_| Sm3State::new()).collect();
        let mut jobs: Vec<(&mut Sm3State, &[u8])> = states
            .iter_mut()
            .zip(&data)
            .map(|(s, d)| (s, d.as_slice()))
            .collect();
        let avx2 = if std::is_x86_feature_detected!("avx2") {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        };
        update_many_with(&mut jobs, avx2);
        let avx2_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut states: Vec<Sm3State> = (0..data.len()).map(|_| Sm3State::new()).collect();
        let mut jobs: Vec<(&mut Sm3State, &[u8])> = states
            .iter_mut()
            .zip(&data)
            .map(|(s, d)| (s, d.as_slice()))
            .collect();
        update_many(&mut jobs);
        let best_s = t.elapsed().as_secs_f64();
        let mb = (data.len() * (4 << 20)) as f64 / 1e6;
        println!(
            "sm3 crate {:.0} MB/s, scalar {:.0} MB/s, AVX2 lanes {:.0} MB/s, update_many ({:?}) {:.0} MB/s",
            mb / crate_s,
            mb / scalar_s,
            mb / avx2_s,
            best_kernel(),
            mb / best_s
        );
    }
}
