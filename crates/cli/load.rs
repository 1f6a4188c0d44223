//! `minsheng bench --addr`: a load generator. It drives SubmitCall against
//! a running server from many concurrent tasks and reports calls per
//! second and latency percentiles.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use minsheng_core::{Call, Hotline};
use minsheng_proto::v1 as pb;
use pb::intake_client::IntakeClient;

pub struct Load {
    pub addr: String,
    pub concurrency: usize,
    pub connections: usize,
    pub seconds: f64,
}

fn hotline(h: Hotline) -> pb::Hotline {
    match h {
        Hotline::Police110 => pb::Hotline::Hotline110,
        Hotline::Gov12345 => pb::Hotline::Hotline12345,
        Hotline::App => pb::Hotline::App,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

pub fn run(load: &Load, calls: Vec<Call>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!calls.is_empty(), "no calls to send");
    anyhow::ensure!(
        load.concurrency > 0 && load.connections > 0,
        "--concurrency and --connections must be at least 1"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(drive(load, calls))
}

async fn drive(load: &Load, calls: Vec<Call>) -> anyhow::Result<ExitCode> {
    // Several nodes (`a:50051,b:50051`): the connections are spread over
    // them in turn.
    let urls: Vec<String> = load
        .addr
        .split(',')
        .map(|a| {
            if a.contains("://") {
                a.to_owned()
            } else {
                format!("http://{a}")
            }
        })
        .collect();
    let mut clients = Vec::new();
    for i in 0..load.connections.max(urls.len()) {
        let url = &urls[i % urls.len()];
        let channel = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        clients.push(IntakeClient::new(channel));
    }
    let (connections, nodes) = (clients.len(), urls.len());
    let calls = Arc::new(calls);
    // Call ids unique to this run, so that every call is a new ticket.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let deadline = Instant::now() + Duration::from_secs_f64(load.seconds);
    let started = Instant::now();
    // Operator systems number their calls in order; so does the load.
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..load.concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let calls = calls.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let c = &calls[(worker + n * 7919) % calls.len()];
                let request = pb::Call {
                    call_id: format!(
                        "bench-{run_id}-{:012}",
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ),
                    hotline: hotline(c.hotline) as i32,
                    caller_number: "13800000000".into(),
                    text: c.text.clone(),
                    location: c.location.clone().unwrap_or_default(),
                    ..Default::default()
                };
                n += 1;
                let sent = Instant::now();
                match client.submit_call(request).await {
                    Ok(_) => {
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{} calls in {elapsed:.1} s at concurrency {} over {} connection(s) to {} node(s): {:.0} calls/s, {errors} error(s)",
        all.len(),
        load.concurrency,
        connections,
        nodes,
        all.len() as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0)
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
