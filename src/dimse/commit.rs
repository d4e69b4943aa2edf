//! Storage Commitment Push Model SCP (PS3.4 J): the peer asks, with an N-ACTION, whether we hold
//! a list of instances; we answer the N-ACTION at once, then send an N-EVENT-REPORT on the same
//! association naming each instance as committed (indexed, and present on a write quorum of
//! replicas) or failed, with its reason.

use super::message::{field, status, Command};
use super::{attr_text, AssociationError, DataSink, Session};
use crate::audit::Outcome;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValueType, Pdu};

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
        .element_opt(tags::ACTION_TYPE_ID)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u16>().ok());
    if class != uids::STORAGE_COMMITMENT_PUSH_MODEL || action != Some(1) {
        let r = rsp(status::NO_SUCH_SOP_CLASS)
            .with_error_comment("only Storage Commitment Push Model, action 1");
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
        .element_opt(tags::REFERENCED_SOP_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .unwrap_or_default();
    let quorum = session.archive.store.replicas().write_quorum();
    for item in &items {
        let (c, i) = (
            attr_text(item, tags::REFERENCED_SOP_CLASS_UID),
            attr_text(item, tags::REFERENCED_SOP_INSTANCE_UID),
        );
        let reason = match session.archive.index.instance(&i).await {
            Err(_) => Some(PROCESSING_FAILURE),
            Ok(None) => Some(NO_SUCH_OBJECT_INSTANCE),
            Ok(Some(stored)) => {
                let class_ok = session
                    .archive
                    .index
                    .instance_sop_class(&i)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s == c);
                if !class_ok {
                    Some(CLASS_INSTANCE_CONFLICT)
                } else if session
                    .archive
                    .store
                    .replicas()
                    .copies_present(&stored.blob_id)
                    .await
                    < quorum
                {
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
    let event = Command::new()
        .with(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::N_EVENT_REPORT_RQ),
        )
        .with(
            tags::MESSAGE_ID,
            VR::US,
            PrimitiveValue::from(request.message_id().wrapping_add(0x8000)),
        )
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
        );
    session.writer.send(pc, &event, Some(&bytes)).await?;
    // The N-EVENT-REPORT-RSP; anything else (a release, the next request) is the main loop's.
    let Some(pdu) = session.reader.next().await? else {
        return Ok(());
    };
    if let Pdu::PData { data } = &pdu {
        let command = data
            .iter()
            .find(|v| v.value_type == PDataValueType::Command && v.is_last);
        if let Some(rsp) = command.and_then(|v| Command::decode(&v.data).ok()) {
            if rsp.field() == Some(field::N_EVENT_REPORT_RSP) {
                return Ok(());
            }
        }
    }
    session.pending = Some(pdu);
    Ok(())
}
