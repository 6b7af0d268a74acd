//! The high-water mark: how far this master's log and vote had durably reached, kept
//! outside sled so that a log sled rolled back can be told from a log that never grew.
//!
//! sled recovers its log up to the first record it cannot read and takes the rest for a
//! torn write: one flipped bit, or a file cut short, silently rolls back everything
//! written after it, and with it votes and acknowledged entries. A master that started
//! on such a log could vote twice in a term or win an election without entries a quorum
//! acknowledged. So the flusher records, after each flush, the vote and the last log id
//! that flush made durable in this file, and [`check`] refuses a store whose log or vote
//! is behind it.
//!
//! Layout: two slots of [`SLOT_BYTES`] in different 4 KiB blocks, written alternately,
//! each `magic, sequence, length, postcard mark, crc32`. A torn write spoils at most the
//! slot being written; reading takes the valid slot of the higher sequence, which is
//! never ahead of the truth.
//!
//! Invariants (kept by the flusher and the log store):
//! - the mark is written only after the sled flush that made what it names durable, so
//!   a crash at any instant leaves the mark at or behind the log;
//! - the log store lowers the mark, durably, before truncating the log, and raises it
//!   only through appends; the vote in the mark is durable before `save_vote` returns.
//!
//! What it cannot see: a rollback of only the entries of the last flush before the
//! damage, whose mark was never written, looks like a log that ended there. Everything
//! older is caught.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::type_config::{LogId, Vote};

/// The mark file's name in the data dir.
pub const FILE_NAME: &str = "mark";
const MAGIC: &[u8; 4] = b"CHMK";
/// A slot holds an encoded mark of well under this.
const SLOT_BYTES: usize = 512;
/// Slot `n` starts at `n * SLOT_STRIDE`: separate 4 KiB blocks, so a torn block write
/// cannot spoil both.
const SLOT_STRIDE: u64 = 4096;
/// magic, sequence, length.
const HEADER_BYTES: usize = 4 + 8 + 2;

/// How far the log and vote durably reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub vote: Option<Vote>,
    pub last_log_id: Option<LogId>,
}

/// The open mark file, written by the flusher.
pub struct MarkFile {
    file: File,
    path: PathBuf,
    /// The sequence of the last slot written.
    sequence: u64,
    /// What the file holds now.
    written: Mark,
}

impl MarkFile {
    /// Opens the mark file in `dir`, creating it (durably, holding `initial`) if absent;
    /// also returns the mark it held, `None` if it was just created.
    pub fn open(dir: &Path, initial: Mark) -> io::Result<(MarkFile, Option<Mark>)> {
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let found = if existed {
            Some(read_slots(&file, &path)?)
        } else {
            None
        };
        let mut mark = MarkFile {
            file,
            path,
            sequence: found.map_or(0, |(sequence, _)| sequence),
            written: found.map_or(initial, |(_, mark)| mark),
        };
        if found.is_none() {
            mark.write(initial)?;
            File::open(dir)?.sync_all()?;
        }
        Ok((mark, found.map(|(_, mark)| mark)))
    }

    /// Durably records `mark`, unless the file holds it already.
    pub fn write(&mut self, mark: Mark) -> io::Result<()> {
        if mark == self.written && self.sequence > 0 {
            return Ok(());
        }
        if crate::failpoint::hit("storage::mark").is_some() {
            return Err(crate::failpoint::io_error("storage::mark"));
        }
        let sequence = self.sequence + 1;
        let slot = encode_slot(sequence, &mark)?;
        self.file
            .write_all_at(&slot, (sequence % 2) * SLOT_STRIDE)?;
        self.file.sync_data()?;
        self.sequence = sequence;
        self.written = mark;
        Ok(())
    }

    /// The file's path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode_slot(sequence: u64, mark: &Mark) -> io::Result<Vec<u8>> {
    let body = codec::encode(mark)?;
    let mut slot = Vec::with_capacity(SLOT_BYTES);
    slot.extend_from_slice(MAGIC);
    slot.extend_from_slice(&sequence.to_le_bytes());
    slot.extend_from_slice(&(body.len() as u16).to_le_bytes());
    slot.extend_from_slice(&body);
    let crc = crc32fast::hash(&slot);
    slot.extend_from_slice(&crc.to_le_bytes());
    assert!(
        slot.len() <= SLOT_BYTES,
        "a mark slot is {} bytes",
        slot.len()
    );
    Ok(slot)
}

/// The slot at `bytes`, if it is whole and valid.
fn decode_slot(bytes: &[u8]) -> Option<(u64, Mark)> {
    if bytes.len() < HEADER_BYTES + 4 || &bytes[..4] != MAGIC {
        return None;
    }
    let sequence = u64::from_le_bytes(bytes[4..12].try_into().ok()?);
    let len = u16::from_le_bytes(bytes[12..14].try_into().ok()?) as usize;
    let end = HEADER_BYTES + len;
    let stored = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(&bytes[..end]) != stored {
        return None;
    }
    Some((sequence, codec::decode(&bytes[HEADER_BYTES..end]).ok()?))
}

/// The valid slot of the higher sequence. A file with no valid slot is damaged.
fn read_slots(file: &File, path: &Path) -> io::Result<(u64, Mark)> {
    let mut best: Option<(u64, Mark)> = None;
    for n in 0..2 {
        let mut slot = vec![0; SLOT_BYTES];
        let read = read_at_most(file, &mut slot, n * SLOT_STRIDE)?;
        if let Some(found) = decode_slot(&slot[..read]) {
            if best.is_none_or(|(sequence, _)| found.0 > sequence) {
                best = Some(found);
            }
        }
    }
    best.ok_or_else(|| super::damaged(path, "the high-water mark file holds no valid record"))
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], offset + read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

/// Refuses a store whose vote or log (`found`) is behind what the mark says was durable.
pub fn check(mark: &Mark, found: &Mark, db: &Path) -> io::Result<()> {
    let vote_behind = match (&mark.vote, &found.vote) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(marked), Some(found)) => !matches!(
            found.partial_cmp(marked),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        ),
    };
    if vote_behind {
        return Err(super::damaged(
            db,
            &format!(
                "its vote ({:?}) is behind the vote it had durably saved ({:?})",
                found.vote, mark.vote
            ),
        ));
    }
    if found.last_log_id < mark.last_log_id {
        return Err(super::damaged(
            db,
            &format!(
                "its log ends at {} but had durably reached {}: entries were lost",
                describe(found.last_log_id),
                describe(mark.last_log_id)
            ),
        ));
    }
    Ok(())
}

fn describe(id: Option<LogId>) -> String {
    id.map_or("the start".into(), |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn mark(term: u64, index: u64) -> Mark {
        Mark {
            vote: Some(Vote::new_committed(term, 1)),
            last_log_id: Some(log_id::<crate::type_config::TypeConfig>(term, 1, index)),
        }
    }

    #[test]
    fn the_newest_whole_slot_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, found) = MarkFile::open(dir.path(), Mark::default()).unwrap();
        assert_eq!(found, None, "a new file held nothing");
        file.write(mark(1, 5)).unwrap();
        file.write(mark(2, 9)).unwrap();
        drop(file);
        let (_, found) = MarkFile::open(dir.path(), Mark::default()).unwrap();
        assert_eq!(found, Some(mark(2, 9)));
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other_and_two_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = MarkFile::open(dir.path(), Mark::default()).unwrap();
        file.write(mark(1, 5)).unwrap(); // sequence 2, slot 0
        file.write(mark(1, 7)).unwrap(); // sequence 3, slot 1
        drop(file);
        let path = dir.path().join(FILE_NAME);
        let flip = |offset: u64| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let mut byte = [0];
            f.read_exact_at(&mut byte, offset).unwrap();
            f.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
        };
        flip(SLOT_STRIDE + 16);
        let (_, found) = MarkFile::open(dir.path(), Mark::default()).unwrap();
        assert_eq!(found, Some(mark(1, 5)), "the older whole slot");
        flip(16);
        let error = MarkFile::open(dir.path(), Mark::default()).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains(FILE_NAME), "{error}");
    }

    #[test]
    fn a_log_or_vote_behind_the_mark_is_refused_and_one_ahead_is_not() {
        let db = Path::new("db");
        check(&mark(2, 9), &mark(2, 9), db).unwrap();
        check(&mark(2, 9), &mark(2, 12), db).unwrap();
        // A conflicting suffix replaced by a newer leader's entries: a higher term.
        check(&mark(2, 9), &mark(3, 7), db).unwrap();
        let error = check(&mark(2, 9), &mark(2, 8), db).unwrap_err();
        assert!(error.to_string().contains("entries were lost"), "{error}");
        let older_vote = Mark {
            vote: Some(Vote::new_committed(1, 1)),
            ..mark(2, 9)
        };
        let error = check(&mark(2, 9), &older_vote, db).unwrap_err();
        assert!(error.to_string().contains("vote"), "{error}");
        let no_vote = Mark {
            vote: None,
            ..mark(2, 9)
        };
        check(&mark(2, 9), &no_vote, db).unwrap_err();
    }
}
