//! The witness's encoding, its comparison with a trail, and its writes on a real SoftHSM2
//! token: round trips per node, the interval between writes, an HSM that stops answering.

use super::*;

fn head(seq: u64, mac: u8) -> Head {
    Head {
        seq,
        mac: vec![mac; MAC_LEN],
    }
}

#[test]
fn a_head_encodes_as_the_format_byte_the_big_endian_sequence_and_the_mac() {
    let encoded = encode(&head(0x0102_0304_0506_0708, 0xAB));
    let mut expected = vec![1, 1, 2, 3, 4, 5, 6, 7, 8];
    expected.extend_from_slice(&[0xAB; 32]);
    assert_eq!(encoded, expected);
    assert_eq!(decode(&encoded), Ok(head(0x0102_0304_0506_0708, 0xAB)));
    assert_eq!(decode(&encode(&Head::genesis())), Ok(Head::genesis()));
    assert_eq!(record_name("vm-1"), "sigvault-audit-head:vm-1");
}

#[test]
fn a_malformed_record_is_refused_with_what_is_wrong() {
    let good = encode(&head(7, 1));
    let mut newer = good.clone();
    newer[0] = 2;
    let mut genesis_with_a_mac = encode(&head(0, 1));
    genesis_with_a_mac[1..9].copy_from_slice(&0u64.to_be_bytes());
    let cases: [(&[u8], &str); 6] = [
        (&[], "the record is empty"),
        (&newer, "format 2 (this build reads format 1)"),
        (&good[..40], "40 bytes, expected 41"),
        (&[good.as_slice(), &[0]].concat(), "42 bytes, expected 41"),
        (&[1], "1 bytes, expected 41"),
        (&genesis_with_a_mac, "sequence 0 with a MAC other than the genesis"),
    ];
    for (bytes, reason) in cases {
        assert_eq!(decode(bytes), Err(reason.to_owned()), "{bytes:?}");
    }
}

#[test]
fn a_trail_that_reaches_the_witnessed_event_with_its_mac_passes() {
    let witnessed = head(5, 9);
    assert_eq!(compare(&witnessed, 5, Some(&[9; 32])), Ok(()));
    assert_eq!(compare(&witnessed, 80, Some(&[9; 32])), Ok(()), "a trail that went on");
}

#[test]
fn a_trail_that_ends_before_the_witnessed_event_lost_events_from_every_sink() {
    let problem = compare(&head(5, 0xCD), 3, None).unwrap_err();
    assert_eq!(problem.seq, 4, "the first event missing");
    assert_eq!(
        problem.reason,
        "the HSM witness names event 5 (MAC cdcdcdcdcdcdcdcd…) but the trail ends at event 3: events were removed \
         from every sink"
    );
    let wiped = compare(&head(5, 0xCD), 0, None).unwrap_err();
    assert_eq!(wiped.seq, 1);
    assert!(wiped.reason.contains("the trail ends at event 0"), "{}", wiped.reason);
}

#[test]
fn a_trail_with_another_mac_at_the_witnessed_event_differs_from_the_witness() {
    let problem = compare(&head(5, 0xCD), 7, Some(&[0x11; 32])).unwrap_err();
    assert_eq!(problem.seq, 5);
    assert_eq!(
        problem.reason,
        "the trail differs from the HSM witness at event 5: the witness holds MAC cdcdcdcdcdcdcdcd…, the trail \
         1111111111111111…"
    );
}

#[test]
fn a_witness_at_the_genesis_passes_any_trail() {
    assert_eq!(compare(&Head::genesis(), 0, None), Ok(()));
    assert_eq!(compare(&Head::genesis(), 4, None), Ok(()));
}

#[cfg(feature = "kek-pkcs11")]
mod on_softhsm {
    use super::*;
    use crate::kek::pkcs11::Pkcs11Kek;
    use crate::kek::pkcs11::testing::{fresh_token, take_the_token_away};

    async fn provider(tag: &str) -> (Arc<dyn KekProvider>, crate::kek::pkcs11::Pkcs11Settings) {
        let settings = fresh_token(tag);
        let kek: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap());
        (kek, settings)
    }

    #[tokio::test]
    async fn each_node_reads_back_the_head_last_written_for_it() {
        let (kek, _) = provider("wit-nodes").await;
        assert_eq!(read(kek.as_ref(), "n1").await.unwrap(), None, "never written");
        write_now(kek.as_ref(), "n1", &head(3, 1)).await.unwrap();
        write_now(kek.as_ref(), "n2", &head(9, 2)).await.unwrap();
        write_now(kek.as_ref(), "n1", &head(4, 3)).await.unwrap();
        assert_eq!(read(kek.as_ref(), "n1").await.unwrap(), Some(head(4, 3)));
        assert_eq!(read(kek.as_ref(), "n2").await.unwrap(), Some(head(9, 2)));
        assert_eq!(read(kek.as_ref(), "n3").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_record_that_is_not_a_witness_is_refused_on_read() {
        let (kek, _) = provider("wit-bad").await;
        kek.witness_write("sigvault-audit-head:n1", b"\x01short").await.unwrap();
        let err = read(kek.as_ref(), "n1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "HSM witness sigvault-audit-head:n1 is malformed: 6 bytes, expected 41"
        );
        let short_mac = Head {
            seq: 1,
            mac: vec![1; 16],
        };
        let err = write_now(kek.as_ref(), "n1", &short_mac).await.unwrap_err();
        assert!(matches!(err, WitnessError::Malformed { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn writes_come_at_most_once_per_interval_but_a_forced_write_comes_at_once() {
        let (kek, _) = provider("wit-interval").await;
        let interval = Duration::from_secs(10);
        let mut witness = Witness::new(Arc::clone(&kek), "n1", interval);
        let t0 = Instant::now();
        assert!(
            witness.write_if_due(&head(1, 1), t0).await.unwrap(),
            "the first head is due"
        );
        assert!(
            !witness
                .write_if_due(&head(2, 2), t0 + Duration::from_secs(9))
                .await
                .unwrap()
        );
        assert_eq!(read(kek.as_ref(), "n1").await.unwrap(), Some(head(1, 1)), "not written");
        assert!(witness.write_if_due(&head(3, 3), t0 + interval).await.unwrap());
        assert_eq!(read(kek.as_ref(), "n1").await.unwrap(), Some(head(3, 3)));
        assert!(
            !witness.due(&head(3, 3), t0 + 5 * interval),
            "a head the witness holds is never due"
        );
        witness.write_forced(&head(4, 4), t0 + interval).await.unwrap();
        assert_eq!(read(kek.as_ref(), "n1").await.unwrap(), Some(head(4, 4)), "shutdown");
    }

    fn is_unavailable(err: &WitnessError) -> bool {
        matches!(
            err,
            WitnessError::Kek {
                source: KekError::Unavailable(_),
                ..
            }
        )
    }

    #[tokio::test]
    async fn a_token_that_stops_answering_is_unavailable_and_tried_again_only_after_an_interval() {
        let (kek, settings) = provider("wit-down").await;
        let interval = Duration::from_secs(10);
        let mut witness = Witness::new(Arc::clone(&kek), "n1", interval);
        let t0 = Instant::now();
        witness.write_forced(&head(1, 1), t0).await.unwrap();
        take_the_token_away(&settings);

        let err = read(kek.as_ref(), "n1").await.unwrap_err();
        assert!(is_unavailable(&err), "{err:?}");
        let later = t0 + interval;
        let err = witness.write_if_due(&head(2, 2), later).await.unwrap_err();
        assert!(is_unavailable(&err), "{err:?}");
        assert!(
            !witness.due(&head(2, 2), later + Duration::from_secs(1)),
            "resting after a failure"
        );
        assert!(
            witness.due(&head(2, 2), later + interval),
            "tried again an interval later"
        );
    }
}
