//! The README's tour, run as written: the shell blocks marked `<!-- tour -->` are taken from
//! README.md in order, joined, and run with `bash -euo pipefail` against a fresh
//! `sigvault dev`, from a working directory whose `.sigvault-dev` is that vault's data dir —
//! as a newcomer runs them from the repository root after `scripts/dev.sh`. The blocks check
//! their own answers (`curl -f`, `jq -e`, `test … = 403`), so a tour that no longer matches
//! the API fails here. Needs bash, curl and jq (`scripts/test.sh` installs jq).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{spawn_dev, temp_dir};

/// The line that marks the next ```` ```sh ```` block as part of the tour.
const MARKER: &str = "<!-- tour -->";
/// The fewest marked blocks the README may have: removing the tour or its markers fails.
const MIN_BLOCKS: usize = 7;
/// How long the whole tour may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(120);
/// Printed after the last block, so a tour cut short (an `exit 0` in a block) fails.
const DONE: &str = "readme tour: done";

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the ```` ```sh ```` blocks of `text` whose fence follows a [`MARKER`] line,
/// in order. A marker not followed by such a block, or a block never closed, panics.
fn tour_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.next().map(|(_, l)| l.trim_end());
        assert_eq!(
            fence,
            Some("```sh"),
            "README.md:{}: {MARKER} must be followed by a ```sh fence",
            n + 1
        );
        let mut block = String::new();
        loop {
            let (_, line) = lines
                .next()
                .unwrap_or_else(|| panic!("README.md:{}: the tour block is never closed", n + 2));
            if line.trim_end() == "```" {
                break;
            }
            block.push_str(line);
            block.push('\n');
        }
        blocks.push(block);
    }
    blocks
}

#[test]
fn only_marked_blocks_are_taken_in_order() {
    let text = "intro\n```sh\nnot run\n```\n<!-- tour -->\n```sh\nfirst\n```\ntext\n\
                <!-- tour -->\n```sh\nsecond\nthird\n```\n```sh\nnot run either\n```\n";
    assert_eq!(tour_blocks(text), ["first\n", "second\nthird\n"]);
}

#[test]
fn the_readme_has_a_tour_without_placeholders() {
    let blocks = tour_blocks(&readme());
    assert!(
        blocks.len() >= MIN_BLOCKS,
        "README.md has {} blocks marked {MARKER}, expected at least {MIN_BLOCKS}",
        blocks.len()
    );
    for (i, block) in blocks.iter().enumerate() {
        assert!(
            !block.contains('…'),
            "tour block {} holds a `…` placeholder; take the value from an answer instead:\n{block}",
            i + 1
        );
    }
    assert!(
        blocks[0].starts_with(
            "export SIGVAULT_ADDR=\"${SIGVAULT_ADDR:-http://127.0.0.1:8200}\"\n\
             export SIGVAULT_TOKEN=\"${SIGVAULT_TOKEN:-$(cat .sigvault-dev/root-token)}\"\n"
        ),
        "the tour starts by pointing at the dev vault:\n{}",
        blocks[0]
    );
}

#[test]
fn the_readme_tour_runs_as_written_against_a_fresh_dev_vault() {
    // bash takes no PS4 from the environment when run as root; set here, `-x` names lines.
    let mut script = "PS4='+ tour.sh:${LINENO}: '\n".to_owned();
    script.push_str(&tour_blocks(&readme()).concat());
    script.push_str(&format!("echo '{DONE}'\n"));
    let jq = Command::new("jq").arg("--version").output();
    assert!(
        jq.is_ok_and(|out| out.status.success()),
        "the tour needs jq: install it (scripts/test.sh does)"
    );

    let root = temp_dir("readme-tour");
    let data_dir = root.join("data");
    let dev = spawn_dev(&data_dir, &[]);
    assert!(
        data_dir.join("root-token").exists(),
        "sigvault dev kept no root-token file (is SIGVAULT_ROOT_TOKEN set in this environment?)"
    );
    // The repository root as the tour sees it: `.sigvault-dev` is the vault's data dir.
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("create the work dir");
    std::os::unix::fs::symlink(&data_dir, work.join(".sigvault-dev")).expect("link .sigvault-dev");
    std::fs::write(work.join("tour.sh"), &script).expect("write tour.sh");
    let (stdout_path, stderr_path) = (work.join("tour.stdout"), work.join("tour.stderr"));

    let mut child = Command::new("bash")
        // -x: on a failure, stderr shows each command run up to the one that failed.
        .args(["-x", "-euo", "pipefail", "tour.sh"])
        .current_dir(&work)
        .env("SIGVAULT_ADDR", dev.url(""))
        .env_remove("SIGVAULT_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run bash");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let ran = status.is_some_and(|s| s.success()) && stdout.trim_end().ends_with(DONE);
    assert!(
        ran,
        "the README tour failed ({}; the script is {}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        status.map_or_else(|| format!("killed after {DEADLINE:?}"), |s| s.to_string()),
        work.join("tour.sh").display()
    );
    dev.stop();
}
