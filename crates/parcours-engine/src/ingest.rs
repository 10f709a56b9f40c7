//! The ingest writer: one thread that commits every batch waiting for it in one transaction,
//! so concurrent requests share a commit (and its fsync), then answers each of them.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parcours_core::time::Clock;
use parcours_store::{AppendOutcome, IngestBatch, Store};
use tokio::sync::{mpsc, oneshot};

use crate::telemetry::{GroupCommitFailed, GroupCommitted, InternalEvent};
use crate::{EngineError, Wake};

/// Most events one group commit takes before it commits and starts another.
const GROUP_MAX_EVENTS: usize = 20_000;

type Reply = oneshot::Sender<Result<AppendOutcome, EngineError>>;

#[derive(Clone)]
pub(crate) struct IngestSender(mpsc::Sender<(IngestBatch, Reply)>);

impl IngestSender {
    pub(crate) async fn submit(&self, batch: IngestBatch) -> Result<AppendOutcome, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((batch, tx))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }
}

pub(crate) fn start(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    dedup_window: Duration,
    wake: Arc<Wake>,
    erased: Arc<crate::erased::ErasedList>,
) -> (IngestSender, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<(IngestBatch, Reply)>(4_096);
    let handle = std::thread::Builder::new()
        .name("parcours-ingest".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                let mut events = group[0].0.events.len();
                while events < GROUP_MAX_EVENTS {
                    match rx.try_recv() {
                        Ok(next) => {
                            events += next.0.events.len();
                            group.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let (mut batches, replies): (Vec<IngestBatch>, Vec<Reply>) =
                    group.into_iter().unzip();
                // An erased person's events are refused here, before anything is stored, and
                // what is stored keeps of IP addresses and locations what the workspace says.
                for batch in &mut batches {
                    erased.apply(&*store, batch, clock.monotonic());
                }
                let since = clock.now() - dedup_window.as_millis() as i64;
                let started = clock.monotonic();
                match store.append(&batches, since) {
                    Ok(outcomes) => {
                        wake.notify();
                        let (stored, dups, quarantined) =
                            outcomes.iter().fold((0, 0, 0), |a, o| {
                                (a.0 + o.stored, a.1 + o.duplicates, a.2 + o.quarantined)
                            });
                        GroupCommitted {
                            batches: batches.len(),
                            stored,
                            duplicates: dups,
                            quarantined,
                            latency: clock.monotonic().saturating_sub(started),
                        }
                        .emit();
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        GroupCommitFailed {
                            batches: batches.len(),
                            error: &e,
                        }
                        .emit();
                        for reply in replies {
                            let _ = reply.send(Err(EngineError::Store(
                                parcours_store::StoreError::Backend(e.to_string()),
                            )));
                        }
                    }
                }
            }
        })
        .expect("spawn the ingest writer");
    (IngestSender(tx), handle)
}
