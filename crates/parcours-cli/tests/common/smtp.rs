//! A real SMTP server for the email tests (aiosmtpd, `tests/smtp/sink.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn python() -> String {
    if let Ok(p) = std::env::var("PARCOURS_TEST_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    assert!(
        Path::new(venv).exists(),
        "aiosmtpd is needed: run `bash scripts/test.sh` (it installs it in .venv) or set PARCOURS_TEST_PYTHON"
    );
    venv.to_string()
}

/// A real SMTP server writing what it accepts to `dir`; stops when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Sink {
    /// A sink taking `delay_ms` to accept each message.
    pub fn start(dir: PathBuf, delay_ms: u64) -> Sink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(&dir)
            .arg("0")
            .arg(delay_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink said {line:?}"));
        Sink { child, port, dir }
    }

    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header's value (unfolded), the first of that name.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let mut out: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = out.as_mut() {
                v.push_str(line.trim_start());
                continue;
            }
        } else if out.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                out = Some(v.trim().to_string());
            }
        }
    }
    out
}

/// The decoded text of a message's part of this content type (`text/html`), whether it was
/// sent as 7bit, quoted-printable or base64.
#[allow(dead_code)]
pub fn part(message: &str, content_type: &str) -> Option<String> {
    use base64::Engine;
    let at = message.find(&format!("Content-Type: {content_type}"))?;
    let rest = &message[at..];
    let (head, body) = rest.split_once("\r\n\r\n")?;
    // The part ends at the next boundary line (or the end of the message).
    let body = match body.find("\r\n--") {
        Some(end) => &body[..end],
        None => body,
    };
    let encoding = header(&format!("{head}\r\n\r\n"), "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => {
            let flat: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(flat)
                    .ok()?,
            )
            .ok()
        }
        "quoted-printable" => {
            let soft = body.replace("=\r\n", "");
            let bytes = soft.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
                    if let Ok(b) = u8::from_str_radix(soft.get(i + 1..i + 3)?, 16) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8(out).ok()
        }
        _ => Some(body.to_string()),
    }
}
