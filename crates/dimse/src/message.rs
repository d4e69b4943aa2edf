//! The DIMSE message layer (PS3.7): command sets, always in Implicit VR Little Endian; status
//! codes; and messages cut into P-DATA PDUs no larger than the peer accepts, or put back together
//! from them. A message is a command set and, when its Command Data Set Type says so, a data set
//! sent after it on the same presentation context.

use bytes::{Buf, BytesMut};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Command Field values (PS3.7 E.1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_ACTION_RSP: u16 = 0x8130;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Status codes (PS3.7 C and the services of PS3.4) that Strata sends.
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const PENDING: u16 = 0xFF00;
    pub const CANCEL: u16 = 0xFE00;
    /// PS3.4 C.4.2.1.5: sub-operations complete, one or more failures or warnings.
    pub const SUB_OPERATIONS_WARNING: u16 = 0xB000;
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// PS3.7 C.4.1: Processing Failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// C-MOVE: Move Destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    pub const DATASET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    pub const UNABLE_TO_PROCESS: u16 = 0xC001;
}

/// Command Data Set Type value meaning "no data set follows".
const NO_DATA_SET: u16 = 0x0101;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("malformed command set: {0}")]
    Command(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Pdu(String),
    #[error("a PDU not whole within dimse.pdu_timeout_seconds ({0} s) of its first byte")]
    PduTimeout(u64),
    #[error("no PDU within the time allowed")]
    Idle,
    #[error("the peer took no data for dimse.pdu_timeout_seconds ({0} s)")]
    WriteStalled(u64),
}

/// A DIMSE command set.
#[derive(Debug, Clone)]
pub struct Command(pub InMemDicomObject);

impl Command {
    pub fn decode(bytes: &[u8]) -> Result<Command, MessageError> {
        let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        InMemDicomObject::read_dataset_with_ts(bytes, &ts)
            .map(Command)
            .map_err(|e| MessageError::Command(e.to_string()))
    }

    /// Encodes the command set with its Command Group Length first.
    pub fn encode(&self) -> Vec<u8> {
        let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut body = Vec::new();
        let mut obj = self.0.clone();
        obj.remove_element(tags::COMMAND_GROUP_LENGTH);
        obj.write_dataset_with_ts(&mut body, &ts)
            .expect("writing a command set to memory cannot fail");
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn new() -> Command {
        Command(InMemDicomObject::new_empty())
    }

    pub fn with(mut self, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> Command {
        self.0.put(DataElement::new(tag, vr, value.into()));
        self
    }

    fn u16(&self, tag: Tag) -> Option<u16> {
        self.0.get(tag)?.to_int::<u16>().ok()
    }

    pub fn text(&self, tag: Tag) -> Option<String> {
        let e = self.0.get(tag)?;
        let s = e.to_str().ok()?;
        Some(s.trim_end_matches(['\0', ' ']).to_string())
    }

    pub fn field(&self) -> Option<u16> {
        self.u16(tags::COMMAND_FIELD)
    }

    pub fn message_id(&self) -> u16 {
        self.u16(tags::MESSAGE_ID).unwrap_or(0)
    }

    pub fn message_id_being_responded_to(&self) -> u16 {
        self.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO).unwrap_or(0)
    }

    pub fn has_data_set(&self) -> bool {
        self.u16(tags::COMMAND_DATA_SET_TYPE)
            .is_some_and(|t| t != NO_DATA_SET)
    }

    pub fn affected_sop_class(&self) -> Option<String> {
        self.text(tags::AFFECTED_SOP_CLASS_UID)
    }

    pub fn affected_sop_instance(&self) -> Option<String> {
        self.text(tags::AFFECTED_SOP_INSTANCE_UID)
    }

    pub fn status(&self) -> Option<u16> {
        self.u16(tags::STATUS)
    }

    /// A response to `request`: same message id and SOP class, the given command field and status.
    pub fn response_to(request: &Command, field: u16, status: u16, has_data_set: bool) -> Command {
        let mut rsp = Command::new()
            .with(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field))
            .with(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                VR::US,
                PrimitiveValue::from(request.message_id()),
            )
            .with(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(if has_data_set { 0x0001u16 } else { NO_DATA_SET }),
            )
            .with(tags::STATUS, VR::US, PrimitiveValue::from(status));
        if let Some(c) = request
            .affected_sop_class()
            .or_else(|| request.text(tags::REQUESTED_SOP_CLASS_UID))
        {
            rsp = rsp.with(tags::AFFECTED_SOP_CLASS_UID, VR::UI, c);
        }
        rsp
    }

    /// Adds an Error Comment (at most 64 characters, as its VR LO allows).
    pub fn with_error_comment(self, comment: &str) -> Command {
        let clipped: String = comment.chars().filter(|c| *c != '\\').take(64).collect();
        self.with(tags::ERROR_COMMENT, VR::LO, clipped)
    }
}

impl Default for Command {
    fn default() -> Self {
        Command::new()
    }
}

/// How long a PDU may take to arrive whole once its first byte is in, unless told otherwise.
const DEFAULT_PDU_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads PDUs off a socket: a buffer that survives between calls, so the read can be cancelled
/// at any await point without losing bytes.
pub struct PduReader<R> {
    inner: R,
    buf: BytesMut,
    max_pdu_length: u32,
    /// A PDU that has begun must be whole within this: a peer trickling bytes cannot hold an
    /// association (and its slot) by never finishing one.
    pdu_timeout: Duration,
    /// When the first byte of the PDU in the buffer arrived.
    begun: Option<Instant>,
}

impl<R: AsyncRead + Unpin> PduReader<R> {
    pub fn new(inner: R, max_pdu_length: u32) -> Self {
        PduReader {
            inner,
            buf: BytesMut::with_capacity(max_pdu_length as usize + 6),
            max_pdu_length,
            pdu_timeout: DEFAULT_PDU_TIMEOUT,
            begun: None,
        }
    }

    /// The deadline for a PDU to arrive whole once it has begun.
    pub fn with_pdu_timeout(mut self, pdu_timeout: Duration) -> Self {
        self.pdu_timeout = pdu_timeout;
        self
    }

    /// The next PDU; `Ok(None)` when the peer closed the connection between PDUs. A PDU longer
    /// than we announced is an error (the peer must respect our maximum), so a 4 GB length
    /// claim is refused before anything is buffered.
    pub async fn next(&mut self) -> Result<Option<Pdu>, MessageError> {
        self.next_within(None).await
    }

    /// The next PDU, when its first byte comes within `first_byte` (if given; else
    /// [`MessageError::Idle`]); once begun, a PDU has the PDU timeout to arrive whole.
    pub async fn next_within(
        &mut self,
        first_byte: Option<Duration>,
    ) -> Result<Option<Pdu>, MessageError> {
        let waiting_since = Instant::now();
        loop {
            let mut cursor = std::io::Cursor::new(&self.buf[..]);
            match dicom_ul::pdu::read_pdu(&mut cursor, self.max_pdu_length, true) {
                Ok(Some(pdu)) => {
                    let used = cursor.position() as usize;
                    self.buf.advance(used);
                    // bytes left over are the start of the next PDU
                    self.begun = (!self.buf.is_empty()).then(Instant::now);
                    return Ok(Some(pdu));
                }
                Ok(None) => {}
                Err(e) => return Err(MessageError::Pdu(e.to_string())),
            }
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(65536);
            }
            let (deadline, expired) = match (self.begun, first_byte) {
                (Some(t), _) => (
                    Some(t + self.pdu_timeout),
                    MessageError::PduTimeout(self.pdu_timeout.as_secs()),
                ),
                (None, Some(idle)) => (Some(waiting_since + idle), MessageError::Idle),
                (None, None) => (None, MessageError::Idle),
            };
            let read = self.inner.read_buf(&mut self.buf);
            let n = match deadline {
                Some(d) => match tokio::time::timeout_at(d, read).await {
                    Ok(r) => r?,
                    Err(_) => return Err(expired),
                },
                None => read.await?,
            };
            if n > 0 && self.begun.is_none() {
                self.begun = Some(Instant::now());
            }
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(MessageError::Pdu(
                        "connection closed in the middle of a PDU".into(),
                    ))
                };
            }
        }
    }
}

/// Writes DIMSE messages as P-DATA PDUs within the peer's maximum PDU length.
pub struct MessageWriter<W> {
    inner: W,
    /// Largest data fragment per PDU: the peer's maximum less the PDV item header (6 bytes).
    fragment: usize,
    /// A peer that takes none of what we send for this long is dropped: one that stops reading
    /// (a C-GET it never drains) cannot hold its association for ever.
    stall_timeout: Duration,
}

/// Used when the peer announces no limit (0): large enough to keep overhead negligible.
const UNLIMITED_PEER_FRAGMENT: usize = 1 << 20;

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub fn new(inner: W, peer_max_pdu_length: u32) -> Self {
        let fragment = if peer_max_pdu_length == 0 {
            UNLIMITED_PEER_FRAGMENT
        } else {
            (peer_max_pdu_length as usize).saturating_sub(6).max(16)
        };
        MessageWriter {
            inner,
            fragment,
            stall_timeout: DEFAULT_PDU_TIMEOUT,
        }
    }

    /// How long the peer may take none of what we send.
    pub fn with_stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// Writes all of `bytes`, each write having to make progress within the stall timeout.
    async fn write_out(&mut self, mut bytes: &[u8]) -> Result<(), MessageError> {
        let stalled = || MessageError::WriteStalled(self.stall_timeout.as_secs());
        while !bytes.is_empty() {
            match tokio::time::timeout(self.stall_timeout, self.inner.write(bytes)).await {
                Err(_) => return Err(stalled()),
                Ok(Ok(0)) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        match tokio::time::timeout(self.stall_timeout, self.inner.flush()).await {
            Err(_) => Err(stalled()),
            Ok(r) => Ok(r?),
        }
    }

    /// Appends `bytes` to `out` as P-DATA-TF PDUs of at most the peer's size.
    fn encode_fragments(
        &self,
        out: &mut Vec<u8>,
        pc: u8,
        kind: PDataValueType,
        bytes: &[u8],
        last: bool,
    ) -> Result<(), MessageError> {
        let mut chunks = bytes.chunks(self.fragment.max(1)).peekable();
        let mut pdv = |data: &[u8], is_last: bool| {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: kind.clone(),
                    is_last,
                    data: data.to_vec(),
                }],
            };
            dicom_ul::pdu::write_pdu(out, &pdu).map_err(|e| MessageError::Pdu(e.to_string()))
        };
        if bytes.is_empty() {
            return pdv(&[], last);
        }
        while let Some(chunk) = chunks.next() {
            pdv(chunk, last && chunks.peek().is_none())?;
        }
        Ok(())
    }

    pub async fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), MessageError> {
        let mut out = Vec::new();
        dicom_ul::pdu::write_pdu(&mut out, pdu).map_err(|e| MessageError::Pdu(e.to_string()))?;
        self.write_out(&out).await
    }

    /// Sends a command and, when given, its data set (already encoded in the context's syntax),
    /// in one write: a small response is one segment on the wire.
    pub async fn send(
        &mut self,
        pc: u8,
        command: &Command,
        data: Option<&[u8]>,
    ) -> Result<(), MessageError> {
        self.send_parts(pc, Some(command), data.map(|d| (d, true)))
            .await
    }

    /// Sends a command and the first window of its data set in one write; `last` when that
    /// window is the whole data set, else [`MessageWriter::send_more`] sends the rest.
    pub async fn send_start(
        &mut self,
        pc: u8,
        command: &Command,
        data: &[u8],
        last: bool,
    ) -> Result<(), MessageError> {
        self.send_parts(pc, Some(command), Some((data, last))).await
    }

    /// Sends one more window of a data set whose command went first; `last` for its end.
    pub async fn send_more(&mut self, pc: u8, data: &[u8], last: bool) -> Result<(), MessageError> {
        self.send_parts(pc, None, Some((data, last))).await
    }

    async fn send_parts(
        &mut self,
        pc: u8,
        command: Option<&Command>,
        data: Option<(&[u8], bool)>,
    ) -> Result<(), MessageError> {
        let data_len = data.map_or(0, |(d, _)| d.len());
        let mut out =
            Vec::with_capacity(256 + data_len + data_len / self.fragment.max(1) * 12 + 12);
        if let Some(command) = command {
            self.encode_fragments(
                &mut out,
                pc,
                PDataValueType::Command,
                &command.encode(),
                true,
            )?;
        }
        if let Some((d, last)) = data {
            self.encode_fragments(&mut out, pc, PDataValueType::Data, d, last)?;
        }
        self.write_out(&out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip_with_group_length() {
        let rq = Command::new()
            .with(
                tags::COMMAND_FIELD,
                VR::US,
                PrimitiveValue::from(field::C_ECHO_RQ),
            )
            .with(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(7u16))
            .with(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(NO_DATA_SET),
            )
            .with(tags::AFFECTED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.1.1");
        let bytes = rq.encode();
        assert_eq!(&bytes[0..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            bytes.len() - 12
        );
        let back = Command::decode(&bytes).unwrap();
        assert_eq!(back.field(), Some(field::C_ECHO_RQ));
        assert_eq!(back.message_id(), 7);
        assert!(!back.has_data_set());
        let rsp = Command::response_to(&back, field::C_ECHO_RSP, status::SUCCESS, false)
            .with_error_comment(&"x".repeat(100));
        let rsp = Command::decode(&rsp.encode()).unwrap();
        assert_eq!(rsp.message_id_being_responded_to(), 7);
        assert_eq!(rsp.status(), Some(0));
        assert_eq!(
            rsp.affected_sop_class().as_deref(),
            Some("1.2.840.10008.1.1")
        );
        assert_eq!(rsp.text(tags::ERROR_COMMENT).unwrap().len(), 64);
    }

    #[tokio::test]
    async fn messages_are_cut_to_the_peer_pdu_size_and_read_back() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = MessageWriter::new(a, 4096);
        let data = vec![7u8; 10_000];
        let cmd = Command::new().with(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::C_STORE_RQ),
        );
        w.send(3, &cmd, Some(&data)).await.unwrap();
        drop(w);
        let mut r = PduReader::new(b, 16384);
        let mut got = Vec::new();
        let mut pdus = 0;
        while let Some(Pdu::PData { data: pdvs }) = r.next().await.unwrap() {
            pdus += 1;
            for v in pdvs {
                assert_eq!(v.presentation_context_id, 3);
                assert!(v.data.len() <= 4090);
                if v.value_type == PDataValueType::Data {
                    got.extend_from_slice(&v.data);
                    if v.is_last {
                        assert_eq!(got, data);
                    }
                }
            }
        }
        assert_eq!(got.len(), 10_000);
        assert_eq!(pdus, 1 + 3, "one command PDU, three data PDUs");
    }

    #[tokio::test]
    async fn a_pdu_begun_must_end_within_its_deadline_and_silence_is_idle() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut r = PduReader::new(b, 16384).with_pdu_timeout(Duration::from_millis(200));
        let idle = r.next_within(Some(Duration::from_millis(50))).await;
        assert!(matches!(idle, Err(MessageError::Idle)), "{idle:?}");
        // a release request's first bytes, then nothing more
        a.write_all(&[0x05, 0, 0, 0]).await.unwrap();
        let started = Instant::now();
        let cut = r.next_within(Some(Duration::from_secs(60))).await;
        assert!(matches!(cut, Err(MessageError::PduTimeout(_))), "{cut:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // a whole PDU that arrives in pieces within the deadline is read
        let (mut a, b) = tokio::io::duplex(1024);
        let mut r = PduReader::new(b, 16384).with_pdu_timeout(Duration::from_secs(5));
        let writer = tokio::spawn(async move {
            a.write_all(&[0x05, 0, 0, 0]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.write_all(&[0, 4, 0, 0, 0, 0]).await.unwrap();
            a
        });
        let pdu = r.next_within(Some(Duration::from_secs(5))).await.unwrap();
        assert!(matches!(pdu, Some(Pdu::ReleaseRQ)), "{pdu:?}");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_peer_that_takes_nothing_stalls_the_writer_within_its_deadline() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = MessageWriter::new(a, 4096).with_stall_timeout(Duration::from_millis(200));
        let cmd = Command::new().with(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field::C_STORE_RQ),
        );
        let sent = w.send(1, &cmd, Some(&[0u8; 10_000])).await;
        assert!(
            matches!(sent, Err(MessageError::WriteStalled(_))),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn oversized_pdu_claims_are_refused_without_buffering() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[0x04, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0])
            .await
            .unwrap();
        let mut r = PduReader::new(b, 16384);
        assert!(r.next().await.is_err());
    }
}
