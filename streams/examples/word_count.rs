//! Word count against a broker: reads lines from `lines`, counts words, writes `word-counts`.
//! `cargo run -p spate-streams --example word_count [broker address] [seconds to run]`.
use spate_client::{Client, NewTopic};
use spate_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use spate_streams::{StreamsConfig, StreamsRuntime};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:9192".into());
    let run_for = Duration::from_secs(args.next().map_or(Ok(30), |s| s.parse())?);
    let client = Client::connect_to(broker)?;
    for topic in ["lines", "word-counts"] {
        let _exists_already = client.admin().create_topic(NewTopic::new(topic, 2)).wait();
    }

    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>("lines", Consumed::new())
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word.clone(), Grouped::new())
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("word-counts", Produced::new());

    let config = StreamsConfig::new("word-count");
    let mut runtime = StreamsRuntime::start(&client, builder.build(), config)?;
    let started = Instant::now();
    while started.elapsed() < run_for {
        let processed = runtime.poll_once()?;
        if processed > 0 {
            println!("processed {processed} records");
        }
    }
    Ok(runtime.close()?)
}
