//! Disk spool for in-progress transactions streamed by pgoutput protocol 2.
//!
//! With `streaming`, PostgreSQL sends a transaction larger than `logical_decoding_work_mem`
//! in chunks before it commits, interleaved with other transactions, and it may still abort.
//! Publishing those chunks would publish changes that never committed; holding them in memory
//! would make memory grow with the transaction. So each streamed transaction's messages go to
//! a file and are replayed, minus aborted subtransactions, when its Stream Commit arrives.
//! A crash loses nothing: the slot was not confirmed past the transaction, so PostgreSQL
//! streams it again from its start.
//!
//! Record format: `u32 length | u32 xid | u64 wal_start | message bytes`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tributary_core::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("spool {path}: corrupt record at byte {offset}")]
    Corrupt { path: String, offset: u64 },
}

struct SpoolFile {
    path: PathBuf,
    writer: BufWriter<File>,
    aborted: HashSet<u32>,
    records: u64,
}

pub struct Spool {
    dir: PathBuf,
    files: HashMap<u32, SpoolFile>,
}

/// A spooled transaction being read back.
pub struct Replay {
    path: PathBuf,
    reader: BufReader<File>,
    aborted: HashSet<u32>,
    offset: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spool {
    /// Opens the spool directory, removing what a previous session left: PostgreSQL streams
    /// every uncommitted transaction again after a reconnect.
    pub fn open(dir: PathBuf) -> Result<Spool, SpoolError> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Spool {
            dir,
            files: HashMap::new(),
        })
    }

    /// Appends a message of transaction `top_xid` (sent by subtransaction `xid`).
    pub fn append(
        &mut self,
        top_xid: u32,
        xid: u32,
        wal_start: Lsn,
        message: &[u8],
    ) -> Result<(), SpoolError> {
        if !self.files.contains_key(&top_xid) {
            let path = self.dir.join(format!("{top_xid}.spool"));
            let file = File::create(&path).map_err(io_err(&path))?;
            self.files.insert(
                top_xid,
                SpoolFile {
                    path,
                    writer: BufWriter::with_capacity(256 * 1024, file),
                    aborted: HashSet::new(),
                    records: 0,
                },
            );
        }
        let Some(f) = self.files.get_mut(&top_xid) else {
            return Ok(());
        };
        let len = u32::try_from(message.len()).map_err(|_| SpoolError::Corrupt {
            path: f.path.display().to_string(),
            offset: 0,
        })?;
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&len.to_be_bytes());
        header[4..8].copy_from_slice(&xid.to_be_bytes());
        header[8..].copy_from_slice(&wal_start.0.to_be_bytes());
        let path = f.path.clone();
        f.writer.write_all(&header).map_err(io_err(&path))?;
        f.writer.write_all(message).map_err(io_err(&path))?;
        f.records += 1;
        Ok(())
    }

    /// Stream Abort: the whole transaction (`subxid == xid`) or one subtransaction.
    pub fn abort(&mut self, xid: u32, subxid: u32) -> Result<(), SpoolError> {
        if xid == subxid {
            if let Some(f) = self.files.remove(&xid) {
                drop(f.writer);
                std::fs::remove_file(&f.path).map_err(io_err(&f.path))?;
            }
        } else if let Some(f) = self.files.get_mut(&xid) {
            f.aborted.insert(subxid);
        }
        Ok(())
    }

    /// Stream Commit: the transaction's messages for replay; None if nothing was spooled.
    pub fn commit(&mut self, xid: u32) -> Result<Option<Replay>, SpoolError> {
        let Some(f) = self.files.remove(&xid) else {
            return Ok(None);
        };
        let file = f.writer.into_inner().map_err(|e| SpoolError::Io {
            path: f.path.display().to_string(),
            source: e.into_error(),
        })?;
        drop(file);
        let reader = File::open(&f.path).map_err(io_err(&f.path))?;
        Ok(Some(Replay {
            path: f.path,
            reader: BufReader::with_capacity(256 * 1024, reader),
            aborted: f.aborted,
            offset: 0,
        }))
    }

    /// Transactions currently spooled (for logs and tests).
    pub fn open_transactions(&self) -> usize {
        self.files.len()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Uncommitted transactions are streamed again after a reconnect; the files are done.
        self.files.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Replay {
    /// The next message of a subtransaction that did not abort, into `buf`.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Lsn>, SpoolError> {
        loop {
            let mut header = [0u8; 16];
            match self.reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(io_err(&self.path)(e)),
            }
            let [l0, l1, l2, l3, x0, x1, x2, x3, rest @ ..] = header;
            let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
            let xid = u32::from_be_bytes([x0, x1, x2, x3]);
            let wal_start = Lsn(u64::from_be_bytes(rest));
            buf.resize(len, 0);
            self.reader
                .read_exact(buf)
                .map_err(|_| SpoolError::Corrupt {
                    path: self.path.display().to_string(),
                    offset: self.offset,
                })?;
            self.offset += 16 + len as u64;
            if !self.aborted.contains(&xid) {
                return Ok(Some(wal_start));
            }
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        // The transaction is published or the session failed; either way the file is done.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_committed_messages_without_aborted_subtransactions() {
        let dir = std::env::temp_dir().join(format!("tributary-spool-test-{}", std::process::id()));
        let mut spool = Spool::open(dir.clone()).expect("open");
        spool.append(10, 10, Lsn(1), b"a").expect("append");
        spool.append(10, 11, Lsn(2), b"sub").expect("append");
        spool.append(20, 20, Lsn(3), b"other").expect("append");
        spool.append(10, 10, Lsn(4), b"b").expect("append");
        spool.abort(10, 11).expect("abort sub");
        spool.abort(20, 20).expect("abort whole");
        assert_eq!(spool.open_transactions(), 1);
        let mut replay = spool.commit(10).expect("commit").expect("spooled");
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(lsn) = replay.next(&mut buf).expect("next") {
            seen.push((lsn.0, buf.clone()));
        }
        assert_eq!(seen, vec![(1, b"a".to_vec()), (4, b"b".to_vec())]);
        drop(replay);
        assert!(spool.commit(20).expect("commit").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
