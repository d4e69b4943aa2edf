//! C-GET and C-MOVE SCP (PS3.4 C.4.2, C.4.3). Both resolve the identifier to instances through
//! the index, then send each as a C-STORE sub-operation — C-GET on the same association (the
//! peer took the SCP role for the storage classes), C-MOVE on a new association to a peer of
//! the AE table — with a pending response after each, counting remaining, completed, failed and
//! warning sub-operations, and stopping at a C-CANCEL. A study in the cold tier is brought back
//! first, with a pending response at once and every second meanwhile.
//!
//! An instance goes in its stored transfer syntax when the receiver accepted it, else decoded
//! (dicom-pixeldata's codecs: JPEG, JPEG-LS, JPEG 2000, RLE, deflate) to Explicit or Implicit VR
//! Little Endian. A syntax no codec decodes fails that sub-operation, with the reason logged.

use super::message::{field, status, Command, MessageError, MessageWriter, PduReader};
use super::outbound::Outbound;
use super::{attr_text, AssociationError, DataSink, Session};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValueType, Pdu};
use std::time::Duration;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_core::config::DimsePermission;
use strata_index::query::{Key, Level, Query};
use strata_services::reads::Windows;
use strata_services::tiers::Availability;
use tokio::io::{AsyncRead, AsyncWrite};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// How long a receiver may take to answer one C-STORE sub-operation.
const SUB_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// An instance to send.
#[derive(Debug, Clone)]
struct Planned {
    patient_id: String,
    study_uid: String,
    sop_uid: String,
    sop_class: String,
    transfer_syntax: String,
}

#[derive(Debug, Default)]
struct Counts {
    remaining: usize,
    completed: u16,
    failed: u16,
    warning: u16,
    failed_uids: Vec<String>,
}

/// Resolves a retrieve identifier to the instances it names.
async fn plan(archive: &Archive, identifier: &InMemDicomObject) -> Result<Vec<Planned>, String> {
    let level_text = attr_text(identifier, tags::QUERY_RETRIEVE_LEVEL);
    let level = Level::parse(&level_text)
        .ok_or(format!("Query/Retrieve Level {level_text:?} is not valid"))?;
    let unique = match level {
        Level::Patient => tags::PATIENT_ID,
        Level::Study => tags::STUDY_INSTANCE_UID,
        Level::Series => tags::SERIES_INSTANCE_UID,
        Level::Image => tags::SOP_INSTANCE_UID,
    };
    if attr_text(identifier, unique).is_empty() {
        return Err(format!(
            "a {} level retrieve needs the unique key {:?}",
            level.as_str(),
            unique
        ));
    }
    let mut keys: Vec<Key> = [
        tags::PATIENT_ID,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
    ]
    .iter()
    .map(|t| Key::new(*t, attr_text(identifier, *t)))
    .collect();
    keys.push(Key::new(tags::SOP_CLASS_UID, ""));
    keys.push(Key::new(tags::AVAILABLE_TRANSFER_SYNTAX_UID, ""));
    let found = archive
        .index()
        .find(Query::all(Level::Image, keys))
        .await
        .map_err(|e| e.to_string())?;
    let planned: Vec<Planned> = found
        .iter()
        .map(|m| Planned {
            patient_id: attr_text(m, tags::PATIENT_ID),
            study_uid: attr_text(m, tags::STUDY_INSTANCE_UID),
            sop_uid: attr_text(m, tags::SOP_INSTANCE_UID),
            sop_class: attr_text(m, tags::SOP_CLASS_UID),
            transfer_syntax: attr_text(m, tags::AVAILABLE_TRANSFER_SYNTAX_UID),
        })
        .collect();
    // what the tier policy's "unread for" sees
    let mut studies: Vec<String> = planned.iter().map(|p| p.study_uid.clone()).collect();
    studies.dedup();
    archive.reads().note_reads(&studies).await;
    Ok(planned)
}

/// The stored instance's data set (without its Part-10 header) in `target` syntax, to be read
/// window by window as it is sent.
async fn open_dataset(archive: &Archive, inst: &Planned, target: &str) -> Result<Windows, String> {
    let stored = archive
        .index()
        .instance(&inst.sop_uid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no longer stored")?;
    archive
        .reads()
        .data_set(
            &stored.blob_id,
            stored.size,
            &stored.transfer_syntax,
            target,
        )
        .await
        .map_err(|e| e.to_string())
}

/// Sends a C-STORE-RQ and its data set, window by window as it is read. A window that cannot
/// be read once the first is sent leaves the peer with part of a data set: the association
/// ends ([`AssociationError::ReadFailed`]).
async fn send_store<W: AsyncWrite + Unpin>(
    writer: &mut MessageWriter<W>,
    pc: u8,
    rq: &Command,
    mut data: Windows,
) -> Result<(), AssociationError> {
    let failed = |e: strata_services::ServiceError| AssociationError::ReadFailed(e.to_string());
    let first = data.next().await.map_err(failed)?.unwrap_or_default();
    writer.send_start(pc, rq, &first, data.done()).await?;
    drop(first);
    while !data.done() {
        let window = data.next().await.map_err(failed)?.unwrap_or_default();
        writer.send_more(pc, &window, data.done()).await?;
    }
    Ok(())
}

/// Chooses a presentation context for `inst` among `(id, abstract syntax, transfer syntax)`.
fn choose_context(contexts: &[(u8, String, String)], inst: &Planned) -> Option<(u8, String)> {
    let for_class = || contexts.iter().filter(|(_, a, _)| *a == inst.sop_class);
    if let Some((id, _, ts)) = for_class().find(|(_, _, ts)| *ts == inst.transfer_syntax) {
        return Some((*id, ts.clone()));
    }
    for pref in [EXPLICIT_LE, IMPLICIT_LE] {
        if let Some((id, _, ts)) = for_class().find(|(_, _, ts)| ts == pref) {
            return Some((*id, ts.clone()));
        }
    }
    None
}

fn store_rq(message_id: u16, inst: &Planned, originator: Option<(&str, u16)>) -> Command {
    let mut rq = Command::new()
        .with(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::C_STORE_RQ),
        )
        .with(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id))
        .with(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16))
        .with(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0u16),
        )
        .with(tags::AFFECTED_SOP_CLASS_UID, VR::UI, inst.sop_class.clone())
        .with(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            inst.sop_uid.clone(),
        );
    if let Some((ae, id)) = originator {
        rq = rq
            .with(
                tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
                VR::AE,
                ae.to_string(),
            )
            .with(
                tags::MOVE_ORIGINATOR_MESSAGE_ID,
                VR::US,
                PrimitiveValue::from(id),
            );
    }
    rq
}

/// Reads PDUs until a complete command arrives. Data fragments (none are expected on the
/// responses we wait for) are skipped.
async fn read_command<R: AsyncRead + Unpin>(
    reader: &mut PduReader<R>,
) -> Result<Command, AssociationError> {
    let mut bytes = Vec::new();
    loop {
        let pdu = match tokio::time::timeout(SUB_OPERATION_TIMEOUT, reader.next()).await {
            Err(_) => return Err(AssociationError::Idle),
            Ok(r) => r?,
        };
        match pdu {
            Some(Pdu::PData { data }) => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        bytes.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return Ok(Command::decode(&bytes)?);
                        }
                    }
                }
            }
            Some(Pdu::AbortRQ { .. }) => return Err(AssociationError::Aborted),
            Some(other) => {
                return Err(AssociationError::Protocol(format!(
                    "expected a response, got {}",
                    other.short_description()
                )))
            }
            None => return Err(AssociationError::Protocol("connection closed".into())),
        }
    }
}

fn progress(
    request: &Command,
    rsp_field: u16,
    st: u16,
    c: &Counts,
    include_remaining: bool,
) -> Command {
    let mut rsp = Command::response_to(request, rsp_field, st, false)
        .with(
            tags::NUMBER_OF_COMPLETED_SUBOPERATIONS,
            VR::US,
            PrimitiveValue::from(c.completed),
        )
        .with(
            tags::NUMBER_OF_FAILED_SUBOPERATIONS,
            VR::US,
            PrimitiveValue::from(c.failed),
        )
        .with(
            tags::NUMBER_OF_WARNING_SUBOPERATIONS,
            VR::US,
            PrimitiveValue::from(c.warning),
        );
    if include_remaining {
        rsp = rsp.with(
            tags::NUMBER_OF_REMAINING_SUBOPERATIONS,
            VR::US,
            PrimitiveValue::from(c.remaining as u16),
        );
    }
    rsp
}

/// Sends the final response: success, warning (some failed), refused (all failed) or cancel,
/// with the Failed SOP Instance UID List when anything failed.
async fn finish(
    session: &mut Session<'_>,
    pc: u8,
    request: &Command,
    rsp_field: u16,
    c: &Counts,
    cancelled: bool,
) -> Result<(), AssociationError> {
    let st = if cancelled {
        status::CANCEL
    } else if c.failed == 0 && c.warning == 0 {
        status::SUCCESS
    } else if c.completed == 0 && c.warning == 0 {
        0xA702 // refused: unable to perform sub-operations
    } else {
        status::SUB_OPERATIONS_WARNING
    };
    let mut rsp = progress(request, rsp_field, st, c, cancelled);
    let mut data = None;
    if !c.failed_uids.is_empty() {
        let mut id = InMemDicomObject::new_empty();
        id.put(DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::Strs(c.failed_uids.iter().cloned().collect()),
        ));
        let ts = session.syntax(pc);
        let mut bytes = Vec::new();
        if id.write_dataset_with_ts(&mut bytes, ts).is_ok() {
            rsp = Command(rsp.0).with(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(0u16),
            );
            data = Some(bytes);
        }
    }
    session.writer.send(pc, &rsp, data.as_deref()).await?;
    Ok(())
}

/// Parses the retrieve identifier and plans; on failure answers the request and returns None.
async fn start(
    session: &mut Session<'_>,
    pc: u8,
    request: &Command,
    rsp_field: u16,
    data: Option<DataSink>,
) -> Result<Option<Vec<Planned>>, AssociationError> {
    let fail = |st: u16, why: &str| {
        Command::response_to(request, rsp_field, st, false).with_error_comment(why)
    };
    if !session.may(DimsePermission::Retrieve) {
        session
            .audit("dimse.retrieve", Outcome::Denied, None, None, String::new())
            .await;
        let rsp = fail(
            status::NOT_AUTHORIZED,
            &format!("{} may not retrieve", session.calling_ae),
        );
        session.writer.send(pc, &rsp, None).await?;
        return Ok(None);
    }
    let identifier = session.identifier(pc, data);
    let planned = match identifier {
        Ok(id) => plan(&session.archive, &id).await,
        Err(e) => Err(e),
    };
    match planned {
        Ok(p) => Ok(Some(p)),
        Err(why) => {
            session
                .writer
                .send(
                    pc,
                    &fail(status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, &why),
                    None,
                )
                .await?;
            Ok(None)
        }
    }
}

pub async fn c_get(
    session: &mut Session<'_>,
    pc: u8,
    request: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let Some(planned) = start(session, pc, &request, field::C_GET_RSP, data).await? else {
        return Ok(());
    };
    if !audit_retrieve_start(session, "dimse.get", &planned, None).await {
        return refuse_unaudited(session, pc, &request, field::C_GET_RSP).await;
    }
    restore_cold(session, pc, &request, field::C_GET_RSP, &planned).await?;
    let contexts: Vec<(u8, String, String)> = session
        .contexts
        .iter()
        .map(|(id, c)| (*id, c.abstract_syntax.clone(), c.transfer_syntax.clone()))
        .collect();
    let get_id = request.message_id();
    let mut c = Counts {
        remaining: planned.len(),
        ..Default::default()
    };
    let mut cancelled = false;
    let mut next_id: u16 = 1;
    for inst in &planned {
        if cancelled || session.cancelled(get_id).await {
            cancelled = true;
            break;
        }
        c.remaining -= 1;
        let outcome = match choose_context(&contexts, inst) {
            None => Err(format!(
                "the peer accepted no transfer syntax for {} in {}",
                inst.sop_class, inst.transfer_syntax
            )),
            Some((sub_pc, ts)) => match open_dataset(&session.archive, inst, &ts).await {
                Err(e) => Err(e),
                Ok(dataset) => {
                    next_id = next_id.wrapping_add(1);
                    let rq = store_rq(next_id, inst, None);
                    send_store(&mut session.writer, sub_pc, &rq, dataset).await?;
                    // wait for the C-STORE-RSP; a C-CANCEL for the C-GET may come first
                    loop {
                        let cmd = read_command(&mut session.reader).await?;
                        match cmd.field() {
                            Some(field::C_CANCEL_RQ)
                                if cmd.message_id_being_responded_to() == get_id =>
                            {
                                cancelled = true
                            }
                            Some(field::C_STORE_RSP)
                                if cmd.message_id_being_responded_to() == next_id =>
                            {
                                break Ok(cmd.status().unwrap_or(0xC000))
                            }
                            other => {
                                return Err(AssociationError::Protocol(format!(
                                    "unexpected command {other:?} during C-GET"
                                )))
                            }
                        }
                    }
                }
            },
        };
        count(&mut c, inst, outcome);
        if !cancelled && c.remaining > 0 {
            let rsp = progress(&request, field::C_GET_RSP, status::PENDING, &c, true);
            session.writer.send(pc, &rsp, None).await?;
        }
    }
    tracing::info!(
        calling_ae = session.calling_ae,
        completed = c.completed,
        failed = c.failed,
        cancelled,
        "C-GET"
    );
    audit_retrieve(session, "dimse.get.result", &planned, &c, cancelled, None).await;
    finish(session, pc, &request, field::C_GET_RSP, &c, cancelled).await
}

fn count(c: &mut Counts, inst: &Planned, outcome: Result<u16, String>) {
    match outcome {
        Ok(0x0000) => c.completed += 1,
        Ok(st) if (st & 0xF000) == 0xB000 => c.warning += 1,
        Ok(st) => {
            tracing::warn!(
                sop_uid = inst.sop_uid,
                "sub-operation failed with status {st:#06x}"
            );
            c.failed += 1;
            c.failed_uids.push(inst.sop_uid.clone());
        }
        Err(why) => {
            tracing::warn!(sop_uid = inst.sop_uid, "sub-operation failed: {why}");
            c.failed += 1;
            c.failed_uids.push(inst.sop_uid.clone());
        }
    }
}

/// The options of an association to `called` that will carry `instances`: one presentation
/// context per (SOP class, stored syntax), offering the stored syntax first, then Explicit and
/// Implicit VR Little Endian (what any instance can be decoded to).
fn proposing<'a>(
    archive: &Archive,
    called: &str,
    instances: impl IntoIterator<Item = &'a Planned>,
) -> dicom_ul::ClientAssociationOptions<'static> {
    let dimse = &archive.config().dimse;
    let mut options = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title(dimse.ae_title.clone())
        .called_ae_title(called.to_string())
        .max_pdu_length(dimse.max_pdu_length);
    let mut proposed: Vec<(&str, &str)> = Vec::new();
    for inst in instances {
        let key = (inst.sop_class.as_str(), inst.transfer_syntax.as_str());
        if proposed.contains(&key) {
            continue;
        }
        let mut ts = vec![inst.transfer_syntax.clone()];
        for t in [EXPLICIT_LE, IMPLICIT_LE] {
            if !ts.iter().any(|x| x == t) {
                ts.push(t.to_string());
            }
        }
        options = options.with_presentation_context(inst.sop_class.clone(), ts);
        proposed.push(key);
    }
    options
}

pub async fn c_move(
    session: &mut Session<'_>,
    pc: u8,
    request: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let destination = request.text(tags::MOVE_DESTINATION).unwrap_or_default();
    let peer = session
        .archive
        .admin()
        .peer(destination.trim())
        .await
        .unwrap_or_else(|e| {
            tracing::error!("looking up move destination {destination}: {e}");
            None
        });
    let Some(peer) = peer else {
        let rsp = Command::response_to(
            &request,
            field::C_MOVE_RSP,
            status::MOVE_DESTINATION_UNKNOWN,
            false,
        )
        .with_error_comment(&format!(
            "move destination {destination:?} is not in the AE table"
        ));
        session.writer.send(pc, &rsp, None).await?;
        return Ok(());
    };
    let Some(planned) = start(session, pc, &request, field::C_MOVE_RSP, data).await? else {
        return Ok(());
    };
    if !audit_retrieve_start(session, "dimse.move", &planned, Some(&peer.aet)).await {
        return refuse_unaudited(session, pc, &request, field::C_MOVE_RSP).await;
    }
    restore_cold(session, pc, &request, field::C_MOVE_RSP, &planned).await?;
    let move_id = request.message_id();
    let mut c = Counts {
        remaining: planned.len(),
        ..Default::default()
    };
    if planned.is_empty() {
        return finish(session, pc, &request, field::C_MOVE_RSP, &c, false).await;
    }
    let options = proposing(&session.archive, &peer.aet, &planned);
    let mut assoc =
        match Outbound::open(&session.archive, &peer, options, SUB_OPERATION_TIMEOUT).await {
            Ok(a) => a,
            Err(why) => {
                return refuse_move(session, pc, &request, &planned, &peer.aet, why).await;
            }
        };
    let contexts = assoc.accepted_contexts();
    let calling = session.calling_ae.clone();
    let mut sub = assoc.halves(session.archive.config().dimse.max_pdu_length);
    let mut cancelled = false;
    let mut next_id: u16 = 0;
    for inst in &planned {
        if session.cancelled(move_id).await {
            cancelled = true;
            break;
        }
        c.remaining -= 1;
        next_id = next_id.wrapping_add(1);
        let outcome = match choose_context(&contexts, inst) {
            None => Err(format!(
                "{} accepted no transfer syntax for {} in {}",
                peer.aet, inst.sop_class, inst.transfer_syntax
            )),
            Some((sub_pc, ts)) => match open_dataset(&session.archive, inst, &ts).await {
                Err(e) => Err(e),
                Ok(dataset) => {
                    sub.store(
                        sub_pc,
                        &store_rq(next_id, inst, Some((&calling, move_id))),
                        dataset,
                    )
                    .await
                }
            },
        };
        count(&mut c, inst, outcome);
        if c.remaining > 0 {
            let rsp = progress(&request, field::C_MOVE_RSP, status::PENDING, &c, true);
            session.writer.send(pc, &rsp, None).await?;
        }
    }
    sub.release().await;
    tracing::info!(
        calling_ae = session.calling_ae,
        destination = peer.aet,
        completed = c.completed,
        failed = c.failed,
        cancelled,
        "C-MOVE"
    );
    audit_retrieve(
        session,
        "dimse.move.result",
        &planned,
        &c,
        cancelled,
        Some(&peer.aet),
    )
    .await;
    finish(session, pc, &request, field::C_MOVE_RSP, &c, cancelled).await
}

/// Writes one audit event per study a retrieve is about to send, before its first
/// sub-operation: nothing leaves unaudited, and the event stands even when every
/// sub-operation then fails. False when the trail cannot be written.
async fn audit_retrieve_start(
    session: &Session<'_>,
    action: &str,
    planned: &[Planned],
    destination: Option<&str>,
) -> bool {
    for (patient, study) in studies_of(planned) {
        let count = planned.iter().filter(|p| p.study_uid == study).count();
        let detail = format!(
            "{count} instance{} to send{}",
            if count == 1 { "" } else { "s" },
            destination.map(|d| format!(" to {d}")).unwrap_or_default()
        );
        let written = session
            .try_audit(
                action,
                Outcome::Success,
                Some(patient.to_string()),
                Some(study.to_string()),
                detail,
            )
            .await;
        if let Err(e) = written {
            tracing::error!("audit trail write failed, the retrieve is refused: {e}");
            return false;
        }
    }
    true
}

/// Refuses a retrieve whose audit event could not be written, having sent nothing.
async fn refuse_unaudited(
    session: &mut Session<'_>,
    pc: u8,
    request: &Command,
    rsp_field: u16,
) -> Result<(), AssociationError> {
    let rsp = Command::response_to(request, rsp_field, status::UNABLE_TO_PROCESS, false)
        .with_error_comment("the audit trail cannot be written: nothing is sent");
    session.writer.send(pc, &rsp, None).await?;
    Ok(())
}

/// How often a retrieve waiting for cold studies says it is still under way.
const COLD_PENDING_EVERY: Duration = Duration::from_secs(1);
/// How long a retrieve waits for cold studies at most; its sub-operations then restore what is
/// still cold themselves, or fail with the reason.
const COLD_WAIT_AT_MOST: Duration = Duration::from_secs(1800);

/// Brings the cold studies among `planned` back from the cold tier before the sub-operations
/// start, answering a pending response (nothing completed, everything remaining) at once and
/// every [`COLD_PENDING_EVERY`] while they come back, so the peer knows the retrieve is under
/// way. A study that cannot be restored is left to its sub-operations, which fail with the
/// reason.
async fn restore_cold(
    session: &mut Session<'_>,
    pc: u8,
    request: &Command,
    rsp_field: u16,
    planned: &[Planned],
) -> Result<(), AssociationError> {
    let tiers = session.archive.tiers().clone();
    let studies: Vec<String> = studies_of(planned)
        .into_iter()
        .map(|(_, study)| study.to_string())
        .collect();
    let counts = Counts {
        remaining: planned.len(),
        ..Default::default()
    };
    let mut last_pending: Option<std::time::Instant> = None;
    let started = std::time::Instant::now();
    while started.elapsed() < COLD_WAIT_AT_MOST && !session.cancelled(request.message_id()).await {
        let mut cold = false;
        for study in &studies {
            // started on the first look only: a restore that failed is not waited for again
            match tiers.availability(study, last_pending.is_none()).await {
                Ok(Availability::Restoring { .. }) => cold = true,
                Ok(_) => {}
                Err(e) => tracing::warn!(study, "is the study cold? {e}"),
            }
        }
        if !cold {
            return Ok(());
        }
        if last_pending.is_none_or(|at| at.elapsed() >= COLD_PENDING_EVERY) {
            let rsp = progress(request, rsp_field, status::PENDING, &counts, true);
            session.writer.send(pc, &rsp, None).await?;
            last_pending = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The (patient, study) pairs of a retrieve, each once.
fn studies_of(planned: &[Planned]) -> Vec<(&str, &str)> {
    let mut studies: Vec<(&str, &str)> = planned
        .iter()
        .map(|p| (p.patient_id.as_str(), p.study_uid.as_str()))
        .collect();
    studies.sort();
    studies.dedup();
    studies
}

/// One audit event per study a retrieve touched, once its sub-operations are over: how many
/// arrived.
async fn audit_retrieve(
    session: &Session<'_>,
    action: &str,
    planned: &[Planned],
    c: &Counts,
    cancelled: bool,
    destination: Option<&str>,
) {
    let studies = studies_of(planned);
    let outcome = if c.failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    for (patient, study) in studies {
        let detail = format!(
            "{} completed, {} failed, {} warning{}{}",
            c.completed,
            c.failed,
            c.warning,
            if cancelled { ", cancelled" } else { "" },
            destination.map(|d| format!(", to {d}")).unwrap_or_default()
        );
        session
            .audit(
                action,
                outcome,
                Some(patient.to_string()),
                Some(study.to_string()),
                detail,
            )
            .await;
    }
}

async fn refuse_move(
    session: &mut Session<'_>,
    pc: u8,
    request: &Command,
    planned: &[Planned],
    destination: &str,
    why: String,
) -> Result<(), AssociationError> {
    tracing::warn!("C-MOVE: {why}");
    let c = Counts {
        failed: planned.len() as u16,
        failed_uids: planned.iter().map(|p| p.sop_uid.clone()).collect(),
        ..Default::default()
    };
    audit_retrieve(
        session,
        "dimse.move.result",
        planned,
        &c,
        false,
        Some(destination),
    )
    .await;
    finish(session, pc, request, field::C_MOVE_RSP, &c, false).await
}

/// The association C-MOVE opens to its destination, as a storage SCU.
/// An association we opened to a peer (C-MOVE sub-operations, a commitment report).
pub(super) struct SubAssociation<R, W> {
    pub(super) reader: PduReader<R>,
    pub(super) writer: MessageWriter<W>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> SubAssociation<R, W> {
    /// Sends a request and returns its response (which must answer it, with `expected`).
    pub(super) async fn exchange(
        &mut self,
        pc: u8,
        rq: &Command,
        dataset: Option<&[u8]>,
        expected: u16,
    ) -> Result<Command, String> {
        self.writer
            .send(pc, rq, dataset)
            .await
            .map_err(|e: MessageError| e.to_string())?;
        let rsp = read_command(&mut self.reader)
            .await
            .map_err(|e| e.to_string())?;
        if rsp.field() != Some(expected) || rsp.message_id_being_responded_to() != rq.message_id() {
            return Err("the peer answered something else".into());
        }
        Ok(rsp)
    }

    /// One C-STORE on the sub-association, its data set streamed; the peer's status.
    async fn store(&mut self, pc: u8, rq: &Command, dataset: Windows) -> Result<u16, String> {
        if let Err(e) = send_store(&mut self.writer, pc, rq, dataset).await {
            // part of a data set is out: the peer must not take it for a whole one
            let abort = Pdu::AbortRQ {
                source: dicom_ul::pdu::AbortRQSource::ServiceProvider(
                    dicom_ul::pdu::AbortRQServiceProviderReason::ReasonNotSpecified,
                ),
            };
            let _ = self.writer.send_pdu(&abort).await;
            return Err(e.to_string());
        }
        let rsp = read_command(&mut self.reader)
            .await
            .map_err(|e| e.to_string())?;
        if rsp.field() != Some(field::C_STORE_RSP)
            || rsp.message_id_being_responded_to() != rq.message_id()
        {
            return Err("the peer answered something else".into());
        }
        Ok(rsp.status().unwrap_or(0xC000))
    }

    pub(super) async fn release(mut self) {
        if self.writer.send_pdu(&Pdu::ReleaseRQ).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reader.next()).await;
        }
    }
}

/// Sends the stored instances `sops` to `peer` on one association, as a storage SCU (a send
/// job's batch): one outcome per instance, in order. An instance the peer answers with a
/// warning status arrived; any other status, or no answer, is its failure.
pub(crate) async fn store_to(
    archive: &Archive,
    peer: &strata_core::config::DimsePeer,
    sops: &[String],
) -> Vec<Result<(), String>> {
    let mut planned: Vec<Result<Planned, String>> = Vec::with_capacity(sops.len());
    for sop in sops {
        planned.push(plan_one(archive, sop).await);
    }
    if planned.iter().all(Result::is_err) {
        return planned.into_iter().map(|p| p.map(|_| ())).collect();
    }
    let options = proposing(archive, &peer.aet, planned.iter().flatten());
    let mut assoc = match Outbound::open(archive, peer, options, SUB_OPERATION_TIMEOUT).await {
        Ok(a) => a,
        Err(why) => return vec![Err(why); sops.len()],
    };
    let contexts = assoc.accepted_contexts();
    let mut sub = assoc.halves(archive.config().dimse.max_pdu_length);
    let mut outcomes = Vec::with_capacity(sops.len());
    let mut next_id: u16 = 0;
    // once the association is lost, the rest cannot go on it
    let mut lost: Option<String> = None;
    for inst in planned {
        let inst = match (inst, &lost) {
            (Err(e), _) => {
                outcomes.push(Err(e));
                continue;
            }
            (Ok(_), Some(why)) => {
                outcomes.push(Err(why.clone()));
                continue;
            }
            (Ok(inst), None) => inst,
        };
        next_id = next_id.wrapping_add(1);
        let outcome = match choose_context(&contexts, &inst) {
            None => Err(format!(
                "{} accepted no transfer syntax for {} in {}",
                peer.aet, inst.sop_class, inst.transfer_syntax
            )),
            Some((pc, ts)) => match open_dataset(archive, &inst, &ts).await {
                Err(e) => Err(e),
                Ok(dataset) => match sub
                    .store(pc, &store_rq(next_id, &inst, None), dataset)
                    .await
                {
                    Ok(0x0000) => Ok(()),
                    Ok(st) if (st & 0xF000) == 0xB000 => Ok(()),
                    Ok(st) => Err(format!("{} answered status {st:#06x}", peer.aet)),
                    Err(why) => {
                        let why = format!("{}: {why}", peer.aet);
                        lost = Some(why.clone());
                        Err(why)
                    }
                },
            },
        };
        outcomes.push(outcome);
    }
    if lost.is_none() {
        sub.release().await;
    }
    outcomes
}

/// What a send needs to know of one stored instance.
async fn plan_one(archive: &Archive, sop: &str) -> Result<Planned, String> {
    let stored = archive
        .index()
        .instance(sop)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no longer stored")?;
    let sop_class = archive
        .index()
        .instance_sop_class(sop)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no longer stored")?;
    Ok(Planned {
        patient_id: stored.patient_id,
        study_uid: stored.study_uid,
        sop_uid: stored.sop_uid,
        sop_class,
        transfer_syntax: stored.transfer_syntax,
    })
}
