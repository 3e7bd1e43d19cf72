//! The gateway's log lines in the test output, shown when a test fails.

/// Installs the global subscriber, once per process: the first test to
/// call it wins, later calls change nothing. `RUST_LOG` sets the filter;
/// without it, the gateway's debug lines and the broker's warnings.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fieldgate=debug,rumqttd=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
