//! The WAL's sync, on a thread of its own, and the answers it releases.

use std::path::Path;

use super::writer::RanWrite;
use crate::store::{Error, Result};

/// The WAL file SQLite keeps beside the database at `db`.
pub(super) fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Syncs the WAL on a thread of its own and answers the transactions each sync made
/// durable. Committed batches queue up while a sync runs, and the next sync answers them
/// all: a sync covers every frame written before it started, and SQLite reads a WAL back
/// only up to its first frame that is missing or torn, so what a crash keeps is always
/// the transactions of a prefix of the commits.
pub(super) struct Syncer {
    committed: std::sync::mpsc::Sender<Vec<Box<dyn RanWrite>>>,
}

impl Syncer {
    pub(super) fn start(wal: std::path::PathBuf) -> Result<Syncer> {
        let (committed, waiting) = std::sync::mpsc::channel::<Vec<Box<dyn RanWrite>>>();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || {
                let mut file: Option<std::fs::File> = None;
                // Ends when the writer is gone and every commit it sent is answered.
                while let Ok(first) = waiting.recv() {
                    let mut batches = vec![first];
                    batches.extend(waiting.try_iter());
                    let synced = sync(&wal, &mut file)
                        .map_err(|e| format!("committed, but syncing the SQLite WAL failed: {e}"));
                    for done in batches.into_iter().flatten() {
                        done.complete(synced.clone());
                    }
                }
            })
            .map_err(|e| Error::Transaction(format!("starting the SQLite WAL sync: {e}")))?;
        Ok(Syncer { committed })
    }

    pub(super) fn answer_when_synced(&self, committed: Vec<Box<dyn RanWrite>>) {
        // The thread ends only once this sender is dropped.
        let _ = self.committed.send(committed);
    }
}

/// `fdatasync` of the WAL, opening it the first time (SQLite keeps the same file while
/// any connection is open, truncating it at most).
fn sync(wal: &Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
    let file = match file {
        Some(file) => file,
        None => file.insert(std::fs::OpenOptions::new().write(true).open(wal)?),
    };
    file.sync_data()
}
