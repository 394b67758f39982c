//! TLS for the host tests: a certificate authority the test makes (what a site gets from a
//! public CA such as Let's Encrypt: a 90-day certificate carrying where its revocation list
//! is), and the grade Debian's testssl.sh gives an HTTPS site.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::container::Netns;

/// A CA of the test's: its certificate (`ca.crt`, what clients are told to trust) and key.
pub struct TestCa {
    dir: tempfile::TempDir,
}

/// A certificate the CA issued: the full chain (leaf, then CA) and its key, as files.
pub struct Issued {
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// Run `openssl ARGS` (words separated by spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
             -days 30 -subj /CN=shop-test-CA -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.crt",
        );
        TestCa { dir }
    }

    /// The CA's certificate, for `curl --cacert` and `testssl --add-ca`.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A server certificate for `name`, valid 90 days.
    pub fn issue(&self, name: &str) -> Issued {
        let d = self.dir.path();
        let extensions = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{name}\n\
             crlDistributionPoints=URI:http://ca.test/shop-test-ca.crl\n"
        );
        std::fs::write(d.join(format!("{name}.ext")), extensions).unwrap();
        openssl(
            d,
            &format!(
                "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                 -subj /CN={name} -keyout {name}.key -out {name}.csr"
            ),
        );
        openssl(
            d,
            &format!(
                "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
                 -sha256 -extfile {name}.ext -out {name}.crt"
            ),
        );
        let chain = d.join(format!("{name}-fullchain.pem"));
        let leaf = std::fs::read_to_string(d.join(format!("{name}.crt"))).unwrap();
        let ca = std::fs::read_to_string(d.join("ca.crt")).unwrap();
        std::fs::write(&chain, format!("{leaf}{ca}")).unwrap();
        Issued {
            chain,
            key: d.join(format!("{name}.key")),
        }
    }
}

/// One of testssl.sh's findings.
#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: String,
    pub id: String,
    pub finding: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.id, self.finding)
    }
}

/// What testssl.sh finds at `https://NAME/items` served from `address`, run from `net`
/// and trusting `ca`: its findings rated LOW or worse (and its warnings).
pub fn grade(net: &Netns, name: &str, address: &str, ca: &Path) -> Vec<Finding> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("findings.json");
    let out = net
        .command("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--nodns",
            "none",
        ])
        .arg("--add-ca")
        .arg(ca)
        .args(["--ip", address])
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("https://{name}/items"))
        .output()
        .expect("testssl (Debian's testssl.sh)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no findings ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    findings
        .iter()
        .map(|f| Finding {
            severity: f["severity"].as_str().unwrap_or_default().to_owned(),
            id: f["id"].as_str().unwrap_or_default().to_owned(),
            finding: f["finding"].as_str().unwrap_or_default().to_owned(),
        })
        .filter(|f| !matches!(f.severity.as_str(), "OK" | "INFO"))
        .collect()
}

/// The findings rated HIGH or CRITICAL.
pub fn serious(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| matches!(f.severity.as_str(), "HIGH" | "CRITICAL"))
        .collect()
}
