//! End-to-end: what the broker does about connections that cost it without helping anyone
//! (issue #18) and about a second broker on its port (issue #10): frames declared huge and held,
//! stalled frames, idle connections, clients that never read their answers, connection limits in
//! total and per address, a flood beyond the descriptor limit, and a second broker binding the
//! same port.
//!
//! Memory is checked from the broker's own `/proc/<pid>/status`; every wait polls with generous
//! deadlines (the machine is loaded), and nothing here measures speed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spate_protocol::api::{encode_request, Acks, ApiVersionsRequest, Message, Request};
use spate_protocol::error::ErrorCode;
use spate_tests::broker_process::broker_binary;
use spate_tests::client::{fetch_request, numbered_records, produce_request};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient, TestRecord};

/// Longest a test waits for the broker to act on something (a close, a freed slot).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn broker_with(arguments: &[&str]) -> Broker {
    Broker::start(BrokerOptions {
        arguments: arguments.iter().map(|text| text.to_string()).collect(),
        ..BrokerOptions::default()
    })
}

/// The broker's resident memory, from /proc.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// A client can create a topic, produce to it with acks=all and fetch the records back.
fn assert_served(address: SocketAddr, topic: &str) {
    let mut client = TestClient::connect(address);
    client.create_topic(topic, 1, &[]);
    let (code, _) = client.produce(
        topic,
        0,
        Acks::All,
        vec![build_batch(&numbered_records(0, 3, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::None);
    assert_eq!(client.fetch_all(topic, 0, 0).len(), 3);
}

/// The bytes of an ApiVersions request frame.
fn api_versions_frame() -> BytesMut {
    let mut frame = BytesMut::new();
    encode_request(
        &mut frame,
        1,
        "spate-tests",
        <ApiVersionsRequest as Message>::VERSIONS.1,
        &ApiVersionsRequest::default(),
    )
    .expect("encode");
    frame
}

/// The start of a frame that declares `frame_bytes` and never finishes: the length prefix and a
/// valid ApiVersions header, then `body_bytes` of body.
fn held_frame_start(frame_bytes: u32, body_bytes: usize) -> Vec<u8> {
    let header = api_versions_frame();
    let mut bytes = frame_bytes.to_le_bytes().to_vec();
    bytes.extend_from_slice(&header[4..]);
    bytes.resize(bytes.len() + body_bytes, 7);
    bytes
}

/// What became of a connection that asked for ApiVersions.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    Closed,
}

/// Sends ApiVersions on `stream` and waits for an answer or a close.
fn ask_api_versions(stream: &mut TcpStream) -> Outcome {
    stream
        .set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("read timeout");
    if stream.write_all(&api_versions_frame()).is_err() {
        return Outcome::Closed;
    }
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length) {
        Ok(()) => {
            let mut body = vec![0u8; u32::from_le_bytes(length) as usize];
            stream
                .read_exact(&mut body)
                .expect("the rest of the answer");
            Outcome::Answered
        }
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            panic!("no answer and no close within {SETTLE_TIMEOUT:?}")
        }
        Err(_) => Outcome::Closed,
    }
}

/// True once the broker closed `stream` (EOF or reset), false if it stayed open past
/// `SETTLE_TIMEOUT`; bytes still arriving are skipped.
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("read timeout");
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A connection from `source` (an address of 127.0.0.0/8) to the broker.
fn connect_from(source: [u8; 4], broker: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    socket.connect(&broker.into()).expect("connect");
    socket.into()
}

/// Polls `condition` until it holds or `SETTLE_TIMEOUT` passes.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {SETTLE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn frames_declared_huge_and_held_neither_deny_service_nor_take_memory() {
    let broker = broker_with(&[]);
    assert_served(broker.address(), "warm-up");
    let before = resident_bytes(broker.pid());
    let declared = 64 * 1024 * 1024 - 4;
    // The attack: 40 connections send a length prefix declaring a 64 MiB frame and a
    // valid header (19 bytes), then hold. Another 40 send more than a read chunk of body too, so
    // their frames take the rest of their bytes from the shard's large budget (more than it has).
    let mut held: Vec<TcpStream> = Vec::new();
    for index in 0..80 {
        let body_bytes = if index < 40 { 5 } else { 70 * 1024 };
        let mut stream = TcpStream::connect(broker.address()).expect("connect");
        stream
            .write_all(&held_frame_start(declared, body_bytes))
            .expect("send the start of a frame");
        held.push(stream);
    }
    // Let the broker read what was sent: poll its memory until it stops growing.
    let mut last = 0;
    eventually("the broker's memory settles", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = resident_bytes(broker.pid());
        let settled = now.abs_diff(last) < 1024 * 1024;
        last = now;
        settled
    });
    assert_served(broker.address(), "during-the-attack");
    let grown = resident_bytes(broker.pid()).saturating_sub(before);
    // 40 x 64 KiB for the short frames, and for the long ones their 70 KiB plus one 1 MiB step
    // at most: about 90 MiB in the worst case, against 5 GiB declared.
    let bound = 128 * 1024 * 1024;
    eprintln!("resident before {before} bytes, grown by {grown} bytes holding 80 partial frames");
    assert!(
        grown < bound,
        "the broker grew by {grown} bytes holding 80 partial frames (bound {bound})"
    );
    drop(held);
}

#[test]
fn a_stalled_partial_frame_is_closed_after_the_read_timeout_and_idle_connections_are_not() {
    let broker = broker_with(&["--frame-read-timeout-ms", "300"]);
    let mut idle = TcpStream::connect(broker.address()).expect("connect");
    let mut stalled = TcpStream::connect(broker.address()).expect("connect");
    stalled
        .write_all(&held_frame_start(1000, 10))
        .expect("send part of a frame");
    assert!(
        closed_by_broker(&mut stalled),
        "the stalled connection was not closed"
    );
    // A connection with no frame begun is not subject to the frame timeout.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(ask_api_versions(&mut idle), Outcome::Answered);
}

#[test]
fn an_idle_connection_is_closed_after_connections_max_idle_ms() {
    let broker = broker_with(&["--connections-max-idle-ms", "300"]);
    let mut client = TcpStream::connect(broker.address()).expect("connect");
    assert_eq!(ask_api_versions(&mut client), Outcome::Answered);
    assert!(
        closed_by_broker(&mut client),
        "the idle connection was not closed"
    );
}

/// Open descriptors of a process, from /proc.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list descriptors")
        .count()
}

/// Connections that pipeline requests and never read an answer, in each test below.
const NEVER_READING_CLIENTS: usize = 3;

/// A broker where a few connections that never read matter: one shard whose large budget (16 MiB)
/// two connections' shares (8 MiB each) fill, frames of at most 1 MiB, 1 MiB of unsent answers
/// per connection, and small socket send buffers, so its writes stall soon.
fn broker_for_unread_answers(response_write_timeout_ms: u64) -> Broker {
    Broker::start(BrokerOptions {
        shards: 1,
        arguments: [
            "--frame-bytes-max",
            "1048576",
            "--connection-inflight-bytes-max",
            "8388608",
            "--shard-inflight-bytes-max",
            "16777216",
            "--connection-unsent-response-bytes-max",
            "1048576",
            "--socket-send-buffer-bytes",
            "65536",
            "--response-write-timeout-ms",
            &response_write_timeout_ms.to_string(),
        ]
        .iter()
        .map(|text| text.to_string())
        .collect(),
        ..BrokerOptions::default()
    })
}

/// One batch holding one record of `value_bytes`.
fn large_batch(value_bytes: usize) -> bytes::Bytes {
    let value = "v".repeat(value_bytes);
    build_batch(&[TestRecord::new("key", &value, 0)]).freeze()
}

/// Fills topic `answers` with four 800 KB records (each fetch below answers about 800 KB) and
/// creates topic `normal` for the client that reads its answers.
fn prepare_topics(address: SocketAddr) {
    let mut client = TestClient::connect(address);
    client.create_topic("answers", 1, &[]);
    client.create_topic("normal", 1, &[]);
    for _ in 0..4 {
        let (code, _) = client.produce("answers", 0, Acks::All, vec![large_batch(800 * 1024)]);
        assert_eq!(code, ErrorCode::None);
    }
}

fn encoded<R: Request>(correlation_id: u32, request: &R) -> BytesMut {
    let mut frame = BytesMut::new();
    encode_request(
        &mut frame,
        correlation_id,
        "spate-tests",
        R::VERSIONS.1,
        request,
    )
    .expect("encode");
    frame
}

/// A connection with a small receive buffer that sends 64 pipelined requests, fetches of about
/// 800 KB and small acks=all produces in turn, and never reads.
fn never_reading_client(address: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&address.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    let mut requests = BytesMut::new();
    for correlation_id in 0..64 {
        let frame = if correlation_id % 2 == 0 {
            encoded(
                correlation_id,
                &fetch_request("answers", 0, 0, 1024 * 1024, 0, 0),
            )
        } else {
            let batch = build_batch(&numbered_records(0, 2, 0)).freeze();
            encoded(
                correlation_id,
                &produce_request("answers", 0, Acks::All, vec![batch]),
            )
        };
        requests.extend_from_slice(&frame);
    }
    stream.write_all(&requests).expect("send the requests");
    stream
}

/// Bytes that arrived on `stream` and were not read (FIONREAD).
fn unread_bytes(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer given, which lives for the call.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut count) };
    assert_eq!(result, 0, "FIONREAD failed");
    count as usize
}

/// Opens the never-reading connections and waits until the broker has stopped writing to them
/// (what arrived on each has stopped growing).
fn stall_never_reading_clients(address: SocketAddr) -> Vec<TcpStream> {
    let clients: Vec<TcpStream> = (0..NEVER_READING_CLIENTS)
        .map(|_| never_reading_client(address))
        .collect();
    let mut last = vec![0; clients.len()];
    eventually(
        "the broker's writes to the clients that do not read stall",
        || {
            std::thread::sleep(Duration::from_millis(300));
            let now: Vec<usize> = clients.iter().map(unread_bytes).collect();
            let stalled = now.iter().all(|&bytes| bytes > 0) && now == last;
            last = now;
            stalled
        },
    );
    clients
}

/// Produces one 600 KB record (a frame past the first read chunk, so it needs the shard's large
/// budget) and fetches it back, on a thread; true if that finished within `SETTLE_TIMEOUT`.
fn normal_client_served(address: SocketAddr) -> bool {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut client = TestClient::connect(address);
        let (code, offset) = client.produce("normal", 0, Acks::All, vec![large_batch(600 * 1024)]);
        assert_eq!(code, ErrorCode::None);
        let fetched = client.fetch_once("normal", 0, offset, 1024 * 1024);
        assert!(!fetched.records.is_empty(), "the record did not come back");
        let _ = done.send(());
    });
    finished.recv_timeout(SETTLE_TIMEOUT).is_ok()
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_after_the_write_timeout() {
    let broker = broker_for_unread_answers(2000);
    prepare_topics(broker.address());
    let before = resident_bytes(broker.pid());
    let clients = stall_never_reading_clients(broker.address());
    let with_them = open_descriptors(broker.pid());
    let grown = resident_bytes(broker.pid()).saturating_sub(before);
    assert!(
        normal_client_served(broker.address()),
        "a client that reads its answers was not served within {SETTLE_TIMEOUT:?}"
    );
    eventually("the connections that do not read are closed", || {
        open_descriptors(broker.pid()) + NEVER_READING_CLIENTS <= with_them
    });
    // Three stalled connections hold at most their 8 MiB shares and their unsent answers.
    let bound = 64 * 1024 * 1024;
    assert!(
        grown < bound,
        "the broker grew by {grown} bytes for {NEVER_READING_CLIENTS} clients that do not read"
    );
    drop(clients);
    let log = broker_log(broker);
    let closes = count_lines(&log, "accepted no byte of a response");
    assert!(
        (1..=NEVER_READING_CLIENTS).contains(&closes),
        "{closes} lines about connections closed for not reading:\n{}",
        log.join("\n")
    );
}

#[test]
fn clients_that_never_read_their_answers_do_not_hold_the_budget_others_need() {
    // The write timeout is far away: service must not depend on it.
    let broker = broker_for_unread_answers(600_000);
    prepare_topics(broker.address());
    let clients = stall_never_reading_clients(broker.address());
    let with_them = open_descriptors(broker.pid());
    assert!(
        normal_client_served(broker.address()),
        "a client that reads its answers was not served within {SETTLE_TIMEOUT:?} while \
         {NEVER_READING_CLIENTS} clients that do not read were connected"
    );
    assert!(
        open_descriptors(broker.pid()) + NEVER_READING_CLIENTS > with_them,
        "the clients that do not read were closed: the service did not happen beside them"
    );
    drop(clients);
}

#[test]
fn connections_beyond_the_broker_limit_are_closed_until_one_leaves() {
    let broker = broker_with(&["--connections-max", "3"]);
    let mut open: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(broker.address()).expect("connect");
            assert_eq!(ask_api_versions(&mut stream), Outcome::Answered);
            stream
        })
        .collect();
    let mut refused = TcpStream::connect(broker.address()).expect("connect");
    assert_eq!(ask_api_versions(&mut refused), Outcome::Closed);
    drop(open.pop());
    eventually("a freed place is given to a new connection", || {
        let mut stream = TcpStream::connect(broker.address()).expect("connect");
        ask_api_versions(&mut stream) == Outcome::Answered
    });
    let log = broker_log(broker);
    assert!(
        log.iter().any(|line| line.contains("connection refused")),
        "no log line says a connection was refused"
    );
}

#[test]
fn connections_beyond_the_per_address_limit_are_closed_for_that_address_only() {
    let broker = broker_with(&["--connections-per-ip-max", "2"]);
    let mut first = connect_from([127, 0, 0, 1], broker.address());
    let mut second = connect_from([127, 0, 0, 1], broker.address());
    assert_eq!(ask_api_versions(&mut first), Outcome::Answered);
    assert_eq!(ask_api_versions(&mut second), Outcome::Answered);
    let mut third = connect_from([127, 0, 0, 1], broker.address());
    assert_eq!(ask_api_versions(&mut third), Outcome::Closed);
    let mut elsewhere = connect_from([127, 0, 0, 2], broker.address());
    assert_eq!(ask_api_versions(&mut elsewhere), Outcome::Answered);
}

/// Floods a broker limited to 1024 descriptors with 1,500 connections, checks an existing client
/// keeps working (files included) while they are open, then that a new client is served once
/// they are gone, and returns the broker's log.
fn flood_beyond_the_descriptor_limit(extra_arguments: &[&str]) -> Vec<String> {
    let mut broker = Broker::start(BrokerOptions {
        descriptors_max: Some(1024),
        arguments: extra_arguments
            .iter()
            .map(|text| text.to_string())
            .collect(),
        ..BrokerOptions::default()
    });
    let mut existing = TestClient::connect(broker.address());
    existing.create_topic("before-the-flood", 1, &[]);
    let flood: Vec<TcpStream> = (0..1500)
        .filter_map(|_| TcpStream::connect(broker.address()).ok())
        .collect();
    assert!(flood.len() > 1024, "the flood itself could not connect");
    let (code, _) = existing.produce(
        "before-the-flood",
        0,
        Acks::All,
        vec![build_batch(&numbered_records(0, 2, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::None);
    drop(flood);
    eventually("a new client is served after the flood", || {
        let mut stream = TcpStream::connect(broker.address()).expect("connect");
        ask_api_versions(&mut stream) == Outcome::Answered
    });
    assert_served(broker.address(), "after-the-flood");
    broker.terminate();
    broker.drain_log()
}

fn broker_log(mut broker: Broker) -> Vec<String> {
    broker.terminate();
    broker.drain_log()
}

fn count_lines(log: &[String], text: &str) -> usize {
    log.iter().filter(|line| line.contains(text)).count()
}

#[test]
fn a_flood_beyond_the_descriptor_limit_is_refused_quietly_and_leaves_files_and_clients_working() {
    let log = flood_beyond_the_descriptor_limit(&[]);
    assert!(
        log.iter()
            .any(|line| line.contains("descriptor limit allows 448 client connections")),
        "the start-up log does not say what the descriptor limit allows:\n{}",
        log.join("\n")
    );
    let refusals = count_lines(&log, "connection refused");
    assert!(
        (1..=10).contains(&refusals),
        "{refusals} lines about refused connections"
    );
    assert_eq!(count_lines(&log, "Too many open files"), 0);
}

#[test]
fn accepts_failing_for_lack_of_descriptors_back_off_log_rarely_and_recover() {
    // No descriptors kept back beyond one cached file per shard: the flood runs the broker out
    // of descriptors (io_uring and the listener use some), and accept fails.
    let log = flood_beyond_the_descriptor_limit(&[
        "--file-descriptors-reserved",
        "0",
        "--open-files-per-shard-max",
        "1",
    ]);
    let failures = count_lines(&log, "accept failed");
    assert!(
        (1..=10).contains(&failures),
        "{failures} lines about failed accepts:\n{}",
        log.join("\n")
    );
}

#[test]
fn a_second_broker_on_the_same_port_fails_to_start_and_the_first_keeps_serving() {
    let broker = broker_with(&[]);
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let output = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", &broker.address().to_string(), "--shards", "1"])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .env_remove("SPATE_LISTEN")
        .env_remove("SPATE_DATA_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run a second broker");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "second broker: {log}");
    assert!(
        log.contains("cannot listen on") && log.contains("in use"),
        "the second broker does not say the address is in use: {log}"
    );
    assert_served(broker.address(), "still-served");
}
