//! Network namespaces for tests that need a real interface: a veth pair.

use std::process::Command;

/// A veth pair with its far end in a network namespace, removed on drop.
pub struct Veth {
    pub ns: String,
    pub host_if: String,
    pub peer_if: String,
}

impl Veth {
    /// `tag` tells apart the pairs of tests that run at once (interface names: 15 bytes).
    pub fn create(tag: &str, host_ip: &str, peer_ip: &str) -> Veth {
        let tag = format!("hw{tag}{}", std::process::id() % 100_000);
        let veth = Veth {
            ns: format!("{tag}ns"),
            host_if: format!("{tag}h"),
            peer_if: format!("{tag}p"),
        };
        let script = format!(
            "ip netns add {ns} && ip link add {h} type veth peer name {peer_if} netns {ns} && \
             ip addr add {host_ip}/30 dev {h} && ip link set {h} up && \
             ip -n {ns} addr add {peer_ip}/30 dev {peer_if} && ip -n {ns} link set {peer_if} up",
            ns = veth.ns,
            h = veth.host_if,
            peer_if = veth.peer_if,
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "this test needs root and iproute2 (ip netns, veth): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
