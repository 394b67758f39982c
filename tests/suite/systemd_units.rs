//! The unit files as systemd itself reads them: `systemd-analyze verify` on instance
//! names and the backup timer (no warning allowed), and `systemd-analyze security` at
//! most 1.5 for the instances and the backup service.

use std::path::Path;
use std::process::Command;

/// A root tree with this host's standard units, shop's units and a binary at /usr/bin/shop.
fn unit_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in ["etc/systemd/system", "usr/bin", "lib/systemd"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    let status = Command::new("cp")
        .args(["-a", "/lib/systemd/system"])
        .arg(r.join("lib/systemd/"))
        .status()
        .unwrap();
    assert!(status.success());
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in [
        "shop@.socket",
        "shop@.service",
        "shop.target",
        "backup/shop-backup.service",
        "backup/shop-backup.timer",
    ] {
        let name = Path::new(unit).file_name().unwrap();
        std::fs::copy(units.join(unit), r.join("etc/systemd/system").join(name)).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_shop"), r.join("usr/bin/shop")).unwrap();
    root
}

#[test]
fn units_verify_without_a_warning() {
    let root = unit_tree();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .args([
            "shop@8001.service",
            "shop@8001.socket",
            "shop@8002.service",
            "shop@8002.socket",
            "shop.target",
            "shop-backup.service",
            "shop-backup.timer",
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn the_services_are_hardened_to_at_most_1_5() {
    let root = unit_tree();
    for unit in ["shop@8001.service", "shop-backup.service"] {
        assert_exposure_at_most_1_5(root.path(), unit);
    }
}

fn assert_exposure_at_most_1_5(root: &Path, unit: &str) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=15"])
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default();
    println!("{unit}: {overall}");
    assert!(out.status.success(), "{unit}: exposure above 1.5:\n{text}");
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 1.5, "{unit}: {overall}");
}
