//! Reads a topic from its beginning and prints each record, until no new record arrives for
//! two seconds.
//!
//! ```sh
//! cargo run -p spate-client --example consumer -- [TOPIC]
//! ```
//!
//! The broker address comes from `SPATE_BROKER` (default `127.0.0.1:9192`). Run the
//! `producer` example first to have something to read.

use std::time::Duration;

use spate_client::{Client, ClientConfig, ConsumerConfig, StartAt};

fn main() -> Result<(), spate_client::Error> {
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example".to_string());
    let broker = std::env::var("SPATE_BROKER").unwrap_or_else(|_| "127.0.0.1:9192".to_string());

    let client = Client::new(ClientConfig::new(broker))?;
    let mut consumer = client.consumer(ConsumerConfig::default())?;
    // Every partition of the topic, from the oldest record kept.
    consumer.assign(&topic, None, StartAt::Earliest).wait()?;

    let mut idle_polls = 0;
    while idle_polls < 4 {
        let polled = consumer.poll(Duration::from_millis(500))?;
        if polled.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        // Keys and values are views into the fetched batch: nothing is copied to print them.
        for record in &polled {
            println!(
                "{}/{} @{} [{}] {}",
                record.topic(),
                record.partition(),
                record.offset(),
                String::from_utf8_lossy(record.key().unwrap_or_default()),
                String::from_utf8_lossy(record.value().unwrap_or_default()),
            );
        }
    }
    for partition in consumer.assignment() {
        println!(
            "{partition}: position {:?}, lag {:?}",
            consumer.position(&partition.topic, partition.partition),
            consumer.lag(&partition.topic, partition.partition)
        );
    }
    Ok(())
}
