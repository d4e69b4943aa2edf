//! The C decoders (CharLS for JPEG-LS, OpenJPEG for JPEG 2000) run in worker processes, where a
//! crash, an abort or an exhausted allocation on a hostile codestream ends that worker and fails
//! that frame, and the archive itself serves on.
//!
//! The size a codestream declares is checked before it is sent (see `check_j2k` and
//! `check_jpeg_ls`); what cannot be checked from outside (the decoders' own bookkeeping, their
//! bugs) is bounded here: each worker limits its own address space (`setrlimit(RLIMIT_AS)`) to
//! what it uses when it starts plus `render.codec_worker_memory_bytes`, and a frame that takes
//! longer than `render.codec_worker_seconds` gets its worker killed. Workers are long-lived and
//! kept idle between frames (one per render thread at most, since each thread decodes one frame
//! at a time), so a frame costs a pipe round trip, not a process start.
//!
//! The wire format, over the worker's standard input and output, little-endian:
//! request: ts UID (u16 length, bytes), rows (u32), columns (u32), samples per pixel, bits
//! allocated, bits stored, high bit (u16 each), signed (u8), photometric interpretation (u16
//! length, bytes), codestream (u64 length, bytes); answer: status (u8, 0 for samples, 1 for an
//! error message) and its payload (u64 length, bytes). A conversion of a whole instance to
//! another transfer syntax (which decodes and encodes its pixel data with the same codecs) is
//! asked with [`CONVERT`] in place of the first length, then the target syntax UID (u16
//! length, bytes), the most bytes the answer may have (u64) and the Part-10 instance (u64
//! length, bytes); its answer's payload is the converted Part-10 instance.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{decode_with_codec, ImagePixel, Interpretation};
use crate::RenderError;

/// The subcommand of the worker program that runs [`serve`].
pub const SUBCOMMAND: &str = "decode-worker";

/// Marks a conversion request where a frame request starts with its syntax UID's length.
const CONVERT: u16 = u16::MAX;

/// The pool of codec worker processes of one archive.
pub struct CodecWorkers {
    /// A program that runs [`serve`] when given [`SUBCOMMAND`] (the `strata` binary itself).
    program: PathBuf,
    memory_bytes: u64,
    timeout: Duration,
    idle: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for CodecWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecWorkers")
            .field("program", &self.program)
            .field("memory_bytes", &self.memory_bytes)
            .field("timeout", &self.timeout)
            .finish()
    }
}

struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // closing its input ends a healthy worker; kill covers one that is stuck
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why an exchange with a worker failed: the worker is then gone.
enum Lost {
    TimedOut,
    Ended(io::Error),
}

impl CodecWorkers {
    /// Workers of `program`, each allowed `memory_bytes` beyond what it holds when it starts
    /// and `timeout` a frame. None is started until a frame needs one.
    pub fn new(program: PathBuf, memory_bytes: u64, timeout: Duration) -> CodecWorkers {
        CodecWorkers {
            program,
            memory_bytes,
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> io::Result<Worker> {
        let mut child = Command::new(&self.program)
            .arg(SUBCOMMAND)
            .arg("--memory-bytes")
            .arg(self.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let input = child.stdin.take().ok_or(io::ErrorKind::BrokenPipe)?;
        let output = BufReader::new(child.stdout.take().ok_or(io::ErrorKind::BrokenPipe)?);
        Ok(Worker {
            child,
            input,
            output,
        })
    }

    /// Decodes one frame's codestream in a worker: the samples, the codec's own error, or an
    /// error saying the worker died on this frame (the next frame gets a fresh worker).
    pub(super) fn decode(
        &self,
        ts_uid: &str,
        codec: &str,
        image: &ImagePixel,
        stream: &[u8],
    ) -> Result<Vec<u8>, RenderError> {
        self.run(codec, "frame", &request(ts_uid, image, stream), u64::MAX)
    }

    /// Converts a Part-10 instance to `target` in a worker: the converted instance (refused
    /// when it would be larger than `max_bytes`), the codec's own error, or an error saying the
    /// worker died on it.
    pub fn convert(
        &self,
        part10: &[u8],
        target: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, RenderError> {
        let mut request = Vec::with_capacity(part10.len() + 80);
        request.extend_from_slice(&CONVERT.to_le_bytes());
        request.extend_from_slice(&(target.len() as u16).to_le_bytes());
        request.extend_from_slice(target.as_bytes());
        request.extend_from_slice(&max_bytes.to_le_bytes());
        request.extend_from_slice(&(part10.len() as u64).to_le_bytes());
        request.extend_from_slice(part10);
        self.run("conversion", "instance", &request, max_bytes)
    }

    /// One exchange with an idle worker (or a new one); `what` names the work in errors.
    fn run(
        &self,
        codec: &str,
        what: &str,
        request: &[u8],
        max_answer: u64,
    ) -> Result<Vec<u8>, RenderError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn().map_err(|e| {
                RenderError::Decode(format!("cannot start a {codec} decoder process: {e}"))
            })?,
        };
        match self.exchange(&mut worker, request, max_answer) {
            Ok((ok, payload)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                if ok {
                    Ok(payload)
                } else {
                    Err(RenderError::Decode(
                        String::from_utf8_lossy(&payload).into_owned(),
                    ))
                }
            }
            Err(lost) => {
                let _ = worker.child.kill();
                let status = worker.child.wait();
                let why = match lost {
                    Lost::TimedOut => format!(
                        "took more than {} s (render.codec_worker_seconds) and was stopped",
                        self.timeout.as_secs_f64()
                    ),
                    Lost::Ended(e) => match status {
                        Ok(status) => format!("ended ({status})"),
                        Err(_) => format!("was lost ({e})"),
                    },
                };
                tracing::warn!(codec, "a decoder process {why}");
                Err(RenderError::Decode(format!(
                    "the {codec} decoder's process {why} on this {what}"
                )))
            }
        }
    }

    /// Sends `request` and reads the answer, killing the worker if it takes longer than the
    /// timeout. The worker is not waited for until this returns, so the id the watchdog
    /// signals cannot have been reused.
    fn exchange(
        &self,
        worker: &mut Worker,
        request: &[u8],
        max_answer: u64,
    ) -> Result<(bool, Vec<u8>), Lost> {
        let pid = worker.child.id() as libc::pid_t;
        let (done, wait) = mpsc::channel::<()>();
        let timeout = self.timeout;
        let watchdog = std::thread::spawn(move || {
            let expired = matches!(
                wait.recv_timeout(timeout),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            if expired {
                // SAFETY: kill(2) with a pid of our own unreaped child and a constant signal.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            expired
        });
        let answer = (|| {
            worker.input.write_all(request)?;
            worker.input.flush()?;
            read_answer(&mut worker.output, max_answer)
        })();
        drop(done);
        if watchdog.join().unwrap_or(true) {
            return Err(Lost::TimedOut);
        }
        answer.map_err(Lost::Ended)
    }
}

fn request(ts_uid: &str, image: &ImagePixel, stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() + 64);
    out.extend_from_slice(&(ts_uid.len() as u16).to_le_bytes());
    out.extend_from_slice(ts_uid.as_bytes());
    out.extend_from_slice(&image.rows.to_le_bytes());
    out.extend_from_slice(&image.columns.to_le_bytes());
    for v in [
        image.samples_per_pixel,
        image.bits_allocated,
        image.bits_stored,
        image.high_bit,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(image.signed as u8);
    let text = image.interpretation_text.as_bytes();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text);
    out.extend_from_slice(&(stream.len() as u64).to_le_bytes());
    out.extend_from_slice(stream);
    out
}

fn read_answer(from: &mut impl Read, max: u64) -> io::Result<(bool, Vec<u8>)> {
    let status = read_array::<1>(from)?[0];
    let len = u64::from_le_bytes(read_array(from)?);
    if status == 0 && len > max {
        return Err(io::Error::other(format!(
            "its answer of {} MiB is larger than {} MiB (render.instance_memory_bytes)",
            len >> 20,
            max >> 20
        )));
    }
    let mut payload = Vec::new();
    from.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok((status == 0, payload))
}

fn read_array<const N: usize>(from: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    from.read_exact(&mut b)?;
    Ok(b)
}

fn read_bytes(from: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    from.take(len).read_to_end(&mut out)?;
    if out.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// The worker's side: limits its own address space to what it holds now plus `memory_bytes`,
/// then decodes frames from standard input until it closes.
pub fn serve(memory_bytes: u64) -> io::Result<()> {
    limit_resources(memory_bytes)?;
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    loop {
        let len = match read_array::<2>(&mut input) {
            Ok(b) => u16::from_le_bytes(b),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if len == CONVERT {
            let len = u16::from_le_bytes(read_array(&mut input)?);
            let target = String::from_utf8_lossy(&read_bytes(&mut input, len.into())?).into_owned();
            let max = u64::from_le_bytes(read_array(&mut input)?);
            let len = u64::from_le_bytes(read_array(&mut input)?);
            let part10 = read_bytes(&mut input, len)?;
            let answer = strata_dicom::transcode::transcode(&part10, &target);
            drop(part10);
            let (status, payload) = match answer {
                Ok(converted) if converted.len() as u64 > max => (
                    1u8,
                    format!(
                        "converted, the instance would take {} MiB, more than the {} MiB \
                         render.instance_memory_bytes leaves for it",
                        (converted.len() as u64).div_ceil(1 << 20),
                        max >> 20
                    )
                    .into_bytes(),
                ),
                Ok(converted) => (0u8, converted),
                Err(e) => (1u8, e.into_bytes()),
            };
            output.write_all(&[status])?;
            output.write_all(&(payload.len() as u64).to_le_bytes())?;
            output.write_all(&payload)?;
            output.flush()?;
            continue;
        }
        let ts_uid = String::from_utf8_lossy(&read_bytes(&mut input, len.into())?).into_owned();
        let rows = u32::from_le_bytes(read_array(&mut input)?);
        let columns = u32::from_le_bytes(read_array(&mut input)?);
        let mut words = [0u16; 4];
        for w in &mut words {
            *w = u16::from_le_bytes(read_array(&mut input)?);
        }
        let signed = read_array::<1>(&mut input)?[0] == 1;
        let len = u16::from_le_bytes(read_array(&mut input)?);
        let text = String::from_utf8_lossy(&read_bytes(&mut input, len.into())?).into_owned();
        let len = u64::from_le_bytes(read_array(&mut input)?);
        let stream = read_bytes(&mut input, len)?;
        let [samples_per_pixel, bits_allocated, bits_stored, high_bit] = words;
        let image = ImagePixel {
            rows,
            columns,
            samples_per_pixel,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            planar: false,
            interpretation: Interpretation::parse(&text),
            interpretation_text: text,
            frames: 1,
        };
        let (status, payload) = match decode_here(&ts_uid, &image, &stream) {
            Ok(samples) => (0u8, samples),
            Err(e) => (1u8, e.to_string().into_bytes()),
        };
        drop(stream);
        output.write_all(&[status])?;
        output.write_all(&(payload.len() as u64).to_le_bytes())?;
        output.write_all(&payload)?;
        output.flush()?;
    }
}

fn decode_here(ts_uid: &str, image: &ImagePixel, stream: &[u8]) -> Result<Vec<u8>, RenderError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| RenderError::Unsupported(format!("unknown transfer syntax {ts_uid}")))?;
    let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
        return Err(RenderError::Unsupported(format!(
            "pixel data in transfer syntax {ts_uid}"
        )));
    };
    decode_with_codec(reader.as_ref(), ts, ts_uid, image, stream).map(|(samples, _)| samples)
}

/// RLIMIT_AS at the address space in use now plus `extra` bytes: an allocation past it fails,
/// and the worker ends instead of the machine running out. RLIMIT_CORE at 0: a worker a
/// hostile frame crashes leaves no core file to fill the disk.
fn limit_resources(extra: u64) -> io::Result<()> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::other("cannot read /proc/self/statm"))?;
    // SAFETY: sysconf with a constant name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let limit = (pages * page).saturating_add(extra);
    let rl = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    for (resource, limit) in [(libc::RLIMIT_CORE, &none), (libc::RLIMIT_AS, &rl)] {
        // SAFETY: setrlimit reads the rlimit we pass by reference.
        if unsafe { libc::setrlimit(resource, limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
