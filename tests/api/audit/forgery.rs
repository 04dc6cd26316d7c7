//! The attacker who can write both sinks and the anchor file but lacks the audit key: an
//! edited or hidden event with every later MAC recomputed as an unkeyed SHA-256 chain still
//! fails verification (the chain is keyed), though the server starts on it.

use sha2::{Digest, Sha256};
use sigvault::audit::chain::Head;
use sigvault::audit::sink::anchor_line;
use sigvault::store::StoredEvent;

use super::tamper::{EVENTS, MAC_MISMATCH, assert_bad, assert_server_reports_the_same, stopped_trail};
use super::{NODE, copy_home, delete_store_events, startup_error, stored_events, verify_offline, write_witness};
use crate::helpers::AppHome;

/// The attacker without the audit key: edits the stored events, recomputes every MAC from
/// `from_seq` on as an unkeyed SHA-256 chain, writes the result to the store and the event
/// file, and appends the new head to the anchor file.
async fn forge_with_sha256(home: &AppHome, from_seq: u64, edit: impl FnOnce(&mut Vec<StoredEvent>)) {
    let mut events = stored_events(home).await;
    edit(&mut events);
    let mut prev = match from_seq {
        1 => vec![0u8; 32],
        _ => events[from_seq as usize - 2].1.clone(),
    };
    for (event, mac) in events.iter_mut().skip(from_seq as usize - 1) {
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(event.canonical());
        *mac = h.finalize().to_vec();
        prev = mac.clone();
    }
    assert_eq!(delete_store_events(&home.store(), |_| true).await, EVENTS);
    let store = sigvault::store::open(&home.settings().store)
        .await
        .expect("open the store");
    let batch = sigvault::store::AuditBatch::of(NODE, &events);
    store.append_audit(&batch).await.expect("write the forged events");
    store.close().await;
    let text: Vec<u8> = events.iter().flat_map(|(e, mac)| e.line(mac)).collect();
    std::fs::write(home.audit_file(), text).expect("write the event file");
    let (last, mac) = events.last().expect("events");
    let head = Head {
        seq: last.seq,
        mac: mac.clone(),
    };
    let mut anchors = std::fs::read(home.anchor_file()).expect("read the anchor file");
    anchors.extend_from_slice(anchor_line(NODE, &head).as_bytes());
    std::fs::write(home.anchor_file(), anchors).expect("append to the anchor file");
    // The HSM witness still names the genuine head, so a start is refused before any chain
    // check. The attacker cannot change the witness (it is on the HSM); the test does, to
    // show the keyed chain alone catches the forgery too.
    let refused = startup_error(home).await;
    assert!(refused.contains("HSM witness"), "{refused}");
    write_witness(home, head.seq, &head.mac).await;
}

#[tokio::test]
async fn an_attacker_who_recomputes_an_unkeyed_sha256_chain_still_fails_verification() {
    let home = stopped_trail().await;

    // Rewrite event 5 (a sign by root) as someone else's, chain recomputed from there on.
    let copy = copy_home(&home, "tamper-sha-edit").await;
    forge_with_sha256(&copy, 5, |events| events[4].0.principal = "nobody".into()).await;
    let report = verify_offline(&copy).await;
    assert_bad(&report, 5, &format!("store: {MAC_MISMATCH}"), "rewritten event");
    // Both sinks agree and the anchor names their head, so the server starts.
    assert_server_reports_the_same(&copy, &report, "rewritten event").await;

    // Hide event 5: drop it and renumber the rest, chain recomputed.
    let copy = copy_home(&home, "tamper-sha-hide").await;
    forge_with_sha256(&copy, 5, |events| {
        events.remove(4);
        for (event, _) in events.iter_mut().skip(4) {
            event.seq -= 1;
        }
    })
    .await;
    let report = verify_offline(&copy).await;
    assert_bad(&report, 5, &format!("store: {MAC_MISMATCH}"), "hidden event");
    assert_server_reports_the_same(&copy, &report, "hidden event").await;
}
