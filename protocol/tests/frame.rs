//! Frame properties: encode → decode round trips, incremental decoding waits on every prefix,
//! oversized and malformed frames are typed errors, and arbitrary bytes never panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_protocol::codec::Sink;
use spate_protocol::constants::{CLIENT_ID_BYTES_MAX, FRAME_BYTES_MAX};
use spate_protocol::frame::{
    decode_request_frame, decode_response_frame, encode_request_frame, encode_request_frame_chunks,
    encode_response_frame, encode_response_frame_chunks, split_request_frame, split_response_frame,
    RequestHeader, REQUEST_HEADER_BYTES_MIN,
};
use spate_protocol::WireError;

fn encode_request(header: &RequestHeader<'_>, body: &[u8]) -> BytesMut {
    let mut buffer = BytesMut::new();
    encode_request_frame(&mut buffer, header, |sink| {
        sink.put_slice(body);
        Ok(())
    })
    .expect("frame within limits");
    buffer
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect()
}

proptest! {
    #[test]
    fn request_frame_round_trips_and_waits_on_every_prefix(
        api_key in any::<u16>(),
        api_version in any::<u16>(),
        correlation_id in any::<u32>(),
        client_id in "\\PC{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        prop_assume!(client_id.len() <= CLIENT_ID_BYTES_MAX);
        let header = RequestHeader { api_key, api_version, correlation_id, client_id: &client_id };
        let buffer = encode_request(&header, &body);

        for end in 0..buffer.len() {
            prop_assert_eq!(decode_request_frame(&buffer[..end]), Ok(None), "prefix {}", end);
        }
        let (frame, consumed) = decode_request_frame(&buffer).unwrap().unwrap();
        prop_assert_eq!(consumed, buffer.len());
        prop_assert_eq!(frame.header, header);
        prop_assert_eq!(frame.body, &body[..]);

        let chunks = encode_request_frame_chunks(&header, |sink| {
            sink.put_slice(&body);
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(concat(&chunks), buffer.to_vec());
    }

    #[test]
    fn response_frame_round_trips_and_waits_on_every_prefix(
        correlation_id in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut buffer = BytesMut::new();
        encode_response_frame(&mut buffer, correlation_id, |sink| {
            sink.put_slice(&body);
            Ok(())
        })
        .unwrap();
        for end in 0..buffer.len() {
            prop_assert_eq!(decode_response_frame(&buffer[..end]), Ok(None), "prefix {}", end);
        }
        let (frame, consumed) = decode_response_frame(&buffer).unwrap().unwrap();
        prop_assert_eq!(consumed, buffer.len());
        prop_assert_eq!(frame.correlation_id, correlation_id);
        prop_assert_eq!(frame.body, &body[..]);

        let chunks = encode_response_frame_chunks(correlation_id, |sink| {
            sink.put_shared(&Bytes::from(body.clone()));
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(concat(&chunks), buffer.to_vec());
    }

    #[test]
    fn arbitrary_bytes_never_panic_frame_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        if let Ok(Some((frame, consumed))) = decode_request_frame(&bytes) {
            prop_assert!(consumed <= bytes.len());
            prop_assert!(frame.body.len() <= consumed);
        }
        if let Ok(Some((_, consumed))) = decode_response_frame(&bytes) {
            prop_assert!(consumed <= bytes.len());
        }
        let mut buffer = BytesMut::from(&bytes[..]);
        let _ = split_request_frame(&mut buffer);
        let mut buffer = BytesMut::from(&bytes[..]);
        let _ = split_response_frame(&mut buffer);
    }
}

#[test]
fn split_request_frame_takes_one_frame_and_leaves_the_next() {
    let first = RequestHeader {
        api_key: 7,
        api_version: 0,
        correlation_id: 1,
        client_id: "producer-1",
    };
    let second = RequestHeader {
        correlation_id: 2,
        ..first
    };
    let mut buffer = encode_request(&first, b"first body");
    let first_length = buffer.len();
    buffer.extend_from_slice(&encode_request(&second, b"second"));
    let total_length = buffer.len();

    let frame = split_request_frame(&mut buffer).unwrap().unwrap();
    assert_eq!(frame.header(), first);
    assert_eq!(&frame.body[..], b"first body");
    assert_eq!(buffer.len(), total_length - first_length);

    let frame = split_request_frame(&mut buffer).unwrap().unwrap();
    assert_eq!(frame.correlation_id, 2);
    assert_eq!(&frame.body[..], b"second");
    assert!(buffer.is_empty());
    assert_eq!(split_request_frame(&mut buffer), Ok(None));
}

#[test]
fn split_response_frame_leaves_a_partial_frame_in_place() {
    let mut buffer = BytesMut::new();
    encode_response_frame(&mut buffer, 42, |sink| {
        sink.put_slice(b"payload");
        Ok(())
    })
    .unwrap();
    let mut partial = BytesMut::from(&buffer[..buffer.len() - 1]);
    assert_eq!(split_response_frame(&mut partial), Ok(None));
    assert_eq!(partial.len(), buffer.len() - 1);
    let frame = split_response_frame(&mut buffer).unwrap().unwrap();
    assert_eq!(frame.correlation_id, 42);
    assert_eq!(&frame.body[..], b"payload");
}

#[test]
fn oversized_request_frame_reports_length_api_key_and_correlation_id() {
    let frame_bytes = FRAME_BYTES_MAX as u32 + 1;
    let mut buffer = frame_bytes.to_le_bytes().to_vec();
    assert_eq!(
        decode_request_frame(&buffer),
        Err(WireError::FrameTooLarge {
            frame_bytes: frame_bytes as usize,
            limit: FRAME_BYTES_MAX,
            api_key: None,
            correlation_id: None,
        }),
        "only the length is known yet"
    );
    buffer.extend_from_slice(&7u16.to_le_bytes());
    buffer.extend_from_slice(&0u16.to_le_bytes());
    buffer.extend_from_slice(&99u32.to_le_bytes());
    assert_eq!(
        decode_request_frame(&buffer),
        Err(WireError::FrameTooLarge {
            frame_bytes: frame_bytes as usize,
            limit: FRAME_BYTES_MAX,
            api_key: Some(7),
            correlation_id: Some(99),
        })
    );
}

#[test]
fn oversized_response_frame_reports_its_correlation_id() {
    let mut buffer = (u32::MAX).to_le_bytes().to_vec();
    buffer.extend_from_slice(&5u32.to_le_bytes());
    assert_eq!(
        decode_response_frame(&buffer),
        Err(WireError::FrameTooLarge {
            frame_bytes: u32::MAX as usize,
            limit: FRAME_BYTES_MAX,
            api_key: None,
            correlation_id: Some(5),
        })
    );
}

#[test]
fn request_frame_shorter_than_its_fixed_header_is_rejected() {
    let mut buffer = 3u32.to_le_bytes().to_vec();
    buffer.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        decode_request_frame(&buffer),
        Err(WireError::FrameTooSmall {
            frame_bytes: 3,
            needed: REQUEST_HEADER_BYTES_MIN
        })
    );
}

#[test]
fn client_id_longer_than_the_limit_is_rejected_on_both_sides() {
    let long_id = "x".repeat(CLIENT_ID_BYTES_MAX + 1);
    let header = RequestHeader {
        api_key: 0,
        api_version: 0,
        correlation_id: 0,
        client_id: &long_id,
    };
    let mut buffer = BytesMut::from(&b"keep"[..]);
    let error = encode_request_frame(&mut buffer, &header, |_| Ok(())).unwrap_err();
    assert!(matches!(
        error,
        WireError::TooLong {
            field: "client_id",
            ..
        }
    ));
    assert_eq!(
        &buffer[..],
        b"keep",
        "a failed encode leaves the target as it was"
    );

    let mut forged = Vec::new();
    let frame_bytes = (REQUEST_HEADER_BYTES_MIN + long_id.len()) as u32;
    forged.extend_from_slice(&frame_bytes.to_le_bytes());
    forged.extend_from_slice(&[0; 8]);
    forged.extend_from_slice(&(long_id.len() as u16).to_le_bytes());
    forged.extend_from_slice(long_id.as_bytes());
    assert!(matches!(
        decode_request_frame(&forged),
        Err(WireError::TooLong {
            field: "client_id",
            ..
        })
    ));
}

#[test]
fn client_id_running_past_the_frame_is_truncated() {
    let mut forged = Vec::new();
    forged.extend_from_slice(&(REQUEST_HEADER_BYTES_MIN as u32 + 2).to_le_bytes());
    forged.extend_from_slice(&[0; 8]);
    forged.extend_from_slice(&5u16.to_le_bytes());
    forged.extend_from_slice(b"ab");
    assert!(matches!(
        decode_request_frame(&forged),
        Err(WireError::Truncated {
            field: "client_id",
            ..
        })
    ));
}

#[test]
fn client_id_that_is_not_utf8_is_rejected() {
    let mut forged = Vec::new();
    forged.extend_from_slice(&(REQUEST_HEADER_BYTES_MIN as u32 + 2).to_le_bytes());
    forged.extend_from_slice(&[0; 8]);
    forged.extend_from_slice(&2u16.to_le_bytes());
    forged.extend_from_slice(&[0xC3, 0x28]);
    assert_eq!(
        decode_request_frame(&forged),
        Err(WireError::InvalidUtf8 { field: "client_id" })
    );
}

#[test]
fn failed_body_encoding_leaves_the_target_unchanged() {
    let header = RequestHeader {
        api_key: 1,
        api_version: 0,
        correlation_id: 3,
        client_id: "c",
    };
    let mut buffer = BytesMut::from(&b"earlier frame"[..]);
    let error = encode_request_frame(&mut buffer, &header, |sink| {
        sink.put_slice(b"half a body");
        Err(WireError::InvalidValue {
            field: "test",
            value: 1,
        })
    })
    .unwrap_err();
    assert!(matches!(error, WireError::InvalidValue { .. }));
    assert_eq!(&buffer[..], b"earlier frame");
}
