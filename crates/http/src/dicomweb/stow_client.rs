//! The STOW-RS side of sends: a send job's batch goes to a configured DICOMweb peer as one
//! `multipart/related` request of the instances as stored, with the peer's credentials; each
//! instance's outcome is read from the peer's answer (PS3.18 10.5.3: the Referenced SOP
//! Sequence lists what it stored, the Failed SOP Sequence what it did not, with a reason).
//! [`post_instances`] posts any instances so (de-identified copies pushed to a research
//! archive, say).

use futures::future::BoxFuture;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_archive::Archive;
use strata_core::config::DicomwebPeer;
use strata_services::reads::Then;
use strata_services::sends::{Carrier, Target};

/// How long a peer may take to answer one batch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Carries send batches to DICOMweb peers by STOW-RS.
pub struct StowCarrier {
    archive: Arc<Archive>,
    client: reqwest::Client,
}

impl StowCarrier {
    pub fn new(archive: Arc<Archive>) -> Result<StowCarrier, String> {
        Ok(StowCarrier {
            archive,
            client: client()?,
        })
    }

    async fn stow(&self, peer: &DicomwebPeer, sops: &[String]) -> Vec<Result<(), String>> {
        let mut read = Vec::with_capacity(sops.len());
        for sop in sops {
            read.push(self.read(sop).await);
        }
        post_instances(&self.client, peer, sops, read).await
    }

    /// A stored instance's bytes as received.
    async fn read(&self, sop: &str) -> Result<Vec<u8>, String> {
        let reads = self.archive.reads();
        let stored = reads.stored(sop).await.map_err(|e| e.to_string())?;
        let held = reads
            .part10(
                &stored.blob_id,
                stored.size,
                &stored.transfer_syntax,
                None,
                Then::Send,
            )
            .await
            .map_err(|e| format!("reading the stored instance: {e}"))?;
        Ok(held.bytes.clone())
    }
}

/// An HTTP client for STOW-RS to peers.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| format!("the HTTP client for STOW-RS: {e}"))
}

/// Posts the instances `parts` (each one's bytes, or why it could not be read) under SOP
/// Instance UIDs `sops` to `peer` as one STOW-RS request; each instance's outcome, in order.
pub async fn post_instances(
    client: &reqwest::Client,
    peer: &DicomwebPeer,
    sops: &[String],
    parts: Vec<Result<Vec<u8>, String>>,
) -> Vec<Result<(), String>> {
    let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; sops.len()];
    let boundary = {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        format!("strata-{}", hex::encode(b))
    };
    let mut body = Vec::new();
    let mut in_body = 0;
    for (i, part) in parts.into_iter().enumerate() {
        match part {
            Ok(bytes) => {
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(&bytes);
                body.extend_from_slice(b"\r\n");
                in_body += 1;
            }
            Err(e) => outcomes[i] = Some(Err(e)),
        }
    }
    if in_body > 0 {
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let answer = post(client, peer, &boundary, body).await;
        for (i, sop) in sops.iter().enumerate() {
            if outcomes[i].is_none() {
                outcomes[i] = Some(match &answer {
                    Err(e) => Err(e.clone()),
                    Ok(a) => a.outcome(&peer.name, sop),
                });
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err("not sent".into())))
        .collect()
}

async fn post(
    client: &reqwest::Client,
    peer: &DicomwebPeer,
    boundary: &str,
    body: Vec<u8>,
) -> Result<StowAnswer, String> {
    let url = format!("{}/studies", peer.url.trim_end_matches('/'));
    let mut request = client
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header(reqwest::header::ACCEPT, "application/dicom+json")
        .body(body);
    if let Some(token) = &peer.token {
        request = request.bearer_auth(token);
    } else if let Some(user) = &peer.user {
        request = request.basic_auth(user, peer.password.as_deref());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{}: {}", peer.name, without_url(&e)))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{}: reading the answer: {}", peer.name, without_url(&e)))?;
    Ok(StowAnswer::parse(status.as_u16(), &text))
}

/// An error of the HTTP client without the URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the peer");
    }
    text
}

/// What a peer answered to a STOW-RS request.
#[derive(Debug, Default)]
struct StowAnswer {
    status: u16,
    /// The start of a non-DICOM answer, to say why a request failed as a whole.
    excerpt: String,
    stored: Vec<String>,
    /// SOP Instance UID → Failure Reason.
    failed: HashMap<String, Option<u64>>,
    /// The Failure Reasons of refusals the peer did not name an instance for.
    unnamed: Vec<Option<u64>>,
}

impl StowAnswer {
    fn parse(status: u16, text: &str) -> StowAnswer {
        let mut answer = StowAnswer {
            status,
            ..Default::default()
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
            answer.excerpt = text.chars().take(200).collect();
            return answer;
        };
        let items = |tag: &str| -> Vec<serde_json::Value> {
            json[tag]["Value"].as_array().cloned().unwrap_or_default()
        };
        for item in items("00081199") {
            if let Some(uid) = item["00081155"]["Value"][0].as_str() {
                answer.stored.push(uid.to_string());
            }
        }
        for item in items("00081198") {
            let reason = item["00081197"]["Value"][0].as_u64();
            match item["00081155"]["Value"][0].as_str() {
                Some(uid) => {
                    answer.failed.insert(uid.to_string(), reason);
                }
                None => answer.unnamed.push(reason),
            }
        }
        if answer.stored.is_empty() && answer.failed.is_empty() && answer.unnamed.is_empty() {
            answer.excerpt = text.chars().take(200).collect();
        }
        answer
    }

    /// The outcome of instance `sop`.
    fn outcome(&self, peer: &str, sop: &str) -> Result<(), String> {
        let refused = |reason: Option<u64>| match reason {
            Some(r) => Err(format!("{peer} refused it (failure reason {r:#06x})")),
            None => Err(format!("{peer} refused it")),
        };
        if let Some(reason) = self.failed.get(sop) {
            return refused(*reason);
        }
        if self.stored.iter().any(|s| s == sop) {
            return Ok(());
        }
        // not stored, and the peer refused instances it did not name: one of them
        if !self.unnamed.is_empty() {
            let one_reason = self.unnamed.iter().all(|r| *r == self.unnamed[0]);
            return refused(if one_reason { self.unnamed[0] } else { None });
        }
        if (200..300).contains(&self.status) && self.stored.is_empty() && self.failed.is_empty() {
            // a peer that answers success without the sequences stored all it was sent
            return Ok(());
        }
        Err(format!(
            "{peer} answered HTTP {}{}",
            self.status,
            if self.excerpt.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", self.excerpt.trim())
            }
        ))
    }
}

impl Carrier for StowCarrier {
    fn carry<'a>(
        &'a self,
        target: &'a Target,
        sops: &'a [String],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            match target {
                Target::Dicomweb(peer) => self.stow(peer, sops).await,
                other => vec![Err(format!("{} is not a DICOMweb peer", other.name())); sops.len()],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stow_answer_tells_each_instance() {
        let text = r#"{"00081199":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.3"]}}]},
            "00081198":{"vr":"SQ","Value":[{"00081155":{"vr":"UI","Value":["1.2.4"]},
            "00081197":{"vr":"US","Value":[49152]}}]}}"#;
        let a = StowAnswer::parse(202, text);
        assert_eq!(a.outcome("B", "1.2.3"), Ok(()));
        assert_eq!(
            a.outcome("B", "1.2.4"),
            Err("B refused it (failure reason 0xc000)".into())
        );
        assert!(a.outcome("B", "1.2.5").unwrap_err().contains("HTTP 202"));
        let unnamed = StowAnswer::parse(
            409,
            r#"{"00081198":{"vr":"SQ","Value":[{"00081197":{"vr":"US","Value":[273]}}]}}"#,
        );
        assert_eq!(
            unnamed.outcome("B", "1.2.3"),
            Err("B refused it (failure reason 0x0111)".into())
        );
        let refused = StowAnswer::parse(401, "{\"title\":\"no\"}");
        assert!(refused
            .outcome("B", "1.2.3")
            .unwrap_err()
            .contains("HTTP 401"));
    }
}
