//! A stream of bytes encrypted under a passphrase as an OpenPGP message (RFC 9580's v4
//! symmetric-key encrypted session key and v1 symmetrically encrypted integrity-protected data,
//! AES-256, the key from the passphrase by the iterated and salted SHA-256 S2K), which
//! `gpg --decrypt` and every other OpenPGP tool open with the passphrase alone. This is the
//! form GnuPG itself writes for `gpg --symmetric`; SEIPD v2 (AEAD) is newer but older tools
//! in the patients' hands do not read it yet.
//!
//! The message is written as it is sent, in partial-length packets: the plain bytes come in
//! through a bounded channel to the encrypting thread (the OpenPGP writer is blocking code)
//! and go out through another, so neither the plain nor the encrypted bytes are held whole.
//! When the receiver goes away the encryption stops; when the plain stream fails the
//! encrypted one ends with that error (a truncated message, which OpenPGP tools refuse).

use futures::{Stream, StreamExt};
use pgp::composed::MessageBuilder;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{Password, StringToKey};
use std::io::{Read, Write};
use tokio::sync::mpsc;

/// Chunks in flight on each side of the encrypting thread: enough to keep it busy while the
/// plain side reads ahead and the network drains, little memory.
const CHANNEL_CHUNKS: usize = 4;
/// Encrypted bytes sent on together: large writes keep the per-chunk cost low.
const OUT_CHUNK: usize = 256 * 1024;
/// The partial packets' size (a power of two the standard allows).
const PARTIAL_CHUNK: u32 = 1 << 20;
/// The S2K count byte: 224 hashes 16 MiB of salted passphrase, what GnuPG's own calibration
/// gives on an ordinary machine in a tenth of a second, to slow guessing the passphrase.
const S2K_COUNT: u8 = 224;

/// `plain`, encrypted under `passphrase` as an OpenPGP message whose literal data is named
/// `file_name` (what `gpg --use-embedded-filename` would write).
pub fn encrypted<S>(
    plain: S,
    passphrase: String,
    file_name: String,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
{
    let (plain_tx, plain_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (out_tx, out_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        let mut plain = std::pin::pin!(plain);
        while let Some(chunk) = plain.next().await {
            let failed = chunk.is_err();
            if plain_tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: plain_rx,
            chunk: Vec::new(),
            at: 0,
        };
        let mut writer = ChannelWriter {
            tx: out_tx.clone(),
            buf: Vec::with_capacity(OUT_CHUNK),
        };
        let written =
            encrypt(reader, &mut writer, &passphrase, file_name).and_then(|()| writer.flush());
        if let Err(e) = written {
            let _ = out_tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
}

/// Writes the OpenPGP message of everything `reader` gives to `out`.
fn encrypt(
    reader: impl Read,
    out: &mut impl Write,
    passphrase: &str,
    file_name: String,
) -> std::io::Result<()> {
    let mut rng = rand::rngs::OsRng;
    let s2k = StringToKey::new_iterated(&mut rng, HashAlgorithm::Sha256, S2K_COUNT);
    let mut builder = MessageBuilder::from_reader(file_name, reader)
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    builder
        .partial_chunk_size(PARTIAL_CHUNK)
        .and_then(|b| b.encrypt_with_password(s2k, &Password::from(passphrase)))
        .map_err(pgp_error)?;
    builder.to_writer(rng, out).map_err(pgp_error)
}

fn pgp_error(e: pgp::errors::Error) -> std::io::Error {
    std::io::Error::other(format!("OpenPGP encryption: {e}"))
}

/// The plain side, as the blocking OpenPGP writer reads it.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The encrypted side: bytes gathered into [`OUT_CHUNK`]s and handed to the stream.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(OUT_CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= OUT_CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes in comes out of the OpenPGP reader with the passphrase, and not without it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_stream_encrypts_to_a_message_the_passphrase_opens() {
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            plain.chunks(70_000).map(|c| Ok(c.to_vec())).collect();
        let out: Vec<u8> = encrypted(
            futures::stream::iter(chunks),
            "K7MQ2XHD9RTW4PLN".into(),
            "copy.zip".into(),
        )
        .map(|c| c.unwrap())
        .concat()
        .await;
        assert!(out.len() > plain.len());
        let open = |pw: &str| {
            let msg = pgp::composed::Message::from_bytes(&out[..]).unwrap();
            let mut msg = msg.decrypt_with_password(&Password::from(pw))?;
            Ok::<_, pgp::errors::Error>(msg.as_data_vec()?)
        };
        assert!(open("K7MQ2XHD9RTW4PLN").unwrap() == plain);
        assert!(open("K7MQ2XHD9RTW4PLM").is_err());
    }

    /// A plain stream that fails ends the encrypted one with an error.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_plain_stream_fails_the_message() {
        let chunks = vec![
            Ok(vec![1u8; 1000]),
            Err(std::io::Error::other("a replica is gone")),
        ];
        let out: Vec<_> = encrypted(futures::stream::iter(chunks), "pw".into(), "x".into())
            .collect()
            .await;
        assert!(out.last().unwrap().is_err(), "{out:?}");
    }
}
