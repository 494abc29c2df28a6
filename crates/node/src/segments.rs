//! Segmented downloads: one file fetched from several sources at once, every block
//! checked against the file's Tiger tree (TTH) before it is kept.
//!
//! This is the sans-IO core: no sockets, no clock, no files. The driver tells it what
//! happened (a source became free, bytes arrived, a block was hashed, a source answered
//! `$MaxedOut` or vanished) with the time as an argument, and takes [`Command`]s out
//! (start this byte range on that source, cancel that segment).
//!
//! The design (docs/protocols/nmdc.md, "Segmented downloads"):
//! - **Blocks** sit on Tiger-tree boundaries: the leaves of a source's `tthl`
//!   (docs/protocols/nmdc.md, "Tiger trees"), joined pairwise up the tree until there are
//!   at most [`MAX_BLOCKS`] of them. That is the smallest power-of-two multiple of the
//!   1024-byte leaf that keeps the count manageable, the rule DC++ uses for the trees it
//!   sends ([`omnipeer_nmdc::tth::DCPP_MAX_BLOCKS`]). Each block's hash is a node of the
//!   tree, so a block is checked alone: its bytes' own TTH must equal that node.
//! - **Segments** are runs of consecutive missing blocks handed to free sources, fastest
//!   first (speed measured from the bytes each source delivered while it had work). A
//!   segment is long enough to keep its source busy about [`SEGMENT_TARGET`] at its speed,
//!   between the source's own minimum and maximum (a Soulseek transfer costs a whole
//!   negotiation, so its driver asks for longer segments than an NMDC one).
//! - **Endgame**: when no block is left unassigned, a free source that is faster than the
//!   one holding a segment (or any free source, when that one has stalled) races it for
//!   the blocks still missing there; the first copy of a block that verifies is kept and
//!   the loser is cancelled as soon as nothing it still has to send is missing.
//! - **Slow or vanished sources**: a segment that sends nothing for [`Config::stall`] is
//!   cancelled and its blocks go back to the pool; so do the blocks of a source that
//!   fails or answers `$MaxedOut` (it waits [`Config::busy_wait`] before it gets work
//!   again; after [`MAX_SOURCE_FAILURES`] failures in a row it is given up).
//! - **Verification**: a block whose hash does not match is thrown away and fetched from
//!   another source; the source that sent it is dropped for this file and the reason kept
//!   in [`Scheduler::notes`] (the transfer's note).
//! - The driver holds a block in memory until it verifies and writes only verified blocks
//!   to the partial file, so a liar never leaves bytes on disk, and the set of verified
//!   blocks ([`Scheduler::verified`]) is all a restart needs to fetch only what is missing.

use omnipeer_nmdc::tth::{self, Hash};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most blocks a file is split into (DC++'s `tthl` level count: 512 blocks).
pub const MAX_BLOCKS: u64 = tth::DCPP_MAX_BLOCKS;
/// Largest block a segmented download holds in memory per source until it verifies
/// (files over `MAX_BLOCKS` × this, 32 GiB, download from one source as before).
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;
/// Sources of one file downloading at once, unless `[transfers].segment_sources_per_file`
/// says otherwise.
pub const DEFAULT_SOURCES_PER_FILE: usize = 4;
/// Sources of all segmented files downloading at once, unless
/// `[transfers].segment_sources_total` says otherwise.
pub const DEFAULT_SOURCES_TOTAL: usize = 16;
/// A segment that moves no byte for this long goes back to the pool.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
/// How long a source that is full (`$MaxedOut`, queued) or failed waits before it is
/// asked again.
pub const DEFAULT_BUSY_WAIT: Duration = Duration::from_secs(30);
/// Failures in a row after which a source is given up for this file.
pub const MAX_SOURCE_FAILURES: u32 = 3;
/// About how long one segment should keep its source busy.
pub const SEGMENT_TARGET: Duration = Duration::from_secs(10);

/// Index of a source in a [`Scheduler`].
pub type SourceId = usize;
/// Identifies one segment handed out.
pub type SegmentId = u64;

/// Limits of one scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sources downloading this file at once.
    pub sources_per_file: usize,
    /// No byte for this long: the segment goes back to the pool.
    pub stall: Duration,
    /// A full or failed source waits this long.
    pub busy_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { sources_per_file: DEFAULT_SOURCES_PER_FILE, stall: DEFAULT_STALL, busy_wait: DEFAULT_BUSY_WAIT }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Fetch `length` bytes from `start` from `source`; report them as segment `segment`.
    Start {
        /// The segment.
        segment: SegmentId,
        /// Who sends it.
        source: SourceId,
        /// First byte.
        start: u64,
        /// Bytes.
        length: u64,
    },
    /// Stop fetching `segment` (lost an endgame race, stalled, or its source lied);
    /// nothing more of it is wanted.
    Cancel {
        /// The segment.
        segment: SegmentId,
        /// Its source.
        source: SourceId,
    },
}

/// Where a source stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Free for work.
    Idle,
    /// Sending a segment.
    Busy,
    /// Full, queued or just failed: asked again at `until`.
    Waiting {
        /// When.
        until: Instant,
    },
    /// Sent a block that did not match the tree: not used again for this file.
    Dropped,
    /// Failed too often, or left: not used again for this file.
    Gone,
}

impl SourceState {
    /// A short name for the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Busy => "downloading",
            SourceState::Waiting { .. } => "waiting",
            SourceState::Dropped => "dropped",
            SourceState::Gone => "gone",
        }
    }
}

/// One source of the file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    /// The driver's name for it.
    pub name: String,
    /// Its state.
    pub state: SourceState,
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Its measured speed, bytes per second (0: not known yet).
    pub speed: u64,
}

/// What became of a block the driver hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It matches: write it to the file (then it counts as held).
    Keep,
    /// Another copy already verified (an endgame race): drop it.
    Duplicate,
    /// It does not match: drop it; the source is dropped for this file and its segment
    /// cancelled.
    Bad,
}

#[derive(Debug)]
struct Source {
    name: String,
    state: SourceState,
    min_blocks: u64,
    max_blocks: u64,
    bytes: u64,
    /// Bytes moved and time spent with work, for the speed.
    moved: u64,
    active: Duration,
    failures: u32,
}

impl Source {
    fn speed(&self) -> u64 {
        let ms = self.active.as_millis() as u64;
        if ms < 100 {
            0
        } else {
            self.moved.saturating_mul(1000) / ms
        }
    }
}

#[derive(Debug)]
struct Segment {
    id: SegmentId,
    source: SourceId,
    /// The next block this segment's source will deliver.
    next: u64,
    end: u64,
    since: Instant,
    last_byte: Instant,
    /// Bytes the driver reported moving, for the speed.
    moved: u64,
}

/// The scheduler of one file. See the module doc.
#[derive(Debug)]
pub struct Scheduler {
    size: u64,
    block_size: u64,
    hashes: Vec<Hash>,
    verified: Vec<bool>,
    sources: Vec<Source>,
    segments: Vec<Segment>,
    next_id: SegmentId,
    out: VecDeque<Command>,
    notes: Vec<String>,
    cfg: Config,
}

/// Join tree nodes pairwise (the odd one promoted) until at most `max` remain; returns
/// the block size the result covers.
pub fn coarsen(mut block_size: u64, mut hashes: Vec<Hash>, max: u64) -> (u64, Vec<Hash>) {
    while hashes.len() as u64 > max.max(1) {
        hashes = hashes.chunks(2).map(|p| if p.len() == 2 { tth::node_hash(&p[0], &p[1]) } else { p[0] }).collect();
        block_size *= 2;
    }
    (block_size, hashes)
}

/// A block map ([`Scheduler::block_map`]) squeezed into at most `width` characters for a
/// progress bar: each character stands for a run of blocks and shows `#` when all are
/// verified, `.` when none is, `>` when some are being fetched, else `+`.
pub fn condense(map: &str, width: usize) -> String {
    let b = map.as_bytes();
    if b.len() <= width || width == 0 {
        return map.to_owned();
    }
    (0..width)
        .map(|i| {
            let run = &b[i * b.len() / width..((i + 1) * b.len() / width).max(i * b.len() / width + 1)];
            if run.iter().all(|&c| c == b'#') {
                '#'
            } else if run.contains(&b'>') {
                '>'
            } else if run.iter().all(|&c| c == b'.') {
                '.'
            } else {
                '+'
            }
        })
        .collect()
}

/// The tree node a block's bytes must hash to: the block's own TTH (a block on a
/// power-of-two boundary is a whole subtree, and the last, shorter block is built the same
/// way, odd nodes promoted).
pub fn block_hash(data: &[u8]) -> Hash {
    tth::tth(data).0
}

impl Scheduler {
    /// A scheduler for a file of `size` bytes whose tree level `hashes` covers
    /// `block_size` bytes per hash (a checked `tthl`:
    /// [`omnipeer_nmdc::tth::verify_tthl_for_size`]). `verified` lists blocks (of the
    /// final block size, [`Scheduler::block_size`]) already held, from a previous run.
    pub fn new(size: u64, block_size: u64, hashes: Vec<Hash>, verified: &[u64], cfg: Config) -> Scheduler {
        let (block_size, hashes) = coarsen(block_size, hashes, MAX_BLOCKS);
        let mut v = vec![false; hashes.len()];
        for &b in verified {
            if let Some(x) = v.get_mut(b as usize) {
                *x = true;
            }
        }
        Scheduler {
            size,
            block_size,
            hashes,
            verified: v,
            sources: Vec::new(),
            segments: Vec::new(),
            next_id: 1,
            out: VecDeque::new(),
            notes: Vec::new(),
            cfg,
        }
    }

    /// The block size a file of `size` bytes with this `tthl` block size will use (to
    /// read verified blocks stored under it).
    pub fn final_block_size(size: u64, tthl_block: u64) -> u64 {
        let mut bs = tthl_block.max(1);
        while tth::block_count(size, bs) > MAX_BLOCKS {
            bs *= 2;
        }
        bs
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Blocks in the file.
    pub fn block_count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The byte range of block `b`.
    pub fn block_range(&self, b: u64) -> (u64, u64) {
        let start = b * self.block_size;
        (start, (start + self.block_size).min(self.size).saturating_sub(start))
    }

    /// Add a source; it asks for segments of `min_blocks..=max_blocks` blocks.
    pub fn add_source(&mut self, name: &str, min_blocks: u64, max_blocks: u64) -> SourceId {
        self.sources.push(Source {
            name: name.to_owned(),
            state: SourceState::Idle,
            min_blocks: min_blocks.max(1),
            max_blocks: max_blocks.max(min_blocks.max(1)),
            bytes: 0,
            moved: 0,
            active: Duration::ZERO,
            failures: 0,
        });
        self.sources.len() - 1
    }

    /// Every block verified.
    pub fn is_complete(&self) -> bool {
        self.verified.iter().all(|&v| v)
    }

    /// Blocks verified, in order.
    pub fn verified(&self) -> Vec<u64> {
        self.verified.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i as u64).collect()
    }

    /// Verified bytes.
    pub fn verified_bytes(&self) -> u64 {
        (0..self.block_count()).filter(|&b| self.verified[b as usize]).map(|b| self.block_range(b).1).sum()
    }

    /// No source can ever finish the file: every one is dropped or gone.
    pub fn is_stuck(&self) -> bool {
        !self.is_complete() && self.sources.iter().all(|s| matches!(s.state, SourceState::Dropped | SourceState::Gone))
    }

    /// What happened to sources, oldest first (bad blocks, given-up sources).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The sources as the API shows them.
    pub fn sources(&self) -> Vec<SourceView> {
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // The segment under way counts too, up to its last byte.
                let mut with = Source { name: String::new(), state: SourceState::Idle, ..*s };
                for seg in self.segments.iter().filter(|g| g.source == i) {
                    with.moved += seg.moved;
                    with.active += seg.last_byte.saturating_duration_since(seg.since);
                }
                SourceView { name: s.name.clone(), state: s.state.clone(), bytes: s.bytes, speed: with.speed() }
            })
            .collect()
    }

    /// One character per block: `#` verified, `>` being fetched, `.` missing.
    pub fn block_map(&self) -> String {
        let mut m: Vec<u8> = self.verified.iter().map(|&v| if v { b'#' } else { b'.' }).collect();
        for s in &self.segments {
            for b in s.next..s.end {
                if m[b as usize] == b'.' {
                    m[b as usize] = b'>';
                }
            }
        }
        String::from_utf8(m).expect("ascii")
    }

    /// The next command for the driver.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When [`Scheduler::handle_timeout`] should run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let waits = self.sources.iter().filter_map(|s| match s.state {
            SourceState::Waiting { until } => Some(until),
            _ => None,
        });
        let stalls = self.segments.iter().map(|s| s.last_byte + self.cfg.stall);
        waits.chain(stalls).min()
    }

    /// Time passed: stalled segments go back to the pool, waiting sources come back, free
    /// sources get work.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stalled: Vec<SegmentId> =
            self.segments.iter().filter(|s| now >= s.last_byte + self.cfg.stall).map(|s| s.id).collect();
        for id in stalled {
            if let Some(seg) = self.take_segment(id, now) {
                self.out.push_back(Command::Cancel { segment: id, source: seg.source });
                let secs = self.cfg.stall.as_secs();
                self.fail_source(seg.source, now, &format!("sent nothing for {secs}s"));
            }
        }
        for s in &mut self.sources {
            if matches!(s.state, SourceState::Waiting { until } if now >= until) {
                s.state = SourceState::Idle;
            }
        }
        self.assign(now);
    }

    /// `source` moved `n` more bytes of `segment` (for its speed and the stall timer).
    pub fn bytes_moved(&mut self, segment: SegmentId, n: u64, now: Instant) {
        if let Some(s) = self.segments.iter_mut().find(|s| s.id == segment) {
            s.moved += n;
            s.last_byte = now;
        }
    }

    /// The driver hashed block `block` of `segment` (`hash` from [`block_hash`]): keep it
    /// or not. On [`Verdict::Keep`] the block counts as held at once (the driver writes it
    /// before it reports anything else).
    pub fn block_done(&mut self, segment: SegmentId, block: u64, hash: Hash, now: Instant) -> Verdict {
        let Some(i) = self.segments.iter().position(|s| s.id == segment) else {
            // Cancelled meanwhile: its bytes are not wanted.
            return Verdict::Duplicate;
        };
        let src = self.segments[i].source;
        if block >= self.block_count() || block < self.segments[i].next || block >= self.segments[i].end {
            return Verdict::Duplicate;
        }
        if hash != self.hashes[block as usize] {
            let (start, len) = self.block_range(block);
            let name = self.sources[src].name.clone();
            self.notes.push(format!(
                "{name} sent bytes {start}-{} (block {block}) that do not match the TTH: dropped as a source of this file",
                start + len - 1
            ));
            self.take_segment(segment, now);
            self.out.push_back(Command::Cancel { segment, source: src });
            self.sources[src].state = SourceState::Dropped;
            self.assign(now);
            return Verdict::Bad;
        }
        self.segments[i].next = block + 1;
        self.segments[i].last_byte = now;
        self.sources[src].failures = 0;
        let verdict = if self.verified[block as usize] {
            Verdict::Duplicate
        } else {
            self.verified[block as usize] = true;
            self.sources[src].bytes += self.block_range(block).1;
            Verdict::Keep
        };
        // This segment is done, or a racer has nothing left to send that is missing.
        let finished: Vec<(SegmentId, bool)> = self
            .segments
            .iter()
            .filter(|s| (s.next..s.end).all(|b| self.verified[b as usize]))
            .map(|s| (s.id, s.next >= s.end))
            .collect();
        for (id, complete) in finished {
            if let Some(seg) = self.take_segment(id, now) {
                if !complete {
                    self.out.push_back(Command::Cancel { segment: id, source: seg.source });
                }
            }
        }
        self.assign(now);
        verdict
    }

    /// `source` could not serve `segment`: it answered `$MaxedOut` or queued us
    /// (`full`: it waits its turn and gets work later, with no failure counted), or the
    /// connection failed or the peer vanished. Its blocks go back to the pool.
    pub fn segment_failed(&mut self, segment: SegmentId, full: bool, reason: &str, now: Instant) {
        let Some(seg) = self.take_segment(segment, now) else { return };
        if full {
            let s = &mut self.sources[seg.source];
            if matches!(s.state, SourceState::Busy | SourceState::Idle) {
                s.state = SourceState::Waiting { until: now + self.cfg.busy_wait };
            }
        } else {
            self.fail_source(seg.source, now, reason);
        }
        self.assign(now);
    }

    /// A source left for good (logged out, the session ended).
    pub fn source_gone(&mut self, source: SourceId, now: Instant) {
        let ids: Vec<SegmentId> = self.segments.iter().filter(|s| s.source == source).map(|s| s.id).collect();
        for id in ids {
            self.take_segment(id, now);
            self.out.push_back(Command::Cancel { segment: id, source });
        }
        if let Some(s) = self.sources.get_mut(source) {
            if s.state != SourceState::Dropped {
                s.state = SourceState::Gone;
            }
        }
        self.assign(now);
    }

    /// Hand out work to free sources (the driver calls this once after adding sources).
    pub fn start(&mut self, now: Instant) {
        self.assign(now);
    }

    fn fail_source(&mut self, source: SourceId, now: Instant, reason: &str) {
        let s = &mut self.sources[source];
        if matches!(s.state, SourceState::Dropped | SourceState::Gone) {
            return;
        }
        s.failures += 1;
        if s.failures >= MAX_SOURCE_FAILURES {
            s.state = SourceState::Gone;
            let name = s.name.clone();
            self.notes.push(format!("{name} given up for this file after {MAX_SOURCE_FAILURES} failures ({reason})"));
        } else {
            s.state = SourceState::Waiting { until: now + self.cfg.busy_wait };
        }
    }

    /// Remove a running segment and free its source (its speed sample kept).
    fn take_segment(&mut self, id: SegmentId, now: Instant) -> Option<Segment> {
        let i = self.segments.iter().position(|s| s.id == id)?;
        let seg = self.segments.swap_remove(i);
        let s = &mut self.sources[seg.source];
        s.moved += seg.moved;
        s.active += now.saturating_duration_since(seg.since);
        if s.state == SourceState::Busy {
            s.state = SourceState::Idle;
        }
        Some(seg)
    }

    fn busy_sources(&self) -> usize {
        self.sources.iter().filter(|s| s.state == SourceState::Busy).count()
    }

    /// Give every free source work, fastest first, within the per-file cap.
    fn assign(&mut self, now: Instant) {
        let mut idle: Vec<SourceId> =
            (0..self.sources.len()).filter(|&i| self.sources[i].state == SourceState::Idle).collect();
        // Fastest first; sources not measured yet after measured ones, in the order added.
        idle.sort_by_key(|&i| std::cmp::Reverse(self.sources[i].speed()));
        for src in idle {
            if self.busy_sources() >= self.cfg.sources_per_file || self.is_complete() {
                return;
            }
            let range = self.fresh_range(src).or_else(|| self.race_range(src, now));
            let Some((first, end)) = range else { continue };
            let id = self.next_id;
            self.next_id += 1;
            self.segments.push(Segment { id, source: src, next: first, end, since: now, last_byte: now, moved: 0 });
            self.sources[src].state = SourceState::Busy;
            let start = first * self.block_size;
            let stop = (end * self.block_size).min(self.size);
            self.out.push_back(Command::Start { segment: id, source: src, start, length: stop - start });
        }
    }

    /// The first run of blocks neither held nor being fetched, sized for `src`.
    fn fresh_range(&self, src: SourceId) -> Option<(u64, u64)> {
        let n = self.block_count();
        let taken = |b: u64| self.verified[b as usize] || self.segments.iter().any(|s| (s.next..s.end).contains(&b));
        let first = (0..n).find(|&b| !taken(b))?;
        let s = &self.sources[src];
        let by_speed = (s.speed() as u128 * SEGMENT_TARGET.as_millis() / 1000 / self.block_size as u128) as u64;
        // Never more than a fair share of what is left: near the end the pool is split
        // among the sources instead of one source taking a long last segment while the
        // others sit idle (equally fast sources never race each other).
        let left = (first..n).filter(|&b| !taken(b)).count() as u64;
        let sharing = self.cfg.sources_per_file.min(self.sources.len()).max(1) as u64;
        let want = by_speed.min(left.div_ceil(sharing)).clamp(s.min_blocks, s.max_blocks);
        let mut end = first + 1;
        while end < n && end - first < want && !taken(end) {
            end += 1;
        }
        Some((first, end))
    }

    /// Endgame: the missing blocks of the running segment that will take longest, if
    /// `src` is faster than its source (or it stalled): raced from its first missing block.
    fn race_range(&self, src: SourceId, now: Instant) -> Option<(u64, u64)> {
        let mine = self.sources[src].speed();
        let raced = |b: u64| self.segments.iter().filter(|s| (s.next..s.end).contains(&b)).count() > 1;
        self.segments
            .iter()
            .filter(|s| s.source != src)
            .filter_map(|s| {
                let first = (s.next..s.end).find(|&b| !self.verified[b as usize] && !raced(b))?;
                let theirs = self.sources[s.source].speed();
                let left = (s.end - first) * self.block_size;
                let idle = now.saturating_duration_since(s.last_byte);
                // An untried source races too (it may well be faster), and anyone races
                // a source that has sent nothing for a while.
                let faster = mine > theirs || mine == 0 || theirs == 0 || idle >= self.cfg.stall / 2;
                faster.then(|| {
                    let eta = if theirs == 0 { u64::MAX } else { left / theirs.max(1) };
                    (eta, first, s.end)
                })
            })
            .max_by_key(|&(eta, first, _)| (eta, std::cmp::Reverse(first)))
            .map(|(_, first, end)| (first, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    /// A scheduler for `d` with its `tthl` at the DC++ level.
    fn sched(d: &[u8], cfg: Config) -> Scheduler {
        let r = {
            let mut t = tth::TigerTree::for_file_size(d.len() as u64);
            t.update(d);
            t.finish()
        };
        let (bs, hashes) = tth::verify_tthl_for_size(&r.tthl(), &r.root, d.len() as u64).unwrap();
        Scheduler::new(d.len() as u64, bs, hashes, &[], cfg)
    }

    /// A simulated source: bytes per second, and whether it lies in a byte range.
    struct Sim {
        rate: u64,
        lie: Option<(u64, u64)>,
        vanish_at: Option<u64>,
    }

    /// Run a download in simulated time, 100 ms steps; returns the file and the number of
    /// blocks each source delivered (kept or not), and the scheduler.
    fn simulate(d: &[u8], sims: &[Sim], cfg: Config, limit_secs: u64) -> (Vec<u8>, Scheduler, Vec<u64>) {
        let mut s = sched(d, cfg);
        for (i, sim) in sims.iter().enumerate() {
            let _ = sim;
            s.add_source(&format!("s{i}"), 1, 64);
        }
        let t0 = Instant::now();
        let mut now = t0;
        let mut file = vec![0u8; d.len()];
        // segment -> (source, position, end)
        let mut running: Vec<(SegmentId, SourceId, u64, u64)> = Vec::new();
        let mut delivered = vec![0u64; sims.len()];
        let mut buf: std::collections::HashMap<SegmentId, Vec<u8>> = Default::default();
        s.start(now);
        let step = Duration::from_millis(100);
        while !s.is_complete() && now < t0 + Duration::from_secs(limit_secs) {
            while let Some(c) = s.poll_command() {
                match c {
                    Command::Start { segment, source, start, length } => {
                        running.push((segment, source, start, start + length));
                        buf.insert(segment, Vec::new());
                    }
                    Command::Cancel { segment, .. } => running.retain(|r| r.0 != segment),
                }
            }
            now += step;
            let elapsed = (now - t0).as_millis() as u64;
            let mut events = Vec::new();
            for r in running.iter_mut() {
                let sim = &sims[r.1];
                if sim.vanish_at.is_some_and(|t| elapsed >= t) {
                    continue;
                }
                let n = (sim.rate / 10).min(r.3 - r.2);
                let mut chunk = d[r.2 as usize..(r.2 + n) as usize].to_vec();
                if let Some((a, b)) = sim.lie {
                    for (k, byte) in chunk.iter_mut().enumerate() {
                        let at = r.2 + k as u64;
                        if at >= a && at < b {
                            *byte ^= 0xff;
                        }
                    }
                }
                buf.get_mut(&r.0).unwrap().extend_from_slice(&chunk);
                r.2 += n;
                events.push((r.0, r.1, n));
            }
            for (seg, src, n) in events {
                s.bytes_moved(seg, n, now);
                // Whole blocks in the buffer are reported.
                while let Some(r) = running.iter().find(|r| r.0 == seg) {
                    let b = buf.get_mut(&seg).unwrap();
                    if b.is_empty() {
                        break;
                    }
                    let pos = r.2 - b.len() as u64; // where the buffer starts
                    let block = pos / s.block_size();
                    let (bstart, blen) = s.block_range(block);
                    assert_eq!(bstart, pos);
                    if (b.len() as u64) < blen {
                        break;
                    }
                    let bytes: Vec<u8> = b.drain(..blen as usize).collect();
                    delivered[src] += 1;
                    match s.block_done(seg, block, block_hash(&bytes), now) {
                        Verdict::Keep => file[bstart as usize..(bstart + blen) as usize].copy_from_slice(&bytes),
                        Verdict::Duplicate => {}
                        Verdict::Bad => break,
                    }
                    while let Some(c) = s.poll_command() {
                        match c {
                            Command::Start { segment, source, start, length } => {
                                running.push((segment, source, start, start + length));
                                buf.insert(segment, Vec::new());
                            }
                            Command::Cancel { segment, .. } => running.retain(|r| r.0 != segment),
                        }
                    }
                }
            }
            if s.next_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        (file, s, delivered)
    }

    #[test]
    fn a_block_map_condenses_for_a_progress_bar() {
        assert_eq!(condense("##..", 10), "##..");
        assert_eq!(condense("####....##>.#.", 7), "##..#>+");
        assert_eq!(condense(&"#".repeat(512), 30).len(), 30);
    }

    #[test]
    fn blocks_sit_on_tree_boundaries_at_most_512() {
        let d = data(3_000_000);
        // A tree of every leaf is joined up to the smallest 1024·2^i with at most 512
        // blocks (3,000,000 / 512 > 4096: 8 KiB).
        let leaves: Vec<Hash> = d.chunks(1024).map(tth::leaf_hash).collect();
        let fine = Scheduler::new(d.len() as u64, 1024, leaves, &[], Config::default());
        assert_eq!(fine.block_size(), 8192);
        assert_eq!(fine.block_count(), 367);
        assert_eq!(Scheduler::final_block_size(d.len() as u64, 1024), 8192);
        // A source's `tthl` (64 KiB at least, DC++ and ncdc) is already coarse enough.
        let s = sched(&d, Config::default());
        assert_eq!((s.block_size(), s.block_count()), (65536, 46));
        // Every block's own TTH is its node, at both levels.
        for sc in [&fine, &s] {
            for b in 0..sc.block_count() {
                let (a, n) = sc.block_range(b);
                assert_eq!(block_hash(&d[a as usize..(a + n) as usize]), sc.hashes[b as usize], "block {b}");
            }
        }
    }

    #[test]
    fn four_sources_share_the_file_and_it_checks_out() {
        let d = data(4 << 20);
        let sims: Vec<Sim> = (0..4).map(|_| Sim { rate: 256 << 10, lie: None, vanish_at: None }).collect();
        let (file, s, delivered) = simulate(&d, &sims, Config::default(), 600);
        assert!(s.is_complete());
        assert!(file == d);
        assert!(delivered.iter().all(|&n| n > 0), "every source worked: {delivered:?}");
        assert!(s.notes().is_empty(), "{:?}", s.notes());
    }

    #[test]
    fn equally_fast_sources_finish_together_instead_of_one_taking_the_tail() {
        // 64 MiB from four sources at 1 MiB/s: 16 s if they share the work to the end. A
        // source that took a long segment near the end would leave the others idle
        // (equally fast sources never race) and the file would take far longer.
        let d = data(64 << 20);
        let sims: Vec<Sim> = (0..4).map(|_| Sim { rate: 1 << 20, lie: None, vanish_at: None }).collect();
        let (file, s, delivered) = simulate(&d, &sims, Config::default(), 17);
        assert!(s.is_complete(), "not done in 17 s (16 s of work shared by four): {delivered:?}");
        assert!(file == d);
    }

    #[test]
    fn the_fastest_free_source_gets_the_first_segment() {
        let d = data(2 << 20);
        let mut s = sched(&d, Config { sources_per_file: 1, ..Config::default() });
        let slow = s.add_source("slow", 1, 1);
        let fast = s.add_source("fast", 1, 1);
        let t = Instant::now();
        s.sources[slow].moved = 1000;
        s.sources[slow].active = Duration::from_secs(1);
        s.sources[fast].moved = 100_000;
        s.sources[fast].active = Duration::from_secs(1);
        s.start(t);
        assert!(matches!(s.poll_command(), Some(Command::Start { source, start: 0, .. }) if source == fast));
        assert_eq!(s.poll_command(), None, "the per-file cap of one holds");
    }

    #[test]
    fn a_liar_is_dropped_noted_and_its_block_comes_from_elsewhere() {
        let d = data(4 << 20);
        let mut sims: Vec<Sim> = (0..3).map(|_| Sim { rate: 256 << 10, lie: None, vanish_at: None }).collect();
        sims[1].lie = Some((100_000, 100_010));
        sims[1].rate = 1 << 20; // fast, so it gets the early blocks
        let (file, s, _) = simulate(&d, &sims, Config::default(), 600);
        assert!(s.is_complete());
        assert!(file == d, "the file matches despite the liar");
        assert_eq!(s.sources()[1].state, SourceState::Dropped);
        assert!(s.notes().iter().any(|n| n.starts_with("s1 sent bytes") && n.contains("do not match the TTH")));
    }

    #[test]
    fn a_source_vanishing_mid_segment_does_not_stall_the_file() {
        let d = data(2 << 20);
        let mut sims: Vec<Sim> = (0..2).map(|_| Sim { rate: 128 << 10, lie: None, vanish_at: None }).collect();
        sims[0].vanish_at = Some(1500);
        let cfg = Config { stall: Duration::from_secs(5), busy_wait: Duration::from_secs(1000), ..Config::default() };
        let (file, s, delivered) = simulate(&d, &sims, cfg, 600);
        assert!(s.is_complete(), "{}", s.block_map());
        assert!(file == d);
        assert!(delivered[1] > delivered[0]);
        assert_eq!(s.sources()[0].state.as_str(), "waiting");
    }

    #[test]
    fn endgame_races_the_last_segment_and_cancels_the_loser() {
        let d = data(1 << 20);
        let mut s = sched(&d, Config::default());
        let a = s.add_source("a", 1, 1 << 20);
        let b = s.add_source("b", 1, 1);
        let t = Instant::now();
        // `a` is slow and known; it takes the whole file in one segment.
        s.sources[a].moved = 10;
        s.sources[a].active = Duration::from_secs(1);
        s.sources[a].min_blocks = s.block_count();
        s.sources[b].state = SourceState::Waiting { until: t + Duration::from_secs(1) };
        s.start(t);
        let Some(Command::Start { segment: sa, length, .. }) = s.poll_command() else { panic!() };
        assert_eq!(length, d.len() as u64);
        // `b` comes free: nothing is unassigned, so it races a's missing blocks.
        s.handle_timeout(t + Duration::from_secs(1));
        let Some(Command::Start { segment: sb, source, start: 0, .. }) = s.poll_command() else { panic!() };
        assert_eq!(source, b);
        assert!(s.block_map().chars().all(|c| c == '>'));
        // b delivers everything first: a is cancelled.
        for blk in 0..s.block_count() {
            let (x, n) = s.block_range(blk);
            let v = s.block_done(sb, blk, block_hash(&d[x as usize..(x + n) as usize]), t + Duration::from_secs(2));
            assert_eq!(v, Verdict::Keep);
        }
        assert!(s.is_complete());
        assert_eq!(s.poll_command(), Some(Command::Cancel { segment: sa, source: a }));
        // A late block from the loser is dropped.
        assert_eq!(s.block_done(sa, 0, [0; 24], t + Duration::from_secs(3)), Verdict::Duplicate);
    }

    #[test]
    fn maxed_out_sources_wait_and_come_back_without_failing() {
        let d = data(1 << 20);
        let mut s = sched(&d, Config { busy_wait: Duration::from_secs(10), ..Config::default() });
        let a = s.add_source("a", 1, 4);
        let t = Instant::now();
        s.start(t);
        let Some(Command::Start { segment, .. }) = s.poll_command() else { panic!() };
        for _ in 0..(MAX_SOURCE_FAILURES + 2) {
            s.segment_failed(segment, true, "$MaxedOut", t);
        }
        assert!(matches!(s.sources()[a].state, SourceState::Waiting { .. }));
        assert_eq!(s.poll_command(), None);
        assert_eq!(s.next_timeout(), Some(t + Duration::from_secs(10)));
        s.handle_timeout(t + Duration::from_secs(10));
        assert!(matches!(s.poll_command(), Some(Command::Start { start: 0, .. })));
    }

    #[test]
    fn failing_sources_are_given_up_and_the_file_is_stuck_without_others() {
        let d = data(1 << 20);
        let mut s = sched(&d, Config { busy_wait: Duration::from_secs(1), ..Config::default() });
        s.add_source("a", 1, 4);
        let mut t = Instant::now();
        s.start(t);
        for _ in 0..MAX_SOURCE_FAILURES {
            let Some(Command::Start { segment, .. }) = s.poll_command() else { panic!("{:?}", s.sources()) };
            s.segment_failed(segment, false, "connection refused", t);
            t += Duration::from_secs(1);
            s.handle_timeout(t);
        }
        assert!(s.is_stuck());
        assert!(s.notes()[0].contains("given up"));
    }

    #[test]
    fn a_restart_fetches_only_missing_blocks() {
        let d = data(2 << 20);
        let first = sched(&d, Config::default());
        let held: Vec<u64> = (0..first.block_count()).filter(|b| b % 3 != 0).collect();
        let r = {
            let mut t = tth::TigerTree::for_file_size(d.len() as u64);
            t.update(&d);
            t.finish()
        };
        let (bs, hashes) = tth::verify_tthl_for_size(&r.tthl(), &r.root, d.len() as u64).unwrap();
        let mut s = Scheduler::new(d.len() as u64, bs, hashes, &held, Config::default());
        let a = s.add_source("a", 1, 1 << 20);
        s.start(Instant::now());
        let mut asked = Vec::new();
        while let Some(Command::Start { start, length, source, .. }) = s.poll_command() {
            assert_eq!(source, a);
            asked.push((start, length));
        }
        assert_eq!(asked, vec![(0, s.block_size())], "the first missing run only (block 1 is held)");
        assert_eq!(s.verified(), held);
    }
}
