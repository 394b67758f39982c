//! The Debian package: lintian, its Depends, and its life on a real systemd host
//! (install, serve, upgrade under load, remove, purge, reinstall).
//! The two packages are built by tests/run (packaging/build-deb, then again with
//! --no-build for a newer version) and named by SHOP_DEB_OLD and SHOP_DEB_NEW.

use crate::common;

use common::ansible::package_arch_chosen_for;
use common::container::Platform;
use common::deb::{assert_control_fields, assert_lintian_clean, package_lifecycle, Debs};

#[test]
#[ignore = "package tier: root and the packages tests/run builds"]
fn lintian_finds_nothing() {
    assert_lintian_clean(&Debs::amd64().new);
}

#[test]
#[ignore = "package tier: root and the packages tests/run builds"]
fn depends_are_computed_and_versions_increase() {
    assert_control_fields(&Debs::amd64(), "amd64");
}

#[test]
#[ignore = "package tier: root and the packages tests/run builds"]
fn the_package_on_a_real_systemd_host() {
    let host = package_lifecycle(Platform::BOOKWORM_AMD64, &Debs::amd64());
    assert_eq!(
        package_arch_chosen_for(&host),
        "amd64",
        "the playbook deploys the amd64 package to an amd64 host"
    );
}
