//! A catch-up reader's next disk read, started when its current read is served.
//!
//! A consumer reading old data fetches one `max_bytes` at a time: without this, each fetch waits
//! for its disk read, then for the network and the consumer, then asks for the next, so the disk
//! idles while the answer travels. After a fetch served from disk stops short of the readable
//! end, the log starts the disk read the same consumer's next fetch will ask for (from the index
//! entry that fetch will scan from, as long as that fetch's first read) and parks it here; the
//! next fetch of the partition takes it if it covers where that fetch starts, and reads on its
//! own otherwise.
//!
//! The read is put on the ring by polling it once (glommio submits a read the first time it is
//! polled, and the kernel completes it with nobody polling), so no task is spawned and the
//! engine stays executor-agnostic. Only bytes that never change are read ahead: closed segments,
//! and the durable part of the active segment (a rollback or a replica's truncation only
//! touches what lies past the durable point, and a truncation drops the parked read anyway); a
//! compaction swap is caught by the log's swap counter.
//!
//! Bounded per shard (one thread): parked reads hold at most [`READ_AHEAD_BYTES_PER_SHARD_MAX`]
//! bytes together; past it no read is started. One per partition; a partition nobody reads
//! again keeps its parked read (and its file open) until the log closes or the next read.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;

use super::config::READ_AHEAD_BYTES_PER_SHARD_MAX;
use super::file::StorageFile;
use super::segment::SegmentFiles;

thread_local! {
    /// Bytes of parked reads on this thread (one shard).
    static PARKED_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// A share of the shard's read-ahead budget, given back when dropped.
struct BudgetShare {
    bytes: usize,
}

impl BudgetShare {
    fn take(bytes: usize) -> Option<Self> {
        PARKED_BYTES.with(|parked| {
            let used = parked.get();
            (used + bytes <= READ_AHEAD_BYTES_PER_SHARD_MAX).then(|| {
                parked.set(used + bytes);
                Self { bytes }
            })
        })
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        PARKED_BYTES.with(|parked| parked.set(parked.get() - self.bytes));
    }
}

/// Bytes of parked reads on this thread now (for tests and metrics).
pub fn parked_bytes() -> usize {
    PARKED_BYTES.with(Cell::get)
}

type PendingRead = Pin<Box<dyn Future<Output = io::Result<Bytes>>>>;

/// Where a parked read lies: a segment as it was when the read started, and a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadSpan {
    pub segment_base_offset: u64,
    /// The log's segment swap counter when the read started (a compaction swap changes it).
    pub segment_swaps: u64,
    pub position: u64,
    pub length: usize,
}

/// A disk read in flight (or done) that nobody awaits yet.
pub struct ReadAhead {
    pub span: ReadAheadSpan,
    read: PendingRead,
    _budget: BudgetShare,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReadAhead")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl ReadAhead {
    /// Starts reading `span` of the segment's log file, or `None` when the shard's budget has
    /// no room for it.
    pub async fn start<File: StorageFile + 'static>(
        files: Rc<SegmentFiles<File>>,
        span: ReadAheadSpan,
    ) -> Option<Self> {
        let budget = BudgetShare::take(span.length)?;
        let mut read: PendingRead =
            Box::pin(async move { files.log.read_at(span.position, span.length).await });
        // The first poll submits the read; if it is already done (an in-memory file), keep the
        // result.
        if let Some(result) = futures_lite::future::poll_once(&mut read).await {
            read = Box::pin(std::future::ready(result));
        }
        Some(Self {
            span,
            read,
            _budget: budget,
        })
    }

    /// Whether a read of the segment `segment_base_offset` (at swap count `segment_swaps`)
    /// starting at `position` begins inside this span.
    pub fn covers(&self, segment_base_offset: u64, segment_swaps: u64, position: u64) -> bool {
        let span = &self.span;
        span.segment_base_offset == segment_base_offset
            && span.segment_swaps == segment_swaps
            && position >= span.position
            && position < span.position + span.length as u64
    }

    /// The bytes read (position, bytes), or `None` if the read failed (the caller reads
    /// again, and reports the error if it repeats).
    pub async fn finish(self) -> Option<(u64, Bytes)> {
        let position = self.span.position;
        self.read.await.ok().map(|bytes| (position, bytes))
    }
}
