//! Generates the Sparkplug B payload types from `proto/sparkplug_b.proto`
//! with prost-build, the `.proto` compiled by protox (pure Rust), so a
//! build needs no `protoc` on the machine or in CI.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/sparkplug_b.proto");
    let descriptors = protox::compile(["proto/sparkplug_b.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
