//! `parcours bench journeys`: how fast a customer's event becomes an email accepted by an
//! SMTP server under a steady background load, and how many messages journeys decide and send
//! per second, each against a baseline measured in the same run.
//!
//! An SMTP server runs in this process (a minimal one that accepts every message and notes
//! when each arrived), so the measure is Parcours' own cost, not a mail server's.
//!
//! 1. **Latency**: a node on the embedded store sends its email to that server. A background
//!    load of Segment batches goes over HTTP at a fixed rate; probes (a new customer each, an
//!    identify and a `Probe Clicked` that enters a journey whose first step sends an email)
//!    are timed from the request to the server accepting the email. Baseline: the same
//!    probes' acknowledgements (committed to the log).
//! 2. **Capture throughput**: N customers sign up; unify, then the journeys processor decides
//!    every run (one message each, rendered, in the outbox) while the capture channel sends
//!    them, each on its own thread as in a node. Baseline: the same messages put straight
//!    into the outbox and sent by the same sender (what the outbox alone costs).
//! 3. **SMTP throughput**: M of those messages sent by Parcours' channel sender to the SMTP
//!    server, against a bare `lettre` client sending the same messages to the same server,
//!    in alternating rounds so that the machine's other work falls on both alike.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::Transport;
use parcours_channels::{Capture, Outgoing, Smtp};
use parcours_core::journey;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::{Clock, Millis};
use parcours_demo::http::Client;
use parcours_engine::channels::{ChannelSender, Senders};
use parcours_engine::clock::Moment;
use parcours_engine::journeys::JourneyProcessor;
use parcours_engine::runner::{Processor, StepContext};
use parcours_engine::{unify_step, SystemClock};
use parcours_store::{IngestBatch, NewJourneyVersion, NewOutboxRow, OutboxPage, Store, Workspace};
use serde_json::json;

use crate::bench::{percentile, BackgroundLoad};
use crate::config::Config;
use crate::node::{bootstrap, open_store, Node};

const FROM: &str = "Parcours bench <bench@parcours.test>";

#[derive(Debug, Clone)]
pub struct JourneyBench {
    /// Seconds of probes under load.
    pub seconds: u64,
    /// Background events per second.
    pub rate: usize,
    /// Probes per second.
    pub probes: usize,
    /// Customers (and messages) of the capture throughput.
    pub customers: usize,
    /// Messages of the SMTP throughput.
    pub smtp_messages: usize,
    pub skip_latency: bool,
    pub skip_throughput: bool,
    /// The runs on timers (none when `runs` is 0).
    pub timers: crate::bench_journey_timers::TimerRuns,
}

const PROBE: &str = "id: probe
status: live
entry:
  event: Probe Clicked
steps:
  - id: hello
    send:
      channel: email
      purpose: transactional
      subject: \"probe {{ event.properties.probe }}\"
      text: \"Hello {{ traits.first_name | default: 'there' }}\"
";

const WELCOME: &str = "id: welcome
status: live
entry:
  event: Signed Up
steps:
  - id: hello
    send:
      channel: email
      purpose: transactional
      subject: \"{{ traits.first_name }}, welcome to the {{ event.properties.plan }} plan\"
      html: \"<p>Hello {{ traits.first_name }},</p><p>your {{ event.properties.plan }} plan is ready.</p>\"
      text: \"Hello {{ traits.first_name }}, your {{ event.properties.plan }} plan is ready.\"
";

pub(crate) fn save_journey(
    store: &dyn Store,
    ws: &str,
    source: &str,
    now: Millis,
) -> anyhow::Result<()> {
    let j = journey::doc::read(source).map_err(|p| anyhow::anyhow!("journey: {p:?}"))?;
    store.put_journey_version(&NewJourneyVersion {
        workspace_id: ws.into(),
        journey_id: j.id.clone(),
        replaces: None,
        source: source.into(),
        doc: journey::doc::to_json(&j),
        status: j.status.as_str().into(),
        in_flight: j.in_flight.as_str().into(),
        created_at: now,
    })?;
    Ok(())
}

/// A minimal SMTP server: accepts every message, noting its subject and when it arrived.
struct Sink {
    port: u16,
    received: Arc<Mutex<HashMap<String, Moment>>>,
    count: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received: Arc<Mutex<HashMap<String, Moment>>> = Arc::default();
        let count: Arc<AtomicUsize> = Arc::default();
        let (r, c) = (received.clone(), count.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (r, c) = (r.clone(), c.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &r, &c);
                });
            }
        });
        Ok(Sink {
            port,
            received,
            count,
        })
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

/// Acknowledges what arrives at once (Linux `TCP_QUICKACK`, which the kernel turns off
/// again after a while: set before each read). Without it, a client that writes a message in
/// several pieces without `TCP_NODELAY` (lettre does) waits for the delayed ACK, about 40 ms,
/// on every message: the measure would be the kernel's timer, not the sender.
fn quick_ack(conn: &TcpStream) {
    let _ = socket2::SockRef::from(conn).set_tcp_quickack(true);
}

fn serve(
    conn: TcpStream,
    received: &Mutex<HashMap<String, Moment>>,
    count: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        quick_ack(&out);
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-sink\r\n250 8BITMIME\r\n")?,
            "HELO" => out.write_all(b"250 sink\r\n")?,
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                let mut subject = String::new();
                loop {
                    line.clear();
                    quick_ack(&out);
                    if input.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if subject.is_empty() {
                        if let Some(s) = line.strip_prefix("Subject: ") {
                            subject = s.trim_end().to_string();
                        }
                    }
                }
                received.lock().unwrap().insert(subject, Moment::now());
                count.fetch_add(1, Ordering::SeqCst);
                out.write_all(b"250 accepted\r\n")?;
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            // MAIL, RCPT, RSET, NOOP.
            _ => out.write_all(b"250 ok\r\n")?,
        }
    }
}

pub async fn run(b: JourneyBench) -> anyhow::Result<()> {
    let sink = Sink::start()?;
    println!(
        "parcours bench journeys (release build recommended), SMTP server in process at {}",
        sink.url()
    );
    if !b.skip_latency {
        latency(&b, &sink).await?;
    }
    if !b.skip_throughput {
        let b2 = b.clone();
        let url = sink.url();
        let count = sink.count.clone();
        tokio::task::spawn_blocking(move || throughput(&b2, &url, &count)).await??;
    }
    if b.timers.runs > 0 {
        crate::bench_journey_timers::run(b.timers.clone()).await?;
    }
    Ok(())
}

async fn latency(b: &JourneyBench, sink: &Sink) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("parcours-bench-jrn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    config.channels.email.smtp_url = Some(sink.url());
    config.channels.email.from = Some(FROM.into());
    let store = open_store(&config)?;
    let now = SystemClock.now();
    let p = bootstrap(store.as_ref(), &config, now)?.expect("fresh store");
    let ws = p.workspace.id.clone();
    save_journey(store.as_ref(), &ws, PROBE, now)?;
    // The demo's journeys too: the background load's carts and orders move them.
    for (_, source) in parcours_demo::JOURNEYS {
        save_journey(store.as_ref(), &ws, source, now)?;
    }
    let node = Node::start(&config, store.clone()).await?;
    let client = Client::new(node.url());

    let background = BackgroundLoad::start(&client, &p.write_key, b.rate, b.seconds, now);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bg_before = background.sent();
    let started = Moment::now();
    let mut probes: Vec<(String, Moment, Duration)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / b.probes as f64));
    for i in 0..b.seconds as usize * b.probes {
        tick.tick().await;
        let id = format!("{now}-{i}");
        let user = format!("probe-{i}");
        let body = json!({"batch": [
            {"type": "identify", "userId": user, "traits": {"email": format!("{user}@bench.test"), "first_name": "Probe"}},
            {"type": "track", "userId": user, "event": "Probe Clicked", "properties": {"probe": id}},
        ]});
        let sent = Moment::now();
        let r = client
            .track("/v1/batch", &p.write_key, body.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("probe: {e}"))?;
        anyhow::ensure!(r.status == 200, "probe refused: {}", r.status);
        probes.push((format!("probe {id}"), sent, sent.elapsed()));
    }
    let window = started.elapsed();
    let bg_rate = (background.sent() - bg_before) as f64 / window.as_secs_f64();
    let arrived = |probes: &[(String, Moment, Duration)]| {
        let got = sink.received.lock().unwrap();
        probes
            .iter()
            .filter(|(s, _, _)| got.contains_key(s))
            .count()
    };
    let deadline = Moment::now() + Duration::from_secs(30);
    while arrived(&probes) < probes.len() && Moment::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let batch = background.batch;
    background.stop().await;
    node.stop().await;
    let got = sink.received.lock().unwrap().clone();
    let mut email: Vec<Duration> = Vec::new();
    let mut ack: Vec<Duration> = Vec::new();
    for (subject, sent, acked) in &probes {
        ack.push(*acked);
        if let Some(at) = got.get(subject) {
            email.push(at.saturating_duration_since(*sent));
        }
    }
    anyhow::ensure!(
        email.len() == probes.len(),
        "{} of {} probes' emails never reached the SMTP server",
        probes.len() - email.len(),
        probes.len()
    );
    email.sort();
    ack.sort();
    let (e50, e99) = (percentile(&email, 0.5), percentile(&email, 0.99));
    let (a50, a99) = (percentile(&ack, 0.5), percentile(&ack, 0.99));
    println!("  event → email accepted by the SMTP server (embedded store, durability full)");
    println!(
        "    load:     {bg_rate:.0} background events/s over HTTP (batches of {batch}), {} probes in {window:.1?}",
        probes.len()
    );
    println!(
        "    email:    p50 {e50:.1?}  p99 {e99:.1?}  max {:.1?}",
        email[email.len() - 1]
    );
    println!("    baseline, the same probes acknowledged (committed to the log): p50 {a50:.1?}  p99 {a99:.1?}");
    println!(
        "    ratio email / acknowledged: p50 {:.1}  p99 {:.1}",
        e50.as_secs_f64() / a50.as_secs_f64(),
        e99.as_secs_f64() / a99.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Stores `n` customers' events (`events(c, user id)` for customer `c`), 2,500 customers
/// per append, and unifies them.
pub(crate) fn sign_up(
    store: &dyn Store,
    ws: &str,
    source: &str,
    n: usize,
    events: impl Fn(usize, &str) -> Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let edge = Edge::single(SystemClock.now(), None, None);
    for start in (0..n).step_by(2_500) {
        let mut checked = Vec::new();
        for c in start..(start + 2_500).min(n) {
            let user = format!("c{c:07}");
            for e in events(c, &user) {
                let raw = serde_json::value::to_raw_value(&e)?;
                match check_event(&raw, &edge, &mut |_| unreachable!("ids are set")) {
                    Checked::Accepted(e) => checked.push(e),
                    other => anyhow::bail!("a generated event was refused: {other:?}"),
                }
            }
        }
        store.append(
            &[IngestBatch {
                workspace_id: ws.into(),
                source_id: source.into(),
                events: checked,
                quarantined: Vec::new(),
            }],
            0,
        )?;
    }
    while unify_step(store, SystemClock.now(), 1_000)? > 0 {}
    Ok(())
}

/// Steps a processor until it has nothing left to do.
pub(crate) fn drain(p: &mut dyn Processor, store: &dyn Store) -> anyhow::Result<usize> {
    let mut done = 0;
    loop {
        let cx = StepContext {
            store,
            now: SystemClock.now(),
            owned: None,
        };
        match p.step(&cx)? {
            0 => return Ok(done),
            n => done += n,
        }
    }
}

/// Rounds of the SMTP comparison, Parcours and lettre taking turns.
const SMTP_ROUNDS: usize = 4;

fn enqueue(store: &dyn Store, ws: &str, tag: &str, payloads: &[String]) -> anyhow::Result<()> {
    let now = SystemClock.now();
    for (page, chunk) in payloads.chunks(500).enumerate() {
        let rows: Vec<NewOutboxRow> = chunk
            .iter()
            .enumerate()
            .map(|(i, payload)| NewOutboxRow {
                workspace_id: ws.into(),
                destination: "channel:email".into(),
                key: format!("{tag}-{page}-{i}"),
                payload: payload.clone(),
                items: 1,
                not_before: now,
                created_at: now,
            })
            .collect();
        store.enqueue(&rows)?;
    }
    Ok(())
}

fn throughput(b: &JourneyBench, smtp_url: &str, received: &AtomicUsize) -> anyhow::Result<()> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("parcours-bench-jrn-tp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let store = open_store(&config)?;
    let now = SystemClock.now();
    let p = bootstrap(store.as_ref(), &config, now)?.expect("fresh store");
    let ws = p.workspace.id.clone();
    save_journey(store.as_ref(), &ws, WELCOME, now)?;
    let n = b.customers;
    let built = Moment::now();
    sign_up(store.as_ref(), &ws, &p.source.id, n, |c, user| {
        vec![
            json!({"type": "identify", "userId": user, "messageId": format!("i-{c}"),
                   "traits": {"email": format!("{user}@bench.test"), "first_name": format!("Ana{c}")}}),
            json!({"type": "track", "userId": user, "messageId": format!("s-{c}"),
                   "event": "Signed Up", "properties": {"plan": if c % 3 == 0 { "gold" } else { "basic" }}}),
        ]
    })?;
    println!(
        "  {n} customers signed up: stored and unified in {:.1?} (not measured below)",
        built.elapsed()
    );

    // Every run decided, rendered and queued while the capture channel sends, each on its
    // own thread, as a node runs them.
    let started = Moment::now();
    let deciding = std::sync::atomic::AtomicBool::new(true);
    let (decided, sent) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| -> anyhow::Result<usize> {
            let mut capture = ChannelSender::new(Senders::default(), 60_000);
            let mut sent = 0;
            loop {
                let last = !deciding.load(Ordering::SeqCst);
                match drain(&mut capture, store.as_ref())? {
                    0 if last => return Ok(sent),
                    0 => std::thread::sleep(Duration::from_millis(2)),
                    n => sent += n,
                }
            }
        });
        let mut journeys = JourneyProcessor::default();
        let outcome = drain(&mut journeys, store.as_ref());
        let decided = started.elapsed();
        deciding.store(false, Ordering::SeqCst);
        let sent = sender.join().expect("the sender thread")?;
        outcome.map(|_| (decided, sent))
    })?;
    let mut capture = ChannelSender::new(Senders::default(), 60_000);
    let total = started.elapsed();
    anyhow::ensure!(
        sent == n,
        "{sent} messages sent to the capture channel, not {n}"
    );
    let rows = store.outbox_rows(&OutboxPage {
        workspace_id: &ws,
        destination: "channel:email",
        state: None,
        before_id: None,
        limit: n + 1,
    })?;
    anyhow::ensure!(
        rows.len() == n,
        "{} messages in the outbox, not {n}",
        rows.len()
    );
    let payloads: Vec<String> = rows.into_iter().rev().map(|r| r.payload).collect();
    let sample: Outgoing = serde_json::from_str(&payloads[0])?;
    let rate = n as f64 / total.as_secs_f64();

    // Baseline: the same messages straight into the outbox, sent by the same sender.
    store.create_workspace(&Workspace {
        id: "ws_base".into(),
        name: "Baseline".into(),
        created_at: now,
        identity_rules: IdentityRulesConfig::default(),
    })?;
    let started = Moment::now();
    enqueue(store.as_ref(), "ws_base", "base", &payloads)?;
    let base_sent = drain(&mut capture, store.as_ref())?;
    let bare = started.elapsed();
    anyhow::ensure!(base_sent == n, "the baseline sent {base_sent}, not {n}");
    let base_rate = n as f64 / bare.as_secs_f64();
    println!(
        "  journey decisions and sends to the capture channel (embedded store, durability full)"
    );
    println!(
        "    {n} runs entered and decided (rendered, queued) in {decided:.2?} while the capture channel sent, all sent in {total:.2?}: {rate:.0} messages/s"
    );
    println!(
        "    e.g. subject {:?} to {}",
        sample.subject.as_deref().unwrap_or(""),
        sample.to
    );
    println!(
        "    baseline, the same messages put in the outbox and sent: {base_rate:.0} messages/s; ratio {:.2}",
        rate / base_rate
    );

    // SMTP: Parcours' sender against a bare lettre client, same messages, same server, in
    // alternating rounds (what else the machine does, such as checkpointing the decisions
    // above, falls on both alike).
    let m = b.smtp_messages.min(n);
    let smtp = Smtp::new(smtp_url, FROM).map_err(|e| anyhow::anyhow!(e))?;
    store.create_workspace(&Workspace {
        id: "ws_smtp".into(),
        name: "SMTP".into(),
        created_at: now,
        identity_rules: IdentityRulesConfig::default(),
    })?;
    let mut sender = ChannelSender::new(
        Senders {
            email: Arc::new(Smtp::new(smtp_url, FROM).map_err(|e| anyhow::anyhow!(e))?),
            sms: Arc::new(Capture),
            push: Arc::new(Capture),
            webhook: None,
            rate_per_second: Default::default(),
            about: Default::default(),
        },
        60_000,
    );
    let transport = lettre::SmtpTransport::from_url(smtp_url)?.build();
    let (mut parcours, mut lettre_time) = (Duration::ZERO, Duration::ZERO);
    let round = m.div_ceil(SMTP_ROUNDS).max(1);
    for (r, chunk) in payloads[..m].chunks(round).enumerate() {
        enqueue(store.as_ref(), "ws_smtp", &format!("smtp{r}"), chunk)?;
        let before = received.load(Ordering::SeqCst);
        let started = Moment::now();
        let smtp_sent = drain(&mut sender, store.as_ref())?;
        parcours += started.elapsed();
        let accepted = received.load(Ordering::SeqCst) - before;
        anyhow::ensure!(
            smtp_sent == chunk.len() && accepted == chunk.len(),
            "Parcours sent {smtp_sent} and the server accepted {accepted}, not {}",
            chunk.len()
        );
        let messages: Vec<Outgoing> = chunk
            .iter()
            .map(|p| serde_json::from_str(p))
            .collect::<Result<_, _>>()?;
        let before = received.load(Ordering::SeqCst);
        let started = Moment::now();
        for o in &messages {
            let message = smtp.build(o).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            transport.send(&message)?;
        }
        lettre_time += started.elapsed();
        let accepted = received.load(Ordering::SeqCst) - before;
        anyhow::ensure!(
            accepted == chunk.len(),
            "the server accepted {accepted} of lettre's {}",
            chunk.len()
        );
    }
    let (pr, lr) = (
        m as f64 / parcours.as_secs_f64(),
        m as f64 / lettre_time.as_secs_f64(),
    );
    println!("  sends to an SMTP server in this process (one connection per message, as lettre without a pool; {SMTP_ROUNDS} rounds of each, alternating)");
    println!(
        "    Parcours' channel sender: {m} emails in {parcours:.2?}: {pr:.0} emails/s (outbox claim, build, send, record)"
    );
    println!("    baseline, a bare lettre client: {m} emails in {lettre_time:.2?}: {lr:.0} emails/s; ratio {:.2}", pr / lr);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
