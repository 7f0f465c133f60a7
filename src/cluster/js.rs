//! JetStream plumbing the NATS thread's parts share: the wording of a
//! NATS error, pull consumers opened where the caller says, and fetches
//! of a bounded size and wait. Owns no state; never talks to the shards.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};

/// Most messages one fetch of a partition takes.
pub const FETCH_MESSAGES: usize = 256;
/// How long a fetch waits for messages when the stream is at its end.
pub const FETCH_WAIT: Duration = Duration::from_millis(200);

/// `what: e`.
pub fn nats_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// One fetch of up to [`FETCH_MESSAGES`], waiting up to [`FETCH_WAIT`].
pub async fn fetch(
    c: &consumer::Consumer<consumer::pull::Config>,
) -> Result<consumer::pull::Batch, String> {
    c.fetch()
        .max_messages(FETCH_MESSAGES)
        .expires(FETCH_WAIT)
        .messages()
        .await
        .map_err(|e| nats_err("fetch", e))
}

/// Opens a pull consumer on `stream` as `cfg` says (a durable one of the
/// same name is deleted first, so it starts where `cfg` says); on failure
/// logs it, waits 500 ms and answers `None` (the caller tries again).
pub async fn pull_consumer(
    js: &jetstream::Context,
    stream: &str,
    cfg: consumer::pull::Config,
    what: &str,
) -> Option<consumer::Consumer<consumer::pull::Config>> {
    let open = async {
        let s = js
            .get_stream(stream)
            .await
            .map_err(|e| nats_err("open the stream", e))?;
        if let Some(name) = &cfg.durable_name {
            let _ = s.delete_consumer(name).await;
        }
        s.create_consumer(cfg)
            .await
            .map_err(|e| nats_err("create the consumer", e))
    };
    match open.await {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("cluster: {what}: {e}; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        }
    }
}
