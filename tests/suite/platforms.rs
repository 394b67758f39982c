//! The platforms beyond Debian 12 on amd64, each on a real systemd host booted with
//! systemd-nspawn: the arm64 package (the Raspberry Pi's architecture) on an arm64 Debian
//! 12 host under qemu-user (and the playbook's choice of it), and the playbook on Debian 13
//! (trixie: PostgreSQL 17, systemd 257, nginx 1.26, newer than Debian 12 as Ubuntu 24.04 is).
//!
//! These take minutes (emulation is 5–20× slower) and need the arm64 packages, so a plain
//! `cargo test` lists them as ignored; tests/run builds the packages and runs them with
//! `cargo test --test suite -- --ignored --nocapture --test-threads=1 other_platforms::`,
//! which prints each step's time.

use crate::common;

use common::ansible::{
    deploy, deploy_fresh_host, package_arch_chosen_for, running_instances, Layout,
};
use common::container::Platform;
use common::deb::{
    assert_control_fields, assert_lintian_clean, file_list, package_lifecycle, Debs,
};

/// In a module of their own, so tests/run can leave them out of the heavy-tier run
/// (`--skip other_platforms::`) and run them one at a time, with their timings.
mod other_platforms {
    use super::*;

    #[test]
    #[ignore = "needs the arm64 packages: run by tests/run"]
    fn arm64_package_is_as_good_as_the_amd64_one() {
        let arm64 = Debs::arm64();
        assert_lintian_clean(&arm64.new);
        assert_control_fields(&arm64, "arm64");
        assert_eq!(
            file_list(&arm64.new),
            file_list(&Debs::amd64().new),
            "the same files, modes and owners in both packages"
        );
    }

    /// The package's whole life on an arm64 host (install, serve, upgrade from the previous
    /// release under load, downgrade, remove, purge, reinstall), and the one part of the
    /// playbook that depends on the architecture: which package it deploys there. The rest
    /// of the playbook is the same on every architecture and is deployed on amd64 hosts
    /// (Debian 12 in the Ansible tier, Debian 13 below); under qemu it took 9 minutes.
    #[test]
    #[ignore = "arm64 under qemu, minutes: run by tests/run"]
    fn arm64_package_lifecycle_on_an_arm64_systemd_host() {
        let host = package_lifecycle(Platform::BOOKWORM_ARM64, &Debs::arm64());
        assert_eq!(
            package_arch_chosen_for(&host),
            "arm64",
            "the playbook deploys the arm64 package to an arm64 host"
        );
    }

    #[test]
    #[ignore = "a Debian 13 host, minutes: run by tests/run"]
    fn debian13_host_deployed_by_ansible_with_two_instances_then_one() {
        // Two instances: the package's postinst must start only those (the playbook writes
        // /etc/default/shop before the package installs), and nginx balances only those.
        let two = Layout {
            instances: &[8001, 8002],
            ..Layout::DEFAULT
        };
        let deployed = deploy_fresh_host(Platform::TRIXIE_AMD64, &Debs::amd64().new, two);
        let (host, home) = (&deployed.host, deployed.home.path());
        let upstream = host.sh("grep -c '^ *server ' /etc/nginx/snippets/shop-upstream.conf");
        assert_eq!(upstream.trim(), "2", "nginx balances the two instances");

        // One instance fewer: the one no longer listed is stopped and disabled.
        let one = ["-e", r#"{"shop_instances": [8001]}"#];
        assert!(deploy(host, home, &Debs::amd64().new, &one) > 0);
        assert_eq!(running_instances(host), [8001]);
        let upstream = host.sh("grep -c '^ *server ' /etc/nginx/snippets/shop-upstream.conf");
        assert_eq!(upstream.trim(), "1");
    }
}
