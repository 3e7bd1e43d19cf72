//! `bridge.toml`: the configuration of `fieldgate bridge`, which runs the
//! CMMS connectors for many gateways. Read, merged with the `FIELDGATE_*`
//! environment, resolved and validated as `fieldgate.toml` is, with the
//! same `[mqtt]`, `[store]` and `[[cmms]]` keys.

use std::path::Path;

use super::load::{Merged, merge};
use super::problem::{Problem, Problems};
use super::raw::{BRIDGE_SECTIONS, SECTIONS};
use super::resolved::ResolvedBridge;
use super::{BridgeConfig, resolve, validate};

/// A loaded, valid `bridge.toml` and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct LoadedBridge {
    /// The configuration.
    pub config: BridgeConfig,
    /// Warnings (the config is usable anyway).
    pub warnings: Vec<Problem>,
}

/// Loads, resolves and validates a `bridge.toml`.
///
/// On failure the [`Problems`] hold every error and warning found.
pub fn load_bridge(path: &Path) -> Result<LoadedBridge, Problems> {
    load_bridge_with_env(path, &std::env::vars().collect::<Vec<_>>())
}

/// Like [`load_bridge`], with the environment given explicitly (tests).
pub fn load_bridge_with_env(
    path: &Path,
    env: &[(String, String)],
) -> Result<LoadedBridge, Problems> {
    let Merged {
        mut ctx,
        root,
        key_order,
        ..
    } = merge(path, env, BRIDGE_SECTIONS, ("fieldgate.toml", SECTIONS))?;
    let resolved = resolve::resolve_bridge(&mut ctx, &root, &key_order);
    validate::validate_bridge(&mut ctx, &resolved);
    let ResolvedBridge {
        bridge,
        mqtt,
        store,
        cmms,
        ..
    } = resolved;
    let config = BridgeConfig {
        path: path.to_path_buf(),
        bridge,
        mqtt,
        store,
        cmms: cmms.into_iter().filter_map(|c| c.value).collect(),
    };
    let mut problems = Problems(ctx.problems);
    problems.sort();
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(LoadedBridge {
        config,
        warnings: problems.0,
    })
}
