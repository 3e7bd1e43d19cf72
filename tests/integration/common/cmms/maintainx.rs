//! The fake maintainx (stub: to be written).

use std::sync::{Arc, Mutex};

use super::{FakeCmms, State};

/// Starts the fake, expecting `secret` as its credential.
pub async fn start(secret: &str) -> FakeCmms {
    let state = Arc::new(Mutex::new(State {
        secret: secret.to_owned(),
        ..State::default()
    }));
    FakeCmms::serve(axum::Router::new(), state).await
}
