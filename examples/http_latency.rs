//! A low-overhead HTTP/1.1 latency client: `benches/dicomweb_vs_orthanc.sh` runs it next to the
//! Python client, so a server's time is not hidden under the client's own.
//!
//! `http_latency --addr HOST:PORT --label L --kind K [--header 'Name: value']... [--n 1000]
//! [--warmup 100] [--json] TARGET...`: GET each request target in turn (cycling), one keep-alive
//! connection (TCP_NODELAY), one request after the other, and print one line in the Python
//! client's format: `L K: n=… p50=… p90=… p99=… mean=… min=… max=…` in milliseconds, from
//! writing the request to reading the last byte of the body. `--json` checks that every answer is
//! a JSON array and adds ` matches=a/b` (the distinct array lengths seen). Every answer must be
//! 200, so an error page is never timed as a fast answer.
//!
//! The request is written with one `write` and the answer read through one buffer; nothing is
//! parsed while the clock runs but the status line, the headers and the body's framing
//! (Content-Length or chunked).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

struct Args {
    addr: String,
    label: String,
    kind: String,
    headers: Vec<String>,
    n: usize,
    warmup: usize,
    json: bool,
    targets: Vec<String>,
}

fn usage(why: &str) -> ! {
    eprintln!("http_latency: {why}");
    eprintln!(
        "usage: http_latency --addr HOST:PORT --label L --kind K [--header 'Name: value']... \
         [--n 1000] [--warmup 100] [--json] TARGET..."
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        addr: String::new(),
        label: String::new(),
        kind: "get".into(),
        headers: Vec::new(),
        n: 1000,
        warmup: 100,
        json: false,
        targets: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--addr" => a.addr = value("--addr"),
            "--label" => a.label = value("--label"),
            "--kind" => a.kind = value("--kind"),
            "--header" => a.headers.push(value("--header")),
            "--n" => {
                a.n = value("--n")
                    .parse()
                    .unwrap_or_else(|_| usage("--n: a number"))
            }
            "--warmup" => {
                a.warmup = value("--warmup")
                    .parse()
                    .unwrap_or_else(|_| usage("--warmup: a number"))
            }
            "--json" => a.json = true,
            s if s.starts_with("--") => usage(&format!("unknown option {s}")),
            _ => a.targets.push(arg),
        }
    }
    if a.addr.is_empty() || a.targets.is_empty() || a.n == 0 {
        usage("--addr, --n > 0 and at least one TARGET are needed");
    }
    a
}

/// One answer: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response off a keep-alive connection.
fn read_answer(r: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<Answer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    line.clear();
    r.read_line(line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| bad("Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(line)?; // the CRLF after the chunk (or the empty trailer)
            if size == 0 {
                break;
            }
        }
    } else {
        let n = length.ok_or_else(|| bad("neither Content-Length nor chunked"))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Answer { status, body })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn main() {
    let a = args();
    let stream = TcpStream::connect(&a.addr).unwrap_or_else(|e| usage(&format!("{}: {e}", a.addr)));
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut writer = stream.try_clone().expect("cloning the socket");
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let host = a.addr.clone();
    let requests: Vec<Vec<u8>> = a
        .targets
        .iter()
        .map(|t| {
            let mut req = format!("GET {t} HTTP/1.1\r\nHost: {host}\r\n");
            for h in &a.headers {
                req.push_str(h);
                req.push_str("\r\n");
            }
            req.push_str("\r\n");
            req.into_bytes()
        })
        .collect();
    let mut ms = Vec::with_capacity(a.n);
    let mut matches = std::collections::BTreeSet::new();
    let mut line = String::new();
    for i in 0..a.warmup + a.n {
        let req = &requests[i % requests.len()];
        let t0 = Instant::now();
        writer.write_all(req).expect("sending the request");
        let answer = read_answer(&mut reader, &mut line).expect("reading the answer");
        let t1 = Instant::now();
        if answer.status != 200 {
            eprintln!(
                "{} {}: HTTP {}: {}",
                a.label,
                a.kind,
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            );
            std::process::exit(1);
        }
        if a.json {
            match serde_json::from_slice::<serde_json::Value>(&answer.body) {
                Ok(serde_json::Value::Array(v)) => {
                    matches.insert(v.len());
                }
                _ => {
                    eprintln!("{} {}: the answer is not a JSON array", a.label, a.kind);
                    std::process::exit(1);
                }
            }
        }
        if i >= a.warmup {
            ms.push((t1 - t0).as_secs_f64() * 1000.0);
        }
    }
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let extra = if a.json {
        let m: Vec<String> = matches.iter().map(|n| n.to_string()).collect();
        format!(" matches={}", m.join("/"))
    } else {
        String::new()
    };
    println!(
        "{} {}: n={} p50={:.3} p90={:.3} p99={:.3} mean={:.3} min={:.3} max={:.3}{extra}",
        a.label,
        a.kind,
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        mean,
        ms[0],
        ms[ms.len() - 1],
    );
}
