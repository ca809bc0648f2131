//! Sends a few records to a local broker and prints where each one was written.
//!
//! ```sh
//! cargo run -p spate-client --example producer -- [TOPIC] [COUNT]
//! ```
//!
//! The broker address comes from `SPATE_BROKER` (default `127.0.0.1:9192`). The topic is
//! created with three partitions if it does not exist. Records are keyed `user-N`, so records
//! with the same key land on the same partition, in order.

use spate_client::{Client, ClientConfig, ErrorCode, NewTopic, ProducerConfig, ProducerRecord};

fn main() -> Result<(), spate_client::Error> {
    let mut arguments = std::env::args().skip(1);
    let topic = arguments.next().unwrap_or_else(|| "example".to_string());
    let count: usize = arguments
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or(10);
    let broker = std::env::var("SPATE_BROKER").unwrap_or_else(|_| "127.0.0.1:9192".to_string());

    let client = Client::new(ClientConfig::new(broker))?;
    match client.admin().create_topic(NewTopic::new(&topic, 3)).wait() {
        Ok(()) => println!("created topic {topic}"),
        Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {}
        Err(error) => return Err(error),
    }

    let producer = client.producer(ProducerConfig::default())?;
    let mut deliveries = Vec::with_capacity(count);
    for number in 0..count {
        let key = format!("user-{}", number % 4);
        let value = format!("event {number}");
        // Accepting a record copies it into its partition's batch; delivery happens in the
        // background, and the Delivery reports the outcome.
        let delivery =
            producer.send_blocking(ProducerRecord::new(&topic, &value).with_key(&key))?;
        deliveries.push((key, delivery));
    }
    // close() sends what is still lingering and waits until every record is settled.
    producer.close().wait()?;
    for (key, delivery) in deliveries {
        let written = delivery.wait()?;
        println!(
            "{key} -> partition {} offset {}",
            written.partition,
            written
                .offset
                .map_or("?".to_string(), |offset| offset.to_string())
        );
    }
    Ok(())
}
