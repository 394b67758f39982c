//! A private network for several test hosts, made by the test and gone when it is
//! dropped: a network namespace holding a bridge (the network's switch, with an address
//! of its own, where the test's "browser" sits), and one namespace per host, joined to the
//! bridge by a veth pair, which a container then boots in (`Container::boot_in`).
//! Private addresses in namespaces of their own: nothing leaves the machine.

use std::path::PathBuf;
use std::process::Command;

use super::container::Netns;

pub struct TestNetwork {
    /// The namespaces' names start with this (unique to the test process).
    prefix: String,
    /// The first three parts of the addresses: `10.77.0`.
    subnet: &'static str,
    hosts: std::sync::Mutex<Vec<String>>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestNetwork {
    /// The switch, at `SUBNET.1/24`.
    pub fn create(subnet: &'static str) -> TestNetwork {
        let network = TestNetwork {
            prefix: format!("shop-{}", std::process::id()),
            subnet,
            hosts: std::sync::Mutex::new(Vec::new()),
        };
        let lan = network.lan();
        ip(&["netns", "add", &lan]);
        ip(&["-n", &lan, "link", "set", "lo", "up"]);
        ip(&["-n", &lan, "link", "add", "switch", "type", "bridge"]);
        ip(&[
            "-n",
            &lan,
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            "switch",
        ]);
        ip(&["-n", &lan, "link", "set", "switch", "up"]);
        network
    }

    fn lan(&self) -> String {
        format!("{}-lan", self.prefix)
    }

    pub fn address(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    /// A namespace for `name` (at most 15 characters), plugged into the switch with the
    /// address `SUBNET.host`; its path, for a container to boot in.
    pub fn join(&self, name: &str, host: u8) -> PathBuf {
        let (lan, netns) = (self.lan(), format!("{}-{name}", self.prefix));
        ip(&["netns", "add", &netns]);
        self.hosts.lock().unwrap().push(netns.clone());
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &lan, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        ip(&["-n", &lan, "link", "set", name, "master", "switch", "up"]);
        let address = format!("{}/24", self.address(host));
        ip(&["-n", &netns, "addr", "add", &address, "dev", "eth0"]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        PathBuf::from(format!("/run/netns/{netns}"))
    }

    /// Pull `name`'s cable: its packets go nowhere, as when a machine is switched off.
    pub fn unplug(&self, name: &str) {
        ip(&["-n", &self.lan(), "link", "set", name, "down"]);
    }

    /// Plug `name`'s cable back in.
    pub fn plug(&self, name: &str) {
        ip(&["-n", &self.lan(), "link", "set", name, "up"]);
    }

    /// The switch's own namespace, at `SUBNET.1`: a machine on the network that is none of
    /// the hosts (a browser, or an intruder).
    pub fn outsider(&self) -> Netns {
        Netns::at(format!("/run/netns/{}", self.lan()))
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap());
        for netns in hosts.into_iter().chain([self.lan()]) {
            let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        }
    }
}
