//! DIMSE, the DICOM network door (layer 4): PS3.7 messages, PS3.8 associations, PS3.4 services.
//!
//! dicom-ul negotiates each association (presentation contexts, AE titles, maximum PDU sizes);
//! from then on this crate reads and writes PDUs itself, so a C-CANCEL can be read while a
//! C-FIND is still sending pending responses. [`message`] is the wire layer; the services are
//! [`store`] (C-STORE), [`find`] (C-FIND), [`retrieve`] (C-MOVE and C-GET) and [`commit`]
//! (Storage Commitment); [`storage_classes`] lists what may be stored (DICOM TLS: the archive's [`strata_archive::tls`]).
//! DIMSE never stores, indexes or audits anything itself: C-STORE goes through the archive's
//! ingest service, C-FIND reads the catalog, every event goes to the audit trail service.

pub mod commit;
pub mod find;
pub mod message;
mod outbound;
pub mod retrieve;
pub mod send;
mod slots;
pub mod storage_classes;
pub mod store;

use dicom_dictionary_std::uids;
use dicom_object::InMemDicomObject;
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::Association;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJServiceUserReason, PDataValueType,
    Pdu,
};
use dicom_ul::ServerAssociationOptions;
use message::{field, status, Command, MessageError, MessageWriter, PduReader};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_archive::drain::Phase;
use strata_archive::Archive;
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::{DimseConfig, DimsePermission};
use strata_dicom::attr::attr_text;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The services this door offers besides storage.
const QUERY_SOP_CLASSES: &[&str] = &[
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::STORAGE_COMMITMENT_PUSH_MODEL,
];

/// Every Storage SOP Class of PS3.4 B.5.
pub fn storage_sop_classes() -> impl Iterator<Item = &'static str> {
    storage_classes::STORAGE_SOP_CLASSES
        .iter()
        .map(|(uid, _)| *uid)
}

/// The calling-AE allowlist, applied while the association is negotiated. It remembers the
/// calling AE it saw, so a refused attempt can be audited under that name.
struct Allowlist {
    allowed: Vec<String>,
    seen: std::sync::Mutex<Option<String>>,
}

impl AccessControl for Allowlist {
    fn check_access(
        &self,
        _this: &str,
        calling: &str,
        _called: &str,
        _user: Option<&dicom_ul::pdu::UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        *self.seen.lock().expect("allowlist lock") = Some(calling.trim().to_string());
        if self.allowed.is_empty() || self.allowed.iter().any(|a| a == calling.trim()) {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// dicom-ul takes its access control by value; this shares ours with the association task.
struct SharedAllowlist(Arc<Allowlist>);

impl AccessControl for SharedAllowlist {
    fn check_access(
        &self,
        this: &str,
        calling: &str,
        called: &str,
        user: Option<&dicom_ul::pdu::UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        self.0.check_access(this, calling, called, user)
    }
}

/// SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET SCU proposes to be the SCP of the storage
/// classes it wants back; we agree to whatever roles it proposes for them.
struct RoleSelection;

impl dicom_ul::association::server::Negotiation for RoleSelection {
    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu: bool,
        scp: bool,
    ) -> Option<dicom_ul::pdu::RequestorRoles> {
        let uid = sop_class_uid.trim_end_matches('\0');
        storage_sop_classes()
            .any(|c| c == uid)
            .then_some(dicom_ul::pdu::RequestorRoles { scu, scp })
    }
}

/// What a calling AE may do.
pub fn permissions(config: &DimseConfig, calling_ae: &str) -> Vec<DimsePermission> {
    if config.clients.is_empty() {
        return vec![
            DimsePermission::Store,
            DimsePermission::Query,
            DimsePermission::Retrieve,
        ];
    }
    config
        .clients
        .iter()
        .find(|c| c.aet == calling_ae.trim())
        .map(|c| c.permissions.clone())
        .unwrap_or_default()
}

/// The issuer of the local patient keys of what a calling AE stores, and whether its files'
/// own IssuerOfPatientID is believed: its `[[dimse.clients]]` entry's, else (an AE not
/// configured, or no client list at all) its AE title, not believed.
pub fn key_issuer(config: &DimseConfig, calling_ae: &str) -> (Option<String>, bool) {
    config
        .clients
        .iter()
        .find(|c| c.aet == calling_ae.trim())
        .map(|c| (c.issuer.clone(), c.trust_issuer))
        .unwrap_or((None, false))
}

/// Accepts associations until the node's drain closes the door; then lets the associations open
/// finish, and aborts those still open when the drain runs out.
pub async fn serve(archive: Arc<Archive>) -> anyhow::Result<()> {
    let cfg = archive.config().dimse.clone();
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (dimse.listen): {e}", cfg.listen))?;
    eprintln!(
        "strata: serving DIMSE as {} on {}",
        cfg.ae_title,
        listener.local_addr()?
    );
    // DICOM TLS (PS3.15 B.1) on its own port, when a certificate is configured.
    let tls = match (&cfg.tls_certificate, &cfg.tls_private_key) {
        (Some(cert), Some(key)) => {
            let config = strata_archive::tls::server_config(
                "dimse",
                cert,
                key,
                cfg.tls_client_ca.as_deref(),
                &[],
            )?;
            let l = tokio::net::TcpListener::bind(&cfg.tls_listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {} (dimse.tls_listen): {e}",
                        cfg.tls_listen
                    )
                })?;
            eprintln!(
                "strata: serving DIMSE over TLS as {} on {}",
                cfg.ae_title,
                l.local_addr()?
            );
            Some((l, config))
        }
        _ => None,
    };
    // Plain and TLS associations share one limit, in all and per peer address.
    let slots = slots::Slots::new(cfg.max_associations);
    let addresses = Arc::new(strata_core::peers::PerAddress::default());
    let reclaim_grace = Duration::from_secs(cfg.reclaim_idle_seconds);
    // Connections turned away are answered A-ASSOCIATE-RJ, as many at once as there are slots;
    // beyond, a flood of them is simply closed rather than holding descriptors for ARTIM.
    let rejecting = Arc::new(tokio::sync::Semaphore::new(cfg.max_associations));
    let mut closed = std::pin::pin!(archive.drain().reached(Phase::Closed));
    loop {
        let accept = async {
            match &tls {
                Some((tls_listener, config)) => tokio::select! {
                    r = listener.accept() => r.map(|(s, p)| (s, p, None)),
                    r = tls_listener.accept() => r.map(|(s, p)| (s, p, Some(config.clone()))),
                },
                None => listener.accept().await.map(|(s, p)| (s, p, None)),
            }
        };
        let accepted = tokio::select! {
            _ = &mut closed => break,
            r = accept => r,
        };
        let (socket, peer, tls_config) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("dimse accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let artim = Duration::from_secs(cfg.artim_timeout_seconds);
        let refuse = |socket: TcpStream, tls: &Option<Arc<rustls::ServerConfig>>| {
            if let (None, Ok(permit)) = (tls, rejecting.clone().try_acquire_owned()) {
                tokio::spawn(async move {
                    reject_over_limit(socket, artim).await;
                    drop(permit);
                });
            }
        };
        let Some(address) = addresses.take(peer.ip(), cfg.max_associations_per_ip) else {
            tracing::warn!(%peer, "association refused: over dimse.max_associations_per_ip ({})", cfg.max_associations_per_ip);
            refuse(socket, &tls_config);
            continue;
        };
        // Every slot taken: the association idle the longest gives its slot up, if one has
        // been idle long enough; the new one waits a moment for it.
        let slot = match slots.try_take() {
            Some(slot) => Ok(slot),
            None if slots.reclaim(reclaim_grace) => Err(slots.clone()),
            None => {
                tracing::warn!(%peer, "association refused: all dimse.max_associations ({}) are working", cfg.max_associations);
                refuse(socket, &tls_config);
                continue;
            }
        };
        let archive = archive.clone();
        tokio::spawn(async move {
            let slot = match slot {
                Ok(slot) => slot,
                Err(slots) => match slots.take_within(Duration::from_secs(5)).await {
                    Some(slot) => slot,
                    None => {
                        tracing::warn!(%peer, "association refused: no slot came free");
                        if tls_config.is_none() {
                            reject_over_limit(socket, artim).await;
                        }
                        return;
                    }
                },
            };
            let _open = archive.metrics().association();
            if let Err(e) = association(archive, socket, tls_config, slot.live.clone()).await {
                match e {
                    AssociationError::Aborted | AssociationError::Negotiation(_) => {
                        tracing::info!(%peer, "association ended: {e}")
                    }
                    _ => tracing::warn!(%peer, "association aborted: {e}"),
                }
            }
            drop((slot, address));
        });
    }
    drop((listener, tls));
    finish(&archive, &slots).await;
    Ok(())
}

/// Once the listeners are closed: waits for the associations open to be released, until the
/// drain runs out; then aborts those left (A-ABORT at their next read) and gives them a moment
/// to say so. An association cut off this way acknowledges nothing more.
async fn finish(archive: &Archive, slots: &slots::Slots) {
    tracing::info!(
        "dimse: listener closed; {} associations finishing",
        slots.open()
    );
    tokio::select! {
        _ = slots.all_free() => {
            tracing::info!("dimse: every association ended");
            return;
        }
        _ = archive.drain().reached(Phase::Aborting) => {}
    }
    tracing::warn!(
        "dimse: {} associations still open when the drain ran out: aborted",
        slots.open()
    );
    slots.stop_all();
    let _ = tokio::time::timeout(ABORT_GRACE, slots.all_free()).await;
}

/// How long associations told to stop get to send their A-ABORT and close.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// A DIMSE message's operation as `/metrics` names it.
fn operation_name(command_field: Option<u16>) -> &'static str {
    match command_field {
        Some(field::C_ECHO_RQ) => "c-echo",
        Some(field::C_STORE_RQ) => "c-store",
        Some(field::C_FIND_RQ) => "c-find",
        Some(field::C_GET_RQ) => "c-get",
        Some(field::C_MOVE_RQ) => "c-move",
        Some(field::N_ACTION_RQ) => "n-action",
        Some(field::C_CANCEL_RQ) => "c-cancel",
        _ => "other",
    }
}

/// Over the association limit: read the A-ASSOCIATE-RQ, answer A-ASSOCIATE-RJ with result
/// rejected-transient, source service-provider (presentation), reason local-limit-exceeded
/// (PS3.8 9.3.4), and close.
async fn reject_over_limit(mut socket: TcpStream, artim: Duration) {
    let mut reader = PduReader::new(&mut socket, 1 << 20);
    let _ = tokio::time::timeout(artim, reader.next()).await;
    let rj = [0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2];
    let _ = socket.write_all(&rj).await;
    let _ = socket.shutdown().await;
}

/// Why an association stopped other than by release.
#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    #[error("no A-ASSOCIATE-RQ within the ARTIM timeout (dimse.artim_timeout_seconds)")]
    Artim,
    #[error("idle for longer than dimse.idle_timeout_seconds")]
    Idle,
    #[error("open for longer than dimse.max_association_seconds")]
    Lifetime,
    #[error("idle while every slot was taken: its slot went to a new association")]
    Reclaimed,
    #[error("still open when the node's drain ran out (node.drain_max_seconds)")]
    Stopped,
    #[error("peer aborted")]
    Aborted,
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A stored instance could not be read on while it was being sent: the peer holds part of
    /// a data set, so the association cannot go on.
    #[error("a stored instance could not be read while it was sent: {0}")]
    ReadFailed(String),
}

/// A negotiated presentation context.
#[derive(Debug, Clone)]
pub struct Context {
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// One established association: who called, what was agreed, and the socket halves.
pub struct Session<'a> {
    pub archive: Arc<Archive>,
    pub calling_ae: String,
    pub remote: String,
    pub permissions: Vec<DimsePermission>,
    pub contexts: HashMap<u8, Context>,
    pub reader: PduReader<Box<dyn tokio::io::AsyncRead + Unpin + Send + Sync + 'a>>,
    pub writer: MessageWriter<Box<dyn tokio::io::AsyncWrite + Unpin + Send + Sync + 'a>>,
    /// A PDU read ahead (looking for a C-CANCEL, or for a response) that belongs to the main loop.
    pending: Option<Pdu>,
    /// This association's entry in the door's table.
    live: Arc<slots::Live>,
    /// When `dimse.max_association_seconds` runs out.
    ends: Instant,
    /// Bytes of the message under way received since progress was last recorded.
    unrecorded: usize,
}

async fn association(
    archive: Arc<Archive>,
    socket: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    live: Arc<slots::Live>,
) -> Result<(), AssociationError> {
    let cfg = &archive.config().dimse;
    let artim = Duration::from_secs(cfg.artim_timeout_seconds);
    let remote = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let allowlist = Arc::new(Allowlist {
        allowed: cfg.clients.iter().map(|c| c.aet.clone()).collect(),
        seen: std::sync::Mutex::new(None),
    });
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(SharedAllowlist(allowlist.clone()))
        .ae_title(cfg.ae_title.clone())
        .max_pdu_length(cfg.max_pdu_length)
        .with_negotiation(RoleSelection)
        // ARTIM is ours (below, answered with A-ABORT); dicom-ul's own read timeout only
        // backs it up
        .read_timeout(artim * 2);
    options = options.with_abstract_syntax(uids::VERIFICATION);
    for uid in QUERY_SOP_CLASSES
        .iter()
        .copied()
        .chain(storage_sop_classes())
    {
        options = options.with_abstract_syntax(uid);
    }
    let refused = |e: String| {
        let archive = archive.clone();
        let allowlist = allowlist.clone();
        let remote = remote.clone();
        async move {
            tracing::warn!("association rejected or failed: {e}");
            let seen = allowlist.seen.lock().expect("allowlist lock").clone();
            if let Some(ae) = seen.as_deref() {
                let event = AuditEvent::now(ae, "dimse", "dimse.associate", Outcome::Denied)
                    .remote(&remote)
                    .detail(e.clone());
                let _ = archive.audit().record(event).await;
            }
            AssociationError::Negotiation(e)
        }
    };
    // The A-ASSOCIATE-RQ must arrive whole within ARTIM (PS3.8 9.1.5); a connection that has
    // not associated yet is reclaimable like an idle association.
    let expired = || async {
        tokio::select! {
            _ = tokio::time::sleep(artim) => AssociationError::Artim,
            _ = live.reclaim.notified() => AssociationError::Reclaimed,
            _ = live.stop.notified() => AssociationError::Stopped,
        }
    };
    match tls {
        None => {
            // a second handle on the socket, to answer A-ABORT when the request never came whole
            let (socket, spare) = spare_handle(socket)?;
            tokio::select! {
                e = expired() => {
                    abort_unassociated(spare);
                    Err(e)
                }
                r = options.establish_async(socket) => match r {
                    Err(e) => Err(refused(e.to_string()).await),
                    Ok(assoc) => established(archive.clone(), assoc, remote.clone(), live.clone()).await,
                },
            }
        }
        Some(config) => {
            let options = options.tls_config(config);
            tokio::select! {
                e = expired() => Err(e),
                r = options.establish_tls_async(socket) => match r {
                    Err(e) => Err(refused(e.to_string()).await),
                    Ok(assoc) => established(archive.clone(), assoc, remote.clone(), live.clone()).await,
                },
            }
        }
    }
}

/// The socket, and a second handle on the same connection.
fn spare_handle(socket: TcpStream) -> Result<(TcpStream, std::net::TcpStream), AssociationError> {
    let io = |e: std::io::Error| AssociationError::Message(MessageError::Io(e));
    let std = socket.into_std().map_err(io)?;
    let spare = std.try_clone().map_err(io)?;
    Ok((TcpStream::from_std(std).map_err(io)?, spare))
}

/// A-ABORT, source service provider, reason not specified (PS3.8 9.3.8), on a connection whose
/// A-ASSOCIATE-RQ never came whole: the peer learns why before the connection closes. Ten bytes
/// into an empty send buffer; a peer that does not read them loses nothing it was owed.
fn abort_unassociated(mut spare: std::net::TcpStream) {
    use std::io::Write;
    let _ = spare.write(&A_ABORT_BY_PROVIDER);
    let _ = spare.shutdown(std::net::Shutdown::Both);
}

/// A-ABORT PDU: type 7, length 4, two reserved bytes, source 2 (service provider), reason 0.
const A_ABORT_BY_PROVIDER: [u8; 10] = [0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0];

/// Serves an established association, plain or TLS, until release or abort.
async fn established<S>(
    archive: Arc<Archive>,
    mut assoc: dicom_ul::association::AsyncServerAssociation<S>,
    remote: String,
    live: Arc<slots::Live>,
) -> Result<(), AssociationError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync,
{
    let cfg = &archive.config().dimse;
    let calling_ae = assoc.peer_ae_title().trim().to_string();
    let contexts: HashMap<u8, Context> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                Context {
                    abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
                    transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
                },
            )
        })
        .collect();
    let peer_max = assoc.requestor_max_pdu_length();
    tracing::info!(
        calling_ae,
        contexts = contexts.len(),
        "association accepted"
    );
    let event = AuditEvent::now(&calling_ae, "dimse", "dimse.associate", Outcome::Success)
        .remote(&remote)
        .detail(format!("{} presentation contexts", contexts.len()));
    let _ = archive.audit().record(event).await;
    live.progress();
    let idle = Duration::from_secs(cfg.idle_timeout_seconds);
    let pdu_timeout = Duration::from_secs(cfg.pdu_timeout_seconds);
    let ends = Instant::now() + Duration::from_secs(cfg.max_association_seconds);
    let our_max = cfg.max_pdu_length;
    let permissions = permissions(cfg, &calling_ae);
    let (rd, wr) = tokio::io::split(assoc.inner_stream());
    let mut session = Session {
        archive: archive.clone(),
        calling_ae,
        remote,
        permissions,
        contexts,
        reader: PduReader::new(Box::new(rd) as Box<_>, our_max).with_pdu_timeout(pdu_timeout),
        writer: MessageWriter::new(Box::new(wr) as Box<_>, peer_max)
            .with_stall_timeout(pdu_timeout),
        pending: None,
        live,
        ends,
        unrecorded: 0,
    };
    let result = session.run(idle).await;
    if let Err(e) = &result {
        // a peer that took nothing for the stall timeout would not take the A-ABORT either
        let stalled = matches!(e, AssociationError::Message(MessageError::WriteStalled(_)));
        if !matches!(e, AssociationError::Aborted) && !stalled {
            let abort = Pdu::AbortRQ {
                source: AbortRQSource::ServiceProvider(
                    AbortRQServiceProviderReason::ReasonNotSpecified,
                ),
            };
            let _ = session.writer.send_pdu(&abort).await;
        }
    }
    result
}

/// A message being received: its command, and its data set so far.
enum Incoming {
    Idle,
    Command {
        pc: u8,
        bytes: Vec<u8>,
    },
    Data {
        pc: u8,
        command: Command,
        sink: DataSink,
    },
}

/// Where a data set goes while it arrives: C-STORE data is spooled for ingest (never whole in
/// memory when large); identifiers and action information are small and kept in memory, up to
/// [`MAX_IDENTIFIER_BYTES`]; a data set that is refused while it arrives (too large, not
/// permitted, unspoolable) is read to its end and dropped, and its request answered with the
/// status and comment kept here.
pub enum DataSink {
    Spool(strata_services::ingest::Spool),
    Memory(Vec<u8>),
    Refused { status: u16, reason: String },
}

/// Largest command set accepted. A DIMSE command is a few hundred bytes (PS3.7 E); a peer that
/// sends more is not speaking DIMSE, and its association is aborted before it costs memory.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Largest identifier (C-FIND, C-MOVE and C-GET keys, N-ACTION information) kept in memory:
/// real ones are a few kilobytes. A larger one is read to its end, dropped, and refused.
pub const MAX_IDENTIFIER_BYTES: usize = 1 << 20;

impl<'a> Session<'a> {
    async fn next_pdu(&mut self, idle: Duration) -> Result<Option<Pdu>, AssociationError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        let now = Instant::now();
        if now >= self.ends {
            return Err(AssociationError::Lifetime);
        }
        let wait = idle.min(self.ends - now);
        tokio::select! {
            r = self.reader.next_within(Some(wait)) => match r {
                Err(MessageError::Idle) if Instant::now() >= self.ends => Err(AssociationError::Lifetime),
                Err(MessageError::Idle) => Err(AssociationError::Idle),
                r => Ok(r?),
            },
            _ = self.live.reclaim.notified() => Err(AssociationError::Reclaimed),
            _ = self.live.stop.notified() => Err(AssociationError::Stopped),
        }
    }

    /// Records `bytes` more of a message under way as progress, once there are enough of them.
    fn received(&mut self, bytes: usize) {
        self.unrecorded += bytes;
        if self.unrecorded >= slots::PROGRESS_BYTES {
            self.unrecorded = 0;
            self.live.progress();
        }
    }

    /// True when the peer has sent a C-CANCEL for `message_id`; never waits. Anything else that
    /// arrived is kept for the main loop.
    pub async fn cancelled(&mut self, message_id: u16) -> bool {
        if self.pending.is_some() {
            return false;
        }
        // One poll, no timer (a zero timeout still waits for the timer's next 1 ms tick). The
        // reader keeps what it read in its buffer, so dropping an unfinished read loses nothing.
        let Some(Ok(Some(pdu))) = futures::FutureExt::now_or_never(self.reader.next()) else {
            return false;
        };
        if let Pdu::PData { data } = &pdu {
            if let [pdv] = &data[..] {
                if pdv.value_type == PDataValueType::Command && pdv.is_last {
                    if let Ok(c) = Command::decode(&pdv.data) {
                        if c.field() == Some(field::C_CANCEL_RQ) {
                            return c.message_id_being_responded_to() == message_id;
                        }
                    }
                }
            }
        }
        self.pending = Some(pdu);
        false
    }

    async fn run(&mut self, idle: Duration) -> Result<(), AssociationError> {
        let mut incoming = Incoming::Idle;
        loop {
            let Some(pdu) = self.next_pdu(idle).await? else {
                return Err(AssociationError::Protocol(
                    "connection closed without release".into(),
                ));
            };
            let pdvs = match pdu {
                Pdu::PData { data } => data,
                Pdu::ReleaseRQ => {
                    self.writer.send_pdu(&Pdu::ReleaseRP).await?;
                    return Ok(());
                }
                Pdu::AbortRQ { .. } => return Err(AssociationError::Aborted),
                other => {
                    return Err(AssociationError::Protocol(format!(
                        "unexpected {}",
                        other.short_description()
                    )))
                }
            };
            for pdv in pdvs {
                self.received(pdv.data.len());
                incoming = self.accept_fragment(incoming, pdv).await?;
            }
        }
    }

    async fn accept_fragment(
        &mut self,
        state: Incoming,
        pdv: dicom_ul::pdu::PDataValue,
    ) -> Result<Incoming, AssociationError> {
        let pc = pdv.presentation_context_id;
        match (state, pdv.value_type) {
            (Incoming::Idle, PDataValueType::Command) => {
                self.command_fragment(pc, pdv.data, pdv.is_last).await
            }
            (Incoming::Command { pc: p, mut bytes }, PDataValueType::Command) if p == pc => {
                if bytes.len() + pdv.data.len() > MAX_COMMAND_BYTES {
                    return Err(AssociationError::Protocol(format!(
                        "a command set of more than {MAX_COMMAND_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&pdv.data);
                self.command_fragment(pc, bytes, pdv.is_last).await
            }
            (
                Incoming::Data {
                    pc: p,
                    command,
                    mut sink,
                },
                PDataValueType::Data,
            ) if p == pc => {
                match &mut sink {
                    DataSink::Spool(s) => {
                        if let Err(e) = s.append(&pdv.data) {
                            // refused or failed: read the rest of the data set without keeping
                            // it, then answer with the reason
                            let status = if e.kind() == std::io::ErrorKind::FileTooLarge {
                                status::OUT_OF_RESOURCES
                            } else {
                                tracing::error!("spooling a data set: {e}");
                                status::PROCESSING_FAILURE
                            };
                            sink = DataSink::Refused {
                                status,
                                reason: e.to_string(),
                            };
                        }
                    }
                    DataSink::Memory(v) => {
                        if v.len() + pdv.data.len() > MAX_IDENTIFIER_BYTES {
                            sink = DataSink::Refused {
                                status: status::CANNOT_UNDERSTAND,
                                reason: format!(
                                    "the request's data set exceeds {MAX_IDENTIFIER_BYTES} bytes"
                                ),
                            };
                        } else {
                            v.extend_from_slice(&pdv.data);
                        }
                    }
                    DataSink::Refused { .. } => {}
                }
                if pdv.is_last {
                    self.dispatch(pc, command, Some(sink)).await?;
                    Ok(Incoming::Idle)
                } else {
                    Ok(Incoming::Data { pc, command, sink })
                }
            }
            (_, kind) => Err(AssociationError::Protocol(format!(
                "unexpected {kind:?} fragment on presentation context {pc}"
            ))),
        }
    }

    async fn command_fragment(
        &mut self,
        pc: u8,
        bytes: Vec<u8>,
        last: bool,
    ) -> Result<Incoming, AssociationError> {
        if !last {
            return Ok(Incoming::Command { pc, bytes });
        }
        if !self.contexts.contains_key(&pc) {
            return Err(AssociationError::Protocol(format!(
                "presentation context {pc} was not accepted"
            )));
        }
        let command = Command::decode(&bytes)?;
        if !command.has_data_set() {
            self.dispatch(pc, command, None).await?;
            return Ok(Incoming::Idle);
        }
        let sink = if command.field() == Some(field::C_STORE_RQ) {
            // an AE that may not store is refused before anything of its data set is kept
            if self.may(DimsePermission::Store) {
                store::spool_for(self, pc, &command)
            } else {
                DataSink::Refused {
                    status: status::NOT_AUTHORIZED,
                    reason: format!("{} may not store", self.calling_ae),
                }
            }
        } else {
            DataSink::Memory(Vec::new())
        };
        Ok(Incoming::Data { pc, command, sink })
    }

    /// Carries out a whole message's operation; the association counts as working meanwhile,
    /// never reclaimed, and its lifetime is checked only once the operation is done.
    async fn dispatch(
        &mut self,
        pc: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> Result<(), AssociationError> {
        self.unrecorded = 0;
        self.live.busy(true);
        let archive = self.archive.clone();
        let _timer = archive
            .metrics()
            .time("dimse", operation_name(command.field()));
        let done = self.operate(pc, command, data).await;
        self.live.busy(false);
        done
    }

    async fn operate(
        &mut self,
        pc: u8,
        command: Command,
        data: Option<DataSink>,
    ) -> Result<(), AssociationError> {
        match command.field() {
            Some(field::C_ECHO_RQ) => {
                let rsp = Command::response_to(&command, field::C_ECHO_RSP, status::SUCCESS, false);
                self.writer.send(pc, &rsp, None).await?;
            }
            Some(field::C_STORE_RQ) => store::c_store(self, pc, command, data).await?,
            Some(field::C_FIND_RQ) => find::c_find(self, pc, command, data).await?,
            Some(field::C_GET_RQ) => retrieve::c_get(self, pc, command, data).await?,
            Some(field::C_MOVE_RQ) => retrieve::c_move(self, pc, command, data).await?,
            Some(field::N_ACTION_RQ) => commit::n_action(self, pc, command, data).await?,
            Some(field::C_CANCEL_RQ) => {} // nothing of that id is in progress any more
            other => {
                let rsp = Command::response_to(
                    &command,
                    other.unwrap_or(0) | 0x8000,
                    status::UNRECOGNIZED_OPERATION,
                    false,
                )
                .with_error_comment("operation not supported on this association");
                self.writer.send(pc, &rsp, None).await?;
            }
        }
        Ok(())
    }

    /// The transfer syntax negotiated on presentation context `pc`.
    pub fn syntax(&self, pc: u8) -> &'static dicom_encoding::transfer_syntax::TransferSyntax {
        use dicom_encoding::TransferSyntaxIndex;
        dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(&self.contexts[&pc].transfer_syntax)
            .expect("dicom-ul accepts only syntaxes the registry knows")
    }

    /// Decodes a request's identifier (or action information) in the context's syntax; keys of
    /// known attributes sent as UN are read with their dictionary VR.
    pub fn identifier(&self, pc: u8, data: Option<DataSink>) -> Result<InMemDicomObject, String> {
        match data {
            Some(DataSink::Memory(bytes)) => {
                // its nesting and declared lengths checked before dicom-rs parses it
                strata_dicom::inspect::walk(&bytes, self.syntax(pc))
                    .map_err(|e| format!("unreadable identifier: {e}"))?;
                let mut id = InMemDicomObject::read_dataset_with_ts(&bytes[..], self.syntax(pc))
                    .map_err(|e| format!("unreadable identifier: {e}"))?;
                strata_dicom::un::resolve_unknown_vrs(&mut id);
                Ok(id)
            }
            Some(DataSink::Refused { reason, .. }) => Err(reason),
            _ => Err("the request has no identifier".into()),
        }
    }

    pub fn may(&self, p: DimsePermission) -> bool {
        self.permissions.contains(&p)
    }

    /// Writes an audit event for this association's peer. An event that cannot be written is
    /// logged loudly; the operation it describes has already happened.
    pub async fn audit(
        &self,
        action: &str,
        outcome: Outcome,
        patient_id: Option<String>,
        study_uid: Option<String>,
        detail: String,
    ) {
        if let Err(e) = self
            .try_audit(action, outcome, patient_id, study_uid, detail)
            .await
        {
            tracing::error!("audit trail write failed: {e}");
        }
    }

    /// Writes an audit event for this association's peer, or says why it could not: for an
    /// operation that must not go ahead unaudited.
    pub async fn try_audit(
        &self,
        action: &str,
        outcome: Outcome,
        patient_id: Option<String>,
        study_uid: Option<String>,
        detail: String,
    ) -> Result<(), strata_services::ServiceError> {
        let event = AuditEvent::now(&self.calling_ae, "dimse", action, outcome)
            .patient(patient_id, study_uid)
            .remote(&self.remote)
            .detail(detail);
        self.archive.audit().record(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes_cover_the_common_ones_and_nothing_else() {
        let list: Vec<&str> = storage_sop_classes().collect();
        for uid in [
            uids::CT_IMAGE_STORAGE,
            uids::MR_IMAGE_STORAGE,
            uids::ENHANCED_CT_IMAGE_STORAGE,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            uids::ENCAPSULATED_PDF_STORAGE,
        ] {
            assert!(list.contains(&uid), "{uid}");
        }
        assert!(!list.contains(&uids::STORAGE_COMMITMENT_PUSH_MODEL));
        assert!(!list.contains(&uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND));
        assert!(list.len() > 100, "{}", list.len());
    }
}
