//! Limits that keep a hostile or broken client from exhausting the daemon: the daemon-wide
//! cap on open EventStream + SyncFlags streams (`--max-open-streams`). The per-connection
//! HTTP/2 stream limit, the TLS handshake and HTTP/1.1 header timeouts and the accept
//! back-off live with the servers ([`super::listener`], [`super::server`], [`super::sync`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// The daemon-wide cap on open streams, shared by the evaluation and sync ports.
#[derive(Debug, Clone)]
pub(crate) struct StreamLimit {
    slots: Option<Arc<Semaphore>>,
    max: usize,
}

/// One open stream's place under the cap; released when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl StreamLimit {
    /// At most `max` streams at once; 0 = no cap.
    pub(crate) fn new(max: usize) -> StreamLimit {
        StreamLimit {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
            max,
        }
    }

    /// A slot for a new stream, or RESOURCE_EXHAUSTED when all are taken.
    pub(crate) fn acquire(&self) -> Result<StreamSlot, Status> {
        match &self.slots {
            None => Ok(StreamSlot(None)),
            Some(slots) => slots
                .clone()
                .try_acquire_owned()
                .map(|p| StreamSlot(Some(p)))
                .map_err(|_| {
                    Status::resource_exhausted(format!(
                        "too many open streams (limit {}); retry later",
                        self.max
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let limit = StreamLimit::new(2);
        let a = limit.acquire().unwrap();
        let _b = limit.acquire().unwrap();
        let error = limit.acquire().unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        drop(a);
        assert!(limit.acquire().is_ok());
        let unlimited = StreamLimit::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.acquire().unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
