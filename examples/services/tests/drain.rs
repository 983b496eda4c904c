//! A call still running when the drain timed out (a client holding it open, a handler stuck)
//! outlives the server on its connection's task: the service binary ends it once the server
//! has stopped, so its access-log line (status 0, CANCELLED) still goes out before the
//! process exits, where it used to be lost.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use services::pb::item::v1::GetItemRequest;
use services::pb::item::v1::item_service_client::ItemServiceClient;

#[test]
fn a_call_the_drain_cut_off_is_still_logged() {
    // Every call takes a minute: the drain (10 s) cuts it off.
    let mut child = Command::new(env!("CARGO_BIN_EXE_item"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tail-fraction",
            "1",
            "--tail-ms",
            "60000",
            "--access-log",
            "stdout",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn item");
    // Where it listens, from its standard error (bounded: a child that says nothing fails the
    // test in 30 s); its standard output, all of it, once it has exited.
    let (said, heard) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("item listening on ") {
                let _ = said.send(addr.to_owned());
            }
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let Ok(addr) = heard.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("item did not say where it listens within 30 s");
    };

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Connected first: the call then goes out at once.
    let mut client = runtime
        .block_on(ItemServiceClient::connect(format!("http://{addr}")))
        .expect("connect");
    let call = runtime.spawn(async move {
        let _ = client
            .get_item(GetItemRequest {
                id: "i-1".to_owned(),
            })
            .await;
    });
    // The call reaches the service, then the service is told to stop.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!call.is_finished(), "the call is held by the service");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("item still running 40 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    drop(runtime);
    let text = out.join().expect("stdout");
    let line = text
        .lines()
        .find(|l| l.contains("/item.v1.ItemService/GetItem"))
        .unwrap_or_else(|| panic!("no access-log line for the call cut off: {text:?}"));
    let entry: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(entry["status"], 0, "{line}");
    assert_eq!(entry["grpc_status"], "1", "{line}");
    assert!(
        entry["duration_ms"].as_f64().expect("duration") >= 9_000.0,
        "held through the drain: {line}"
    );
}
