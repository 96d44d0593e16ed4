//! The rules parser never panics, whatever the input: a bounded, seeded random-input run of the same check as the
//! `fuzz/` target `rules`, so it runs on stable in CI (libFuzzer needs nightly and `cargo fuzz`).

use std::time::{Duration, Instant};

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "\\u0000",
    "#",
    "\n",
    "  ",
    "\t",
    "---\n",
    "...\n",
    "~",
    "null",
    "0x1F",
    "-1",
    "99999999999999999999",
    "1e9",
    ".nan",
    "load_balancer_id: ",
    "listeners:",
    "port: ",
    "protocol: http",
    "rules:",
    "backend:",
    "namespace: ",
    "selector:",
    "deployment: ",
    "weight: ",
    "policy: upsert-only",
    "location_id: ",
    "listener_id: ",
    "url: /",
    "domain: ",
    "é",
    "\u{feff}",
    "\r\n",
    "%YAML 1.2\n",
];

/// One mutation of `text`, drawn from `rng`: splice a token, delete, duplicate or swap a span, truncate.
fn mutate(rng: &mut fastrand::Rng, text: &mut Vec<u8>) {
    let at = |rng: &mut fastrand::Rng, t: &Vec<u8>| rng.usize(0..=t.len());
    match rng.u8(0..6) {
        0 => {
            let i = at(rng, text);
            let tok = TOKENS[rng.usize(0..TOKENS.len())].as_bytes();
            text.splice(i..i, tok.iter().copied());
        }
        1 if !text.is_empty() => {
            let i = rng.usize(0..text.len());
            let j = (i + rng.usize(1..40)).min(text.len());
            text.drain(i..j);
        }
        2 if !text.is_empty() => {
            let i = rng.usize(0..text.len());
            let j = (i + rng.usize(1..200)).min(text.len());
            let span: Vec<u8> = text[i..j].to_vec();
            let k = at(rng, text);
            text.splice(k..k, span);
        }
        3 if !text.is_empty() => {
            let i = rng.usize(0..text.len());
            text[i] = rng.u8(..);
        }
        4 => {
            let i = at(rng, text);
            text.truncate(i);
        }
        _ => {
            let i = at(rng, text);
            let depth = rng.usize(1..300);
            let nest: String = if rng.bool() { "[".repeat(depth) } else { "- ".repeat(depth) };
            text.splice(i..i, nest.bytes());
        }
    }
}

#[test]
fn the_rules_parser_never_panics_on_mutated_rules_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rules");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read fixture"))
        .collect();
    corpus.push(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/rules.yaml")).expect("rules.yaml"));
    corpus.sort();
    let seed = std::env::var("CLBSYNC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xC1B5);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (budget, max_inputs) = (Duration::from_secs(20), 20_000);
    let started = Instant::now();
    let mut n = 0;
    while n < max_inputs && started.elapsed() < budget {
        let mut text = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(1..8) {
            mutate(&mut rng, &mut text);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let outcome = std::panic::catch_unwind(|| clbsync::rules::parse("fuzz.yaml", &text));
        assert!(outcome.is_ok(), "seed {seed}, input {n}: the parser panicked on:\n{text}");
        n += 1;
    }
    assert!(n >= 1000, "only {n} inputs in {budget:?}");
}
