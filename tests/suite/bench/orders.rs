//! The benchmark's orders: `POST /api/orders` through nginx to three instances, on many
//! items and on one hot item every client buys (one row's lock, held to commit), beside
//! the API create rate of the same instances (measured in turns) and PostgreSQL's own
//! limit: pgbench running shop's order statement (the conditional stock update, the
//! order and its line, in one) on the same server, on many rows and on one. Then the same on SQLite,
//! three instances on one file behind nginx, the package's default. After each load the
//! hot item's stock is checked: what is left + what its orders hold = the stock at first.

use super::cpu::{self, Split, Stack};
use super::{pgbench, side_by_side, wrk, Load, Measured, Plan, Row, Target};
use crate::common;

use common::nginx::Nginx;
use common::{PgCluster, Shop};

/// Items for sale in the many-items scenarios, each with this stock (the most an item
/// may hold) at this price in cents.
const ITEMS: usize = 200;
const STOCK: i64 = 1_000_000;
const PRICE: i64 = 100;

/// A buyer and a seller's items on one shop (through its nginx).
struct Market {
    base: String,
    seller_token: String,
    buyer_token: String,
    /// The many items' ids, contiguous, and the hot item's.
    first: i64,
    last: i64,
    hot: i64,
}

impl Market {
    /// A seller with `ITEMS` items and a hot one, and a buyer, signed up through `base`.
    fn open(runtime: &tokio::runtime::Runtime, base: &str) -> Market {
        runtime.block_on(async {
            let seller = common::Seller::sign_up(base, &common::fresh_username()).await;
            let seller_token = seller.api_token(base).await;
            let buyer = common::Seller::sign_up(base, &common::fresh_username()).await;
            let buyer_token = buyer.api_token(base).await;
            let client = common::client();
            let mut ids = Vec::new();
            for n in 0..=ITEMS {
                let item = serde_json::json!({
                    "name": format!("for sale {n}"),
                    "quantity": STOCK,
                    "price_minor": PRICE,
                    "description": "bought by the benchmark",
                });
                let response = client
                    .post(format!("{base}/api/items"))
                    .bearer_auth(&seller_token)
                    .json(&item)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "an item for sale");
                let item: serde_json::Value = response.json().await.unwrap();
                ids.push(item["id"].as_i64().unwrap());
            }
            let hot = ids.pop().unwrap();
            let (first, last) = (ids[0], ids[ITEMS - 1]);
            assert_eq!(
                last - first + 1,
                ITEMS as i64,
                "the items' ids follow each other"
            );
            Market {
                base: base.to_owned(),
                seller_token,
                buyer_token,
                first,
                last,
                hot,
            }
        })
    }

    /// The buyer's orders of 1 at a time, each with an idempotency key of its own, of an
    /// item drawn at random from `first..=last`.
    fn orders(&self, first: i64, last: i64) -> Load {
        let script = format!(
            r#"{keyed_run}
request = function()
  counter = counter + 1
  local body = string.format('{{"item_id": %d, "quantity": 1, "price_minor": {PRICE}}}', math.random({first}, {last}))
  return wrk.format("POST", "/api/orders", {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}", ["Idempotency-Key"] = prefix .. "-" .. counter}}, body)
end
"#,
            keyed_run = super::KEYED_RUN,
            token = self.buyer_token,
        );
        Load::get(&format!("{}/api/orders", self.base)).script(&script)
    }

    /// Orders on the many items (in turns with creates), then on the hot item: the
    /// three rates; and where each of the three loads' CPU time went on `stack` (one more
    /// run each of the first two, alone).
    fn measure(&self, plan: &Plan, stack: &Stack) -> (Measured, Measured, Measured, Vec<Split>) {
        let many_items = self.orders(self.first, self.last);
        let (many, create) = side_by_side(plan, &many_items, &self.creates());
        let (_, create_split) = cpu::split("create `POST /api/items`", plan, stack, || {
            wrk(plan, &self.creates())
        });
        let (_, many_split) = cpu::split(
            &format!("order `POST /api/orders`, {ITEMS} items"),
            plan,
            stack,
            || wrk(plan, &many_items),
        );
        let (hot, hot_split) = cpu::split("order, one hot item", plan, stack, || {
            wrk(plan, &self.orders(self.hot, self.hot))
        });
        (many, create, hot, vec![create_split, many_split, hot_split])
    }

    fn creates(&self) -> Load {
        Load::get(&format!("{}/api/items", self.base))
            .script(&super::api_create_script(&self.seller_token))
    }
}

/// pgbench's script: the very statement shop places an order with
/// (`queries::PLACE_ORDER_POSTGRES`), its parameters filled in as shop binds them, on an
/// item drawn from `first..=last`, by the buyer and seller of an order placed through shop.
fn order_statement(first: i64, last: i64, buyer_id: &str, seller_id: &str) -> String {
    let values = [
        "1".to_owned(),
        ":item".to_owned(),
        PRICE.to_string(),
        buyer_id.to_owned(),
        "'pgbench'".to_owned(),
        seller_id.to_owned(),
        "'bench'".to_owned(),
        "'EUR'".to_owned(),
        PRICE.to_string(),
        "md5(random()::text || clock_timestamp()::text)".to_owned(),
        "now()".to_owned(),
    ];
    // From $11 down, so that $1 does not match the start of $10 and $11.
    let mut statement = shop::db::queries::PLACE_ORDER_POSTGRES.to_owned();
    for (n, value) in values.iter().enumerate().rev() {
        statement = statement.replace(&format!("${}", n + 1), value);
    }
    format!("\\set item random({first}, {last})\n{statement};\n")
}

/// PostgreSQL, through `proxy` to its three instances: the rows, and the hot item's
/// check.
pub(super) fn on_postgres(
    plan: &Plan,
    runtime: &tokio::runtime::Runtime,
    cluster: &PgCluster,
    database: &str,
    proxy: &Nginx,
    shops: &[u32],
) -> (Vec<Row>, String) {
    let market = Market::open(runtime, &proxy.url(""));
    let stack = Stack {
        shops: shops.to_vec(),
        database: cluster.server_pid(),
        nginx: Some(proxy.pid()),
    };
    let (many, create, hot, mut splits) = market.measure(plan, &stack);
    let ids = cluster.psql_in(
        database,
        "SELECT buyer_id, seller_id FROM orders ORDER BY id LIMIT 1",
    );
    let (buyer_id, seller_id) = ids.trim().split_once('|').expect(&ids);
    let database_only = Stack {
        shops: Vec::new(),
        database: cluster.server_pid(),
        nginx: None,
    };
    let mut bench = |rows: &str, first, last| {
        let name = format!("pgbench, the order's statement, {rows}");
        let (measured, split) = cpu::split(&name, plan, &database_only, || {
            let statement = order_statement(first, last, buyer_id, seller_id);
            pgbench(plan, cluster, database, &statement)
        });
        splits.push(split);
        measured
    };
    let pg_many = bench(&format!("{ITEMS} rows"), market.first, market.last);
    let pg_one = bench("one row", market.hot, market.hot);
    let (left, sold) = stock_of(&|sql| cluster.psql_in(database, sql), market.hot);
    let pgbench_sold: i64 = cluster
        .psql_in(
            database,
            &format!(
                "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE l.item_id = {} AND o.buyer = 'pgbench'",
                market.hot
            ),
        )
        .trim()
        .parse()
        .unwrap();
    market.assert_stock_kept(runtime, left, sold, &hot, "PostgreSQL");
    assert!(
        pgbench_sold > 0 && sold > pgbench_sold,
        "both sold the hot item"
    );
    let rows = vec![
        Row::new(
            format!("order `POST /api/orders`, {ITEMS} items (in turns with the create)"),
            many.clone(),
            "create `POST /api/items`, same instances",
            create,
            Target::Ratio(0.8),
        ),
        Row::new(
            format!("order `POST /api/orders`, {ITEMS} items"),
            many,
            "pgbench, the order's statement, as many rows",
            pg_many,
            Target::Ratio(0.7),
        ),
        Row::new(
            "order `POST /api/orders`, one hot item (every client)",
            hot,
            "pgbench, the order's statement, one row",
            pg_one,
            Target::Ratio(0.7),
        ),
    ];
    let title = "### Where an order's time goes, PostgreSQL: CPU time per request of each part, \
                 the same loads run alone (pgbench prepares its statement, as shop does)";
    (rows, cpu::render(title, &splits))
}

/// SQLite: one file, three instances behind nginx (as the package runs them).
pub(super) fn on_sqlite(plan: &Plan, runtime: &tokio::runtime::Runtime) -> (Vec<Row>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("orders.db").display());
    super::timed_migrate(&url);
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let shops: Vec<Shop> = ports
        .iter()
        .map(|p| Shop::start(&url, &[("SHOP_SERVER__LISTEN", &format!("127.0.0.1:{p}"))]))
        .collect();
    let proxy = Nginx::start(&ports);
    let market = Market::open(runtime, &proxy.url(""));
    let stack = Stack {
        shops: shops.iter().map(Shop::pid).collect(),
        database: None,
        nginx: Some(proxy.pid()),
    };
    let (many, create, hot, splits) = market.measure(plan, &stack);
    let sqlite = |sql: &str| {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let value: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            value.to_string()
        })
    };
    let (left, sold) = stock_of(&sqlite, market.hot);
    market.assert_stock_kept(runtime, left, sold, &hot, "SQLite");
    drop((proxy, shops));
    let rows = vec![
        Row::new(
            format!("SQLite, three instances on one file: order, {ITEMS} items (in turns with the create)"),
            many,
            "create `POST /api/items`, same instances",
            create.clone(),
            Target::Ratio(0.8),
        ),
        Row::new(
            "SQLite, three instances on one file: order, one hot item",
            hot,
            "create `POST /api/items`, same instances",
            create,
            Target::None,
        ),
    ];
    let title = "### Where an order's time goes, SQLite (three instances on one file; the \
                 database works inside the instances)";
    (rows, cpu::render(title, &splits))
}

/// The hot item's stock left, and what its placed and handed-over orders hold, asked
/// with `query` (one number per statement).
fn stock_of(query: &dyn Fn(&str) -> String, item: i64) -> (i64, i64) {
    let number = |sql: String| -> i64 { query(&sql).trim().parse().unwrap() };
    let left = number(format!("SELECT quantity FROM items WHERE id = {item}"));
    let sold = number(format!(
        "SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id \
         WHERE l.item_id = {item} AND o.state IN ('placed', 'handed_over')"
    ));
    (left, sold)
}

impl Market {
    /// The hot item sold, and what is left of it + what its orders hold = its stock at
    /// first (when it did not sell: what one more order is answered, and wrk's figures).
    fn assert_stock_kept(
        &self,
        runtime: &tokio::runtime::Runtime,
        left: i64,
        sold: i64,
        hot: &Measured,
        backend: &str,
    ) {
        if sold == 0 {
            let answer = runtime.block_on(async {
                let response = common::client()
                    .post(format!("{}/api/orders", self.base))
                    .bearer_auth(&self.buyer_token)
                    .json(&serde_json::json!({"item_id": self.hot, "quantity": 1, "price_minor": PRICE}))
                    .send()
                    .await
                    .unwrap();
                format!("{} {}", response.status(), response.text().await.unwrap())
            });
            panic!("{backend}: the hot item sold nothing ({left} left; wrk: {hot:?}); one more order: {answer}");
        }
        assert_eq!(
            left + sold,
            STOCK,
            "{backend}: the hot item's stock left + sold = its stock at first"
        );
    }
}
