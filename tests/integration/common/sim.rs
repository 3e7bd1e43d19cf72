//! The built-in simulator, started from a scenario written in the test.

use fieldgate::sim::{Scenario, Simulator};

/// Parses `scenario` (TOML) and starts it; panics with the problem if
/// either fails.
pub async fn start(scenario: &str) -> Simulator {
    let scenario = match Scenario::from_toml_str(scenario) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    match Simulator::start(scenario).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}
