//! This tree beside the previous release (`packaging/previous-release`, before accounts),
//! in one run: each on a database of its own in the same PostgreSQL, three instances
//! behind an nginx of its own, with the same 1,000 items (this tree's with a seller and a
//! price, as a shop that sells shows them). The anonymous 1,000-item list, the form's
//! create (signed in here; anonymous in the previous release, which had no accounts) and
//! the API create, each measured in turns with the CPU time per request of the instances,
//! PostgreSQL and nginx; then this tree on SQLite, three instances on one file behind
//! nginx, the package's default, the same loads. Last, each instance's resident memory
//! after the loads: every instance of this tree has signed a user up (a password judged
//! and hashed) first.

use std::fmt::Write as _;
use std::process::Command;

use super::cpu::{self, Split, Stack};
use super::{rss_mib, seed_postgres, seed_sqlite, verdict, wrk, Load, Measured, Plan};
use crate::common;

use common::nginx::Nginx;
use common::{PgCluster, Shop};

/// The 1,000-item list page.
pub(super) const LIST_1000: &str = "/items?per_page=1000";
/// The seeded items' price, in cents.
const PRICE: i64 = 1_999;

/// Three instances of one build behind an nginx of their own.
pub(super) struct Trio {
    pub shops: Vec<Shop>,
    pub proxy: Nginx,
    database: Option<u32>,
}

impl Trio {
    pub fn start(binary: Option<&std::path::Path>, url: &str, database: Option<u32>) -> Trio {
        Trio::start_with(binary, url, database, &[])
    }

    fn start_with(
        binary: Option<&std::path::Path>,
        url: &str,
        database: Option<u32>,
        more: &[(&str, &str)],
    ) -> Trio {
        let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
        let shops: Vec<Shop> = ports
            .iter()
            .map(|p| {
                let listen = format!("127.0.0.1:{p}");
                let mut settings = vec![("SHOP_SERVER__LISTEN", listen.as_str())];
                settings.extend_from_slice(more);
                match binary {
                    Some(binary) => Shop::start_build(binary, url, &settings),
                    None => Shop::start(url, &settings),
                }
            })
            .collect();
        let proxy = Nginx::start(&ports);
        Trio {
            shops,
            proxy,
            database,
        }
    }

    fn stack(&self) -> Stack {
        Stack {
            shops: self.shops.iter().map(Shop::pid).collect(),
            database: self.database,
            nginx: Some(self.proxy.pid()),
        }
    }

    /// One sign-up on each instance (straight to it, not through nginx): every instance
    /// has then judged a password and hashed it.
    fn sign_up_on_each(&self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(async {
            for shop in &self.shops {
                common::Seller::sign_up(&shop.url(""), &common::fresh_username()).await;
            }
        });
    }

    /// A seller signed up through nginx, and their API token.
    fn seller(&self, runtime: &tokio::runtime::Runtime) -> (common::Seller, String) {
        let base = self.proxy.url("");
        runtime.block_on(async {
            let seller = common::Seller::sign_up(&base, &common::fresh_username()).await;
            let token = seller.api_token(&base).await;
            (seller, token)
        })
    }

    fn rss(&self) -> Vec<f64> {
        self.shops.iter().map(|s| rss_mib(s.pid()).0).collect()
    }
}

/// One load on one build: its rate and where its CPU time went.
struct Side {
    measured: Measured,
    split: Split,
}

/// A scenario, on each build.
struct Scenario {
    name: &'static str,
    previous: Option<Side>,
    this: Side,
    sqlite: Side,
}

/// `a` and `b` in turns (five rounds of 4 s in full mode, one in smoke mode), each with
/// its CPU time per request: the median round's rate, every round's CPU.
fn in_turns(plan: &Plan, name: &str, a: (&Load, &Stack), b: (&Load, &Stack)) -> (Side, Side) {
    let (rounds, seconds) = if plan.full { (5, 4) } else { (1, plan.seconds) };
    let round = Plan { seconds, ..*plan };
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        of_a.push(cpu::split(name, &round, a.1, || wrk(&round, a.0)));
        of_b.push(cpu::split(name, &round, b.1, || wrk(&round, b.0)));
    }
    (Side::of_rounds(of_a), Side::of_rounds(of_b))
}

impl Side {
    fn alone(plan: &Plan, name: &str, load: &Load, stack: &Stack) -> Side {
        let (measured, split) = cpu::split(name, plan, stack, || wrk(plan, load));
        Side { measured, split }
    }

    fn of_rounds(rounds: Vec<(Measured, Split)>) -> Side {
        let (measured, splits): (Vec<Measured>, Vec<Split>) = rounds.into_iter().unzip();
        Side {
            measured: super::median_round(measured),
            split: Split::of_rounds(splits),
        }
    }
}

/// What the comparison measured.
pub(super) struct Comparison {
    scenarios: Vec<Scenario>,
    rss_previous: Vec<f64>,
    rss_this: Vec<f64>,
    rss_sqlite: Vec<f64>,
    /// This tree's instances on the same database, rendering every list.
    rendering: Trio,
}

/// The whole comparison. `this`: this tree's instances, on the database `bench` of
/// `cluster`, seeded with the first 1,000 items; `seller` and `token`: theirs.
pub(super) fn compare(
    plan: &Plan,
    runtime: &tokio::runtime::Runtime,
    cluster: &PgCluster,
    this: &Trio,
    (seller, token): (&common::Seller, &str),
) -> Comparison {
    this.sign_up_on_each(runtime);
    cluster.psql_in(
        "bench",
        &format!(
            "UPDATE items SET owner_id = u.id, seller = u.username, price_minor = {PRICE} \
             FROM users u WHERE u.username = '{}'",
            seller.name
        ),
    );
    cluster.psql_in("bench", "VACUUM ANALYZE items");
    let previous = super::previous_release_binary().map(|(binary, unpacked)| {
        let url = cluster.create_database("previous");
        // Its own schema first (its instances migrate it), then the same items.
        let trio = Trio::start(Some(&binary), &url, cluster.server_pid());
        seed_postgres(cluster, "previous", 1, 1_000);
        (trio, unpacked)
    });
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite:{}", dir.path().join("shop.db").display());
    super::timed_migrate(&sqlite_url);
    runtime.block_on(seed_sqlite(&sqlite_url, 1, 1_000));
    let sqlite = Trio::start(None, &sqlite_url, None);
    sqlite.sign_up_on_each(runtime);
    let (sqlite_seller, sqlite_token) = sqlite.seller(runtime);
    // The same instances' work without the rendered pages kept: every list rendered.
    let render_every = [("SHOP_SERVER__PAGE_CACHE_KIB", "0")];
    let this_url = this.shops[0].database_url.clone();
    let this_rendering = Trio::start_with(None, &this_url, cluster.server_pid(), &render_every);
    let sqlite_rendering = Trio::start_with(None, &sqlite_url, None, &render_every);

    let list = |trio: &Trio| Load::get(&trio.proxy.url(LIST_1000));
    let form_create = |trio: &Trio, cookie: &str| {
        let form = trio.proxy.url("/");
        Load::get(&form).script(&super::post_script(&form, cookie))
    };
    let api_create = |trio: &Trio, token: &str| {
        Load::get(&trio.proxy.url("/api/items")).script(&super::api_create_script(token))
    };
    type Theirs<'a> = Box<dyn Fn(&Trio) -> Load + 'a>;
    let loads: [(&'static str, Load, Load, Theirs); 4] = [
        (
            "list, 1,000 rows, anonymous `GET /items?per_page=1000`",
            list(this),
            list(&sqlite),
            Box::new(list),
        ),
        (
            "the same list, rendered for every request (`page_cache_kib = 0`)",
            list(&this_rendering),
            list(&sqlite_rendering),
            Box::new(list),
        ),
        (
            "create through the form `POST /` (signed in; the previous release: anonymous)",
            form_create(this, &seller.cookie),
            form_create(&sqlite, &sqlite_seller.cookie),
            Box::new(move |trio: &Trio| form_create(trio, &csrf_cookie_of(&trio.proxy.url("/")))),
        ),
        (
            "create `POST /api/items` (an API token; the previous release: none needed)",
            api_create(this, token),
            api_create(&sqlite, &sqlite_token),
            Box::new(move |trio: &Trio| api_create(trio, token)),
        ),
    ];
    let mut scenarios = Vec::new();
    for (n, (name, ours, on_sqlite, theirs)) in loads.into_iter().enumerate() {
        let (ours_on, sqlite_on) = if n == 1 {
            (&this_rendering, &sqlite_rendering)
        } else {
            (this, &sqlite)
        };
        let (this_side, previous_side) = match &previous {
            Some((trio, _)) => {
                let (a, b) = in_turns(
                    plan,
                    name,
                    (&ours, &ours_on.stack()),
                    (&theirs(trio), &trio.stack()),
                );
                (a, Some(b))
            }
            None => (Side::alone(plan, name, &ours, &ours_on.stack()), None),
        };
        scenarios.push(Scenario {
            name,
            previous: previous_side,
            this: this_side,
            sqlite: Side::alone(plan, name, &on_sqlite, &sqlite_on.stack()),
        });
    }
    // Memory once the loads are over: after the instances' next hand-back of free memory.
    std::thread::sleep(plan.settle());
    Comparison {
        scenarios,
        rss_previous: previous.as_ref().map(|(t, _)| t.rss()).unwrap_or_default(),
        rss_this: this.rss(),
        rss_sqlite: sqlite.rss(),
        rendering: this_rendering,
    }
}

/// A browser's first visit to `url`: the CSRF cookie it is handed (`name=value`).
pub(super) fn csrf_cookie_of(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    head.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then_some(value)
        })
        .find(|v| v.to_ascii_lowercase().contains("csrf"))
        .and_then(|v| v.trim().split(';').next())
        .unwrap_or_else(|| panic!("no CSRF cookie from {url}:\n{head}"))
        .to_owned()
}

impl Comparison {
    /// Every load's rate, for the benchmark's check that none failed.
    pub fn measured(&self) -> Vec<(String, Measured)> {
        let mut all = Vec::new();
        for s in &self.scenarios {
            if let Some(previous) = &s.previous {
                all.push((
                    format!("{} (previous release)", s.name),
                    previous.measured.clone(),
                ));
            }
            all.push((format!("{} (this tree)", s.name), s.this.measured.clone()));
            all.push((format!("{} (SQLite)", s.name), s.sqlite.measured.clone()));
        }
        all
    }

    /// The nginx of this tree's instances that render every list (`page_cache_kib = 0`).
    pub fn rendering_proxy(&self) -> &Nginx {
        &self.rendering.proxy
    }

    /// This tree's instances' resident memory (PostgreSQL's, then SQLite's), in MiB.
    pub fn rss_of_this_tree(&self) -> Vec<f64> {
        self.rss_this
            .iter()
            .chain(&self.rss_sqlite)
            .copied()
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "\n### This tree beside the previous release, in the same run\n\n\
             Three instances behind nginx each; rates measured in turns (PostgreSQL); CPU: \
             microseconds per request, instances · database · nginx; SQLite: this tree, \
             three instances on one file (its database works inside the instances).\n\n\
             | scenario | previous release req/s | this tree req/s | ratio | previous CPU µs | this CPU µs | SQLite req/s | SQLite CPU µs |\n\
             | --- | ---: | ---: | ---: | --- | --- | ---: | --- |\n",
        );
        let cpu = |side: &Side| side.split.parts_text();
        for s in &self.scenarios {
            let (previous_rate, ratio, previous_cpu) = match &s.previous {
                Some(p) => (
                    format!("{:.0}", p.measured.rate),
                    format!("{:.0}%", s.this.measured.rate / p.measured.rate * 100.0),
                    cpu(p),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            writeln!(
                out,
                "| {} | {previous_rate} | {:.0} | {ratio} | {previous_cpu} | {} | {:.0} | {} |",
                s.name,
                s.this.measured.rate,
                cpu(&s.this),
                s.sqlite.measured.rate,
                cpu(&s.sqlite),
            )
            .unwrap();
        }
        let list = &self.scenarios[0];
        let rendered = &self.scenarios[1];
        let mib = |v: &[f64]| {
            if v.is_empty() {
                "–".to_owned()
            } else {
                v.iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            }
        };
        let worst = self.rss_of_this_tree().into_iter().fold(0.0, f64::max);
        let list_kept = list
            .previous
            .as_ref()
            .map(|p| list.this.measured.rate >= 0.95 * p.measured.rate);
        let sqlite_share = list.sqlite.measured.rate / list.this.measured.rate;
        write!(
            out,
            "\n| measure | value | target |\n| --- | ---: | --- |\n\
             | resident memory per instance after the loads: previous release | {} MiB | |\n\
             | … this tree, PostgreSQL (each instance signed a user up) | {} MiB | |\n\
             | … this tree, SQLite (each instance signed a user up) | {} MiB | all ≤ 20 MiB: {} |\n\
             | the list's rate, this tree ÷ the previous release | {} | ≥ 95%: {} |\n\
             | … rendered for every request, this tree ÷ the previous release | {} | |\n\
             | the list's rate on SQLite ÷ on PostgreSQL | {:.0}% | ≥ 50%: {} |\n",
            mib(&self.rss_previous),
            mib(&self.rss_this),
            mib(&self.rss_sqlite),
            verdict(worst <= 20.0),
            list.previous.as_ref().map_or("–".to_owned(), |p| format!(
                "{:.0}%",
                list.this.measured.rate / p.measured.rate * 100.0
            )),
            list_kept.map_or("not measured (no previous release built)", verdict),
            rendered
                .previous
                .as_ref()
                .map_or("–".to_owned(), |p| format!(
                    "{:.0}%",
                    rendered.this.measured.rate / p.measured.rate * 100.0
                )),
            sqlite_share * 100.0,
            verdict(sqlite_share >= 0.5),
        )
        .unwrap();
        out
    }
}
