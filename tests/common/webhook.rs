//! A webhook receiver for the alert tests: a real HTTP server (axum) standing for the
//! operators' alerting, which answers each POST with a planned status and keeps what it got.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// The shared secret the tests' webhooks are configured with.
pub const SECRET: &str = "4f1c2b9e7a3d5f60c8e1b2a3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

/// The owners' alerting: answers each POST with the next planned status (204 once the
/// plan is used up) and keeps what it got.
#[derive(Default)]
pub struct Receiver {
    plan: Mutex<VecDeque<u16>>,
    got: Mutex<Vec<Delivery>>,
}

async fn take(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let answered = receiver.plan.lock().unwrap().pop_front().unwrap_or(204);
    receiver.got.lock().unwrap().push(Delivery {
        headers,
        body,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    pub async fn start(plan: &[u16]) -> (Arc<Self>, String) {
        let receiver = Arc::new(Receiver {
            plan: Mutex::new(plan.iter().copied().collect()),
            got: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/alerts", post(take))
            .with_state(Arc::clone(&receiver));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{address}/alerts"))
    }

    pub fn got(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

pub fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("webhook.key");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
