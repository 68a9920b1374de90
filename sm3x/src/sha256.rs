//! SHA-256 of many messages, two at a time with the SHA extensions.
//!
//! One message cannot go faster than one compression after another, and with the x86 SHA
//! extensions (SHA-NI) a compression is a chain of `sha256rnds2` instructions, each waiting for
//! the one before: the unit could start another one before the first is done. [`update_many`]
//! gives it one: two messages' compressions interleaved, instruction by instruction. Single
//! messages and CPUs without SHA-NI go through the `sha2` crate (which uses SHA-NI when present).

/// The initial value of SHA-256.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// One compression by the `sha2` crate (SHA-NI when the CPU has it).
fn compress(h: &mut [u32; 8], block: &[u8]) {
    let b = sha2::digest::generic_array::GenericArray::from_slice(block);
    sha2::compress256(h, std::slice::from_ref(b));
}

crate::md_state!(
    /// A SHA-256 computation in progress.
    Sha256State,
    "Sha256State",
    IV,
    compress,
    digest
);

/// Absorb each job's bytes into its state, as [`Sha256State::update`] would one after
/// another; with SHA-NI the whole blocks of two jobs at a time are compressed interleaved.
pub fn update_many(jobs: &mut [(&mut Sha256State, &[u8])]) {
    update_many_with(jobs, pairs_available());
}

fn pairs_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse4.1")
            && std::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn update_many_with(jobs: &mut [(&mut Sha256State, &[u8])], pairs: bool) {
    // Whole blocks of each job (after completing its pending partial block).
    let mut work: Vec<(usize, usize)> = Vec::with_capacity(jobs.len());
    for (state, data) in jobs.iter_mut() {
        work.push(state.0.take_head(data, compress));
    }
    let mut i = 0;
    while i < jobs.len() {
        let (from, to) = work[i];
        if pairs && i + 1 < jobs.len() {
            let (from2, to2) = work[i + 1];
            let (first, second) = jobs.split_at_mut(i + 1);
            let (s1, d1) = &mut first[i];
            let (s2, d2) = &mut second[0];
            let (b1, b2) = (&d1[from..to], &d2[from2..to2]);
            let n = b1.len().min(b2.len());
            #[cfg(target_arch = "x86_64")]
            if n > 0 {
                // SAFETY: `pairs` is only true when the CPU has SHA, SSE4.1 and SSSE3.
                unsafe { ni::compress2(&mut s1.0.h, &b1[..n], &mut s2.0.h, &b2[..n]) };
            }
            for b in b1[n..].chunks_exact(64) {
                compress(&mut s1.0.h, b);
            }
            for b in b2[n..].chunks_exact(64) {
                compress(&mut s2.0.h, b);
            }
            i += 2;
        } else {
            let (s, d) = &mut jobs[i];
            for b in d[from..to].chunks_exact(64) {
                compress(&mut s.0.h, b);
            }
            i += 1;
        }
    }
    for ((state, data), (_, to)) in jobs.iter_mut().zip(work) {
        state.0.keep_tail(&data[to..]);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod ni {
    //! Two SHA-256 compressions interleaved with the SHA extensions (after the single-message
    //! code of RustCrypto's `sha2`, x86 backend).

    use std::arch::x86_64::*;

    /// The round constants.
    static K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The state words as the SHA instructions take them: (ABEF, CDGH).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(h: &[u32; 8]) -> (__m128i, __m128i) {
        // SAFETY: `h` is 8 u32 = 32 readable bytes; the loads are unaligned.
        let (dcba, efgh) = unsafe {
            (
                _mm_loadu_si128(h.as_ptr().cast()),
                _mm_loadu_si128(h.as_ptr().add(4).cast()),
            )
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(efgh, 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store(h: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        // SAFETY: `h` is 8 u32 = 32 writable bytes; the stores are unaligned.
        unsafe {
            _mm_storeu_si128(h.as_mut_ptr().cast(), dcba);
            _mm_storeu_si128(h.as_mut_ptr().add(4).cast(), hgef);
        }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(v0: __m128i, v1: __m128i, v2: __m128i, v3: __m128i) -> __m128i {
        let t1 = _mm_sha256msg1_epu32(v0, v1);
        let t2 = _mm_alignr_epi8(v3, v2, 4);
        _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), v3)
    }

    /// Compress `b1`'s blocks into `h1` and `b2`'s into `h2` (the same number of whole
    /// 64-byte blocks), the two chains interleaved.
    ///
    /// # Safety
    /// The CPU must have SHA, SSE2, SSSE3 and SSE4.1.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress2(h1: &mut [u32; 8], b1: &[u8], h2: &mut [u32; 8], b2: &[u8]) {
        debug_assert_eq!(b1.len(), b2.len());
        debug_assert_eq!(b1.len() % 64, 0);
        let mask = _mm_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let (mut abef1, mut cdgh1) = load(h1);
        let (mut abef2, mut cdgh2) = load(h2);
        let k = |i: usize| {
            // SAFETY: `i < 16`, so `K[4 i .. 4 i + 4]` is 16 readable bytes; unaligned load.
            unsafe { _mm_loadu_si128(K.as_ptr().add(4 * i).cast()) }
        };
        for (x, y) in b1.chunks_exact(64).zip(b2.chunks_exact(64)) {
            let (save1, save2) = ((abef1, cdgh1), (abef2, cdgh2));
            let words = |b: &[u8]| -> [__m128i; 4] {
                std::array::from_fn(|i| {
                    // SAFETY: `b` is a 64-byte block: bytes 16 i .. 16 i + 16 are readable.
                    let v = unsafe { _mm_loadu_si128(b.as_ptr().add(16 * i).cast()) };
                    _mm_shuffle_epi8(v, mask)
                })
            };
            let mut w1 = words(x);
            let mut w2 = words(y);
            // Four rounds of both chains: message words `m1`, `m2` of group `i`.
            macro_rules! rounds4 {
                ($m1:expr, $m2:expr, $i:expr) => {{
                    let kv = k($i);
                    let t1 = _mm_add_epi32($m1, kv);
                    let t2 = _mm_add_epi32($m2, kv);
                    cdgh1 = _mm_sha256rnds2_epu32(cdgh1, abef1, t1);
                    cdgh2 = _mm_sha256rnds2_epu32(cdgh2, abef2, t2);
                    abef1 = _mm_sha256rnds2_epu32(abef1, cdgh1, _mm_shuffle_epi32(t1, 0x0E));
                    abef2 = _mm_sha256rnds2_epu32(abef2, cdgh2, _mm_shuffle_epi32(t2, 0x0E));
                }};
            }
            for i in 0..4 {
                rounds4!(w1[i], w2[i], i);
            }
            // Groups 4..16: each takes the next schedule words, kept in a ring of four.
            for i in 4..16 {
                let n1 = schedule(w1[i % 4], w1[(i + 1) % 4], w1[(i + 2) % 4], w1[(i + 3) % 4]);
                let n2 = schedule(w2[i % 4], w2[(i + 1) % 4], w2[(i + 2) % 4], w2[(i + 3) % 4]);
                w1[i % 4] = n1;
                w2[i % 4] = n2;
                rounds4!(n1, n2, i);
            }
            abef1 = _mm_add_epi32(abef1, save1.0);
            cdgh1 = _mm_add_epi32(cdgh1, save1.1);
            abef2 = _mm_add_epi32(abef2, save2.0);
            cdgh2 = _mm_add_epi32(cdgh2, save2.1);
        }
        store(h1, abef1, cdgh1);
        store(h2, abef2, cdgh2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sha2::Digest;

    /// Messages of random lengths fed in random pieces, by pairs and one at a time, give the
    /// `sha2` crate's digests.
    #[test]
    fn many_at_once_match_the_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for pairs in [false, pairs_available()] {
            for round in 0..30 {
                let count = rng.gen_range(1..12);
                let msgs: Vec<Vec<u8>> = (0..count)
                    .map(|_| {
                        let len = rng.gen_range(0..10_000);
                        (0..len).map(|_| rng.gen()).collect()
                    })
                    .collect();
                let mut states: Vec<Sha256State> = (0..count).map(|_| Sha256State::new()).collect();
                let mut fed = vec![0usize; count];
                while fed.iter().zip(&msgs).any(|(f, m)| *f < m.len()) {
                    let ns: Vec<usize> = (0..count)
                        .map(|i| rng.gen_range(0..=(msgs[i].len() - fed[i]).min(3000)))
                        .collect();
                    let mut jobs: Vec<(&mut Sha256State, &[u8])> = states
                        .iter_mut()
                        .enumerate()
                        .map(|(i, s)| (s, &msgs[i][fed[i]..fed[i] + ns[i]]))
                        .collect();
                    update_many_with(&mut jobs, pairs);
                    for (f, n) in fed.iter_mut().zip(ns) {
                        *f += n;
                    }
                }
                for (i, s) in states.into_iter().enumerate() {
                    let want: [u8; 32] = sha2::Sha256::digest(&msgs[i]).into();
                    assert_eq!(
                        s.finalize(),
                        want,
                        "pairs {pairs} round {round} message {i}"
                    );
                }
            }
        }
        assert_eq!(
            digest(b"abc"),
            <[u8; 32]>::from(sha2::Sha256::digest(b"abc"))
        );
    }

    /// Throughput, one message at a time against two interleaved (`cargo test --release -p
    /// shouhu-sm3 -- --ignored --nocapture sha256_throughput`).
    #[test]
    #[ignore]
    fn sha256_throughput() {
        let data: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 4 << 20]).collect();
        let t = std::time::Instant::now();
        for d in &data {
            std::hint::black_box(sha2::Sha256::digest(d));
        }
        let one = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut states: Vec<Sha256State> = (0..data.len()).map(|_| Sha256State::new()).collect();
        let mut jobs: Vec<(&mut Sha256State, &[u8])> = states
            .iter_mut()
            .zip(&data)
            .map(|(s, d)| (s, d.as_slice()))
            .collect();
        update_many(&mut jobs);
        let two = t.elapsed().as_secs_f64();
        let mb = (data.len() * (4 << 20)) as f64 / 1e6;
        println!(
            "sha2 crate {:.0} MB/s, update_many (pairs: {}) {:.0} MB/s",
            mb / one,
            pairs_available(),
            mb / two
        );
    }
}
