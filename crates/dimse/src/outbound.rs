//! Associations the archive opens to a peer (C-MOVE destinations, Storage Commitment reports):
//! plain, or DICOM TLS for a peer configured with `tls = true`, which must present a certificate
//! issued by a CA of `dimse.tls_peer_ca`; the archive presents its own DICOM TLS certificate to
//! peers that ask for one (mutual TLS).

use super::message::{MessageWriter, PduReader};
use super::retrieve::SubAssociation;
use dicom_ul::association::client::AsyncTlsStream;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::PresentationContextNegotiated;
use dicom_ul::ClientAssociationOptions;
use std::time::Duration;
use strata_archive::Archive;
use strata_core::config::DimsePeer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// An established association to a peer.
pub(crate) enum Outbound {
    Plain(Box<AsyncClientAssociation<TcpStream>>),
    Tls(Box<AsyncClientAssociation<AsyncTlsStream>>),
}

/// The two halves of an outbound association's socket, whichever it is.
pub(crate) type Halves<'a> =
    SubAssociation<Box<dyn AsyncRead + Unpin + Send + 'a>, Box<dyn AsyncWrite + Unpin + Send + 'a>>;

impl Outbound {
    /// Associates with `peer` within `within`; the error says why not, for the caller's status.
    pub(crate) async fn open(
        archive: &Archive,
        peer: &DimsePeer,
        options: ClientAssociationOptions<'_>,
        within: Duration,
    ) -> Result<Outbound, String> {
        let address = format!("{}:{}", peer.host, peer.port);
        let cannot =
            |e: dicom_ul::association::Error| format!("cannot associate with {}: {e}", peer.aet);
        let silent = |_| format!("{} did not answer", peer.aet);
        if !peer.tls {
            let assoc = tokio::time::timeout(within, options.establish_async(address.as_str()))
                .await
                .map_err(silent)?
                .map_err(cannot)?;
            return Ok(Outbound::Plain(Box::new(assoc)));
        }
        let cfg = &archive.config().dimse;
        let ca = cfg.tls_peer_ca.as_deref().ok_or_else(|| {
            format!(
                "{} is a TLS peer, but dimse.tls_peer_ca is not set",
                peer.aet
            )
        })?;
        let identity = cfg
            .tls_certificate
            .as_deref()
            .zip(cfg.tls_private_key.as_deref());
        let tls = strata_archive::tls::client_config(ca, identity).map_err(|e| e.to_string())?;
        let options = options.tls_config(tls).server_name(&peer.host);
        let assoc = tokio::time::timeout(within, options.establish_tls_async(address.as_str()))
            .await
            .map_err(silent)?
            .map_err(cannot)?;
        Ok(Outbound::Tls(Box::new(assoc)))
    }

    pub(crate) fn presentation_contexts(&self) -> &[PresentationContextNegotiated] {
        match self {
            Outbound::Plain(a) => a.presentation_contexts(),
            Outbound::Tls(a) => a.presentation_contexts(),
        }
    }

    /// The presentation contexts the peer accepted: (id, abstract syntax, transfer syntax),
    /// the UIDs without their padding.
    pub(crate) fn accepted_contexts(&self) -> Vec<(u8, String, String)> {
        self.presentation_contexts()
            .iter()
            .filter(|p| p.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
            .map(|p| {
                (
                    p.id,
                    p.abstract_syntax.trim_end_matches('\0').to_string(),
                    p.transfer_syntax.trim_end_matches('\0').to_string(),
                )
            })
            .collect()
    }

    pub(crate) fn acceptor_max_pdu_length(&self) -> u32 {
        match self {
            Outbound::Plain(a) => a.acceptor_max_pdu_length(),
            Outbound::Tls(a) => a.acceptor_max_pdu_length(),
        }
    }

    /// The association's socket as a reader of PDUs (at most `ours` long) and a writer of
    /// messages (in PDUs the peer accepts).
    pub(crate) fn halves(&mut self, ours: u32) -> Halves<'_> {
        let theirs = self.acceptor_max_pdu_length();
        let (rd, wr): (
            Box<dyn AsyncRead + Unpin + Send + '_>,
            Box<dyn AsyncWrite + Unpin + Send + '_>,
        ) = match self {
            Outbound::Plain(a) => {
                let (rd, wr) = tokio::io::split(a.inner_stream());
                (Box::new(rd), Box::new(wr))
            }
            Outbound::Tls(a) => {
                let (rd, wr) = tokio::io::split(a.inner_stream());
                (Box::new(rd), Box::new(wr))
            }
        };
        SubAssociation {
            reader: PduReader::new(rd, ours),
            writer: MessageWriter::new(wr, theirs),
        }
    }
}
