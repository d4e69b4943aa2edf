//! Storage Commitment Push Model SCP (PS3.4 J): the peer asks, with an N-ACTION, whether we hold
//! a list of instances; we answer the N-ACTION at once, then send an N-EVENT-REPORT naming each
//! instance as committed (indexed, and present on a write quorum of replicas) or failed, with its
//! reason: on the same association, or, when the requester released it first, on a new one to
//! the requester's address in the AE table.

use super::message::{field, status, Command};
use super::outbound::Outbound;
use super::{attr_text, AssociationError, DataSink, Session};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValueType, Pdu};
use std::sync::Arc;
use std::time::Duration;
use strata_archive::Archive;
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::DimsePermission;

/// Failure Reason values (PS3.4 J.3.2.1.1.2).
const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
const PROCESSING_FAILURE: u16 = 0x0110;
/// The well-known Storage Commitment Push Model SOP Instance.
const PUSH_MODEL_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

fn reference(class: &str, instance: &str, reason: Option<u16>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(class),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(instance),
    ));
    if let Some(r) = reason {
        item.put(DataElement::new(
            tags::FAILURE_REASON,
            VR::US,
            PrimitiveValue::from(r),
        ));
    }
    item
}

pub async fn n_action(
    session: &mut Session<'_>,
    pc: u8,
    request: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let rsp = |st: u16| {
        Command::response_to(&request, field::N_ACTION_RSP, st, false).with(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PUSH_MODEL_INSTANCE,
        )
    };
    let ts = session.syntax(pc);
    let class = request
        .text(tags::REQUESTED_SOP_CLASS_UID)
        .unwrap_or_default();
    let action = request
        .0
        .get(tags::ACTION_TYPE_ID)
        .and_then(|e| e.to_int::<u16>().ok());
    if class != uids::STORAGE_COMMITMENT_PUSH_MODEL || action != Some(1) {
        let r = rsp(status::NO_SUCH_SOP_CLASS)
            .with_error_comment("only Storage Commitment Push Model, action 1");
        session.writer.send(pc, &r, None).await?;
        return Ok(());
    }
    // Storage Commitment is part of storing: it needs the permission to store, like C-STORE.
    if !session.may(DimsePermission::Store) {
        let why = format!("{} may not request storage commitment", session.calling_ae);
        session
            .audit("dimse.commit", Outcome::Denied, None, None, why.clone())
            .await;
        let r = rsp(status::NOT_AUTHORIZED).with_error_comment(&why);
        session.writer.send(pc, &r, None).await?;
        return Ok(());
    }
    let info = session.identifier(pc, data).ok();
    let Some(info) = info.filter(|i| !attr_text(i, tags::TRANSACTION_UID).is_empty()) else {
        let r = rsp(status::CANNOT_UNDERSTAND)
            .with_error_comment("action information needs a Transaction UID");
        session.writer.send(pc, &r, None).await?;
        return Ok(());
    };
    session.writer.send(pc, &rsp(status::SUCCESS), None).await?;

    let mut committed = Vec::new();
    let mut failed = Vec::new();
    let items: Vec<InMemDicomObject> = info
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .unwrap_or_default();
    for item in &items {
        let (c, i) = (
            attr_text(item, tags::REFERENCED_SOP_CLASS_UID),
            attr_text(item, tags::REFERENCED_SOP_INSTANCE_UID),
        );
        let reason = match session.archive.index().instance(&i).await {
            Err(_) => Some(PROCESSING_FAILURE),
            Ok(None) => Some(NO_SUCH_OBJECT_INSTANCE),
            Ok(Some(stored)) => {
                let class_ok = session
                    .archive
                    .index()
                    .instance_sop_class(&i)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s == c);
                let (copies, quorum) = session.archive.reads().copies(&stored.blob_id).await;
                if !class_ok {
                    Some(CLASS_INSTANCE_CONFLICT)
                } else if copies < quorum {
                    Some(PROCESSING_FAILURE)
                } else {
                    None
                }
            }
        };
        match reason {
            None => committed.push(reference(&c, &i, None)),
            Some(r) => failed.push(reference(&c, &i, Some(r))),
        }
    }
    tracing::info!(
        calling_ae = session.calling_ae,
        committed = committed.len(),
        failed = failed.len(),
        "storage commitment"
    );
    let outcome = if failed.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let detail = format!("{} committed, {} failed", committed.len(), failed.len());
    session
        .audit("dimse.commit", outcome, None, None, detail)
        .await;

    let mut report = InMemDicomObject::new_empty();
    report.put(DataElement::new(
        tags::TRANSACTION_UID,
        VR::UI,
        PrimitiveValue::from(attr_text(&info, tags::TRANSACTION_UID)),
    ));
    let event_type: u16 = if failed.is_empty() { 1 } else { 2 };
    if !committed.is_empty() {
        report.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(committed),
        ));
    }
    if !failed.is_empty() {
        report.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(failed),
        ));
    }
    let mut bytes = Vec::new();
    report
        .write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| AssociationError::Protocol(format!("encoding the commitment report: {e}")))?;
    let event = report_command(request.message_id().wrapping_add(0x8000), event_type);
    // On this association while it lasts; if the requester released it (or it broke) before the
    // report was answered, on a new one.
    let delivered = match session.writer.send(pc, &event, Some(&bytes)).await {
        Err(_) => false,
        Ok(()) => match session.reader.next().await {
            Ok(Some(pdu)) => {
                let answered = matches!(&pdu, Pdu::PData { data } if data
                    .iter()
                    .find(|v| v.value_type == PDataValueType::Command && v.is_last)
                    .and_then(|v| Command::decode(&v.data).ok())
                    .is_some_and(|rsp| rsp.field() == Some(field::N_EVENT_REPORT_RSP)));
                if !answered {
                    // A release, the next request: the main loop's.
                    session.pending = Some(pdu);
                }
                answered
            }
            _ => false,
        },
    };
    if !delivered {
        tokio::spawn(report_later(
            session.archive.clone(),
            session.calling_ae.clone(),
            report,
            event_type,
        ));
    }
    Ok(())
}

/// The N-EVENT-REPORT-RQ command of a commitment result (event 1: all committed; 2: some failed).
fn report_command(message_id: u16, event_type: u16) -> Command {
    Command::new()
        .with(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::N_EVENT_REPORT_RQ),
        )
        .with(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id))
        .with(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0u16),
        )
        .with(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
        )
        .with(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PUSH_MODEL_INSTANCE)
        .with(
            tags::EVENT_TYPE_ID,
            VR::US,
            PrimitiveValue::from(event_type),
        )
}

/// Waits before each try of delivering a report on a new association: a requester that just
/// released may take a moment to listen; one that is down may be back in a minute.
const REPORT_RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(5),
    Duration::from_secs(60),
];

/// Delivers a commitment report on a new association (PS3.4 J.3.3), the one the request came on
/// being gone: we propose the SCP role of Storage Commitment through role selection. The
/// requester must be in the AE table (`strata ae add`), which says where it listens.
async fn report_later(
    archive: Arc<Archive>,
    requester: String,
    report: InMemDicomObject,
    event_type: u16,
) {
    let audit = |outcome: Outcome, detail: String| {
        let archive = archive.clone();
        let requester = requester.clone();
        async move {
            let event =
                AuditEvent::now(&requester, "dimse", "dimse.commit.report", outcome).detail(detail);
            if let Err(e) = archive.audit().record(event).await {
                tracing::error!("audit trail write failed: {e}");
            }
        }
    };
    let peer = match archive.admin().peer(&requester).await {
        Ok(Some(peer)) => peer,
        _ => {
            let why = format!(
                "the association closed before the commitment report, and {requester} is not in the AE table to send it to"
            );
            tracing::warn!("{why}");
            audit(Outcome::Failure, why).await;
            return;
        }
    };
    let mut last = String::new();
    for wait in REPORT_RETRIES {
        tokio::time::sleep(wait).await;
        match send_report(&archive, &peer, &report, event_type).await {
            Ok(()) => {
                let detail = format!("delivered on a new association to {}", peer.aet);
                tracing::info!("commitment report {detail}");
                audit(Outcome::Success, detail).await;
                return;
            }
            Err(e) => {
                tracing::warn!("commitment report to {}: {e}", peer.aet);
                last = e;
            }
        }
    }
    audit(
        Outcome::Failure,
        format!("not delivered to {}: {last}", peer.aet),
    )
    .await;
}

async fn send_report(
    archive: &Archive,
    peer: &strata_core::config::DimsePeer,
    report: &InMemDicomObject,
    event_type: u16,
) -> Result<(), String> {
    use dicom_encoding::TransferSyntaxIndex;
    let ours = archive.config().dimse.max_pdu_length;
    let options = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title(archive.config().dimse.ae_title.clone())
        .called_ae_title(peer.aet.clone())
        .max_pdu_length(ours)
        .with_presentation_context(
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
            vec![EXPLICIT_LE, IMPLICIT_LE],
        )
        .with_role_selection(uids::STORAGE_COMMITMENT_PUSH_MODEL, false, true);
    let mut assoc = Outbound::open(archive, peer, options, REPORT_TIMEOUT).await?;
    let (pc, _, ts) = assoc
        .accepted_contexts()
        .into_iter()
        .next()
        .ok_or("Storage Commitment was not accepted")?;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&ts)
        .ok_or_else(|| format!("unknown transfer syntax {ts}"))?;
    let mut bytes = Vec::new();
    report
        .write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| format!("encoding the report: {e}"))?;
    let mut sub = assoc.halves(ours);
    let rsp = tokio::time::timeout(
        REPORT_TIMEOUT,
        sub.exchange(
            pc,
            &report_command(1, event_type),
            Some(&bytes),
            field::N_EVENT_REPORT_RSP,
        ),
    )
    .await
    .map_err(|_| "no answer to the report".to_string())??;
    sub.release().await;
    match rsp.status() {
        Some(status::SUCCESS) => Ok(()),
        other => Err(format!("the requester answered status {other:?}")),
    }
}

/// How long one delivery of a report may wait for the requester.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
