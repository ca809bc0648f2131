//! The Redis Streams driver: a partition is one stream key (`<topic>-<partition>`), a record is
//! one entry with a single field `v` holding the value, produce is pipelined `XADD`, consume is
//! `XREAD` (with `BLOCK` when tailing).
//!
//! Durability is a server setting in Redis, not a topic setting: `appendfsync always` is the
//! peer of `acks=all`, `everysec` of `acks=leader`; `target` starts redis-server accordingly.
//! A producer writes commands from the load-generator thread and reads replies on a thread of
//! its own, which timestamps each reply as it is parsed. Batching mirrors the Spate producer:
//! commands accumulate until `batch_bytes` and are written in one socket write; a producer
//! that is about to wait (`idle`) writes what it holds at once.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::resp::{encode_command, read_reply, Reply};
use super::TopicSpec;
use super::{AcknowledgementCallback, Acknowledgements, ConsumerDriver, ConsumerSettings};
use super::{Driver, DriverError, DriverKind, ProducerDriver, ProducerSettings, SendMark};
use crate::constants::{REDIS_INFLIGHT_COMMANDS_MAX, REDIS_READ_COUNT_MAX};
use crate::stats::now_nanos;

const DRIVER: &str = "redis";

/// Read buffer of each connection.
const READ_BUFFER_BYTES: usize = 256 * 1024;

fn operation_error(operation: &'static str) -> impl Fn(std::io::Error) -> DriverError {
    move |error| DriverError::Operation {
        driver: DRIVER,
        operation,
        message: error.to_string(),
    }
}

fn stream_key(topic: &str, partition: u32) -> Vec<u8> {
    format!("{topic}-{partition}").into_bytes()
}

/// A connection to one redis-server.
pub struct RedisDriver {
    address: SocketAddr,
}

/// One blocking request/reply connection, for setup commands.
struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(address: SocketAddr) -> Result<Connection, DriverError> {
        let stream = TcpStream::connect(address).map_err(|error| DriverError::Connect {
            driver: DRIVER,
            address: address.to_string(),
            message: error.to_string(),
        })?;
        stream
            .set_nodelay(true)
            .map_err(operation_error("set TCP_NODELAY"))?;
        let reader = BufReader::with_capacity(
            READ_BUFFER_BYTES,
            stream
                .try_clone()
                .map_err(operation_error("clone socket"))?,
        );
        Ok(Connection { stream, reader })
    }

    fn call(&mut self, operation: &'static str, arguments: &[&[u8]]) -> Result<Reply, DriverError> {
        let mut command = Vec::new();
        encode_command(&mut command, arguments);
        self.stream
            .write_all(&command)
            .map_err(operation_error(operation))?;
        let reply = read_reply(&mut self.reader).map_err(|error| DriverError::Operation {
            driver: DRIVER,
            operation,
            message: error.to_string(),
        })?;
        if let Reply::Error(message) = reply {
            return Err(DriverError::Server {
                driver: DRIVER,
                operation,
                message,
            });
        }
        Ok(reply)
    }
}

impl RedisDriver {
    /// Connects and checks the server answers PING.
    pub fn connect(address: SocketAddr) -> Result<RedisDriver, DriverError> {
        let mut connection = Connection::open(address)?;
        match connection.call("PING", &[b"PING"])? {
            Reply::Simple(pong) if pong == "PONG" => Ok(RedisDriver { address }),
            other => Err(DriverError::Operation {
                driver: DRIVER,
                operation: "PING",
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}

impl Driver for RedisDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Redis
    }

    fn create_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        // Streams come into being with their first XADD; clear leftovers of a same-named run.
        self.delete_topic(topic)
    }

    fn delete_topic(&self, topic: &TopicSpec) -> Result<(), DriverError> {
        let mut connection = Connection::open(self.address)?;
        for partition in 0..topic.partitions {
            connection.call("DEL", &[b"DEL", &stream_key(&topic.name, partition)])?;
        }
        Ok(())
    }

    fn producer(
        &self,
        topic: &TopicSpec,
        settings: &ProducerSettings,
        on_acknowledgement: AcknowledgementCallback,
    ) -> Result<Box<dyn ProducerDriver>, DriverError> {
        RedisProducer::start(self.address, topic, settings, on_acknowledgement)
            .map(|producer| Box::new(producer) as Box<dyn ProducerDriver>)
    }

    fn consumer(
        &self,
        topic: &TopicSpec,
        partitions: &[u32],
        settings: &ConsumerSettings,
    ) -> Result<Box<dyn ConsumerDriver>, DriverError> {
        RedisConsumer::open(self.address, topic, partitions, settings)
            .map(|consumer| Box::new(consumer) as Box<dyn ConsumerDriver>)
    }
}

/// A command written but not yet answered.
struct Pending {
    mark: SendMark,
    value_bytes: usize,
}

/// Commands handed over and answered, for `flush`; and the reader's failure, if any.
#[derive(Default)]
struct ReplyProgress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Default)]
struct ProgressState {
    answered: u64,
    failure: Option<DriverError>,
}

struct RedisProducer {
    stream: TcpStream,
    keys: Vec<Vec<u8>>,
    buffer: Vec<u8>,
    batch_bytes: usize,
    pending: Option<SyncSender<Pending>>,
    sent: u64,
    progress: Arc<ReplyProgress>,
    reader: Option<JoinHandle<()>>,
}

impl RedisProducer {
    fn start(
        address: SocketAddr,
        topic: &TopicSpec,
        settings: &ProducerSettings,
        on_acknowledgement: AcknowledgementCallback,
    ) -> Result<RedisProducer, DriverError> {
        let connection = Connection::open(address)?;
        let depth = (settings.buffer_bytes / settings.message_bytes.max(1))
            .clamp(1, REDIS_INFLIGHT_COMMANDS_MAX);
        let (pending_sender, pending_receiver) = mpsc::sync_channel(depth);
        let progress = Arc::new(ReplyProgress::default());
        let reader_progress = Arc::clone(&progress);
        let reader = std::thread::Builder::new()
            .name("redis-replies".into())
            .spawn(move || {
                read_replies(
                    connection.reader,
                    pending_receiver,
                    on_acknowledgement,
                    &reader_progress,
                )
            })
            .map_err(operation_error("spawn reply thread"))?;
        Ok(RedisProducer {
            stream: connection.stream,
            keys: (0..topic.partitions)
                .map(|partition| stream_key(&topic.name, partition))
                .collect(),
            buffer: Vec::with_capacity(settings.batch_bytes + 256),
            batch_bytes: settings.batch_bytes,
            pending: Some(pending_sender),
            sent: 0,
            progress,
            reader: Some(reader),
        })
    }

    fn write_buffer(&mut self) -> Result<(), DriverError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.buffer)
            .map_err(operation_error("XADD write"))?;
        self.buffer.clear();
        Ok(())
    }

    fn reader_failure(&self) -> Option<DriverError> {
        self.progress
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .failure
            .clone()
    }
}

impl ProducerDriver for RedisProducer {
    fn send(&mut self, partition: u32, value: &[u8], mark: SendMark) -> Result<(), DriverError> {
        if let Some(failure) = self.reader_failure() {
            return Err(failure);
        }
        let key = self
            .keys
            .get(partition as usize)
            .ok_or(DriverError::Operation {
                driver: DRIVER,
                operation: "XADD",
                message: format!("partition {partition} is not in the topic"),
            })?;
        encode_command(&mut self.buffer, &[b"XADD", key, b"*", b"v", value]);
        let pending = Pending {
            mark,
            value_bytes: value.len(),
        };
        let sender = self
            .pending
            .as_ref()
            .expect("pending sender lives until drop");
        match sender.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(pending)) => {
                // The pipeline is full: what is buffered must reach the server before any
                // reply (and so any room) can come back.
                self.write_buffer()?;
                let sender = self
                    .pending
                    .as_ref()
                    .expect("pending sender lives until drop");
                if sender.send(pending).is_err() {
                    return Err(self.reader_failure().unwrap_or(closed_error()));
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(self.reader_failure().unwrap_or(closed_error()))
            }
        }
        self.sent += 1;
        if self.buffer.len() >= self.batch_bytes {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), DriverError> {
        self.write_buffer()
    }

    fn flush(&mut self) -> Result<(), DriverError> {
        self.write_buffer()?;
        let mut state = self
            .progress
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while state.answered < self.sent {
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            state = self
                .progress
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        Ok(())
    }
}

impl Drop for RedisProducer {
    fn drop(&mut self) {
        // Unblocks the reply thread (its read fails, its pending channel closes), then waits.
        self.pending = None;
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn closed_error() -> DriverError {
    DriverError::Operation {
        driver: DRIVER,
        operation: "XADD",
        message: "the reply thread stopped".into(),
    }
}

/// The reply thread of a producer: one reply per pending command, in order.
fn read_replies(
    mut reader: BufReader<TcpStream>,
    pending: Receiver<Pending>,
    mut on_acknowledgement: AcknowledgementCallback,
    progress: &ReplyProgress,
) {
    while let Ok(command) = pending.recv() {
        let reply = read_reply(&mut reader);
        let acknowledged_nanos = now_nanos();
        let (outcome, failure) = match reply {
            Ok(Reply::Bulk(Some(_))) => (Ok(()), None),
            Ok(Reply::Error(message)) => (
                Err(DriverError::Server {
                    driver: DRIVER,
                    operation: "XADD",
                    message,
                }),
                None,
            ),
            Ok(other) => {
                let error = DriverError::Operation {
                    driver: DRIVER,
                    operation: "XADD",
                    message: format!("unexpected reply {other:?}"),
                };
                (Err(error.clone()), Some(error))
            }
            Err(error) => {
                let error = DriverError::Operation {
                    driver: DRIVER,
                    operation: "XADD reply",
                    message: error.to_string(),
                };
                (Err(error.clone()), Some(error))
            }
        };
        on_acknowledgement(Acknowledgements {
            acknowledged_nanos,
            value_bytes: command.value_bytes,
            outcome,
            marks: &mut std::iter::once(command.mark),
        });
        let mut state = progress
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.answered += 1;
        let stop = failure.is_some();
        if let Some(failure) = failure {
            state.failure = Some(failure);
        }
        drop(state);
        progress.changed.notify_all();
        if stop {
            return;
        }
    }
}

struct RedisConsumer {
    connection: Connection,
    /// (partition, stream key, last entry id read), in the order XREAD names them.
    streams: Vec<(u32, Vec<u8>, Vec<u8>)>,
    count: Vec<u8>,
}

impl RedisConsumer {
    fn open(
        address: SocketAddr,
        topic: &TopicSpec,
        partitions: &[u32],
        settings: &ConsumerSettings,
    ) -> Result<RedisConsumer, DriverError> {
        let count = (settings.fetch_bytes_max / settings.message_bytes.max(1))
            .clamp(1, REDIS_READ_COUNT_MAX);
        Ok(RedisConsumer {
            connection: Connection::open(address)?,
            streams: partitions
                .iter()
                .map(|&partition| {
                    (
                        partition,
                        stream_key(&topic.name, partition),
                        b"0-0".to_vec(),
                    )
                })
                .collect(),
            count: count.to_string().into_bytes(),
        })
    }
}

impl ConsumerDriver for RedisConsumer {
    fn poll(
        &mut self,
        wait: Duration,
        on_record: &mut dyn FnMut(u32, &[u8]),
    ) -> Result<usize, DriverError> {
        let block_ms = wait.as_millis().max(1).to_string().into_bytes();
        let mut arguments: Vec<&[u8]> = vec![b"XREAD", b"COUNT", &self.count];
        // BLOCK 0 would wait forever; a zero wait is a plain read.
        if !wait.is_zero() {
            arguments.extend_from_slice(&[b"BLOCK", &block_ms]);
        }
        arguments.push(b"STREAMS");
        arguments.extend(self.streams.iter().map(|(_, key, _)| key.as_slice()));
        arguments.extend(self.streams.iter().map(|(_, _, last)| last.as_slice()));
        let reply = self.connection.call("XREAD", &arguments)?;
        let mut delivered = 0;
        for (key, entries) in parse_xread(reply)? {
            let Some(stream) = self.streams.iter_mut().find(|(_, name, _)| *name == key) else {
                return Err(malformed("XREAD named a stream it was not asked for"));
            };
            for (id, value) in entries {
                on_record(stream.0, &value);
                stream.2 = id;
                delivered += 1;
            }
        }
        Ok(delivered)
    }
}

fn malformed(message: &str) -> DriverError {
    DriverError::Operation {
        driver: DRIVER,
        operation: "XREAD",
        message: message.to_string(),
    }
}

type StreamEntries = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

/// `[[key, [[id, [field, value, ...]], ...]], ...]` into (key, [(id, value of field v)]).
fn parse_xread(reply: Reply) -> Result<StreamEntries, DriverError> {
    let streams = match reply {
        Reply::Array(None) => return Ok(Vec::new()),
        Reply::Array(Some(streams)) => streams,
        other => return Err(malformed(&format!("unexpected reply {other:?}"))),
    };
    let mut result = Vec::with_capacity(streams.len());
    for stream in streams {
        let Reply::Array(Some(mut pair)) = stream else {
            return Err(malformed("stream is not a [key, entries] pair"));
        };
        let (Some(Reply::Array(Some(entries))), Some(Reply::Bulk(Some(key)))) =
            (pair.pop(), pair.pop())
        else {
            return Err(malformed("stream is not a [key, entries] pair"));
        };
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let Reply::Array(Some(mut entry)) = entry else {
                return Err(malformed("entry is not an [id, fields] pair"));
            };
            let (Some(Reply::Array(Some(mut fields))), Some(Reply::Bulk(Some(id)))) =
                (entry.pop(), entry.pop())
            else {
                return Err(malformed("entry is not an [id, fields] pair"));
            };
            let (Some(Reply::Bulk(Some(value))), Some(Reply::Bulk(Some(field)))) =
                (fields.pop(), fields.pop())
            else {
                return Err(malformed("entry does not hold one field"));
            };
            if field != b"v" {
                return Err(malformed("entry field is not v"));
            }
            parsed.push((id, value));
        }
        result.push((key, parsed));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }

    fn array(elements: Vec<Reply>) -> Reply {
        Reply::Array(Some(elements))
    }

    #[test]
    fn xread_replies_yield_entry_ids_and_values_per_stream() {
        let reply = array(vec![array(vec![
            bulk(b"t-0"),
            array(vec![
                array(vec![bulk(b"1-0"), array(vec![bulk(b"v"), bulk(b"one")])]),
                array(vec![bulk(b"1-1"), array(vec![bulk(b"v"), bulk(b"two")])]),
            ]),
        ])]);
        let parsed = parse_xread(reply).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, b"t-0".to_vec());
        assert_eq!(
            parsed[0].1,
            vec![
                (b"1-0".to_vec(), b"one".to_vec()),
                (b"1-1".to_vec(), b"two".to_vec())
            ]
        );
    }

    #[test]
    fn a_timed_out_xread_yields_nothing() {
        assert!(parse_xread(Reply::Array(None)).unwrap().is_empty());
    }

    #[test]
    fn misshapen_xread_replies_are_errors() {
        assert!(parse_xread(Reply::Integer(3)).is_err());
        assert!(parse_xread(array(vec![bulk(b"t-0")])).is_err());
        let wrong_field = array(vec![array(vec![
            bulk(b"t-0"),
            array(vec![array(vec![
                bulk(b"1-0"),
                array(vec![bulk(b"w"), bulk(b"x")]),
            ])]),
        ])]);
        assert!(parse_xread(wrong_field).is_err());
    }

    #[test]
    fn partitions_map_to_one_stream_key_each() {
        assert_eq!(stream_key("orders", 3), b"orders-3".to_vec());
    }
}
