//! The metadata node on a real disk: `DmaFileSystem` (O_DIRECT over io_uring) on a glommio
//! executor, as the broker runs it. A single voter elects itself, applies proposals across
//! several snapshots (so the entries file is appended, cut and rewritten with direct I/O), and
//! a reopened node recovers the same image from its files.

use std::path::{Path, PathBuf};

use glommio::{LocalExecutorBuilder, Placement};
use spate_metadata::{ApplyOutcome, MetadataCommand, MetadataConfig, MetadataNode, ProposalId};
use spate_storage::DmaFileSystem;

struct TestDirectory(PathBuf);

impl TestDirectory {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("metadata-glommio")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test directory");
        Self(path)
    }
}

impl Drop for TestDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    test: impl FnOnce() -> F + Send + 'static,
) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(8 << 20)
        .spawn(test)
        .expect("start executor")
        .join()
        .expect("executor thread")
}

fn config() -> MetadataConfig {
    MetadataConfig {
        snapshot_every_entries: 25,
        ..MetadataConfig::default()
    }
}

async fn open(data_dir: &Path) -> MetadataNode<DmaFileSystem> {
    let file_system = DmaFileSystem::for_data_dir(data_dir).await.unwrap();
    MetadataNode::open(file_system, data_dir.join("metadata"), 0, &[0], config())
        .await
        .unwrap()
}

/// Ticks until the single voter leads (it campaigns after its election timeout).
async fn lead(node: &mut MetadataNode<DmaFileSystem>) {
    for _ in 0..100 {
        node.tick();
        node.advance().await.unwrap();
        if node.is_leader() {
            return;
        }
    }
    panic!("a single voter did not elect itself");
}

#[test]
fn a_single_voter_persists_and_recovers_its_image_on_a_real_disk() {
    let directory = TestDirectory::new("single-voter");
    let data_dir = directory.0.clone();
    on_executor(move || async move {
        let mut node = open(&data_dir).await;
        lead(&mut node).await;
        node.propose(
            ProposalId {
                origin: 0,
                sequence: 0,
            },
            MetadataCommand::RegisterBroker {
                id: 0,
                incarnation: 1,
                native: ("127.0.0.1".into(), 9000),
                kafka: None,
                rack: None,
            },
        )
        .unwrap();
        let mut blocks = Vec::new();
        for sequence in 1..=120u64 {
            node.propose(
                ProposalId {
                    origin: 0,
                    sequence,
                },
                MetadataCommand::AllocateProducerIds {
                    broker: 0,
                    count: 10,
                },
            )
            .unwrap();
            let advance = node.advance().await.unwrap();
            for (_, proposal, result) in advance.applied {
                if let Ok(ApplyOutcome::ProducerIds { first, .. }) = result {
                    blocks.push((proposal.unwrap().sequence, first));
                }
            }
        }
        // A single voter commits each proposal in the advance that persists it.
        assert_eq!(blocks.len(), 120);
        assert!(blocks
            .iter()
            .enumerate()
            .all(|(at, (sequence, first))| *sequence == at as u64 + 1 && *first == at as i64 * 10));
        let image = node.image();
        assert!(image.applied_index > 100, "applied {}", image.applied_index);
        assert!(image.brokers.contains_key(&0));
        drop(node);
        // Snapshots were taken (every 25 entries): the snapshot file holds the image and the
        // entries file only what came after the last one.
        let files = data_dir.join("metadata");
        assert!(std::fs::metadata(files.join("snapshot")).unwrap().len() > 0);
        assert!(std::fs::metadata(files.join("hard-state")).unwrap().len() > 0);
        let entries_bytes = std::fs::metadata(files.join("entries")).unwrap().len();
        assert!(
            entries_bytes <= 8192,
            "entries file of {entries_bytes} bytes (120 entries take ~15 KiB)"
        );

        let mut reopened = open(&data_dir).await;
        lead(&mut reopened).await;
        // Leading again commits the recovered log; the image comes back entry for entry.
        for _ in 0..10 {
            reopened.tick();
            reopened.advance().await.unwrap();
        }
        let recovered = reopened.image();
        assert_eq!(recovered.brokers, image.brokers);
        assert_eq!(recovered.next_producer_id, image.next_producer_id);
        assert!(recovered.applied_index >= image.applied_index);
    });
}
