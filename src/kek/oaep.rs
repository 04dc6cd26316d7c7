//! EME-OAEP decoding with SHA-256 and MGF1-SHA-256 and an empty label (RFC 8017 §7.1.2,
//! step 3), for an HSM that does the RSA private-key operation raw (`CKM_RSA_X_509`) because
//! it has no OAEP with SHA-256: SoftHSM2 does OAEP with SHA-1 only.
//!
//! Every check runs over the whole block whatever the bytes hold, and all of them fold into
//! one answer: a caller learns only "opened" or "did not open", never which check failed, and
//! the work done does not depend on where the block went wrong (Manger's attack needs to tell
//! a bad leading byte from the other failures).

use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::Zeroizing;

const HASH_LEN: usize = 32;

/// MGF1 with SHA-256: `len` bytes of mask from `seed`.
fn mgf1(seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut mask = Zeroizing::new(Vec::with_capacity(len.saturating_add(HASH_LEN)));
    let mut counter: u32 = 0;
    while mask.len() < len {
        let mut hash = Sha256::new();
        hash.update(seed);
        hash.update(counter.to_be_bytes());
        mask.extend_from_slice(&hash.finalize());
        counter = counter.wrapping_add(1);
    }
    mask.truncate(len);
    mask
}

fn xor(a: &[u8], b: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(a.iter().zip(b).map(|(x, y)| x ^ y).collect())
}

/// The message inside `em`, the encoded block a raw RSA decryption gave (as long as the
/// modulus); `None` when it is not a valid EME-OAEP (SHA-256) encoding of anything.
pub(crate) fn decode_sha256(em: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // Y ‖ maskedSeed ‖ maskedDB; the smallest block is 2·hLen + 2 bytes.
    let (&first, rest) = em.split_first()?;
    if rest.len() < 2 * HASH_LEN + 1 {
        return None;
    }
    let (masked_seed, masked_db) = rest.split_at(HASH_LEN);
    let seed = xor(masked_seed, &mgf1(masked_db, HASH_LEN));
    let db = xor(masked_db, &mgf1(&seed, masked_db.len()));
    let (label_hash, padded) = db.split_at(HASH_LEN);

    let mut good: Choice = first.ct_eq(&0) & label_hash.ct_eq(Sha256::digest(b"").as_slice());
    // Scan the whole of PS ‖ 0x01 ‖ M: before the separator only zeros may stand; the first
    // 0x01 marks the message. No branch depends on the bytes.
    let mut found = Choice::from(0);
    let mut start: u32 = 0;
    for (i, &byte) in padded.iter().enumerate() {
        let is_one = byte.ct_eq(&1);
        let first_one = is_one & !found;
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        start = u32::conditional_select(&start, &index.saturating_add(1), first_one);
        // A byte other than zero before the separator spoils the block.
        good &= found | byte.ct_eq(&0) | is_one;
        found |= is_one;
    }
    good &= found;
    if bool::from(good) {
        padded
            .get(usize::try_from(start).ok()?..)
            .map(|m| Zeroizing::new(m.to_vec()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use rsa::pkcs8::DecodePrivateKey as _;

    use super::*;

    /// A throwaway RSA-1024 key (made with openssl for this test only).
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBANTJwJA9Ttvd+Qtn
VwHUH51laclr0nWweS40SkyMIdR/cUR/IeMEBCqvWs/3QvhrERoO/9/WVZMb5Z04
vT+NqWx1GK+uaQpJExhefHdkb2PMY0KDOd1Mkxgd/BGQICQPgnyJnsbIQ6PBweya
VNSAfxce1BBCEIecRp0CjgO5RIylAgMBAAECgYBFLi6/9l68FufQMFHWU1vP9Ve2
V6q9/pj3T6LUTj71clWl+ltPDlA4fHhe4rnQQCb4POYtpOZ/hHNbcUX98pWhCEBV
gOOo6GDe4eY11T93KJncVckhVf77OeRBkffsRIAQIJYcDpwMbi+nMo4oqHcCFgzv
VRJBfHBUXb35qnVgwQJBAPj9fGlQXFcHaeE7tHOEDlyo8AnczEdt96HMGWtKVFAe
0kR9ysY1VcOfdnqDcDo3CJd/L1w6lRajCVg01eB3bFECQQDax1oKAWjAaj9IYviO
ymJaATjyYiKh3+s2ft1685r/Vx01R0erNh8PWdI3KJGZWBDe7nKNsytzs/q6T9zZ
hYoVAkEA5HCtFHKGRdKncd41UUZ3ZswYbvQE+AQMjoWTTLyFXnzora47vF5ysWg8
a2rsLH0RhO1LpnKZFou+pw7Sq37mAQJBALC6EJW8ha3JJc2HhVlzSveBvUqu02MH
yq1+1dKYLkDNUh7TsaUwVu7Dk/hSoSrJ5Pbwj0C/1v3kCUmvcauVH/ECQBPFZofd
a46V2Q1rMd0pT/bjvA3fRV9Z5ByA5KNq0z5zjjZtcboA3aBYjFZtuKnz+2XdSiMJ
gD8dWpbZrUxSifo=
-----END PRIVATE KEY-----";

    /// The encoded block inside `ciphertext`, as a raw RSA decryption (an HSM's
    /// `CKM_RSA_X_509`) returns it: left-padded to the modulus length.
    fn raw_decrypt(key: &rsa::PrivateKey, ciphertext: &[u8]) -> Vec<u8> {
        let c = rsa::BoxedUint::from_be_slice_vartime(ciphertext);
        let m = rsa::hazmat::rsa_decrypt_and_check(key, None::<&mut getrandom::SysRng>, &c).expect("raw RSA");
        let tail: Vec<u8> = m.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        let mut em = vec![0u8; 128];
        em[128 - tail.len()..].copy_from_slice(&tail);
        em
    }

    #[test]
    fn decodes_what_an_independent_oaep_encrypts_and_refuses_every_alteration() {
        let key = rsa::PrivateKey::from_pkcs8_pem(TEST_KEY).expect("test key");
        let public = key.to_public_key();
        for message in [b"".as_slice(), b"k", &[0x42; 32], &[0x01; 62]] {
            let ciphertext = public.oaep_encrypt::<Sha256>(message).expect("encrypt");
            let em = raw_decrypt(&key, &ciphertext);
            assert_eq!(decode_sha256(&em).as_deref().map(Vec::as_slice), Some(message));
            // Any single flipped bit of the block is refused.
            for at in [0, 1, 20, 40, 64, 90, 127] {
                let mut bad = em.clone();
                bad[at] ^= 0x04;
                assert!(decode_sha256(&bad).is_none(), "flip at {at}");
            }
        }
        // Too short to be a block, or a block of zeros: not an encoding.
        assert!(decode_sha256(&[]).is_none());
        assert!(decode_sha256(&[0u8; 65]).is_none());
        assert!(decode_sha256(&[0u8; 128]).is_none());
    }
}
