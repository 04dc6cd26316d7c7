//! AES key wrap with padding (RFC 5649, NIST SP 800-38F "KWP") under a 256-bit key: what an
//! `aes256-kwp` key does for other systems (HSM and cloud-KMS import paths take this format).
//! Pure; the key and the unwrapped material are zeroized by the callers' types.
//!
//! Checked against the NIST KWP known-answer files in `tests/vectors/rfc-nist/keywrap` (both
//! directions, the failing cases included) and, over the API, against pyca `cryptography`.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The alternative initial value's constant half (RFC 5649 §3).
const AIV: u32 = 0xA659_59A6;
/// The largest plaintext wrapped: far beyond any key (an RSA-8192 private key in PKCS#8 DER
/// is ~4.7 KiB), well within RFC 5649's 2^32 bytes.
pub(crate) const MAX_PLAINTEXT: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KwpError {
    #[error("the key is not an AES-256 key")]
    Key,
    #[error("the material to wrap must be 1 to {MAX_PLAINTEXT} bytes")]
    Length,
    /// Wrong key, altered, or not a KWP wrap: one error for every cause.
    #[error("the wrapped key does not unwrap")]
    Unwrap,
}

fn cipher(key: &[u8]) -> Result<Aes256, KwpError> {
    Aes256::new_from_slice(key).map_err(|_| KwpError::Key)
}

/// AES of the block `a ‖ r` (two 64-bit semiblocks, big-endian): the new `(a, r)`.
fn encrypt(cipher: &Aes256, a: u64, r: u64) -> (u64, u64) {
    let mut block = Array::from(((u128::from(a) << 64) | u128::from(r)).to_be_bytes());
    cipher.encrypt_block(&mut block);
    let out = u128::from_be_bytes(block.into());
    ((out >> 64) as u64, out as u64)
}

/// The inverse of [`encrypt`].
fn decrypt(cipher: &Aes256, a: u64, r: u64) -> (u64, u64) {
    let mut block = Array::from(((u128::from(a) << 64) | u128::from(r)).to_be_bytes());
    cipher.decrypt_block(&mut block);
    let out = u128::from_be_bytes(block.into());
    ((out >> 64) as u64, out as u64)
}

/// Wraps `plaintext` (1 to [`MAX_PLAINTEXT`] bytes) under `key`.
pub(crate) fn wrap(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KwpError> {
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(KwpError::Length);
    }
    let cipher = cipher(key)?;
    let mli = u32::try_from(plaintext.len()).map_err(|_| KwpError::Length)?;
    let mut a = (u64::from(AIV) << 32) | u64::from(mli);
    // The plaintext zero-padded to whole 64-bit semiblocks.
    let mut r: Zeroizing<Vec<u64>> = Zeroizing::new(
        plaintext
            .chunks(8)
            .map(|chunk| {
                let mut semiblock = [0u8; 8];
                for (to, from) in semiblock.iter_mut().zip(chunk) {
                    *to = *from;
                }
                u64::from_be_bytes(semiblock)
            })
            .collect(),
    );
    if let [only] = r.as_slice() {
        // One semiblock: AES(K, A ‖ P).
        let (c0, c1) = encrypt(&cipher, a, *only);
        return Ok([c0.to_be_bytes(), c1.to_be_bytes()].concat());
    }
    let n = r.len() as u64;
    for j in 0..6u64 {
        for (i, ri) in (1u64..).zip(r.iter_mut()) {
            let (b0, b1) = encrypt(&cipher, a, *ri);
            a = b0 ^ (n * j + i);
            *ri = b1;
        }
    }
    Ok(std::iter::once(a)
        .chain(r.iter().copied())
        .flat_map(u64::to_be_bytes)
        .collect())
}

/// Unwraps a KWP wrap made under `key`: the material, or [`KwpError::Unwrap`] whatever was
/// wrong (the integrity check, the length indicator and the padding are all checked).
pub(crate) fn unwrap(key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KwpError> {
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) || wrapped.len() > MAX_PLAINTEXT + 16 {
        return Err(KwpError::Unwrap);
    }
    let cipher = cipher(key)?;
    let mut semiblocks = wrapped.chunks_exact(8).map(|c| {
        let mut semiblock = [0u8; 8];
        semiblock.copy_from_slice(c);
        u64::from_be_bytes(semiblock)
    });
    let mut a = semiblocks.next().ok_or(KwpError::Unwrap)?;
    let mut r: Zeroizing<Vec<u64>> = Zeroizing::new(semiblocks.collect());
    if let [only] = r.as_mut_slice() {
        let (p0, p1) = decrypt(&cipher, a, *only);
        a = p0;
        *only = p1;
    } else {
        let n = r.len() as u64;
        for j in (0..6u64).rev() {
            for (i, ri) in (1u64..=n).rev().zip(r.iter_mut().rev()) {
                let (b0, b1) = decrypt(&cipher, a ^ (n * j + i), *ri);
                a = b0;
                *ri = b1;
            }
        }
    }
    let aiv_ok = ((a >> 32) as u32).ct_eq(&AIV);
    let mli = (a & 0xFFFF_FFFF) as usize;
    let padded_len = r.len() * 8;
    let mut out: Zeroizing<Vec<u8>> = Zeroizing::new(r.iter().flat_map(|s| s.to_be_bytes()).collect());
    // The length indicator must point into the last semiblock, and the padding after it must
    // be zeros (RFC 5649 §3).
    let length_ok = mli > padded_len.saturating_sub(8) && mli <= padded_len;
    let padding_ok = out.iter().skip(mli).fold(0u8, |acc, b| acc | b) == 0;
    if !(bool::from(aiv_ok) && length_ok && padding_ok) {
        return Err(KwpError::Unwrap);
    }
    out.truncate(mli);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testvectors::nist_kwp;

    #[test]
    fn nist_kwp_256_vectors_wrap_and_unwrap_exactly() {
        let encrypt = nist_kwp("rfc-nist/keywrap/KWP_AE_256.txt");
        assert!(!encrypt.is_empty());
        for case in &encrypt {
            let plaintext = case.p.as_ref().expect("AE cases have a plaintext");
            assert_eq!(wrap(&case.k, plaintext).unwrap(), case.c, "AE COUNT {}", case.count);
            assert_eq!(unwrap(&case.k, &case.c).unwrap().as_slice(), plaintext.as_slice());
        }
        let decrypt = nist_kwp("rfc-nist/keywrap/KWP_AD_256.txt");
        let mut failing = 0;
        for case in &decrypt {
            match &case.p {
                Some(p) => assert_eq!(
                    unwrap(&case.k, &case.c).unwrap().as_slice(),
                    p.as_slice(),
                    "AD COUNT {}",
                    case.count
                ),
                None => {
                    failing += 1;
                    assert_eq!(
                        unwrap(&case.k, &case.c).err(),
                        Some(KwpError::Unwrap),
                        "AD COUNT {}",
                        case.count
                    );
                }
            }
        }
        assert!(failing > 0, "the AD file has failing cases, and they fail");
    }

    #[test]
    fn bad_lengths_keys_and_wraps_are_refused() {
        let key = [7u8; 32];
        assert_eq!(wrap(&key, b""), Err(KwpError::Length));
        assert_eq!(wrap(&key, &vec![1u8; MAX_PLAINTEXT + 1]), Err(KwpError::Length));
        assert_eq!(wrap(&[7u8; 16], b"x"), Err(KwpError::Key));
        let wrapped = wrap(&key, b"twenty bytes of key!").unwrap();
        assert_eq!(wrapped.len(), 8 + 24);
        for bad in [&wrapped[..8], &wrapped[..wrapped.len() - 1], &[0u8; 24][..]] {
            assert_eq!(unwrap(&key, bad).err(), Some(KwpError::Unwrap));
        }
        assert_eq!(unwrap(&[8u8; 32], &wrapped).err(), Some(KwpError::Unwrap));
        let mut flipped = wrapped.clone();
        flipped[10] ^= 1;
        assert_eq!(unwrap(&key, &flipped).err(), Some(KwpError::Unwrap));
        // One-block case (material of at most 8 bytes).
        let short = wrap(&key, b"8 bytes!").unwrap();
        assert_eq!(short.len(), 16);
        assert_eq!(unwrap(&key, &short).unwrap().as_slice(), b"8 bytes!");
    }
}
