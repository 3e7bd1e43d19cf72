//! Free ports for what the demo starts, so that it runs beside a real
//! gateway, a standalone simulator, a broker on 1883 or a second demo.
//!
//! A port is found by binding it and letting go (the simulator and the
//! gateway bind their own sockets); between the two another program could
//! take it, in which case the start fails with the address in the message.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::sim::Scenario;

/// Moves every TCP listener of `scenario` (Modbus TCP and RTU over TCP)
/// to a free port on the same address. Devices that share a listen text
/// keep sharing one (the scenario format's meaning: one server, several
/// unit ids); different texts get different ports, also when they all
/// asked for port 0.
pub fn free_listeners(scenario: &mut Scenario) -> io::Result<()> {
    // Every listener stays bound until all are chosen, so that no two
    // texts get the same port.
    let mut chosen: BTreeMap<String, (TcpListener, String)> = BTreeMap::new();
    for device in &mut scenario.devices {
        for text in [&mut device.listen, &mut device.rtu_over_tcp]
            .into_iter()
            .flatten()
        {
            if !chosen.contains_key(text.as_str()) {
                let wanted = text
                    .trim()
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other(format!("{text}: no address")))?;
                let listener = TcpListener::bind(SocketAddr::new(wanted.ip(), 0))?;
                let bound = listener.local_addr()?.to_string();
                chosen.insert(text.clone(), (listener, bound));
            }
            if let Some((_, bound)) = chosen.get(text.as_str()) {
                *text = bound.clone();
            }
        }
    }
    Ok(())
}

/// `addr` when it is free (`None`: keep it); else a free port on the same
/// address.
pub fn instead_of(addr: SocketAddr) -> Option<SocketAddr> {
    match TcpListener::bind(addr) {
        Ok(_) => None,
        Err(_) => TcpListener::bind(SocketAddr::new(addr.ip(), 0))
            .and_then(|l| l.local_addr())
            .ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listen_text_gets_a_port_of_its_own() {
        let mut s = match Scenario::from_toml_str(
            r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            [[devices]]
            name = "b"
            unit = 2
            listen = "127.0.0.1:0"
            [[devices]]
            name = "c"
            unit = 1
            listen = "127.0.0.1:5020"
            [[devices]]
            name = "d"
            unit = 1
            rtu_over_tcp = "127.0.0.1:5021"
            [[devices]]
            name = "e"
            unit = 1
            serial = "pty"
            "#,
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        if let Err(e) = free_listeners(&mut s) {
            panic!("{e}");
        }
        let listen = |i: usize| s.devices[i].listen.clone().unwrap_or_default();
        assert_eq!(listen(0), listen(1), "one text, one server");
        assert_ne!(listen(0), listen(2));
        let rtu = s.devices[3].rtu_over_tcp.clone().unwrap_or_default();
        for text in [listen(0), listen(2), rtu.clone()] {
            assert!(text.starts_with("127.0.0.1:"), "{text}");
            assert!(!text.ends_with(":0"), "{text}");
        }
        assert_ne!(rtu, listen(2));
        assert_eq!(s.devices[4].serial.as_deref(), Some("pty"));
    }

    #[test]
    fn a_taken_port_is_replaced() {
        let Ok(taken) = TcpListener::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(addr) = taken.local_addr() else {
            return;
        };
        let other = instead_of(addr);
        assert!(other.is_some_and(|o| o != addr && o.ip() == addr.ip()));
        drop(taken);
        assert_eq!(instead_of(addr), None);
    }
}
