//! Two network namespaces joined by a veth pair, for charon on one side and ippm on the other.

use super::*;

/// One end of a [`NetPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// 192.0.2.1: the strongSwan side.
    A,
    /// 192.0.2.2: ours.
    B,
}

impl Side {
    /// The address of this side.
    pub(crate) fn addr(self) -> &'static str {
        match self {
            Self::A => "192.0.2.1",
            Self::B => "192.0.2.2",
        }
    }

    /// The other side.
    pub(crate) fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// Two fresh network namespaces joined by a veth pair: side A 192.0.2.1/24, side B
/// 192.0.2.2/24, loopback up in both. Dropping it deletes exactly the namespaces it made
/// (which takes the veth pair with them).
#[derive(Debug)]
pub(crate) struct NetPair {
    a: String,
    b: String,
    created: Vec<String>,
}

impl NetPair {
    /// Makes the namespaces `ippm-<pid>-<n>-a` and `-b`; panics (after cleaning up) on failure.
    pub(crate) fn new() -> Self {
        require_strongswan();
        let u = unique();
        let mut pair = Self {
            a: format!("ippm-{u}-a"),
            b: format!("ippm-{u}-b"),
            created: Vec::new(),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            run(Command::new("ip").args(["netns", "add", &ns]));
            pair.created.push(ns);
        }
        // Interface names (at most 15 octets) are unique per process and test, so that tests
        // running in parallel never clash, wherever the kernel checks the names.
        let (va, vb) = (format!("ip{u}a"), format!("ip{u}b"));
        assert!(va.len() <= 15, "interface name {va} too long");
        run(Command::new("ip").args([
            "link", "add", &va, "netns", &pair.a, "type", "veth", "peer", "name", &vb, "netns",
            &pair.b,
        ]));
        for (side, ns, dev) in [(Side::A, &pair.a, &va), (Side::B, &pair.b, &vb)] {
            let cidr = format!("{}/24", side.addr());
            run(Command::new("ip").args(["-n", ns, "addr", "add", &cidr, "dev", dev]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        }
        pair
    }

    /// The name of a side's namespace.
    pub(crate) fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// A command that runs `program` in a side's namespace (`ip netns exec`; the PID of the
    /// spawned child is the program's own, as `ip netns exec` execs it).
    pub(crate) fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(side)]).arg(program);
        c
    }

    /// A command that runs `program` in side B (ours, 192.0.2.2).
    pub(crate) fn command_b(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command(Side::B, program)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
