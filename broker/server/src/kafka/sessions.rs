//! Incremental fetch sessions (KIP-227): a consumer that fetches the same partitions again and
//! again names them once; later fetches name only what changed (a new fetch offset, a partition
//! added or forgotten), and the answer carries only partitions with something new (records, an
//! error, a moved high watermark or log start).
//!
//! As Kafka's `FetchManager`: epoch -1 asks for no session (and ends the one named); epoch 0
//! starts a session from a full fetch (ending the one named), answered with its id when the cache
//! has room and with id 0 (no session, as Kafka when its cache is full) otherwise; epoch > 0
//! continues one: an unknown id is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch
//! INVALID_FETCH_SESSION_EPOCH, and the client then starts over with a full fetch. Partitions
//! that returned records move to the back of the session, so a response limit does not starve
//! the ones behind them.
//!
//! The cache is shard-local (a `thread_local`, one per shard thread; a client's connection and
//! its session live on the same shard) and bounded twice in `Limits`: sessions
//! (`kafka_fetch_sessions_max`) and partitions of all sessions together
//! (`kafka_fetch_session_partitions_max`). When it is full, a session unused for
//! `FETCH_SESSION_IDLE_MS` makes room; otherwise the new one is refused (id 0). A session whose
//! growth would pass the partition bound is dropped, and its client starts over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::PartitionData;
use spate_kafka_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use uuid::Uuid;

/// A session unused this long may be evicted to make room for a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms`).
pub(crate) const FETCH_SESSION_IDLE_MS: u64 = 120_000;

/// Kafka's session epochs: -1 asks for no session, 0 starts one.
const FINAL_EPOCH: i32 = -1;
const INITIAL_EPOCH: i32 = 0;

/// A partition as the session names it: topic name (empty when by id), topic id (nil when by
/// name), partition.
type PartitionName = (String, Uuid, i32);

/// What the session remembers of one partition: what the client asked for last, and what it
/// was last told.
#[derive(Debug, Clone)]
struct SessionPartition {
    name: PartitionName,
    fetch_offset: i64,
    partition_max_bytes: i32,
    current_leader_epoch: i32,
    /// Last answered (`None`: never answered yet).
    high_watermark: Option<i64>,
    log_start_offset: Option<i64>,
}

impl SessionPartition {
    fn new(topic: &FetchTopic, partition: &FetchPartition) -> SessionPartition {
        SessionPartition {
            name: name_of(topic, partition.partition),
            fetch_offset: partition.fetch_offset,
            partition_max_bytes: partition.partition_max_bytes,
            current_leader_epoch: partition.current_leader_epoch,
            high_watermark: None,
            log_start_offset: None,
        }
    }

    /// Whether the incremental answer must carry `answer`; remembers what it carries.
    fn is_news(&mut self, answer: &PartitionData) -> bool {
        let has_records = answer
            .records
            .as_ref()
            .is_some_and(|records| !records.is_empty());
        let news = has_records
            || answer.error_code != 0
            || self.high_watermark != Some(answer.high_watermark)
            || self.log_start_offset != Some(answer.log_start_offset);
        self.high_watermark = Some(answer.high_watermark);
        self.log_start_offset = Some(answer.log_start_offset);
        news
    }
}

fn name_of(topic: &FetchTopic, partition: i32) -> PartitionName {
    (topic.topic.0.to_string(), topic.topic_id, partition)
}

#[derive(Debug)]
struct Session {
    partitions: Vec<SessionPartition>,
    /// The epoch the client must send next.
    next_epoch: i32,
    last_used: Instant,
}

impl Session {
    /// What distinguishes the session's state after each fetch: the epoch expected next.
    fn generation(&self) -> i32 {
        self.next_epoch
    }
}

/// Every session of this shard. See the module documentation.
#[derive(Debug, Default)]
struct SessionCache {
    sessions: HashMap<i32, Session>,
    /// Partitions of all sessions together.
    partitions: usize,
    next_id_seed: u64,
}

impl SessionCache {
    fn remove(&mut self, id: i32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.partitions -= session.partitions.len();
        }
    }

    /// Room for a session of `partitions` partitions, evicting the longest-unused idle session
    /// if that makes it; `false`: no room.
    fn make_room(&mut self, partitions: usize, bounds: SessionBounds, now: Instant) -> bool {
        let idle = Duration::from_millis(FETCH_SESSION_IDLE_MS);
        while self.sessions.len() + 1 > bounds.sessions_max
            || self.partitions + partitions > bounds.partitions_max
        {
            let oldest = self
                .sessions
                .iter()
                .filter(|(_, session)| now.duration_since(session.last_used) >= idle)
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.remove(id),
                None => return false,
            }
        }
        true
    }

    /// A fresh id: positive, not 0, not in use.
    fn new_id(&mut self) -> i32 {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        thread_local! {
            static STATE: RandomState = RandomState::new();
        }
        loop {
            self.next_id_seed = self.next_id_seed.wrapping_add(1);
            let mut hasher = STATE.with(|state| state.build_hasher());
            hasher.write_u64(self.next_id_seed);
            let id = (hasher.finish() as i32) & i32::MAX;
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

thread_local! {
    /// This shard's sessions (each shard runs on its own thread).
    static CACHE: RefCell<SessionCache> = RefCell::new(SessionCache::default());
}

/// The cache's bounds, from `Limits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionBounds {
    pub sessions_max: usize,
    pub partitions_max: usize,
}

/// What a fetch does about sessions, decided before it reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionStep {
    /// No session: answer the request as named, session id 0.
    None,
    /// A new session: answer every partition, with this id. The second field is the
    /// session's generation, so that `finish` can tell whether another fetch of the same
    /// session changed it meanwhile.
    Started(i32, i32),
    /// A session continued: the request now names all its partitions (rewritten by
    /// [`begin`]); answer only what is new, with this id (and generation, as above).
    Continued(i32, i32),
    /// Answer only this top-level error.
    Refused(i16),
}

/// Applies the request's session fields to the cache. For a continued session, rewrites
/// `request.topics` to every partition of the session, with the fetch state the session holds.
pub(crate) fn begin(
    request: &mut FetchRequest,
    bounds: SessionBounds,
    now: Instant,
) -> SessionStep {
    CACHE.with(|cache| begin_in(&mut cache.borrow_mut(), request, bounds, now))
}

fn begin_in(
    cache: &mut SessionCache,
    request: &mut FetchRequest,
    bounds: SessionBounds,
    now: Instant,
) -> SessionStep {
    match request.session_epoch {
        FINAL_EPOCH => {
            cache.remove(request.session_id);
            SessionStep::None
        }
        INITIAL_EPOCH => {
            cache.remove(request.session_id);
            let partitions: Vec<SessionPartition> = request
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(move |partition| SessionPartition::new(topic, partition))
                })
                .collect();
            if bounds.sessions_max == 0 || !cache.make_room(partitions.len(), bounds, now) {
                tracing::debug!(
                    sessions = cache.sessions.len(),
                    partitions = cache.partitions,
                    "no room for a Kafka fetch session; answering without one"
                );
                return SessionStep::None;
            }
            let id = cache.new_id();
            tracing::debug!(
                session_id = id,
                partitions = partitions.len(),
                "Kafka fetch session started"
            );
            cache.partitions += partitions.len();
            cache.sessions.insert(
                id,
                Session {
                    partitions,
                    next_epoch: 1,
                    last_used: now,
                },
            );
            SessionStep::Started(id, 1)
        }
        epoch => {
            let id = request.session_id;
            let Some(session) = cache.sessions.get_mut(&id) else {
                return SessionStep::Refused(ResponseError::FetchSessionIdNotFound.code());
            };
            if epoch != session.next_epoch {
                return SessionStep::Refused(ResponseError::InvalidFetchSessionEpoch.code());
            }
            let before = session.partitions.len();
            update(session, request);
            let after = session.partitions.len();
            cache.partitions = cache.partitions - before + after;
            if cache.partitions > bounds.partitions_max {
                // Grown past the bound: the client starts over (its full fetch may get no
                // session).
                cache.remove(id);
                return SessionStep::Refused(ResponseError::FetchSessionIdNotFound.code());
            }
            let session = cache.sessions.get_mut(&id).expect("still cached");
            session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            session.last_used = now;
            request.topics = named_topics(&session.partitions);
            SessionStep::Continued(id, session.generation())
        }
    }
}

/// The request's changes to the session: partitions named are added or updated, forgotten
/// ones removed.
fn update(session: &mut Session, request: &FetchRequest) {
    let forgotten: std::collections::HashSet<PartitionName> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.topic.0.to_string(), topic.topic_id, *partition))
        })
        .collect();
    if !forgotten.is_empty() {
        session
            .partitions
            .retain(|partition| !forgotten.contains(&partition.name));
    }
    let mut positions: HashMap<PartitionName, usize> = session
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| (partition.name.clone(), index))
        .collect();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let named = SessionPartition::new(topic, partition);
            match positions.get(&named.name) {
                Some(&index) => {
                    let cached = &mut session.partitions[index];
                    cached.fetch_offset = named.fetch_offset;
                    cached.partition_max_bytes = named.partition_max_bytes;
                    cached.current_leader_epoch = named.current_leader_epoch;
                }
                None => {
                    positions.insert(named.name.clone(), session.partitions.len());
                    session.partitions.push(named);
                }
            }
        }
    }
}

/// The session's partitions as request topics, in session order (consecutive partitions of a
/// topic share one entry).
fn named_topics(partitions: &[SessionPartition]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for partition in partitions {
        let (name, id, index) = &partition.name;
        let fetched = FetchPartition::default()
            .with_partition(*index)
            .with_fetch_offset(partition.fetch_offset)
            .with_partition_max_bytes(partition.partition_max_bytes)
            .with_current_leader_epoch(partition.current_leader_epoch);
        let same_topic = topics
            .last()
            .is_some_and(|topic| topic.topic.0.as_str() == name && topic.topic_id == *id);
        if same_topic {
            topics
                .last_mut()
                .expect("a last topic")
                .partitions
                .push(fetched);
        } else {
            topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone())))
                    .with_topic_id(*id)
                    .with_partitions(vec![fetched]),
            );
        }
    }
    topics
}

/// Records what the answer told the session's client, and for a continued session keeps only
/// the partitions with news in `response` (in the order of the session, which the request
/// followed). Partitions that carried records move to the back of the session.
pub(crate) fn finish(step: &SessionStep, response: &mut FetchResponse) {
    let (id, generation, continued) = match *step {
        SessionStep::Started(id, generation) => (id, generation, false),
        SessionStep::Continued(id, generation) => (id, generation, true),
        SessionStep::None | SessionStep::Refused(_) => return,
    };
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        match cache.sessions.get_mut(&id) {
            Some(session) if session.generation() == generation => {
                finish_session(session, continued, response);
            }
            // Evicted, or changed by a later fetch of the same session, while this one
            // waited: the answer stays whole (every partition it read), which is right for any
            // session state; the client finds out the rest on its next fetch.
            _ => {}
        }
    });
    response.session_id = id;
}

/// `response` answers every partition of `session`, in its order (the session has not
/// changed since `begin`).
fn finish_session(session: &mut Session, continued: bool, response: &mut FetchResponse) {
    let answered = response
        .responses
        .iter()
        .map(|topic| topic.partitions.len())
        .sum::<usize>();
    assert_eq!(
        answered,
        session.partitions.len(),
        "a fetch of an unchanged session answers each of its partitions"
    );
    let mut served = Vec::new();
    let mut index = 0;
    for topic in &mut response.responses {
        topic.partitions.retain(|answer| {
            let cached = &mut session.partitions[index];
            let news = cached.is_news(answer);
            if answer
                .records
                .as_ref()
                .is_some_and(|records| !records.is_empty())
            {
                served.push(index);
            }
            index += 1;
            news || !continued
        });
    }
    response
        .responses
        .retain(|topic| !topic.partitions.is_empty());
    if !served.is_empty() {
        // Stable: the served ones to the back, in their order.
        let mut moved = Vec::with_capacity(served.len());
        for index in served.into_iter().rev() {
            moved.push(session.partitions.remove(index));
        }
        moved.reverse();
        session.partitions.extend(moved);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use spate_kafka_protocol::kafka_protocol::messages::fetch_request::ForgottenTopic;
    use spate_kafka_protocol::kafka_protocol::messages::fetch_response::FetchableTopicResponse;

    use super::*;

    const BOUNDS: SessionBounds = SessionBounds {
        sessions_max: 2,
        partitions_max: 10,
    };

    fn request(id: i32, epoch: i32, partitions: &[(&str, i32, i64)]) -> FetchRequest {
        let mut request = FetchRequest::default();
        request.session_id = id;
        request.session_epoch = epoch;
        for (topic, partition, offset) in partitions {
            request.topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*partition)
                        .with_fetch_offset(*offset)]),
            );
        }
        request
    }

    /// The answer a fetch of `request` would give: records for the listed partitions.
    fn response(request: &FetchRequest, with_records: &[i32]) -> FetchResponse {
        FetchResponse::default().with_responses(
            request
                .topics
                .iter()
                .map(|topic| {
                    FetchableTopicResponse::default()
                        .with_topic(topic.topic.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|partition| {
                                    let records = if with_records.contains(&partition.partition) {
                                        Bytes::from_static(b"batch")
                                    } else {
                                        Bytes::new()
                                    };
                                    PartitionData::default()
                                        .with_partition_index(partition.partition)
                                        .with_high_watermark(10)
                                        .with_log_start_offset(0)
                                        .with_records(Some(records))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn answered(response: &FetchResponse) -> Vec<i32> {
        response
            .responses
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    fn round(
        cache: &mut SessionCache,
        mut fetch: FetchRequest,
        with_records: &[i32],
    ) -> (SessionStep, FetchRequest, FetchResponse) {
        let step = begin_in(cache, &mut fetch, BOUNDS, Instant::now());
        let mut answer = response(&fetch, with_records);
        if let SessionStep::Started(id, _) | SessionStep::Continued(id, _) = step {
            let session = cache.sessions.get_mut(&id).expect("cached");
            finish_session(
                session,
                matches!(step, SessionStep::Continued(..)),
                &mut answer,
            );
            answer.session_id = id;
        }
        (step, fetch, answer)
    }

    #[test]
    fn a_session_answers_only_news_and_takes_offset_updates() {
        let mut cache = SessionCache::default();
        let full = request(0, 0, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)]);
        let (step, _, answer) = round(&mut cache, full, &[1]);
        let SessionStep::Started(id, _) = step else {
            panic!("no session: {step:?}");
        };
        assert_eq!(answered(&answer), vec![0, 1, 0], "a full answer");
        // Nothing changed: an empty incremental answer, though all three were fetched.
        let (step, fetched, answer) = round(&mut cache, request(id, 1, &[]), &[]);
        assert!(matches!(step, SessionStep::Continued(continued, _) if continued == id));
        assert_eq!(
            fetched
                .topics
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>(),
            3
        );
        assert!(answered(&answer).is_empty());
        // a/1 moved on: the session keeps its new offset; it had records in the first round,
        // so it went to the back then.
        let (_, fetched, answer) = round(&mut cache, request(id, 2, &[("a", 1, 7)]), &[1]);
        let order: Vec<(String, i32, i64)> = fetched
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| {
                    (
                        topic.topic.0.to_string(),
                        partition.partition,
                        partition.fetch_offset,
                    )
                })
            })
            .collect();
        assert_eq!(
            order,
            vec![("a".into(), 0, 0), ("b".into(), 0, 0), ("a".into(), 1, 7)]
        );
        assert_eq!(
            answered(&answer),
            vec![1],
            "only the partition with records"
        );
        // A wrong epoch and an unknown id are refused.
        assert_eq!(
            round(&mut cache, request(id, 9, &[]), &[]).0,
            SessionStep::Refused(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            round(&mut cache, request(id ^ 1, 1, &[]), &[]).0,
            SessionStep::Refused(ResponseError::FetchSessionIdNotFound.code())
        );
    }

    #[test]
    fn forgotten_partitions_leave_the_session() {
        let mut cache = SessionCache::default();
        let (step, _, _) = round(&mut cache, request(0, 0, &[("a", 0, 0), ("a", 1, 0)]), &[]);
        let SessionStep::Started(id, _) = step else {
            panic!("no session");
        };
        let mut forget = request(id, 1, &[]);
        forget.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("a")))
            .with_partitions(vec![0])];
        let (_, fetched, _) = round(&mut cache, forget, &[]);
        assert_eq!(fetched.topics.len(), 1);
        assert_eq!(fetched.topics[0].partitions[0].partition, 1);
        assert_eq!(cache.partitions, 1);
    }

    #[test]
    fn a_full_cache_answers_without_a_session() {
        let mut cache = SessionCache::default();
        for _ in 0..2 {
            let (step, _, _) = round(&mut cache, request(0, 0, &[("a", 0, 0)]), &[]);
            assert!(matches!(step, SessionStep::Started(..)));
        }
        let (step, _, answer) = round(&mut cache, request(0, 0, &[("a", 0, 0)]), &[]);
        assert_eq!(step, SessionStep::None, "no idle session to evict");
        assert_eq!(answer.session_id, 0);
        // Too many partitions for the cache: no session either.
        let many: Vec<(&str, i32, i64)> = (0..11).map(|p| ("b", p, 0)).collect();
        let mut cache = SessionCache::default();
        assert_eq!(
            round(&mut cache, request(0, 0, &many), &[]).0,
            SessionStep::None
        );
    }

    #[test]
    fn epoch_minus_one_ends_the_session() {
        let mut cache = SessionCache::default();
        let (step, _, _) = round(&mut cache, request(0, 0, &[("a", 0, 0)]), &[]);
        let SessionStep::Started(id, _) = step else {
            panic!("no session");
        };
        assert_eq!(
            round(&mut cache, request(id, -1, &[]), &[]).0,
            SessionStep::None
        );
        assert!(cache.sessions.is_empty());
        assert_eq!(cache.partitions, 0);
    }
}
