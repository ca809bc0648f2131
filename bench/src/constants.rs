//! Every bound and default of the benchmark harness, in one place, with its unit last.
//!
//! Workload defaults (what a run does when neither the workload file nor a flag says otherwise)
//! sit beside the limits that keep the harness itself bounded: queues, buffers, waits. Relations
//! between them are pinned by the `const` assertions at the end. Nothing here does any work.

/// Default size of each record's value.
pub const MESSAGE_BYTES_DEFAULT: usize = 1024;
/// Default producer batch size: large batches, as the throughput targets ask for.
pub const BATCH_BYTES_DEFAULT: usize = 1024 * 1024;
/// Default time a producer waits for a batch to fill before sending it anyway.
pub const LINGER_US_DEFAULT: u64 = 1_000;
/// e2e, timerfd pacer: the shortest time between two wakes of a producer (records due in
/// between go together), and the most a workload may set.
pub const PACER_WAKE_US_DEFAULT: u64 = 100;
pub const PACER_WAKE_US_MAX: u64 = 100_000;
/// Default producer buffer memory (records accepted but not yet acknowledged).
pub const PRODUCER_BUFFER_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Default bound on the record bytes one consumer fetch returns.
pub const FETCH_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Default length of the measured part of a duration-bound run.
pub const DURATION_MS_DEFAULT: u64 = 10_000;
/// Default time at the start of a run whose results are thrown away (connections, caches and
/// the broker's first segment are set up in it).
pub const WARMUP_MS_DEFAULT: u64 = 1_000;
/// Records a `consume` run pre-fills and then drains, when not told otherwise.
pub const CONSUME_MESSAGE_COUNT_DEFAULT: u64 = 500_000;
/// The e2e target rate, as a percentage of the maximum throughput a calibration run measures,
/// when neither `rate` nor `rate_percent_of_max` is given.
pub const E2E_RATE_PERCENT_OF_MAX_DEFAULT: f64 = 50.0;
/// Length of the calibration run that measures the maximum throughput for an e2e rate given as
/// a percentage of it.
pub const CALIBRATION_DURATION_MS_DEFAULT: u64 = 5_000;
/// The storage engine's group-commit defaults (broker/storage/src/config.rs): one fdatasync per
/// this many bytes or this many microseconds, whichever comes first.
pub const GROUP_COMMIT_BYTES_DEFAULT: u64 = 1024 * 1024;
pub const GROUP_COMMIT_US_DEFAULT: u64 = 2_000;

/// Bytes at the start of every e2e record value: the intended send instant and the actual send
/// instant, each as nanoseconds since the harness's clock epoch (u64 little-endian).
pub const E2E_TIMESTAMP_BYTES: usize = 16;

/// Largest record value the harness builds.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most producer or consumer threads in one run.
pub const ACTORS_MAX: u32 = 1024;
/// Most produce requests in flight per partition a workload may ask for.
pub const INFLIGHT_REQUESTS_PER_PARTITION_MAX: usize = 1024;
/// Most partitions one run creates.
pub const PARTITIONS_MAX: u32 = 4096;
/// Longest run the harness accepts.
pub const DURATION_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// Latency histograms record nanoseconds from 1 ns up to this, with this many significant
/// decimal digits; longer values are clamped to the top (and still counted).
pub const HISTOGRAM_NANOS_MAX: u64 = 60 * 60 * 1_000_000_000;
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// How long the broker at rest is measured, without and with an idle crowd.
pub const IDLE_MEASURE_MS_DEFAULT: u64 = 5_000;
/// Longest wait for the broker to hold every connection of an idle crowd, or to let it go.
pub const IDLE_ACCEPT_TIMEOUT_MS: u64 = 120_000;
/// How often that wait looks at the broker's descriptors.
pub const IDLE_POLL_INTERVAL_MS: u64 = 100;
/// Pause after the broker holds the crowd, so its connection tasks reach their idle wait.
pub const IDLE_SETTLE_MS: u64 = 1_000;
/// Open files the harness keeps for itself beside an idle crowd (clients, limits, output).
pub const IDLE_DESCRIPTORS_SPARE: u64 = 1_024;

/// A steady-state run (`--steady-state`) writes this many times the kernel's dirty-page limit
/// per system, and needs that plus this share and this margin free in the data directory.
pub const STEADY_STATE_DIRTY_LIMIT_FACTOR: f64 = 2.2;
pub const STEADY_STATE_FREE_SHARE: f64 = 0.1;
pub const STEADY_STATE_FREE_MARGIN_BYTES: u64 = 1024 * 1024 * 1024;

/// How often the progress line refreshes.
pub const PROGRESS_INTERVAL_MS: u64 = 1_000;
/// How long consumers keep reading after producers stop before the missing records are
/// declared lost.
pub const DRAIN_TIMEOUT_MS: u64 = 30_000;
/// How long one consumer poll waits for records.
pub const POLL_WAIT_MS: u64 = 100;
/// How long the harness waits for a spawned broker or redis-server to accept connections.
pub const SPAWN_READY_TIMEOUT_MS: u64 = 60_000;
/// How long a spawned process gets to exit after SIGTERM before it is killed.
pub const SPAWN_STOP_TIMEOUT_MS: u64 = 15_000;
/// How long the harness waits for a spawned Apache Kafka to serve: a JVM start, storage
/// formatting and KRaft's first election (5-15 s on the 2-core development machine, more in a
/// loaded CI run).
pub const APACHE_KAFKA_READY_TIMEOUT_MS: u64 = 180_000;
/// Log lines of a spawned process kept to explain a failure.
pub const SPAWN_LOG_LINES_KEPT: usize = 40;

/// Loopback limit: how long the throughput stream runs, the size of each write (a large produce
/// request) and of each read (the broker's default read chunk).
pub const LOOPBACK_DURATION_MS_DEFAULT: u64 = 2_000;
pub const LOOPBACK_WRITE_BYTES: usize = 1024 * 1024;
pub const LOOPBACK_READ_BYTES: usize = 64 * 1024;
/// The broker's default SO_SNDBUF / SO_RCVBUF (broker/server/src/config.rs), used on both ends.
pub const SOCKET_SEND_BUFFER_BYTES: usize = 1024 * 1024;
pub const SOCKET_RECEIVE_BUFFER_BYTES: usize = 1024 * 1024;
/// Loopback round trip: bytes each way (a small request and its answer) and how many.
pub const RTT_MESSAGE_BYTES: usize = 64;
pub const RTT_ROUND_TRIPS_DEFAULT: u64 = 20_000;

/// A loopback or disk stream shorter than this measures a warm-up (socket buffers and the page
/// cache filling, the device's write cache absorbing), not a ceiling: ratios against such limits
/// are marked unreliable in the table and the JSON.
pub const LIMIT_DURATION_MS_RELIABLE_MIN: u64 = 1_000;

/// Rounds of limit measurements; the best figure of each kind is kept.
pub const LIMIT_ROUNDS_DEFAULT: u32 = 2;
/// Most rounds a run may ask for.
pub const LIMIT_ROUNDS_MAX: u32 = 100;

/// Disk limit: how long the write stream runs, the size of each O_DIRECT write, and the most it
/// writes in total (the probe file is deleted afterwards).
pub const DISK_DURATION_MS_DEFAULT: u64 = 3_000;
pub const DISK_WRITE_BYTES_DEFAULT: usize = 1024 * 1024;
pub const DISK_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// O_DIRECT needs buffers, offsets and sizes aligned to the logical block size; 4096 covers
/// every common device (the storage engine uses the same).
pub const DIRECT_IO_ALIGNMENT_BYTES: usize = 4096;
/// Disk read limit: each O_DIRECT read (as `dd iflag=direct bs=1M`), and the queue depths
/// measured (reads in flight at once; the best is the limit). Reads of a stream in the broker
/// are large and sequential; several in flight per partition is the read-ahead a catch-up
/// consumer needs.
pub const DISK_READ_BYTES: usize = 1024 * 1024;
pub const DISK_READ_QUEUE_DEPTHS: [usize; 2] = [1, 8];
/// The read probe file is sized from the disk duration as if the disk read this many bytes per
/// millisecond (1 GB/s), so a queue-depth-1 pass lasts about the duration, within these bounds.
pub const DISK_READ_FILE_BYTES_PER_MS: u64 = 1024 * 1024;
pub const DISK_READ_FILE_BYTES_MIN: u64 = 16 * 1024 * 1024;
pub const DISK_READ_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Redis driver: replies a producer may wait for at once (its pipelining depth), and how many
/// entries one XREAD asks for.
pub const REDIS_INFLIGHT_COMMANDS_MAX: usize = 64 * 1024;
pub const REDIS_READ_COUNT_MAX: usize = 10_000;
/// Bounds on what the RESP reader accepts from a server: bulk string bytes (Redis's own
/// limit), elements per array, and array nesting.
pub const RESP_BULK_BYTES_MAX: usize = 512 * 1024 * 1024;
pub const RESP_ARRAY_ELEMENTS_MAX: usize = 1024 * 1024;
pub const RESP_DEPTH_MAX: usize = 8;
/// Longest status or error line the RESP reader accepts.
pub const RESP_LINE_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(LIMIT_DURATION_MS_RELIABLE_MIN <= LOOPBACK_DURATION_MS_DEFAULT);
const _: () = assert!(LIMIT_DURATION_MS_RELIABLE_MIN <= DISK_DURATION_MS_DEFAULT);
const _: () = assert!(E2E_TIMESTAMP_BYTES <= MESSAGE_BYTES_DEFAULT);
const _: () = assert!(MESSAGE_BYTES_DEFAULT <= BATCH_BYTES_DEFAULT);
const _: () = assert!(BATCH_BYTES_DEFAULT <= PRODUCER_BUFFER_BYTES_DEFAULT);
const _: () = assert!(DISK_WRITE_BYTES_DEFAULT % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(DISK_WRITE_BYTES_DEFAULT as u64 <= DISK_BYTES_MAX);
const _: () = assert!(RTT_MESSAGE_BYTES <= LOOPBACK_READ_BYTES);
const _: () = assert!(DISK_READ_BYTES % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(DISK_READ_FILE_BYTES_MIN % DISK_READ_BYTES as u64 == 0);
const _: () = assert!(DISK_READ_FILE_BYTES_MAX % DISK_READ_BYTES as u64 == 0);
const _: () = assert!(DISK_READ_FILE_BYTES_MAX <= DISK_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX <= RESP_BULK_BYTES_MAX);
const _: () = assert!(POLL_WAIT_MS < DRAIN_TIMEOUT_MS);

/// `compaction-latency`: the compacted topic's fill (enough for a pass of several seconds at the
/// broker's default I/O budget), its key space and segment size, the probe interval, and how
/// long the pass may take to start (the broker's check interval is set to
/// `COMPACTION_CHECK_INTERVAL_MS`) and to end.
pub const COMPACTION_FILL_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
pub const COMPACTION_KEYS_DEFAULT: u64 = 10_000;
pub const COMPACTION_SEGMENT_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
pub const COMPACTION_PROBE_INTERVAL_US_DEFAULT: u64 = 2_000;
pub const COMPACTION_PASS_TIMEOUT_MS_DEFAULT: u64 = 300_000;
pub const COMPACTION_CHECK_INTERVAL_MS: u64 = 200;
