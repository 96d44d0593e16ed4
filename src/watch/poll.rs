//! The rules file, read again every [`RULES_POLL`] on a thread of its own: a slow or blocking file (a FIFO put
//! at the path, a hung mount) never stalls the runtime, so the probes and passes go on. The read is the bounded
//! one of [`rules::read_regular`]; only a changed file is validated and sent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::rules::{self, Rules};

/// How often the rules file is read to see whether it changed.
pub const RULES_POLL: Duration = Duration::from_secs(2);

/// Starts polling `path`, whose contents are `text` now. The thread ends when the receiver is dropped.
pub fn spawn(path: PathBuf, text: Vec<u8>) -> anyhow::Result<mpsc::Receiver<Result<Rules, rules::Error>>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("rules-poll".into())
        .spawn(move || poll(&path, text, &tx))
        .context("starting the thread that reads the rules file")?;
    Ok(rx)
}

fn poll(path: &std::path::Path, text: Vec<u8>, tx: &mpsc::Sender<Result<Rules, rules::Error>>) {
    // The last read: its bytes, or the message of its error (each error is sent once, not every poll).
    let mut last: Result<Vec<u8>, String> = Ok(text);
    loop {
        std::thread::sleep(RULES_POLL);
        if tx.is_closed() {
            return;
        }
        let answer = match rules::read_regular(path) {
            Ok(bytes) if last.as_ref().is_ok_and(|l| *l == bytes) => continue,
            Ok(bytes) => {
                let parsed = rules::from_bytes(path, &bytes);
                last = Ok(bytes);
                parsed
            }
            Err(e) => {
                let message = e.to_string();
                if last.as_ref().err() == Some(&message) {
                    continue;
                }
                last = Err(message);
                Err(e)
            }
        };
        if tx.blocking_send(answer).is_err() {
            return;
        }
    }
}
