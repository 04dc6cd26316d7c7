//! The chain head witnessed by the HSM (ARCHITECTURE.md "Audit chain", issue 12): a trail
//! cut short in every sink — the event file, the anchor file and the store's rows, all on
//! the disk — agrees with itself and verified before; against the head the HSM witnessed it
//! fails, offline and through `sigvault audit verify`.
//!
//! The writer witnesses the head at every start, at most every `audit.hsm_anchor_interval`
//! and at a clean stop; some tests also write a witness themselves, in the documented format
//! (the record `sigvault-audit-head:<node>` on the vault's token, holding
//! `0x01 ‖ u64be(seq) ‖ mac`), which pins it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sigvault::admin::{OfflineVault, audit_accept_truncation};
use sigvault::kek;

use super::{
    NODE, copy_home, cut_every_sink, sql, startup_error, stopped_trail_of_signs, stored_events, verify_offline,
};
use crate::helpers::{AppHome, USER_PIN, module_path, run_binary, softhsm_conf, store_url};

/// Events of the trail: a create (its intent and its outcome) and ten signs.
const EVENTS: usize = 12;

async fn stopped_trail() -> AppHome {
    stopped_trail_of_signs(EVENTS).await
}

/// The MAC the store holds for event `seq`.
async fn mac_of(home: &AppHome, seq: usize) -> Vec<u8> {
    let events = stored_events(home).await;
    let (event, mac) = &events[seq - 1];
    assert_eq!(event.seq, seq as u64);
    mac.clone()
}

/// Writes the node's witness on the home's token, as the writer will.
async fn witness(home: &AppHome, seq: u64, mac: &[u8]) {
    let kek = kek::open(&home.settings().kek).await.expect("open the KEK");
    let value = [&[1u8][..], &seq.to_be_bytes(), mac].concat();
    kek.witness_write(&format!("sigvault-audit-head:{NODE}"), &value)
        .await
        .expect("write the witness");
}

/// Removes the event file, the anchor file and every row of the store's audit table.
async fn wipe_every_sink(home: &AppHome) {
    std::fs::remove_file(home.audit_file()).expect("remove the event file");
    std::fs::remove_file(home.anchor_file()).expect("remove the anchor file");
    sql(&home.store(), "DELETE FROM audit_batches").await;
}

#[tokio::test]
async fn a_trail_that_holds_the_witnessed_head_verifies() {
    let home = stopped_trail().await;
    for seq in [5, EVENTS] {
        witness(&home, seq as u64, &mac_of(&home, seq).await).await;
        let report = verify_offline(&home).await;
        assert!(
            report.ok && report.checked == EVENTS as u64,
            "witness at {seq}: {report:?}"
        );
    }
}

#[tokio::test]
async fn a_trail_wiped_from_every_sink_fails_at_its_first_event_against_the_witness() {
    let home = stopped_trail().await;
    let copy = copy_home(&home, "witness-wiped").await;
    wipe_every_sink(&copy).await;
    // The stop witnessed the last event: no further write is needed.
    let mac = mac_of(&home, EVENTS).await;
    let report = verify_offline(&copy).await;
    assert!(!report.ok && report.first_bad_seq == Some(1), "{report:?}");
    assert_eq!(
        report.reason.as_deref(),
        Some(
            format!(
                "the HSM witness names event {EVENTS} (MAC {}…) but the trail ends at event 0: events were removed \
                 from every sink",
                hex(&mac[..8])
            )
            .as_str()
        )
    );
    assert!(verify_offline(&home).await.ok, "the intact trail still verifies");
    let refused = startup_error(&copy).await;
    assert!(
        refused.contains(&format!("the HSM witness names event {EVENTS} "))
            && refused.contains("sigvault audit verify"),
        "a start is refused too: {refused}"
    );
}

#[tokio::test]
async fn a_trail_cut_below_the_witnessed_head_in_every_sink_fails_at_its_first_missing_event() {
    let home = stopped_trail().await;
    let witnessed = 8;
    let copy = copy_home(&home, "witness-cut").await;
    witness(&home, witnessed, &mac_of(&home, witnessed as usize).await).await;
    let kept = 4;
    cut_every_sink(&copy, kept).await;

    let report = verify_offline(&copy).await;
    assert!(
        !report.ok && report.first_bad_seq == Some(kept as u64 + 1) && report.checked == kept as u64,
        "{report:?}"
    );
    let reason = report.reason.unwrap_or_default();
    assert!(
        reason.starts_with(&format!("the HSM witness names event {witnessed} "))
            && reason.ends_with(&format!(
                "the trail ends at event {kept}: events were removed from every sink"
            )),
        "{reason}"
    );

    // Cut above the witnessed head, the trail still holds it.
    let above = copy_home(&home, "witness-cut-above").await;
    witness(&home, witnessed, &mac_of(&home, witnessed as usize).await).await;
    cut_every_sink(&above, witnessed as usize + 1).await;
    assert!(verify_offline(&above).await.ok);
}

#[tokio::test]
async fn a_trail_whose_event_differs_from_the_witnessed_one_fails_there() {
    let home = stopped_trail().await;
    // What a trail rebuilt from event 6 on would show: another MAC where the HSM saw one.
    witness(&home, 6, &[0x5a; 32]).await;
    let report = verify_offline(&home).await;
    assert!(!report.ok && report.first_bad_seq == Some(6), "{report:?}");
    assert_eq!(
        report.reason.as_deref(),
        Some(
            format!(
                "the trail differs from the HSM witness at event 6: the witness holds MAC 5a5a5a5a5a5a5a5a…, the \
                 trail {}…",
                hex(&mac_of(&home, 6).await[..8])
            )
            .as_str()
        )
    );
}

/// A `serve` config file for the home (its token in the suite's SoftHSM2 directory).
fn config_file(home: &AppHome) -> PathBuf {
    let pin_file = home.data_dir.join("hsm-pin");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).expect("pin file");
    let config = home.data_dir.join("sigvault.toml");
    let quoted = |path: &Path| format!("{:?}", path.display().to_string());
    let text = format!(
        "data_dir = {}\n[store]\nurl = {:?}\n[kek.pkcs11]\nmodule = {}\ntoken_label = {:?}\n\
         pin_file = {}\n[audit]\nnode = {NODE:?}\nfile = {}\nanchor_file = {}\nhsm_anchor_interval = \"10s\"\n",
        quoted(&home.data_dir),
        store_url(&home.store()),
        quoted(&module_path()),
        home.token_label,
        quoted(&pin_file),
        quoted(&home.audit_file()),
        quoted(&home.anchor_file()),
    );
    std::fs::write(&config, text).expect("config");
    config
}

#[tokio::test]
async fn sigvault_audit_verify_names_the_witness_when_every_sink_was_wiped() {
    let home = stopped_trail().await;
    let mac = mac_of(&home, EVENTS).await;
    wipe_every_sink(&home).await;
    let config = config_file(&home);
    let conf = softhsm_conf().display().to_string();
    let verify = |json: bool| {
        let mut args = vec!["audit", "verify", "--config", config.to_str().expect("utf-8 path")];
        if json {
            args.push("--json");
        }
        run_binary(&args, &[("SOFTHSM2_CONF", &conf)])
    };
    // The stop witnessed the last event.
    let run = verify(false);
    assert_eq!(run.code, Some(1), "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "audit trail FAILED at sequence 1 of node {NODE}: the HSM witness names event {EVENTS} (MAC {}…)",
            hex(&mac[..8])
        )),
        "{}",
        run.stdout
    );
    let run = verify(true);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON report");
    assert_eq!(
        (report["ok"].as_bool(), report["first_bad_seq"].as_u64()),
        (Some(false), Some(1))
    );
    assert_eq!(report["node"], NODE);
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("events were removed from every sink")),
        "{report}"
    );

    let kek = kek::open(&home.settings().kek).await.expect("open the KEK");
    let name = format!("sigvault-audit-head:{NODE}");
    kek.witness_write(&name, b"\x01short")
        .await
        .expect("write a malformed witness");
    let run = verify(false);
    assert_eq!(
        run.code,
        Some(2),
        "a witness that cannot be read is no verdict: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "audit trail: HSM witness {name} is malformed: 6 bytes, expected 41"
        )),
        "{}",
        run.stderr
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_trail_cut_back_in_every_sink_as_a_restored_backup_is_refused_until_an_operator_gives_the_lost_events_up() {
    let home = stopped_trail().await;
    let copy = copy_home(&home, "witness-restored").await;
    let kept = 7;
    cut_every_sink(&copy, kept).await;
    let refused = startup_error(&copy).await;
    assert!(
        refused.contains(&format!("the HSM witness names event {EVENTS} ")),
        "{refused}"
    );

    let vault = OfflineVault::open(copy.settings()).await.expect("open offline");
    let lost = (EVENTS - kept) as u64;
    let wrong = audit_accept_truncation(&vault, lost + 1)
        .await
        .expect_err("a wrong count");
    assert!(wrong.to_string().contains(&format!("name {lost} events")), "{wrong}");
    let accepted = audit_accept_truncation(&vault, lost).await.expect("accepted");
    assert_eq!(
        (accepted.kept, accepted.dropped, accepted.event_seq),
        (kept as u64, lost, kept as u64 + 1)
    );
    drop(vault);
    let events = stored_events(&copy).await;
    assert_eq!(events.len(), kept + 1);
    assert_eq!(events[kept].0.action, "audit.accept_truncation");
    assert_eq!(events[kept].0.resource, format!("audit:{NODE}:{}-{EVENTS}", kept + 1));
    let report = verify_offline(&copy).await;
    assert!(report.ok && report.checked == kept as u64 + 1, "{report:?}");
    let mut app = crate::helpers::spawn_app_in(copy.clone()).await;
    assert_eq!(
        super::verify_online(&app).await["ok"],
        serde_json::json!(true),
        "the start is no longer refused"
    );
    app.stop().await;
}
