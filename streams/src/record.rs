//! The values that flow through a topology: [`Record`] (a key, a value and its event time),
//! [`Window`] and [`Windowed`] keys. Bytes, topics and partitions belong to the edges
//! (`task`, `driver`), not here.

/// One record inside a topology: typed key and value, and its event time in milliseconds since
/// the Unix epoch (the source's timestamp extractor chose it; operators keep or derive it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl<K, V> Record<K, V> {
    /// A record with this key, value and event time.
    pub fn new(key: K, value: V, timestamp_ms: i64) -> Self {
        Record {
            key,
            value,
            timestamp_ms,
        }
    }
}

/// A time window: `[start_ms, end_ms)` for tumbling and hopping windows, `[start_ms, end_ms]`
/// (both ends included) for sliding and session windows, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond of the window.
    pub start_ms: i64,
    /// End of the window (excluded for time windows, included for sliding and session ones).
    pub end_ms: i64,
}

impl Window {
    /// The window from `start_ms` to `end_ms`.
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        assert!(start_ms <= end_ms, "a window ends at or after its start");
        Window { start_ms, end_ms }
    }
}

/// A key within a window: the key type of windowed aggregations' tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The grouping key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}
