//! `POST /api/v1/backup?to=DIR[&rate=MiB/s][&link=false]` (admin): an
//! online backup into `DIR`, a path on the server's machine, by the same
//! [`Command::Backup`] the native backup frame sends (see
//! [`crate::storage::backup`]); answers once the manifest is written, with
//! the summary `xtdb backup --json` prints. Owns the parameters and the
//! answer only; never touches storage.

use std::path::PathBuf;
use std::rc::Rc;

use hyper::StatusCode;
use serde_json::json;

use super::answer::{error, failure_resp, json_resp, Resp};
use super::request::param_i64;
use super::HttpState;
use crate::net::protocol::MAX_PATH_LEN;
use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::execute;

/// The default pace, MiB/s per shard (as `xtdb backup --rate`).
pub const DEFAULT_RATE_MIB: i64 = 32;

/// Runs the backup the parameters ask for.
pub async fn backup(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let to = match params.iter().find(|(k, _)| k == "to") {
        Some((_, v)) if !v.is_empty() && v.len() <= MAX_PATH_LEN => v.clone(),
        Some(_) => {
            return bad(format!(
                "to must be a directory path of 1 to {MAX_PATH_LEN} bytes"
            ))
        }
        None => return bad("to=DIR is required (a directory on the server's machine)".into()),
    };
    let rate = match param_i64(params, "rate") {
        Ok(r) => r.unwrap_or(DEFAULT_RATE_MIB),
        Err(r) => return r,
    };
    let Some(rate) = u64::try_from(rate)
        .ok()
        .and_then(|r| r.checked_mul(1 << 20))
    else {
        return bad(format!(
            "rate must be MiB/s per shard, 0 (unpaced) or more, got {rate}"
        ));
    };
    let link = match params
        .iter()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.as_str())
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => return bad(format!("link must be true or false, got {v:?}")),
    };
    let cmd = Command::Backup {
        to: PathBuf::from(&to),
        link,
        rate,
    };
    match execute(&state.router, cmd).await {
        Ok(Answer::BackupDone(s)) => {
            let t = s.tally;
            let secs = s.micros as f64 / 1e6;
            let mib = t.bytes() as f64 / 1048576.0;
            json_resp(
                StatusCode::OK,
                &json!({
                    "to": to, "files": t.files(), "bytes": t.bytes(),
                    "files_linked": t.files_linked, "bytes_linked": t.bytes_linked,
                    "files_copied": t.files_copied, "bytes_copied": t.bytes_copied,
                    "files_unchanged": t.files_unchanged, "bytes_unchanged": t.bytes_unchanged,
                    "seconds": secs, "mib_per_sec": mib / secs.max(1e-9),
                }),
            )
        }
        Ok(other) => failure_resp(&Failure::unexpected("backup", &other)),
        Err(f) => failure_resp(&f),
    }
}
